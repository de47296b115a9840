"""Host-side prompt batches for both IDGenRec phases (numpy only).

The rec phase and the ID phase tokenize prompts the same way, so the positions the ID phase
fills with soft IDs are exactly where the rec phase puts the hard IDs.

A prompt is tokenized piece by piece: the template text before `{history}` (with the user ID
filled in), then one slot per history item separated by the tokens of the separator, then the
text after `{history}`, then EOS. Each slot is either the item's current ID tokens (teacher
forcing: the prompt then equals the rec-phase prompt of those IDs) or a fixed number of
placeholder positions (free-running generation). `soft_slot[b, s] = h * C + t` marks position s
as the t-th soft token of history item h; -1 keeps the token at s. A prompt longer than
`input_len` is cut as `prompt_tokens.tokenize_prompt` cuts it (`truncation`): whole items, oldest
first, or the first input_len - 1 tokens and EOS (then `history_items` lists the items that start
before the cut).

The item IDs' tokens come from one `ItemTokens` table (`PromptBatcher.item_tokens`), which also
gives the item trie for evaluation. An ID longer than `id_len` / `target_len` allow (tokens + EOS)
is a ValueError naming the item, unless `grow_lengths` lets both lengths grow to fit (logged).
Evaluation batches cover the rows of a `HeldOut` (`held_out_batches`), optionally with each user's
items before the target excluded (`seen_items`).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Optional, Sequence

import numpy as np

from llmrec_jax.data import batching, prompt_tokens, prompts
from llmrec_jax.data import splits as splits_lib
from llmrec_jax.indexing.item_tokens import ItemTokens

PLACEHOLDER_ID = 2  # <unk>: any non-pad id, so the position is attended (mask = token > 0)


def cut_to_bucket(enc_BxS: np.ndarray, slot_BxS: np.ndarray, multiple: int) -> tuple[np.ndarray, np.ndarray]:
  """Both cut to the batch's longest prompt rounded up to `multiple` (0: kept whole), so a few
  encoder lengths compile instead of one per batch."""
  if not multiple:
    return enc_BxS, slot_BxS
  longest = int((enc_BxS > 0).sum(axis=1).max())
  s = min(enc_BxS.shape[1], -(-longest // multiple) * multiple)
  return enc_BxS[:, :s], slot_BxS[:, :s]


@dataclasses.dataclass
class PromptBatcher:
  """Builds rec-phase and ID-phase batches from current textual IDs, item texts and templates.

  Attributes:
    encode: text -> token ids without EOS (e.g. a SentencePiece processor's encode).
    item_texts: plain text per item index (what the generator reads; only the ID phase needs it).
    item_ids: current textual ID per item index.
    templates: prompt templates; examples name theirs by index.
    num_history: H, history items per prompt (the official code uses max_his // 2 = 10).
    text_len, id_len, input_len, target_len: L, C, S, T.
    free_running_steps: None for teacher forcing, else the slot length of every item.
    grow_lengths: IDs longer than id_len / target_len allow grow both (multiples of 4, logged)
      instead of failing: for IDs a generator lengthens (`ItemTokens.fit_length`).
    truncation: how a prompt over `input_len` is cut (`prompt_tokens.Truncation`).
    item_tokens: the `ItemTokens` table of `item_ids` (built here).
  """
  encode: Callable[[str], list[int]]
  item_texts: Optional[Sequence[str]]
  item_ids: Sequence[str]
  templates: Sequence[prompts.Template]
  num_history: int = 10
  text_len: int = 128
  id_len: int = 16
  input_len: int = 256
  target_len: int = 16
  free_running_steps: Optional[int] = None
  eos_id: int = 1
  sep: str = prompts.HISTORY_SEP
  # Encoder inputs are cut to the batch's longest prompt rounded up to this multiple (a few
  # compiled shapes instead of always `input_len`); 0 keeps `input_len`.
  length_bucket: int = 32
  grow_lengths: bool = False
  truncation: prompt_tokens.Truncation = prompt_tokens.Truncation.DROP_OLDEST

  def __post_init__(self):
    self.truncation = prompt_tokens.Truncation(self.truncation)
    if self.item_texts is not None and len(self.item_texts) != len(self.item_ids):
      raise ValueError(f"{len(self.item_texts)} item texts but {len(self.item_ids)} item IDs")
    self._text_NxL = None
    self.item_tokens = ItemTokens.encode(self.item_ids, self.encode, eos_id=self.eos_id)
    for name in ("id_len", "target_len"):
      setattr(self, name, self.item_tokens.fit_length(getattr(self, name), name=name,
                                                      grow=self.grow_lengths))
    self._sep_tokens = self.encode(self.sep.strip())
    self.truncated_histories = 0

  def _slot_len(self, item: int) -> int:
    return self.free_running_steps or len(self.item_tokens.tokens(item))

  def _layout(self, template: prompts.Template, user_id: str, history: Sequence[int]):
    """Token ids, soft slots and kept items of one prompt, cut to fit (`truncation`)."""
    before, after = template.input.split("{history}", 1)
    pre = self.encode(before.format(user_id=user_id).strip()) if before.strip() else []
    post = self.encode(after.format(user_id=user_id).strip()) if after.strip() else []
    history = list(history)[-self.num_history:]
    while True:
      tokens, slots, starts = list(pre), [-1] * len(pre), []
      for h, item in enumerate(history):
        if h:
          tokens += self._sep_tokens
          slots += [-1] * len(self._sep_tokens)
        starts.append(len(tokens))
        n = self._slot_len(item)
        fill = self.item_tokens.tokens(item) if self.free_running_steps is None else [PLACEHOLDER_ID] * n
        tokens += fill
        slots += [h * self._c + t for t in range(n)]
      tokens += post + [self.eos_id]
      slots += [-1] * (len(post) + 1)
      if len(tokens) > self.input_len and self.truncation is prompt_tokens.Truncation.RIGHT:
        self.truncated_histories += 1
        cut = self.input_len - 1
        return (tokens[:cut] + [self.eos_id], slots[:cut] + [-1],
                history[:sum(a < cut for a in starts)])
      if len(tokens) <= self.input_len or len(history) <= 1:
        break
      history = history[1:]
      self.truncated_histories += 1
    if len(tokens) > self.input_len:
      raise ValueError(f"a prompt with one history item needs {len(tokens)} > input_len="
                       f"{self.input_len} tokens: {template.input!r}")
    return tokens, slots, history

  @property
  def _c(self) -> int:
    return self.free_running_steps or self.id_len

  def _prompts(self, user_ids, histories, template_idx):
    layouts = [self._layout(self.templates[t], u, h) for u, h, t in zip(user_ids, histories, template_idx)]
    enc_BxS, slot_BxS = cut_to_bucket(batching.pad_rows([l[0] for l in layouts], self.input_len),
                                      batching.pad_rows([l[1] for l in layouts], self.input_len, fill=-1),
                                      self.length_bucket)
    return enc_BxS, slot_BxS, batching.pad_rows([l[2] for l in layouts], self.num_history, fill=-1)

  def _targets(self, targets):
    return batching.decoder_features(batching.pad_rows(
        [self.item_tokens.tokens(t) + [self.eos_id] for t in targets], self.target_len))

  def item_id_tokens(self, item: int) -> list[int]:
    """Current ID tokens of `item` without EOS."""
    return self.item_tokens.tokens(item)

  def rec_batch(self, user_ids: Sequence[str], histories: Sequence[Sequence[int]],
                targets: Sequence[int], template_idx: Sequence[int]) -> dict[str, np.ndarray]:
    """Rec-phase batch: prompts with the current IDs and the target item's ID (+ `history_items`)."""
    if self.free_running_steps is not None:
      raise ValueError("rec batches need the hard IDs: build them with free_running_steps=None")
    enc_BxS, _, hist_BxH = self._prompts(user_ids, histories, template_idx)
    return {"encoder_input_tokens": enc_BxS, "history_items": hist_BxH, **self._targets(targets)}

  @staticmethod
  def by_history_length(split, rows: np.ndarray) -> np.ndarray:
    """`rows` (example indices of `split`) ordered by history length, shortest first (stable):
    evaluation batches then hold prompts of similar length, and `length_bucket` cuts each batch
    to its own longest prompt (ranking metrics are means, so the order does not change them)."""
    rows = np.asarray(rows)
    lengths = np.fromiter((len(split.history[i]) for i in rows), np.int64, len(rows))
    return rows[np.argsort(lengths, kind="stable")]

  def eval_batches(self, split, user_ids: Sequence[str], *, batch_size: int,
                   num_examples: Optional[int] = None, rows: Optional[np.ndarray] = None,
                   excluded: Optional[Callable[[np.ndarray], np.ndarray]] = None):
    """Fixed-size rec batches (template 0) over the first `num_examples` of a `LooSplit`, or over
    its examples `rows`, in that order; the last batch wraps around (callers keep the first
    len(rows) results). `excluded(users_B)` adds an `excluded_items` [B, E] array (e.g.
    `seen_items`)."""
    if (num_examples is None) == (rows is None):
      raise ValueError("eval_batches needs exactly one of num_examples and rows")
    rows = np.arange(num_examples) if rows is None else np.asarray(rows)
    for start in range(0, len(rows), batch_size):
      idx = rows[np.arange(start, start + batch_size) % len(rows)]
      b = self.rec_batch([user_ids[u] for u in split.user[idx]], [split.history[i] for i in idx],
                         split.target[idx], np.zeros(batch_size, np.int32))
      b.pop("history_items")
      if excluded is not None:
        b["excluded_items"] = excluded(split.user[idx])
      yield b

  def held_out_batches(self, examples, user_ids: Sequence[str], *, batch_size: int,
                       exclude_seen_of: Optional[Sequence[np.ndarray]] = None):
    """`eval_batches` over the rows of an `evaluator.HeldOut`, in order; with the users' full
    sequences, each batch also excludes every user's items before the target (`seen_items`)."""
    excluded = None
    if exclude_seen_of is not None:
      excluded = functools.partial(seen_items, exclude_seen_of, split=examples.name)
    return self.eval_batches(examples.split, user_ids, rows=examples.rows, batch_size=batch_size,
                             excluded=excluded)

  def build(self, user_ids: Sequence[str], histories: Sequence[Sequence[int]],
            targets: Sequence[int], template_idx: Sequence[int]) -> dict[str, np.ndarray]:
    """One ID-phase batch of B prompts (see `id_phase.id_phase_loss` for keys and shapes)."""
    if self.item_texts is None:
      raise ValueError("ID-phase batches need item_texts")
    if self._text_NxL is None:
      self._text_NxL = batching.pad_rows([self.encode(t) + [self.eos_id] for t in self.item_texts],
                                         self.text_len)
    c = self._c
    enc_BxS, slot_BxS, hist_BxH = self._prompts(user_ids, histories, template_idx)
    items_N = hist_BxH.reshape(-1)
    real_N = items_N >= 0
    text_NxL = np.where(real_N[:, None], self._text_NxL[np.maximum(items_N, 0)], 0)
    ids = [self.item_tokens.tokens(x) + [self.eos_id] if x >= 0 else [] for x in items_N]
    id_targets_NxC = batching.pad_rows(ids, c if self.free_running_steps is None else self.id_len)
    id_inputs_NxC = batching.shift_right(id_targets_NxC)
    return {
        "item_text_tokens": text_NxL.astype(np.int32),
        "item_id_inputs": id_inputs_NxC,
        "item_id_targets": id_targets_NxC,
        "history_items": hist_BxH,
        "encoder_input_tokens": enc_BxS,
        "soft_slot": slot_BxS,
        **self._targets(targets),
    }


def seen_items(sequences: Sequence[np.ndarray], users_B: np.ndarray, split: str) -> np.ndarray:
  """Every item each user interacted with before `split`'s target (`splits.seen_before_target`),
  -1 padded to the longest sequence so shapes never change: [B, E]."""
  width = max(len(s) for s in sequences)
  out = np.full((len(users_B), width), -1, np.int32)
  for i, u in enumerate(users_B):
    seen = splits_lib.seen_before_target(sequences[u], split)
    out[i, :len(seen)] = seen
  return out
