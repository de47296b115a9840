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

import dataclasses
import functools
from typing import Callable, Optional

import flax.struct
import jax
import jax.numpy as jnp

from llmrec_jax.decoding import beams

NEG_INF = beams.NEG_INF


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
  cache: beams.PyTree  # leaves [B*G*K, ...]
  constraint_state: beams.PyTree  # leaves [B*G*K, ...]


@flax.struct.dataclass
class GroupStep:
  """One group's share of a step (Kg = beams per group)."""
  run_logprobs_BxKg: jax.Array  # float32 running scores of the continuing beams
  column_BxKg: jax.Array  # int32 logits column of their tokens (pad column when done)
  from_BxKg: jax.Array  # int32 flat beam (g*Kg + j) each one extends
  hyp_scores_BxKg: jax.Array  # float32 the group's hypotheses, best first
  hyp_seqs_BxKgxL1: jax.Array  # int32
  done_B: jax.Array  # bool


@dataclasses.dataclass(frozen=True)
class GroupSearchSpec:
  """What every step of `group_beam_search` uses besides its state (see its Args)."""
  tokens_to_logits: beams.TokensToLogits
  eos_id: int
  num_groups: int  # G
  beams_per_group: int  # Kg
  length: int  # max_decode_len
  min_decode_len: int
  length_penalty: float
  early_stopping: bool | str
  diversity: jax.Array  # float32 scalar lambda
  eos_col: int | jax.Array  # logits column of EOS
  pad_col: int | jax.Array  # logits column of the pad token
  constraint: Optional[beams.Constraint]
  logits_mask_fn: Optional[Callable[[beams.DecodingState], jax.Array]]
  cache_offset: int
  column_token_ids: Optional[jax.Array]

  def norm(self, n) -> jax.Array:
    """float32 n ** length_penalty, the hypothesis-score divisor at n new tokens."""
    return jnp.asarray(n, jnp.float32) ** self.length_penalty


def special_columns(column_token_ids: Optional[jax.Array], eos_id: int, pad_id: int):
  """(EOS column, pad column) of the logits; with `column_token_ids`, their positions in it
  (pad falls back to column 0)."""
  if column_token_ids is None:
    return eos_id, pad_id
  return jnp.argmax(column_token_ids == eos_id), jnp.argmax(column_token_ids == pad_id)


def group_log_probs(ds: beams.DecodingState, logits_BKxV: jax.Array, cstate: beams.PyTree,
                    spec: GroupSearchSpec) -> jax.Array:
  """lp_BKxV: log_softmax over the full vocab, masked by the hooks, EOS banned before
  `min_decode_len` new tokens."""
  v = logits_BKxV.shape[-1]
  mask = beams.combined_mask(ds, spec.constraint, cstate, spec.logits_mask_fn, v)
  lp_BKxV = beams.step_log_probs(logits_BKxV, mask)
  eos_ok = ds.cur_index + 1 >= spec.min_decode_len
  return lp_BKxV.at[:, spec.eos_col].set(jnp.where(eos_ok, lp_BKxV[:, spec.eos_col], NEG_INF))


def group_candidates(lp_BxKgxV: jax.Array, run_BxKg: jax.Array, run_seqs_BxKgxL1: jax.Array,
                     counts_BxV: jax.Array, i: jax.Array,
                     spec: GroupSearchSpec) -> beams.Candidates:
  """The top N = min(2Kg, Kg * V) continuations of one group after the Hamming penalty
  (lambda x counts_BxV, how often earlier groups picked each token at this step); is_eos_BxN
  marks EOS tokens, finite or not."""
  kg, v = lp_BxKgxV.shape[1:]
  lp_BxKgxV = lp_BxKgxV - spec.diversity * counts_BxV[:, None, :]
  cand_BxKgxV = run_BxKg[:, :, None] + lp_BxKgxV
  val_BxN, beam_BxN, col_BxN = beams.select_candidates(cand_BxKgxV, min(2 * kg, kg * v))
  tok_BxN = col_BxN if spec.column_token_ids is None else spec.column_token_ids[col_BxN]
  seqs_BxNxL1 = beams.extend_beams(run_seqs_BxKgxL1, beam_BxN, tok_BxN, i)
  return beams.Candidates(value_BxN=val_BxN, beam_BxN=beam_BxN, column_BxN=col_BxN,
                       token_BxN=tok_BxN, seqs_BxNxL1=seqs_BxNxL1,
                       is_eos_BxN=tok_BxN == spec.eos_id)


def merge_hypotheses(hyp_scores_BxKg: jax.Array, hyp_seqs_BxKgxL1: jax.Array,
                     cands: beams.Candidates, done_B: jax.Array, divisor: jax.Array):
  """The group's best Kg of its hypotheses and the finite EOS candidates ranked in the top Kg
  (scored value / divisor), unless the group is done.

  Returns:
    (hyp_scores_BxKg, hyp_seqs_BxKgxL1), best first.
  """
  kg = hyp_scores_BxKg.shape[1]
  rank_N = jnp.arange(cands.value_BxN.shape[1])
  add_BxN = (cands.is_eos_BxN & (rank_N < kg)[None, :] & (cands.value_BxN > NEG_INF)
             & ~done_B[:, None])
  merged = jnp.concatenate(
      [hyp_scores_BxKg, jnp.where(add_BxN, cands.value_BxN / divisor, NEG_INF)], axis=1)
  scores_BxKg, pick_BxKg = jax.lax.top_k(merged, kg)
  seqs_BxKgxL1 = jnp.take_along_axis(
      jnp.concatenate([hyp_seqs_BxKgxL1, cands.seqs_BxNxL1], axis=1), pick_BxKg[:, :, None],
      axis=1)
  return scores_BxKg, seqs_BxKgxL1


def continuations(cands: beams.Candidates, done_B: jax.Array, num_beams: int, pad_col):
  """The first Kg non-EOS candidates in rank order; a done group's beams stay in place and
  feed the pad column at score 0.

  Returns:
    (run_logprobs_BxKg, column_BxKg, beam_BxKg: the group's beam each one extends).
  """
  b, kg = done_B.shape[0], num_beams
  keep_BxKg = jnp.argsort(cands.is_eos_BxN, axis=1, stable=True)[:, :kg]
  val_BxKg = jnp.take_along_axis(cands.value_BxN, keep_BxKg, axis=1)
  col_BxKg = jnp.take_along_axis(cands.column_BxN, keep_BxKg, axis=1)
  beam_BxKg = jnp.take_along_axis(cands.beam_BxN, keep_BxKg, axis=1)
  own_BxKg = jnp.broadcast_to(jnp.arange(kg)[None, :], (b, kg))
  val_BxKg = jnp.where(done_B[:, None], 0.0, val_BxKg)
  col_BxKg = jnp.where(done_B[:, None], pad_col, col_BxKg)
  beam_BxKg = jnp.where(done_B[:, None], own_BxKg, beam_BxKg)
  return val_BxKg, col_BxKg, beam_BxKg


def group_finished(hyp_scores_BxKg: jax.Array, value_BxN: jax.Array, i: jax.Array,
                   spec: GroupSearchSpec) -> jax.Array:
  """bool [B]: the group holds Kg hypotheses and, unless `early_stopping=True`, the worst one
  beats this step's best candidate normalised at the current length (`'never'`: at
  max_decode_len when length_penalty > 0)."""
  full_B = hyp_scores_BxKg[:, -1] > NEG_INF
  if spec.early_stopping is True:
    return full_B
  best_B = value_BxN.max(axis=1)
  if spec.early_stopping == "never" and spec.length_penalty > 0:
    den = spec.norm(spec.length)
  else:
    den = spec.norm(i + 1)
  return full_B & (hyp_scores_BxKg[:, -1] >= best_B / den)


def group_substep(state: GroupState, g: int, lp_BxGxKxV: jax.Array, counts_BxV: jax.Array,
                  spec: GroupSearchSpec) -> tuple[GroupStep, jax.Array]:
  """Group g's step given the tokens earlier groups picked (counts_BxV).

  Returns:
    (its `GroupStep`, counts_BxV with its picked tokens added).
  """
  b, kg, l1 = state.run_logprobs_BxGK.shape[0], spec.beams_per_group, spec.length + 1
  run_BxKg = state.run_logprobs_BxGK.reshape(b, spec.num_groups, kg)[:, g]
  run_seqs_BxKgxL1 = state.run_seqs_BxGKxL1.reshape(b, spec.num_groups, kg, l1)[:, g]
  cands = group_candidates(lp_BxGxKxV[:, g], run_BxKg, run_seqs_BxKgxL1, counts_BxV,
                           state.cur_index, spec)
  done_B = state.done_BxG[:, g]
  hyp_scores_BxKg, hyp_seqs_BxKgxL1 = merge_hypotheses(
      state.hyp_scores_BxGxK[:, g], state.hyp_seqs_BxGxKxL1[:, g], cands, done_B,
      spec.norm(state.cur_index + 1))
  val_BxKg, col_BxKg, beam_BxKg = continuations(cands, done_B, kg, spec.pad_col)
  counts_BxV = counts_BxV.at[jnp.arange(b)[:, None], col_BxKg].add(1.0)
  finished_B = group_finished(hyp_scores_BxKg, cands.value_BxN, state.cur_index, spec)
  return GroupStep(run_logprobs_BxKg=val_BxKg, column_BxKg=col_BxKg, from_BxKg=beam_BxKg + g * kg,
                   hyp_scores_BxKg=hyp_scores_BxKg, hyp_seqs_BxKgxL1=hyp_seqs_BxKgxL1,
                   done_B=done_B | finished_B), counts_BxV


def group_search_step(state: GroupState, spec: GroupSearchSpec) -> GroupState:
  """One step of every group (the `while_loop` body): one model call, then the groups in order,
  each seeing the tokens the earlier ones just picked."""
  i = state.cur_index
  b = state.run_logprobs_BxGK.shape[0]
  ds = beams.decoding_state(i, state.run_seqs_BxGKxL1, state.cache)
  logits_BKxV, new_cache = spec.tokens_to_logits(ds)
  v = logits_BKxV.shape[-1]
  lp_BKxV = group_log_probs(ds, logits_BKxV, state.constraint_state, spec)
  lp_BxGxKxV = lp_BKxV.reshape(b, spec.num_groups, spec.beams_per_group, v)
  counts_BxV = jnp.zeros((b, v), jnp.float32)
  steps = []
  for g in range(spec.num_groups):  # static
    step, counts_BxV = group_substep(state, g, lp_BxGxKxV, counts_BxV, spec)
    steps.append(step)
  col_BxK = jnp.concatenate([s.column_BxKg for s in steps], axis=1)
  tok_BxK = col_BxK if spec.column_token_ids is None else spec.column_token_ids[col_BxK]
  from_BxK = jnp.concatenate([s.from_BxKg for s in steps], axis=1)
  run_seqs_BxKxL1 = beams.extend_beams(state.run_seqs_BxGKxL1, from_BxK, tok_BxK, i)
  cstate = beams.advance_constraint(spec.constraint, state.constraint_state, from_BxK, col_BxK, b)
  return GroupState(
      cur_index=i + 1,
      run_logprobs_BxGK=jnp.concatenate([s.run_logprobs_BxKg for s in steps], axis=1),
      run_seqs_BxGKxL1=run_seqs_BxKxL1,
      hyp_scores_BxGxK=jnp.stack([s.hyp_scores_BxKg for s in steps], axis=1),
      hyp_seqs_BxGxKxL1=jnp.stack([s.hyp_seqs_BxKgxL1 for s in steps], axis=1),
      done_BxG=jnp.stack([s.done_B for s in steps], axis=1),
      cache=beams.gather_beams_tree(new_cache, from_BxK, b, spec.cache_offset, is_cache=True),
      constraint_state=cstate)


def init_group_state(cache: beams.PyTree, batch_size: int, spec: GroupSearchSpec) -> GroupState:
  """Beam 0 of each group live at score 0, the others at -inf; no hypotheses."""
  b, g_n, kg, length = batch_size, spec.num_groups, spec.beams_per_group, spec.length
  k = g_n * kg
  cache0 = beams.expand_cache(cache, k, spec.cache_offset)
  first_GK = (jnp.arange(k) % kg) == 0
  return GroupState(
      cur_index=jnp.array(0, jnp.int32),
      run_logprobs_BxGK=jnp.broadcast_to(jnp.where(first_GK, 0.0, NEG_INF)[None, :], (b, k)),
      run_seqs_BxGKxL1=jnp.zeros((b, k, length + 1), jnp.int32),
      hyp_scores_BxGxK=jnp.full((b, g_n, kg), NEG_INF, jnp.float32),
      hyp_seqs_BxGxKxL1=jnp.zeros((b, g_n, kg, length + 1), jnp.int32),
      done_BxG=jnp.zeros((b, g_n), jnp.bool_),
      cache=cache0,
      constraint_state=None if spec.constraint is None else spec.constraint.init(b, k))


def group_search_output(final: GroupState, spec: GroupSearchSpec) -> GroupBeamResult:
  """Each group's best Kg of its hypotheses and, for an unfinished group, its live beams
  (without EOS, normalised by the length reached)."""
  b, g_n, kg, l1 = final.hyp_seqs_BxGxKxL1.shape
  run_BxGxK = final.run_logprobs_BxGK.reshape(b, g_n, kg)
  run_scores_BxGxK = jnp.where(final.done_BxG[:, :, None] | ~(run_BxGxK > NEG_INF), NEG_INF,
                               run_BxGxK / spec.norm(final.cur_index))
  merged = jnp.concatenate([final.hyp_scores_BxGxK, run_scores_BxGxK], axis=2)
  scores_BxGxK, pick_BxGxK = jax.lax.top_k(merged, kg)
  seqs_all = jnp.concatenate(
      [final.hyp_seqs_BxGxKxL1, final.run_seqs_BxGKxL1.reshape(b, g_n, kg, l1)], axis=2)
  seqs_BxGxKxL1 = jnp.take_along_axis(seqs_all, pick_BxGxK[:, :, :, None], axis=2)
  return GroupBeamResult(sequences_BxGxKxL=seqs_BxGxKxL1[..., 1:], scores_BxGxK=scores_BxGxK)


def group_beam_search(inputs: jax.Array,
                      cache: beams.PyTree,
                      tokens_to_logits: beams.TokensToLogits,
                      eos_id: int,
                      *,
                      num_groups: int,
                      beams_per_group: int = 1,
                      diversity_penalty: float | jax.Array = 0.0,
                      max_decode_len: Optional[int] = None,
                      min_decode_len: int = 0,
                      length_penalty: float = 1.0,
                      early_stopping: bool | str = False,
                      constraint: Optional[beams.Constraint] = None,
                      logits_mask_fn: Optional[Callable[[beams.DecodingState], jax.Array]] = None,
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
  diversity = jnp.asarray(diversity_penalty, jnp.float32)
  eos_col, pad_col = special_columns(column_token_ids, eos_id, pad_id)
  spec = GroupSearchSpec(
      tokens_to_logits=tokens_to_logits, eos_id=eos_id, num_groups=num_groups,
      beams_per_group=beams_per_group,
      length=inputs.shape[1] if max_decode_len is None else max_decode_len,
      min_decode_len=min_decode_len, length_penalty=float(length_penalty),
      early_stopping=early_stopping, diversity=diversity, eos_col=eos_col, pad_col=pad_col,
      constraint=constraint, logits_mask_fn=logits_mask_fn, cache_offset=cache_offset,
      column_token_ids=column_token_ids)
  state0 = init_group_state(cache, inputs.shape[0], spec)
  final = jax.lax.while_loop(
      lambda state: (state.cur_index < spec.length) & ~state.done_BxG.all(),
      functools.partial(group_search_step, spec=spec), state0)
  return group_search_output(final, spec)


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
                   cache: beams.PyTree,
                   tokens_to_logits: beams.TokensToLogits,
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
    arrays = beams.trie_arrays_for(trie, eos_id, column_token_ids,
                                   inputs.shape[1] if max_decode_len is None else max_decode_len)
    excl = None if excluded_items is None else jnp.asarray(excluded_items, jnp.int32)
    constraint = beams.TrieConstraint(arrays, excl)
  res = group_beam_search(inputs, cache, tokens_to_logits, eos_id, num_groups=1,
                          beams_per_group=num_decodes, max_decode_len=max_decode_len,
                          min_decode_len=min_decode_len, length_penalty=length_penalty,
                          early_stopping=early_stopping, constraint=constraint,
                          cache_offset=cache_offset, column_token_ids=column_token_ids)
  return res.sequences_BxGxKxL[:, 0, ::-1], res.scores_BxGxK[:, 0, ::-1]
