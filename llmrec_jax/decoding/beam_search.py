"""Beam search in `lax.while_loop` with a KV cache and an explicit constraint hook.

T5X-compatible: `beam_search(inputs, cache, tokens_to_logits, eos_id, num_decodes, alpha,
max_decode_len, decode_rng, cache_offset)` keeps T5X's keyword names, its `DecodingState`
fields and its output convention (`[B, K, L]` sequences, `[B, K]` scores, **ascending: best
last**). Conventions shared with T5X:

* `cache` arrives with batch B (batch axis at `cache_offset`); the beam axis is added here. Leaves
  named `cache_index`, `cached_bias` or `position_embedder_index` are left alone, and so are
  `projected_key` / `projected_value` (per-example cross-attention memory, kept at batch B).
* Sequences carry a dummy BOS (0) in slot 0; `cur_index` is the slot of `cur_token`.
* `inputs` only gives B and the default `max_decode_len`; prompts are not forced.
* Scores: `sum_logprob / P(len)` with len = generated tokens incl. EOS and P from
  `length_normalization`: 't5x' ((5+len)/6)**alpha, 'hf' len**length_penalty (HF
  `BeamHypotheses`: `generated_len` = new tokens incl. EOS, the decoder start token excluded),
  'none' 1.
* The top 2K candidates per step are kept; all of them may finish (T5X), and the search stops
  only when no live beam can still beat the worst finished one (an exact bound at both ends of
  the remaining lengths), so with K >= number of reachable sequences the result is exhaustive.
  HF's beam-search rules (only the top K candidates may finish, heuristic early stop, live
  beams finalised at max length) are `diverse.hf_beam_search` (= group search with one group;
  checked against transformers' `generate` in tests/decoding/hf_parity_test.py).

Masking: log-probabilities are computed over the full vocab and then masked (HF
`prefix_allowed_tokens_fn` semantics: scores are the model's own probabilities, not
renormalised over the allowed tokens). Two hooks, AND-ed:
* `logits_mask_fn(decoding_state) -> bool [BK, V]`: stateless;
* `constraint`: an object with `init(batch_size, num_beams) -> state` (leaves [BK, ...]),
  `mask(state, vocab_size) -> bool [BK, V]` and `update(state, token_BK) -> state`; its state is
  gathered with the beams, so a trie walk costs one step per token (see `TrieConstraint`).

`DecodingState`, the constraint hook (`Constraint`, `TrieConstraint`) and the beam bookkeeping
shared with `diverse` (cache expansion and gathers, candidate selection) live in `beams`; this
module holds the T5X search itself and its trie-constrained `decode_fn`.
"""
from __future__ import annotations

import enum
import functools
from typing import Callable, Optional

import flax.struct
import jax
import jax.numpy as jnp

from llmrec_jax.decoding import beams
from llmrec_jax.decoding import trie as trie_lib

NEG_INF = beams.NEG_INF


class LengthNormalization(str, enum.Enum):
  T5X = "t5x"  # sum_logprob / ((5 + len) / 6) ** alpha
  HF = "hf"  # sum_logprob / len ** length_penalty
  NONE = "none"  # sum_logprob


def length_penalty_divisor(length, mode: LengthNormalization, alpha: float,
                           length_penalty: float) -> jax.Array:
  """P(len) for the chosen normalisation; len counts generated tokens incl. EOS."""
  length = jnp.asarray(length, jnp.float32)
  if mode == LengthNormalization.T5X:
    return ((5.0 + length) / 6.0) ** alpha
  if mode == LengthNormalization.HF:
    return length ** length_penalty
  return jnp.ones_like(length)


# ------------------------------------------------------------------------- beam search
@flax.struct.dataclass
class BeamState:
  cur_index: jax.Array  # int32 scalar
  live_logprobs_BxK: jax.Array  # float32, sorted best first
  live_seqs_BxKxL1: jax.Array  # int32, slot 0 = BOS
  finished_scores_BxK: jax.Array  # float32 (normalised), sorted best first
  finished_seqs_BxKxL1: jax.Array  # int32
  finished_flags_BxK: jax.Array  # bool
  cache: beams.PyTree  # leaves [BK, ...] (batch axis at cache_offset)
  constraint_state: beams.PyTree  # leaves [BK, ...]


def beam_candidates(state: BeamState, lp_BxKxV: jax.Array, eos_id: int,
                    column_token_ids: Optional[jax.Array]) -> beams.Candidates:
  """The top N = min(2K, K * V) continuations of the live beams, given this step's
  log-probs lp_BxKxV."""
  k, v = lp_BxKxV.shape[1:]
  cand_BxKxV = state.live_logprobs_BxK[:, :, None] + lp_BxKxV
  val_Bx2K, beam_Bx2K, col_Bx2K = beams.select_candidates(cand_BxKxV, min(2 * k, k * v))
  tok_Bx2K = col_Bx2K if column_token_ids is None else column_token_ids[col_Bx2K]
  seqs_Bx2KxL1 = beams.extend_beams(state.live_seqs_BxKxL1, beam_Bx2K, tok_Bx2K, state.cur_index)
  finite = val_Bx2K > NEG_INF
  return beams.Candidates(value_BxN=val_Bx2K, beam_BxN=beam_Bx2K, column_BxN=col_Bx2K,
                    token_BxN=tok_Bx2K, seqs_BxNxL1=seqs_Bx2KxL1,
                    is_eos_BxN=(tok_Bx2K == eos_id) & finite)


def next_live(cands: beams.Candidates, num_beams: int):
  """The best K candidates that did not just end.

  Returns:
    (live_logprobs_BxK, from_BxK: the beam each extends, column_BxK, live_seqs_BxKxL1).
  """
  live_val_BxK, pick_BxK = jax.lax.top_k(jnp.where(cands.is_eos_BxN, NEG_INF, cands.value_BxN),
                                         num_beams)
  from_BxK = jnp.take_along_axis(cands.beam_BxN, pick_BxK, axis=1)
  col_BxK = jnp.take_along_axis(cands.column_BxN, pick_BxK, axis=1)
  live_seqs_BxKxL1 = jnp.take_along_axis(cands.seqs_BxNxL1, pick_BxK[:, :, None], axis=1)
  return live_val_BxK, from_BxK, col_BxK, live_seqs_BxKxL1


def merge_finished(state: BeamState, cands: beams.Candidates, divisor: jax.Array):
  """The best K of the kept finished sequences and the candidates that just ended (their
  log-probability / `divisor`, P(len) of this step).

  Returns:
    (finished_scores_BxK, finished_seqs_BxKxL1, finished_flags_BxK), best first.
  """
  k = state.finished_scores_BxK.shape[1]
  new_scores_BxN = jnp.where(cands.is_eos_BxN, cands.value_BxN / divisor, NEG_INF)
  all_scores = jnp.concatenate([state.finished_scores_BxK, new_scores_BxN], axis=1)
  all_seqs = jnp.concatenate([state.finished_seqs_BxKxL1, cands.seqs_BxNxL1], axis=1)
  all_flags = jnp.concatenate([state.finished_flags_BxK, cands.is_eos_BxN], axis=1)
  scores_BxK, pick_BxK = jax.lax.top_k(all_scores, k)
  return (scores_BxK, jnp.take_along_axis(all_seqs, pick_BxK[:, :, None], axis=1),
          jnp.take_along_axis(all_flags, pick_BxK, axis=1))


def beam_search_step(state: BeamState, *, tokens_to_logits, eos_id: int,
                     penalty: Callable[[jax.Array], jax.Array],
                     constraint: Optional[beams.Constraint], logits_mask_fn,
                     column_token_ids: Optional[jax.Array], renormalize: bool,
                     cache_offset: int) -> BeamState:
  """One decoding step of every beam (the `while_loop` body); arguments as in `beam_search`,
  `penalty` = P(len)."""
  b, k = state.live_logprobs_BxK.shape
  ds = beams.decoding_state(state.cur_index, state.live_seqs_BxKxL1, state.cache)
  logits_BKxV, new_cache = tokens_to_logits(ds)
  v = logits_BKxV.shape[-1]
  mask = beams.combined_mask(ds, constraint, state.constraint_state, logits_mask_fn, v)
  lp_BxKxV = beams.step_log_probs(logits_BKxV, mask, renormalize).reshape(b, k, v)
  cands = beam_candidates(state, lp_BxKxV, eos_id, column_token_ids)
  live_val_BxK, from_BxK, col_BxK, live_seqs_BxKxL1 = next_live(cands, k)
  cache_next = beams.gather_beams_tree(new_cache, from_BxK, b, cache_offset, is_cache=True)
  cstate = beams.advance_constraint(constraint, state.constraint_state, from_BxK, col_BxK, b)
  fin_scores, fin_seqs, fin_flags = merge_finished(state, cands, penalty(state.cur_index + 1))
  return BeamState(cur_index=state.cur_index + 1, live_logprobs_BxK=live_val_BxK,
                   live_seqs_BxKxL1=live_seqs_BxKxL1, finished_scores_BxK=fin_scores,
                   finished_seqs_BxKxL1=fin_seqs, finished_flags_BxK=fin_flags,
                   cache=cache_next, constraint_state=cstate)


def beam_search_continues(state: BeamState, *, penalty: Callable[[jax.Array], jax.Array],
                          length: int, min_log_prob: float) -> jax.Array:
  """bool scalar: steps remain and some example's best live beam can still beat its worst
  finished one (P is monotone in len, so its best reachable normalised score is at one end of
  the remaining lengths cur_index + 1 .. length)."""
  best_live_B = state.live_logprobs_BxK[:, 0]
  bound_B = jnp.maximum(best_live_B / penalty(state.cur_index + 1),
                        best_live_B / penalty(length))
  worst_finished_B = jnp.where(state.finished_flags_BxK.all(axis=1),
                               state.finished_scores_BxK[:, -1], NEG_INF)
  hopeless_B = (best_live_B < min_log_prob) | (worst_finished_B >= bound_B)
  return (state.cur_index < length) & ~hopeless_B.all()


def init_beam_state(cache: beams.PyTree, constraint: Optional[beams.Constraint], batch_size: int,
                    num_beams: int, length: int, cache_offset: int) -> BeamState:
  """Beam 0 of each example live at log-probability 0, the others at -inf; nothing finished."""
  b, k = batch_size, num_beams
  cache0 = beams.expand_cache(cache, k, cache_offset)
  return BeamState(
      cur_index=jnp.array(0, jnp.int32),
      live_logprobs_BxK=jnp.full((b, k), NEG_INF, jnp.float32).at[:, 0].set(0.0),
      live_seqs_BxKxL1=jnp.zeros((b, k, length + 1), jnp.int32),
      finished_scores_BxK=jnp.full((b, k), NEG_INF, jnp.float32),
      finished_seqs_BxKxL1=jnp.zeros((b, k, length + 1), jnp.int32),
      finished_flags_BxK=jnp.zeros((b, k), jnp.bool_),
      cache=cache0,
      constraint_state=None if constraint is None else constraint.init(b, k))


def beam_search_output(final: BeamState) -> tuple[jax.Array, jax.Array]:
  """(sequences [B, K, L], scores [B, K]) ascending: the finished beams, or the live ones for an
  example with none finished."""
  any_finished_B = final.finished_flags_BxK.any(axis=1)
  seqs_BxKxL1 = jnp.where(any_finished_B[:, None, None], final.finished_seqs_BxKxL1,
                          final.live_seqs_BxKxL1)
  scores_BxK = jnp.where(any_finished_B[:, None], final.finished_scores_BxK,
                         final.live_logprobs_BxK)
  return seqs_BxKxL1[:, ::-1, 1:], scores_BxK[:, ::-1]


def beam_search(inputs: jax.Array,
                cache: beams.PyTree,
                tokens_to_logits: beams.TokensToLogits,
                eos_id: int,
                num_decodes: int = 4,
                alpha: float = 0.6,
                max_decode_len: Optional[int] = None,
                decode_rng: Optional[jax.Array] = None,
                cache_offset: int = 0,
                *,
                logits_mask_fn: Optional[Callable[[beams.DecodingState], jax.Array]] = None,
                constraint: Optional[beams.Constraint] = None,
                length_normalization: str | LengthNormalization = "t5x",
                length_penalty: float = 1.0,
                min_log_prob: float = -1e7,
                column_token_ids: Optional[jax.Array] = None,
                renormalize: bool = False) -> tuple[jax.Array, jax.Array]:
  """Beam search (see the module docstring for conventions).

  Args:
    inputs: int32 [B, L]; only its shape is used.
    cache: decoder cache for batch B (beam axis added here).
    tokens_to_logits: DecodingState -> (logits [BK, V], new cache [BK, ...]).
    eos_id: end token.
    num_decodes: K beams, all returned.
    alpha: T5X brevity-penalty exponent (length_normalization='t5x').
    max_decode_len: L; default inputs.shape[1].
    decode_rng: unused (T5X signature).
    cache_offset: axis of the batch in cache leaves (1 for scanned layers).
    logits_mask_fn: optional DecodingState -> bool [BK, V] of allowed tokens.
    constraint: optional stateful `beams.Constraint` (e.g. `beams.TrieConstraint`).
    length_normalization: 't5x' | 'hf' | 'none'.
    length_penalty: HF exponent (length_normalization='hf').
    min_log_prob: live beams whose log-probability falls below this are treated as dead.
    column_token_ids: optional int32 [V'] when `tokens_to_logits` only computes the logits of
      these tokens (e.g. `ItemTrie.token_ids`, for a cheaper output projection): column j is
      token column_token_ids[j]. Masks and the constraint then work on columns (build the trie
      with `ItemTrie.compact()`), sequences hold real token ids, and the softmax is over the
      V' columns only.
    renormalize: softmax over the tokens the masks allow (a constrained model's own
      distribution, e.g. `DecoderOnlyModel(trie_softmax=True)`) instead of over the vocab.
  Returns:
    (sequences [B, K, L] int32, scores [B, K] float32), ascending (best last). A slot with no
    finished sequence has score -inf; a batch element with none finished at all returns its
    live beams and their log-probabilities instead (T5X behaviour).
  """
  del decode_rng
  mode = LengthNormalization(length_normalization)
  length = inputs.shape[1] if max_decode_len is None else max_decode_len
  penalty = functools.partial(length_penalty_divisor, mode=mode, alpha=alpha,
                              length_penalty=length_penalty)
  state0 = init_beam_state(cache, constraint, inputs.shape[0], num_decodes, length, cache_offset)
  cond = functools.partial(beam_search_continues, penalty=penalty, length=length,
                           min_log_prob=min_log_prob)
  body = functools.partial(beam_search_step, tokens_to_logits=tokens_to_logits, eos_id=eos_id,
                           penalty=penalty, constraint=constraint, logits_mask_fn=logits_mask_fn,
                           column_token_ids=column_token_ids, renormalize=renormalize,
                           cache_offset=cache_offset)
  return beam_search_output(jax.lax.while_loop(cond, body, state0))


def constrained_beam_search(inputs: jax.Array,
                            cache: beams.PyTree,
                            tokens_to_logits: beams.TokensToLogits,
                            eos_id: int,
                            num_decodes: int = 4,
                            alpha: float = 0.6,
                            max_decode_len: Optional[int] = None,
                            decode_rng: Optional[jax.Array] = None,
                            cache_offset: int = 0,
                            *,
                            trie: trie_lib.ItemTrie | trie_lib.TrieArrays,
                            excluded_items: Optional[jax.Array] = None,
                            return_item_indices: bool = False,
                            **kwargs):
  """T5X `decode_fn` restricted to the items of `trie`; bind with functools.partial / gin.

  Args:
    (as `beam_search`), plus
    trie: `ItemTrie` or its `TrieArrays`. Large tries are best passed as a jit argument (a
      closed-over trie becomes an XLA constant).
    excluded_items: optional int32 [B, E] item indices to ban per example (-1 = padding);
      equivalent to a per-example trie without them.
    return_item_indices: also return the item index of every decode.
    **kwargs: forwarded to `beam_search` (length_normalization, length_penalty, ...).
  Returns:
    (sequences [B, K, L], scores [B, K]) ascending, plus items [B, K] int32 (-1 for a slot
    without a finished item) when return_item_indices.
  """
  arrays = beams.trie_arrays_for(trie, eos_id, kwargs.get("column_token_ids"),
                           inputs.shape[1] if max_decode_len is None else max_decode_len)
  excl = None if excluded_items is None else jnp.asarray(excluded_items, jnp.int32)
  seqs, scores = beam_search(inputs, cache, tokens_to_logits, eos_id, num_decodes, alpha,
                             max_decode_len, decode_rng, cache_offset,
                             constraint=beams.TrieConstraint(arrays, excl), **kwargs)
  if not return_item_indices:
    return seqs, scores
  if kwargs.get("column_token_ids") is not None:
    raise ValueError("return_item_indices needs the full-vocab trie; map the sequences with "
                     "ItemTrie.items_from_sequences instead")
  items = trie_lib.items_from_sequences(arrays, seqs)
  return seqs, scores, jnp.where(scores > NEG_INF, items, -1)
