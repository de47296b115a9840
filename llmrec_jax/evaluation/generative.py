"""Generative rankers: trie-constrained top-K decoding over every item (full ranking).

For every held-out example the recommender decodes K item IDs under a prefix-trie mask over all
items (so each decode is a real item, `ItemTokens.trie`); `evaluator.evaluate_split` turns the
top-K lists into HR@k / NDCG@k. Two rankers implement `evaluator.Ranker`:

* `PromptRanker`: an encoder-decoder recommender reads one prompt per example (the caller's
  fixed-size batches) and `make_topk_fn` decodes its top-K; seen items can be excluded at the
  trie leaves (an `excluded_items` batch key).
* `StreamRanker`: a decoder-only recommender continues each history's stream prompt
  `START id(h1) EOS ... id(hn)` (`decoder_model.make_topk_fn`); users are batched by prompt
  length and results come back in the examples' order.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from llmrec_jax import models
from llmrec_jax.data import item_streams
from llmrec_jax.decoding import beam_search, diverse, trie as trie_lib
from llmrec_jax.evaluation import evaluator
from llmrec_jax.indexing.item_tokens import build_item_trie  # noqa: F401  (the trie of item IDs)


SEARCHES = ("t5x", "hf")


@dataclasses.dataclass(frozen=True)
class DecodeOptions:
  """Constrained decoding options: 10 beams, score = sum log p / length, as the official
  IDGenRec evaluation.

  `search` sets the beam-search rules:
  * 't5x' (default): `beam_search.constrained_beam_search`, T5X's rules: every ending
    candidate among the top 2K of a step finishes, and the search stops only when no live beam
    can still beat the worst finished item (exhaustive when K covers the catalogue); scores
    follow `length_normalization` ('hf': sum log p / len ** `length_penalty`; 't5x':
    / ((5 + len) / 6) ** `alpha`; 'none').
  * 'hf': `diverse.hf_beam_search`, transformers 4.26.0's `generate(num_beams=K,
    num_return_sequences=K, length_penalty, prefix_allowed_tokens_fn=trie)`, what the
    official code runs: the live beams evolve as in 't5x', but only ending candidates among the
    top K finish and the search stops on HF's heuristic bound (the best candidate normalised
    at the current length), so it can miss items that 't5x' returns. Needs
    `length_normalization='hf'` (HF's own scores); `alpha` is unused. HF's max_length does not
    matter here: every beam ends on a trie leaf before it. bench/hf426_parity.py checks it
    against transformers 4.26.0 itself.

  `output_vocab` (a `models.OutputVocab` name) sets which logits each step computes:
  'subset_exact' (default) projects onto the full vocab but masks, normalises and ranks only the
  trie's tokens plus one rest-of-vocab column: scores equal the full-vocab path's (HF's
  log_softmax over all V, then the trie mask) up to float rounding. 'subset' projects onto the
  trie's tokens only (cheaper output layer) and normalises over them: an approximation of the
  official scores whose rankings may differ. 'full' is the plain full-vocab path.
  """
  num_beams: int = 10
  length_normalization: str = "hf"
  length_penalty: float = 1.0
  alpha: float = 0.0
  ks: tuple[int, ...] = (5, 10)
  output_vocab: str = "subset_exact"
  search: str = "t5x"

  def __post_init__(self):
    if self.search not in SEARCHES:
      raise ValueError(f"DecodeOptions.search must be one of {SEARCHES}, got {self.search!r}")
    if self.search == "hf" and self.length_normalization != "hf":
      raise ValueError("search='hf' scores as HF does (sum log p / len ** length_penalty); "
                       f"length_normalization must be 'hf', got {self.length_normalization!r}")
    if max(self.ks) > self.num_beams:
      raise ValueError(f"metrics @{max(self.ks)} need num_beams >= {max(self.ks)}, got {self.num_beams}")
    models.OutputVocab(self.output_vocab)  # fails loudly on a typo


def search_decode_fn(options: DecodeOptions) -> tuple[Callable[..., Any], dict[str, Any]]:
  """(the trie-constrained T5X `decode_fn` of `options.search`, its extra decode parameters)."""
  if options.search == "hf":
    return functools.partial(diverse.hf_beam_search, length_penalty=options.length_penalty), {}
  decode_fn = functools.partial(
      beam_search.constrained_beam_search, length_normalization=options.length_normalization,
      length_penalty=options.length_penalty)
  return decode_fn, {"alpha": options.alpha}


def make_topk_fn(model: models.EncoderDecoderModel, options: DecodeOptions) -> Callable[..., Any]:
  """jit(params, batch, trie_arrays) -> (items_BxK best first, scores_BxK best first), decoded
  with `options.search` (-1 / -inf for slots no item fills).

  `trie_arrays` is `ItemTrie.arrays` (full vocab); the subset output modes use its `compact`
  view and `token_ids_U` themselves. A batch key `excluded_items` [B, E] (item indices, -1
  padded) bans those items per example (passed to the search as a decode parameter).
  """
  decode_fn, extra_params = search_decode_fn(options)
  m = model.with_decode_fn(decode_fn)
  output_vocab = models.OutputVocab(options.output_vocab)

  def topk(params, batch, trie_arrays):
    subset = {}
    search_trie = trie_arrays
    if output_vocab != models.OutputVocab.FULL:
      subset = {"output_token_ids": trie_arrays.token_ids_U, "output_vocab": output_vocab}
      search_trie = trie_arrays.compact
    decodes_BxKxT, aux = m.predict_batch_with_aux(
        params, batch, return_all_decodes=True, num_decodes=options.num_beams,
        decoder_params={"trie": search_trie, "excluded_items": batch.get("excluded_items"),
                        **extra_params}, **subset)
    scores_BxK = aux["scores"]
    items_BxK = trie_lib.items_from_sequences(trie_arrays, decodes_BxKxT)
    items_BxK = jnp.where(scores_BxK > beam_search.NEG_INF, items_BxK, -1)
    return items_BxK[:, ::-1], scores_BxK[:, ::-1]

  return jax.jit(topk)


def decode_batches(topk_fn: Callable[..., Any], params: Any, trie: trie_lib.ItemTrie,
                   batches: Iterable[Mapping[str, np.ndarray]], *, num_rows: int,
                   num_batches: Optional[int] = None, desc: str = "evaluate") -> np.ndarray:
  """Runs `topk_fn` over `batches` (padded to a fixed batch size; rows beyond `num_rows` are
  dropped) and returns the top-K item indices [num_rows, K], best first."""
  arrays = trie.arrays
  tops = []
  for batch in tqdm.tqdm(batches, total=num_batches, desc=desc, unit="batch", leave=False):
    items_BxK, _ = topk_fn(params, {k: jnp.asarray(v) for k, v in batch.items()}, arrays)
    tops.append(np.asarray(items_BxK))
  if not tops:
    return np.zeros((0, 0), np.int32)
  return np.concatenate(tops)[:num_rows]


@dataclasses.dataclass
class PromptRanker:
  """`evaluator.Ranker` of an encoder-decoder recommender.

  Attributes:
    topk_fn: `make_topk_fn`'s jitted (params, batch, trie_arrays) -> (items_BxK, scores_BxK).
    params: the recommender's params.
    trie: the item trie (`ItemTokens.trie`).
    batches: examples -> fixed-size prompt batches of their rows in order (the last batch may
      wrap around; e.g. `PromptBatcher.held_out_batches`).
    batch_size: rows per batch (the progress bar's count).
  """
  topk_fn: Callable[..., Any]
  params: Any
  trie: trie_lib.ItemTrie
  batches: Callable[[evaluator.HeldOut], Iterable[Mapping[str, np.ndarray]]]
  batch_size: int

  def topk(self, examples: evaluator.HeldOut) -> np.ndarray:
    n = len(examples.rows)
    return decode_batches(self.topk_fn, self.params, self.trie, self.batches(examples), num_rows=n,
                          num_batches=math.ceil(n / self.batch_size), desc=f"evaluate {examples.name}")


def decode_stream_topk(topk_fn: Callable[..., Any], params: Any, trie_arrays: Any,
                       histories: Sequence[np.ndarray], item_tokens: Sequence[Sequence[int]], *,
                       eos_id: int, batch_size: int, desc: str = "decode",
                       start_tokens: Optional[np.ndarray] = None) -> np.ndarray:
  """Top-K items [U, K] of each history under a decoder-only `topk_fn(params, prompt, valid,
  trie_arrays)` (users ordered by prompt length inside, so each batch is cut to its own longest
  prompt; the result is in the input order). `start_tokens`: int32 [U], each prompt's first
  token (None: `item_streams.START_ID`)."""
  order = np.argsort(item_streams.prompt_lengths(histories, item_tokens), kind="stable")
  out = []
  for start in tqdm.trange(0, len(order), batch_size, desc=desc, leave=False):
    rows = order[start:start + batch_size]
    prompt, valid = item_streams.prompt_batch(
        [histories[r] for r in rows], item_tokens, eos_id=eos_id, multiple=32,
        start_tokens=None if start_tokens is None else np.asarray(start_tokens)[rows])
    pad = batch_size - len(rows)
    if pad:  # fixed batch shape; pad rows hold one valid start token
      prompt = np.pad(prompt, ((0, pad), (0, 0)))
      valid = np.pad(valid, ((0, pad), (0, 0)))
      valid[len(rows):, -1] = True
    items, _ = topk_fn(params, prompt, valid, trie_arrays)
    out.append(np.asarray(items)[:len(rows)])
  tops = np.zeros((len(histories), out[0].shape[1] if out else 0), np.int32)
  if out:
    tops[order] = np.concatenate(out)
  return tops


@dataclasses.dataclass
class StreamRanker:
  """`evaluator.Ranker` of a decoder-only recommender (`decode_stream_topk`).

  Attributes:
    topk_fn: `decoder_model.make_topk_fn`'s (params, prompt, valid, trie_arrays) -> (items, scores).
    params: the recommender's params.
    trie: the item trie of `item_tokens`.
    item_tokens: ID tokens (without EOS) per item index: the prompts' vocabulary.
    eos_id: the token after every item of a stream.
    batch_size: users per decoding batch.
    start_tokens_U: optional int32 [num_users]: each user's prompt start token, indexed by the
      examples' user index (`HeldOut.users`); None: `item_streams.START_ID` for all.
  """
  topk_fn: Callable[..., Any]
  params: Any
  trie: trie_lib.ItemTrie
  item_tokens: Sequence[Sequence[int]]
  eos_id: int
  batch_size: int
  start_tokens_U: Optional[np.ndarray] = None

  def topk(self, examples: evaluator.HeldOut) -> np.ndarray:
    starts = self.start_tokens_U
    starts = None if starts is None else np.asarray(starts)[examples.users]
    return decode_stream_topk(self.topk_fn, self.params, self.trie.arrays, examples.histories(),
                              self.item_tokens, eos_id=self.eos_id, batch_size=self.batch_size,
                              desc=examples.name, start_tokens=starts)
