"""Users' histories as token streams of item IDs, for whole-sequence (decoder-only) training.

A user's stream is the token IDs of their items, oldest first, each followed by EOS:
`id(i1) EOS id(i2) EOS ... id(in) EOS`. Trained causally with the start token 0 in front, one
forward pass gives the next-item target at every position of the sequence (as SASRec does),
where the per-example form re-encodes the whole history for each single target.

Leave-one-out (as `splits.leave_one_out`): training streams hold `seq[:-2]` (the last
`max_items` of them); the held-out prompts are `splits.held_out_split`'s histories (validation
`seq[:-2]`, test `seq[:-1]`). A prompt
is the stream without its last EOS, left-padded: the decoder feeds that EOS as its first step.

With `start_tokens` (one per stream or prompt, e.g. TIGER's hashed user token), each row starts
with its own token in place of START_ID.

Batches are bucketed by stream length (padded to a multiple of `multiple`) with a fixed token
budget per batch, so little compute goes to padding, and the order of users and batches is drawn
anew every epoch from (seed, epoch). With `TrieChoices`, a batch also lists the positions where
the item trie offers a choice (`branch_*` keys, for `DecoderOnlyModel(trie_softmax=True)`).
"""
from __future__ import annotations

import dataclasses
from typing import Iterator, Sequence

import numpy as np

from llmrec_jax.data import splits

START_ID = 0
# Branch-row counts are padded to one of these fractions of B * L (few distinct shapes to jit).
_BRANCH_FRACTIONS = (0.25, 0.375, 0.5, 0.625, 0.75, 1.0)


@dataclasses.dataclass(frozen=True, eq=False)
class TrieChoices:
  """Where an item trie has a choice (`ItemTrie.choice_nodes`) and its output columns.

  Attributes:
    item_nodes: per item, int32 [n_i]: the trie node before each of its tokens (EOS included).
    branching_M: bool [M]: nodes with two or more children.
    token_ids_U: sorted int32 [U] tokens that occur in items (the column of a target token).
    eos_id: the token ending every item (counts items).
  """
  item_nodes: Sequence[np.ndarray]
  branching_M: np.ndarray
  token_ids_U: np.ndarray
  eos_id: int = 1

  def stream_nodes(self, items: Sequence[int]) -> np.ndarray:
    """The node of every target of `user_stream(items, ...)`, aligned with it."""
    return np.concatenate([self.item_nodes[int(i)] for i in items]).astype(np.int32)

  def streams(self, sequences: Sequence[np.ndarray], max_items: int) -> list[np.ndarray]:
    """Per user, the nodes of its training stream (aligned with `train_streams`)."""
    return [self.stream_nodes(splits.train_items(seq)[-max_items:]) for seq in sequences]


def user_stream(items: Sequence[int], item_tokens: Sequence[Sequence[int]], eos_id: int) -> np.ndarray:
  """int32 stream `id(i1) EOS id(i2) EOS ...` of the items (item index -> ID tokens)."""
  out: list[int] = []
  for i in items:
    out.extend(item_tokens[int(i)])
    out.append(eos_id)
  return np.asarray(out, np.int32)


def train_streams(sequences: Sequence[np.ndarray], item_tokens: Sequence[Sequence[int]], *,
                  max_items: int, eos_id: int) -> list[np.ndarray]:
  """One stream per user over the last `max_items` of `splits.train_items(seq)` (`seq[:-2]`)."""
  if max_items < 1:
    raise ValueError(f"max_items must be >= 1, got {max_items}")
  return [user_stream(splits.train_items(seq)[-max_items:], item_tokens, eos_id) for seq in sequences]


def held_out_histories(sequences: Sequence[np.ndarray], split: str, max_items: int
                       ) -> tuple[list[np.ndarray], np.ndarray]:
  """(histories, targets) of every user for 'valid' or 'test' (`splits.held_out_split`)."""
  held = splits.held_out_split(sequences, split, max_his=max_items)
  return list(held.history), held.target


def padded_length(n: int, multiple: int) -> int:
  return max(multiple, -(-n // multiple) * multiple)


def epoch_batches(streams: Sequence[np.ndarray], *, tokens_per_batch: int, seed: int, epoch: int,
                  multiple: int = 16, max_len: int | None = None,
                  choices: TrieChoices | None = None,
                  node_streams: Sequence[np.ndarray] | None = None, row_multiple: int = 1,
                  start_tokens: np.ndarray | None = None) -> Iterator[dict[str, np.ndarray]]:
  """Training batches of one epoch: every stream once, bucketed by padded length.

  Each batch has `tokens_per_batch // L` rows of length L, rounded down to a multiple of
  `row_multiple` (at least one multiple; e.g. the mesh's 'data' axis, so rows split evenly over
  it), and empty rows fill the last batch of a bucket and carry zero weight. Streams longer than `max_len` keep their last `max_len` tokens.
  Keys (T5X decoder-only names): `decoder_input_tokens` (start token + stream shifted right),
  `decoder_target_tokens`, `decoder_loss_weights` (1 at real targets), all [B, L]; with
  `choices` and the users' `node_streams` (`TrieChoices.streams`), also the `branch_*` keys
  and `num_items` of `DecoderOnlyModel.trie_loss`. `start_tokens`: int32 [len(streams)], each
  stream's token at input position 0 (None: START_ID for all).
  """
  rng = np.random.default_rng([seed, epoch])
  batches = []
  for length, users, rows in _buckets(streams, tokens_per_batch, multiple, max_len, row_multiple):
    users = users[rng.permutation(users.size)]
    batches.extend((length, users[i:i + rows], rows) for i in range(0, users.size, rows))
  for b in rng.permutation(len(batches)):
    length, users, rows = batches[b]
    yield make_batch([streams[u][-length:] for u in users], length, rows, choices,
                     None if choices is None else [node_streams[u][-length:] for u in users],
                     None if start_tokens is None else np.asarray(start_tokens)[users])


def rows_per_batch(tokens_per_batch: int, length: int, row_multiple: int = 1) -> int:
  """`tokens_per_batch // length` rounded down to a multiple of `row_multiple` (at least one)."""
  if row_multiple < 1:
    raise ValueError(f"row_multiple must be >= 1, got {row_multiple}")
  return max(row_multiple, tokens_per_batch // length // row_multiple * row_multiple)


def _buckets(streams: Sequence[np.ndarray], tokens_per_batch: int, multiple: int,
             max_len: int | None, row_multiple: int = 1) -> list[tuple[int, np.ndarray, int]]:
  """(padded length L, users of that length, rows per batch) for every non-empty bucket."""
  lens = np.asarray([s.size if max_len is None else min(s.size, max_len) for s in streams])
  padded = np.asarray([padded_length(int(n), multiple) for n in lens])
  return [(int(length), np.flatnonzero((padded == length) & (lens > 0)),
           rows_per_batch(tokens_per_batch, int(length), row_multiple))
          for length in np.unique(padded[lens > 0])]


def num_batches(streams: Sequence[np.ndarray], *, tokens_per_batch: int, multiple: int = 16,
                max_len: int | None = None, row_multiple: int = 1) -> int:
  """Batches in every epoch of `epoch_batches` with these settings (without building them)."""
  return sum(-(-users.size // rows) for _, users, rows in
             _buckets(streams, tokens_per_batch, multiple, max_len, row_multiple))


def make_batch(streams: Sequence[np.ndarray], length: int, num_rows: int,
               choices: TrieChoices | None = None,
               node_streams: Sequence[np.ndarray] | None = None,
               start_tokens: np.ndarray | None = None) -> dict[str, np.ndarray]:
  """One batch of these streams in this order ([num_rows, length], see `epoch_batches`); row r
  starts with `start_tokens[r]` (empty filler rows, and all rows without them, with START_ID)."""
  batch = _train_batch(list(streams), num_rows, length, start_tokens)
  if choices is not None:
    batch.update(_branch_keys(choices, list(node_streams), batch["decoder_target_tokens"]))
  return batch


def _branch_keys(choices: TrieChoices, node_rows: list[np.ndarray], targets_BxL: np.ndarray
                 ) -> dict[str, np.ndarray]:
  nodes_BxL = np.zeros(targets_BxL.shape, np.int32)
  for r, n in enumerate(node_rows):
    nodes_BxL[r, :n.size] = n
  real_BxL = targets_BxL > 0
  rows_R = np.flatnonzero(real_BxL & choices.branching_M[nodes_BxL])
  size = targets_BxL.size
  cap = next(-(-int(f * size) // 8) * 8 for f in _BRANCH_FRACTIONS if f * size >= rows_R.size)
  cap = min(cap, size)
  pad = cap - rows_R.size
  flat_nodes, flat_targets = nodes_BxL.reshape(-1), targets_BxL.reshape(-1)
  cols_R = np.searchsorted(choices.token_ids_U, flat_targets[rows_R]).astype(np.int32)
  return {"branch_rows": np.pad(rows_R, (0, pad)).astype(np.int32),
          "branch_nodes": np.pad(flat_nodes[rows_R], (0, pad)).astype(np.int32),
          "branch_targets": np.pad(cols_R, (0, pad)),
          "branch_weights": np.pad(np.ones(rows_R.size, np.float32), (0, pad)),
          "num_items": np.float32(np.sum(targets_BxL == choices.eos_id))}


def _train_batch(rows: list[np.ndarray], num_rows: int, length: int,
                 start_tokens: np.ndarray | None = None) -> dict[str, np.ndarray]:
  targets = np.zeros((num_rows, length), np.int32)
  for r, s in enumerate(rows):
    targets[r, :s.size] = s
  inputs = np.zeros_like(targets)
  inputs[:, 1:] = targets[:, :-1]
  inputs[:, 0] = START_ID
  if start_tokens is not None:
    inputs[:len(rows), 0] = start_tokens
  return {"decoder_input_tokens": inputs, "decoder_target_tokens": targets,
          "decoder_loss_weights": (targets > 0).astype(np.float32)}


def prompt_batch(histories: Sequence[np.ndarray], item_tokens: Sequence[Sequence[int]], *,
                 eos_id: int, multiple: int = 16, start_tokens: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
  """Left-padded prompts `START id(h1) EOS ... id(hn)` (no final EOS) and their valid mask,
  [B, P] with P the longest prompt rounded up to `multiple`; START is `start_tokens[b]` when
  given (int32 [B]), else START_ID."""
  starts = [START_ID] * len(histories) if start_tokens is None else [int(t) for t in start_tokens]
  prompts = [np.concatenate([[start], user_stream(h, item_tokens, eos_id)[:-1]])
             for start, h in zip(starts, histories, strict=True)]
  length = padded_length(max(p.size for p in prompts), multiple)
  tokens = np.zeros((len(prompts), length), np.int32)
  valid = np.zeros((len(prompts), length), np.bool_)
  for r, p in enumerate(prompts):
    tokens[r, length - p.size:] = p
    valid[r, length - p.size:] = True
  return tokens, valid


def prompt_lengths(histories: Sequence[np.ndarray], item_tokens: Sequence[Sequence[int]]) -> np.ndarray:
  """Tokens of each user's prompt (start token, items' tokens, EOS between items)."""
  sizes = np.asarray([len(t) + 1 for t in item_tokens])
  return np.asarray([int(sizes[h].sum()) for h in histories])
