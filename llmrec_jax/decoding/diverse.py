"""Group (diverse) beam search with HF's Hamming diversity penalty, jit-compiled.

Follows HF's group beam search (`BeamSearchScorer` + `BeamHypotheses` +
`HammingDiversityLogitsProcessor`, as used by IDGenRec for ID assignment):

* G groups of Kg beams; beam j of group g is flat beam g*Kg + j of the batch element. Only
  beam 0 of each group starts live.
* One model call per step for all G*Kg beams. Groups are then processed in order: group g's
  log-probs (log_softmax over the full vocab, then min-length / constraint masks) are lowered by
  `diversity_penalty x (how many beams of groups < g picked that token at this step)`, the
  penalised values are added to the beams' running scores (so penalties accumulate in the
  returned scores, as in HF), and the top 2*Kg (beam, token) candidates are ranked.
* A candidate that is EOS and ranks in the top Kg becomes a finished hypothesis with score
  `running / generated_len ** length_penalty` (generated_len counts new tokens incl. EOS);
  the first Kg non-EOS candidates continue. Each group keeps its best Kg hypotheses.
* A group is done when it holds Kg hypotheses and (`early_stopping=False`, HF's default) the
  best candidate of this step, normalised at the current length, cannot beat the worst one;
  `True`: done as soon as it holds Kg; `'never'`: bound at `max_decode_len` when
  length_penalty > 0. A done group keeps stepping with pad tokens (score 0) and, as in HF,
  those pads count in later groups' Hamming penalty.
* At `max_decode_len` new tokens, the live beams of unfinished groups are added as hypotheses
  (without EOS), normalised by `max_decode_len`.

Length conventions: HF's `max_length` / `min_length` count the decoder start token; here
`max_decode_len` = HF max_length - 1 new tokens and `min_decode_len` = HF min_length (EOS may be
the t-th new token only if t >= min_decode_len). So IDGenRec's `min_length=m, max_length=m+10`
is `min_decode_len=m, max_decode_len=m+9`.

Known differences from HF: beams other than beam 0 of a group start at -inf (HF: -1e9) and
-inf candidates never become hypotheses, so where HF would return ~-1e9-scored junk (fewer
valid continuations than beams) we return score -inf slots; ties are broken by position.
With `num_groups=1` this is HF's plain beam search (legacy `BeamSearchScorer` semantics).
"""
from __future__ import annotations

from typing import Callable, Optional

import flax.struct
import jax
import jax.numpy as jnp

from llmrec_jax.decoding import beam_search as bs

NEG_INF = bs.NEG_INF


@flax.struct.dataclass
class GroupBeamResult:
  """Finished hypotheses of every group, best first within each group."""
  sequences_BxGxKxL: jax.Array  # int32; pad 0 after EOS
  scores_BxGxK: jax.Array  # float32; -inf for empty slots


@flax.struct.dataclass
class GroupState:
  cur_index: jax.Array  # int32 scalar: new tokens so far
  run_logprobs_BxGK: jax.Array  # float32 running scores (incl. penalties)
  run_seqs_BxGKxL1: jax.Array  # int32, slot 0 = BOS
  hyp_scores_BxGxK: jax.Array  # float32, best first
  hyp_seqs_BxGxKxL1: jax.Array  # int32
  done_BxG: jax.Array  # bool
  cache: bs.PyTree  # leaves [B*G*K, ...]
  constraint_state: bs.PyTree  # leaves [B*G*K, ...]


def group_beam_search(inputs: jax.Array,
                      cache: bs.PyTree,
                      tokens_to_logits: Callable[[bs.DecodingState], tuple[jax.Array, bs.PyTree]],
                      eos_id: int,
                      *,
                      num_groups: int,
                      beams_per_group: int = 1,
                      diversity_penalty: float | jax.Array = 0.0,
                      max_decode_len: Optional[int] = None,
                      min_decode_len: int = 0,
                      length_penalty: float = 1.0,
                      early_stopping: bool | str = False,
                      constraint: Optional[bs.Constraint] = None,
                      logits_mask_fn: Optional[Callable[[bs.DecodingState], jax.Array]] = None,
                      cache_offset: int = 0,
                      pad_id: int = 0,
                      column_token_ids: Optional[jax.Array] = None) -> GroupBeamResult:
  """HF-style diverse beam search (see the module docstring).

  Args:
    inputs: int32 [B, L]; gives B and the default max_decode_len.
    cache: decoder cache for batch B (beam axis added here, as in `beam_search`).
    tokens_to_logits: DecodingState -> (logits [B*G*Kg, V], new cache).
    eos_id: end token.
    num_groups: G (static).
    beams_per_group: Kg (static).
    diversity_penalty: lambda; may be a traced scalar (no recompilation when escalating it).
    max_decode_len: maximum new tokens L (static).
    min_decode_len: EOS is banned while fewer than min_decode_len - 1 tokens precede it.
    length_penalty: hypothesis score = sum_logprob / generated_len ** length_penalty.
    early_stopping: False | True | 'never' (HF meanings).
    constraint, logits_mask_fn: as in `beam_search`.
    cache_offset: batch axis of cache leaves.
    pad_id: token fed by done groups.
    column_token_ids: as in `beam_search` (logits over a token subset; compact trie).
  Returns:
    `GroupBeamResult`; use `best_first` for HF's pooled `num_return_sequences` order.
  """
  if early_stopping not in (True, False, "never"):
    raise ValueError(f"early_stopping must be True, False or 'never', got {early_stopping!r}")
  if num_groups < 1 or beams_per_group < 1:
    raise ValueError(f"num_groups={num_groups} and beams_per_group={beams_per_group} must be >= 1")
  b, g_n, kg = inputs.shape[0], num_groups, beams_per_group
  k = g_n * kg
  length = inputs.shape[1] if max_decode_len is None else max_decode_len
  lam = jnp.asarray(diversity_penalty, jnp.float32)
  if column_token_ids is None:
    eos_col, pad_col = eos_id, pad_id
  else:  # columns of EOS and pad in the restricted logits (pad falls back to column 0)
    eos_col = jnp.argmax(column_token_ids == eos_id)
    pad_col = jnp.argmax(column_token_ids == pad_id)
  lp_exp = float(length_penalty)

  def norm(n):
    return jnp.asarray(n, jnp.float32) ** lp_exp

  cache0 = bs.cache_map(
      lambda x: bs.flatten_beam_dim(bs.add_beam_dim(x, k, cache_offset), cache_offset), cache)
  first_GK = (jnp.arange(k) % kg) == 0
  state0 = GroupState(
      cur_index=jnp.array(0, jnp.int32),
      run_logprobs_BxGK=jnp.broadcast_to(jnp.where(first_GK, 0.0, NEG_INF)[None, :], (b, k)),
      run_seqs_BxGKxL1=jnp.zeros((b, k, length + 1), jnp.int32),
      hyp_scores_BxGxK=jnp.full((b, g_n, kg), NEG_INF, jnp.float32),
      hyp_seqs_BxGxKxL1=jnp.zeros((b, g_n, kg, length + 1), jnp.int32),
      done_BxG=jnp.zeros((b, g_n), jnp.bool_),
      cache=cache0,
      constraint_state=None if constraint is None else constraint.init(b, k))

  def cond(state: GroupState):
    return (state.cur_index < length) & ~state.done_BxG.all()

  def body(state: GroupState) -> GroupState:
    i = state.cur_index
    flat = state.run_seqs_BxGKxL1.reshape(b * k, length + 1)
    ds = bs.DecodingState(cur_index=i, sequences=flat,
                          cur_token=jax.lax.dynamic_slice_in_dim(flat, i, 1, axis=1),
                          cache=state.cache)
    logits, new_cache = tokens_to_logits(ds)
    v = logits.shape[-1]
    mask = bs.combined_mask(ds, constraint, state.constraint_state, logits_mask_fn, v)
    lp_BKxV = bs.step_log_probs(logits, mask)
    eos_ok = i + 1 >= min_decode_len
    lp_BKxV = lp_BKxV.at[:, eos_col].set(jnp.where(eos_ok, lp_BKxV[:, eos_col], NEG_INF))
    lp_BxGxKxV = lp_BKxV.reshape(b, g_n, kg, v)
    run_BxGxK = state.run_logprobs_BxGK.reshape(b, g_n, kg)
    run_seqs = state.run_seqs_BxGKxL1.reshape(b, g_n, kg, length + 1)
    counts_BxV = jnp.zeros((b, v), jnp.float32)
    rows_Bx1 = jnp.arange(b)[:, None]
    n2 = min(2 * kg, kg * v)
    rank = jnp.arange(n2)
    new_vals, new_toks, new_from, hyp_scores, hyp_seqs, done = [], [], [], [], [], []
    for g in range(g_n):  # static: each group sees the tokens earlier groups just picked
      lp_g = lp_BxGxKxV[:, g] - lam * counts_BxV[:, None, :]
      cand = run_BxGxK[:, g, :, None] + lp_g
      val, beam, col = bs.select_candidates(cand, n2)
      tok = col if column_token_ids is None else column_token_ids[col]
      done_g = state.done_BxG[:, g]
      seqs = bs.gather_beams(run_seqs[:, g], beam)
      seqs = jax.lax.dynamic_update_slice_in_dim(seqs, tok[:, :, None], i + 1, axis=2)
      is_eos = tok == eos_id
      add = is_eos & (rank < kg)[None, :] & (val > NEG_INF) & ~done_g[:, None]
      merged = jnp.concatenate([state.hyp_scores_BxGxK[:, g], jnp.where(add, val / norm(i + 1),
                                                                         NEG_INF)], axis=1)
      h_scores, pick = jax.lax.top_k(merged, kg)
      h_seqs = jnp.take_along_axis(
          jnp.concatenate([state.hyp_seqs_BxGxKxL1[:, g], seqs], axis=1), pick[:, :, None], axis=1)
      # Continue with the first Kg non-EOS candidates, in rank order.
      keep = jnp.argsort(is_eos, axis=1, stable=True)[:, :kg]
      nv = jnp.take_along_axis(val, keep, axis=1)
      nc = jnp.take_along_axis(col, keep, axis=1)
      nb = jnp.take_along_axis(beam, keep, axis=1)
      own = jnp.broadcast_to(jnp.arange(kg)[None, :], (b, kg))
      nv = jnp.where(done_g[:, None], 0.0, nv)
      nc = jnp.where(done_g[:, None], pad_col, nc)
      nb = jnp.where(done_g[:, None], own, nb)
      counts_BxV = counts_BxV.at[rows_Bx1, nc].add(1.0)
      full = h_scores[:, -1] > NEG_INF
      if early_stopping is True:
        finished = full
      else:
        best = val.max(axis=1)
        den = norm(length) if (early_stopping == "never" and lp_exp > 0) else norm(i + 1)
        finished = full & (h_scores[:, -1] >= best / den)
      new_vals.append(nv)
      new_toks.append(nc)
      new_from.append(nb + g * kg)
      hyp_scores.append(h_scores)
      hyp_seqs.append(h_seqs)
      done.append(done_g | finished)
    col_BxK = jnp.concatenate(new_toks, axis=1)
    tok_BxK = col_BxK if column_token_ids is None else column_token_ids[col_BxK]
    from_BxK = jnp.concatenate(new_from, axis=1)
    run_seqs_next = bs.gather_beams(state.run_seqs_BxGKxL1, from_BxK)
    run_seqs_next = jax.lax.dynamic_update_slice_in_dim(run_seqs_next, tok_BxK[:, :, None], i + 1,
                                                        axis=2)
    cstate = state.constraint_state
    if constraint is not None:
      cstate = constraint.update(bs.gather_beams_tree(cstate, from_BxK, b), col_BxK.reshape(-1))
    return GroupState(
        cur_index=i + 1,
        run_logprobs_BxGK=jnp.concatenate(new_vals, axis=1),
        run_seqs_BxGKxL1=run_seqs_next,
        hyp_scores_BxGxK=jnp.stack(hyp_scores, axis=1),
        hyp_seqs_BxGxKxL1=jnp.stack(hyp_seqs, axis=1),
        done_BxG=jnp.stack(done, axis=1),
        cache=bs.gather_beams_tree(new_cache, from_BxK, b, cache_offset, is_cache=True),
        constraint_state=cstate)

  final = jax.lax.while_loop(cond, body, state0)
  # Unfinished groups: their live beams join the hypotheses, normalised by the length reached.
  run = final.run_logprobs_BxGK.reshape(b, g_n, kg)
  run_scores = jnp.where(final.done_BxG[:, :, None] | ~(run > NEG_INF), NEG_INF,
                         run / norm(final.cur_index))
  merged = jnp.concatenate([final.hyp_scores_BxGxK, run_scores], axis=2)
  scores, pick = jax.lax.top_k(merged, kg)
  seqs_all = jnp.concatenate(
      [final.hyp_seqs_BxGxKxL1, final.run_seqs_BxGKxL1.reshape(b, g_n, kg, length + 1)], axis=2)
  seqs = jnp.take_along_axis(seqs_all, pick[:, :, :, None], axis=2)
  return GroupBeamResult(sequences_BxGxKxL=seqs[..., 1:], scores_BxGxK=scores)


def best_first(result: GroupBeamResult, num_return_sequences: Optional[int] = None):
  """HF's output order: all groups' hypotheses pooled and sorted by score, best first.

  Returns:
    (sequences [B, R, L], scores [B, R], group [B, R]) with R = num_return_sequences
    (default G*Kg).
  """
  b, g_n, kg, length = result.sequences_BxGxKxL.shape
  r = g_n * kg if num_return_sequences is None else num_return_sequences
  if r > g_n * kg:
    raise ValueError(f"num_return_sequences={r} > num_groups * beams_per_group = {g_n * kg}")
  scores = result.scores_BxGxK.reshape(b, g_n * kg)
  order = jnp.argsort(-scores, axis=1, stable=True)[:, :r]
  seqs = jnp.take_along_axis(result.sequences_BxGxKxL.reshape(b, g_n * kg, length),
                             order[:, :, None], axis=1)
  return seqs, jnp.take_along_axis(scores, order, axis=1), (order // kg).astype(jnp.int32)


def hf_beam_search(inputs: jax.Array,
                   cache: bs.PyTree,
                   tokens_to_logits: Callable[[bs.DecodingState], tuple[jax.Array, bs.PyTree]],
                   eos_id: int,
                   num_decodes: int = 4,
                   max_decode_len: Optional[int] = None,
                   decode_rng: Optional[jax.Array] = None,
                   cache_offset: int = 0,
                   *,
                   length_penalty: float = 1.0,
                   early_stopping: bool | str = False,
                   min_decode_len: int = 0,
                   trie=None,
                   excluded_items: Optional[jax.Array] = None,
                   column_token_ids: Optional[jax.Array] = None):
  """T5X `decode_fn` with HF `generate(num_beams=K, num_return_sequences=K)` semantics.

  What IDGenRec's evaluation runs (`prefix_allowed_tokens_fn` = the item trie, length_penalty
  1.0, so scores are sum_logprob / new tokens incl. EOS). Bind `trie=` (and the lead's model
  passes `excluded_items`) with functools.partial / gin.

  Returns:
    (sequences [B, K, L], scores [B, K]) in T5X order (ascending, best last); empty slots
    have score -inf.
  """
  del decode_rng
  constraint = None
  if trie is not None:
    arrays = bs.trie_arrays_for(trie, eos_id, column_token_ids,
                                inputs.shape[1] if max_decode_len is None else max_decode_len)
    excl = None if excluded_items is None else jnp.asarray(excluded_items, jnp.int32)
    constraint = bs.TrieConstraint(arrays, excl)
  res = group_beam_search(inputs, cache, tokens_to_logits, eos_id, num_groups=1,
                          beams_per_group=num_decodes, max_decode_len=max_decode_len,
                          min_decode_len=min_decode_len, length_penalty=length_penalty,
                          early_stopping=early_stopping, constraint=constraint,
                          cache_offset=cache_offset, column_token_ids=column_token_ids)
  return res.sequences_BxGxKxL[:, 0, ::-1], res.scores_BxGxK[:, 0, ::-1]
