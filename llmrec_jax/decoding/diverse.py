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
  `running / n ** length_penalty` (n = new tokens incl. EOS); the first Kg non-EOS candidates
  continue.
* Finished hypotheses go to pools (`group_pool`, `hf_semantics`): 'per_group' (newer
  transformers; the default) keeps each group's best Kg and a done flag per group; '4.26'
  (transformers 4.26.0, IDGenRec's pin) keeps one pool of the best G*Kg per example, shared by
  every group, with one done flag per example.
* A pool is done when it is full and (`early_stopping=False`, HF's default) the group's best
  candidate of this step, normalised at the current length, cannot beat its worst hypothesis;
  `True`: done as soon as it is full; `'never'` (per_group only): bound at `max_decode_len` when
  length_penalty > 0. Done groups keep stepping with pad tokens (score 0) and, as in HF, those
  pads count in later groups' Hamming penalty.
* At `max_decode_len` new tokens, the live beams of unfinished pools are added as hypotheses
  (without EOS), normalised by `max_decode_len` (per_group) or `max_decode_len + 1` (4.26: HF
  4.26 divides by the length of `input_ids`, decoder start included).

Length conventions: HF's `max_length` / `min_length` count the decoder start token; here
`max_decode_len` = HF max_length - 1 new tokens and `min_decode_len` = HF min_length (EOS may be
the t-th new token only if t >= min_decode_len). So IDGenRec's `min_length=m, max_length=m+10`
is `min_decode_len=m, max_decode_len=m+9`.

Known differences from HF: beams other than beam 0 of a group start at -inf (HF: -1e9) and
-inf candidates never become hypotheses, so where HF would return ~-1e9- or -inf-scored junk
(fewer valid continuations than beams) we return score -inf slots; exact score ties are broken
by position (HF: by insertion order). With `num_groups=1` this is HF's plain beam search
(`hf_beam_search`).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Optional

import flax.struct
import jax
import jax.numpy as jnp

from llmrec_jax.decoding import beams
from llmrec_jax.decoding import group_pool

NEG_INF = beams.NEG_INF
HfSemantics = group_pool.HfSemantics


@flax.struct.dataclass
class GroupBeamResult:
  """Finished hypotheses of every pool, best first within each (P pools of N: per group,
  P = G and N = Kg; shared (4.26), P = 1 and N = G * Kg)."""
  sequences_BxPxNxL: jax.Array  # int32; pad 0 after EOS
  scores_BxPxN: jax.Array  # float32; -inf for empty slots


@flax.struct.dataclass
class GroupState:
  cur_index: jax.Array  # int32 scalar: new tokens so far
  run_logprobs_BxGK: jax.Array  # float32 running scores (incl. penalties)
  run_seqs_BxGKxL1: jax.Array  # int32, slot 0 = BOS
  hyp_scores_BxPxN: jax.Array  # float32, best first
  hyp_seqs_BxPxNxL1: jax.Array  # int32
  done_BxP: jax.Array  # bool
  cache: beams.PyTree  # leaves [B*G*K, ...]
  constraint_state: beams.PyTree  # leaves [B*G*K, ...]


@flax.struct.dataclass
class GroupStep:
  """One group's share of a step (Kg = beams per group) and its pool afterwards."""
  run_logprobs_BxKg: jax.Array  # float32 running scores of the continuing beams
  column_BxKg: jax.Array  # int32 logits column of their tokens (pad column when done)
  from_BxKg: jax.Array  # int32 flat beam (g*Kg + j) each one extends
  hyp_scores_BxN: jax.Array  # float32 the group's pool, best first
  hyp_seqs_BxNxL1: jax.Array  # int32
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
  pools: group_pool.PoolLayout

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


def bound_divisor(i: jax.Array, spec: GroupSearchSpec) -> jax.Array:
  """What HF's `is_done` divides the best candidate by at step i: the current length (i + 1
  new tokens), or max_decode_len for `early_stopping='never'` with length_penalty > 0."""
  if spec.early_stopping == "never" and spec.length_penalty > 0:
    return spec.norm(spec.length)
  return spec.norm(i + 1)


def group_substep(state: GroupState, g: int, lp_BxGxKxV: jax.Array, counts_BxV: jax.Array,
                  pool: tuple[jax.Array, jax.Array, jax.Array],
                  spec: GroupSearchSpec) -> tuple[GroupStep, jax.Array]:
  """Group g's step given the tokens earlier groups picked (counts_BxV) and its pool as the
  earlier groups left it (hyp_scores_BxN, hyp_seqs_BxNxL1, done_B).

  Returns:
    (its `GroupStep`, counts_BxV with its picked tokens added).
  """
  b, kg, l1 = state.run_logprobs_BxGK.shape[0], spec.beams_per_group, spec.length + 1
  run_BxKg = state.run_logprobs_BxGK.reshape(b, spec.num_groups, kg)[:, g]
  run_seqs_BxKgxL1 = state.run_seqs_BxGKxL1.reshape(b, spec.num_groups, kg, l1)[:, g]
  cands = group_candidates(lp_BxGxKxV[:, g], run_BxKg, run_seqs_BxKgxL1, counts_BxV,
                           state.cur_index, spec)
  hyp_scores_BxN, hyp_seqs_BxNxL1, done_B = pool
  hyp_scores_BxN, hyp_seqs_BxNxL1 = group_pool.merge_hypotheses(
      hyp_scores_BxN, hyp_seqs_BxNxL1, cands, done_B, spec.norm(state.cur_index + 1), kg)
  val_BxKg, col_BxKg, beam_BxKg = continuations(cands, done_B, kg, spec.pad_col)
  counts_BxV = counts_BxV.at[jnp.arange(b)[:, None], col_BxKg].add(1.0)
  finished_B = group_pool.pool_finished(hyp_scores_BxN, cands.value_BxN,
                                        bound_divisor(state.cur_index, spec), spec.early_stopping)
  return GroupStep(run_logprobs_BxKg=val_BxKg, column_BxKg=col_BxKg, from_BxKg=beam_BxKg + g * kg,
                   hyp_scores_BxN=hyp_scores_BxN, hyp_seqs_BxNxL1=hyp_seqs_BxNxL1,
                   done_B=done_B | finished_B), counts_BxV


def group_search_step(state: GroupState, spec: GroupSearchSpec) -> GroupState:
  """One step of every group (the `while_loop` body): one model call, then the groups in order,
  each seeing the tokens the earlier ones just picked and its pool as they left it."""
  i = state.cur_index
  b = state.run_logprobs_BxGK.shape[0]
  ds = beams.decoding_state(i, state.run_seqs_BxGKxL1, state.cache)
  logits_BKxV, new_cache = spec.tokens_to_logits(ds)
  v = logits_BKxV.shape[-1]
  lp_BKxV = group_log_probs(ds, logits_BKxV, state.constraint_state, spec)
  lp_BxGxKxV = lp_BKxV.reshape(b, spec.num_groups, spec.beams_per_group, v)
  counts_BxV = jnp.zeros((b, v), jnp.float32)
  pools = [(state.hyp_scores_BxPxN[:, p], state.hyp_seqs_BxPxNxL1[:, p], state.done_BxP[:, p])
           for p in range(spec.pools.num_pools)]
  steps = []
  for g in range(spec.num_groups):  # static
    p = spec.pools.pool_of(g)
    step, counts_BxV = group_substep(state, g, lp_BxGxKxV, counts_BxV, pools[p], spec)
    pools[p] = (step.hyp_scores_BxN, step.hyp_seqs_BxNxL1, step.done_B)
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
      hyp_scores_BxPxN=jnp.stack([q[0] for q in pools], axis=1),
      hyp_seqs_BxPxNxL1=jnp.stack([q[1] for q in pools], axis=1),
      done_BxP=jnp.stack([q[2] for q in pools], axis=1),
      cache=beams.gather_beams_tree(new_cache, from_BxK, b, spec.cache_offset, is_cache=True),
      constraint_state=cstate)


def init_group_state(cache: beams.PyTree, batch_size: int, spec: GroupSearchSpec) -> GroupState:
  """Beam 0 of each group live at score 0, the others at -inf; empty pools."""
  b, kg, length = batch_size, spec.beams_per_group, spec.length
  k = spec.num_groups * kg
  p, n = spec.pools.num_pools, spec.pools.size
  cache0 = beams.expand_cache(cache, k, spec.cache_offset)
  first_GK = (jnp.arange(k) % kg) == 0
  return GroupState(
      cur_index=jnp.array(0, jnp.int32),
      run_logprobs_BxGK=jnp.broadcast_to(jnp.where(first_GK, 0.0, NEG_INF)[None, :], (b, k)),
      run_seqs_BxGKxL1=jnp.zeros((b, k, length + 1), jnp.int32),
      hyp_scores_BxPxN=jnp.full((b, p, n), NEG_INF, jnp.float32),
      hyp_seqs_BxPxNxL1=jnp.zeros((b, p, n, length + 1), jnp.int32),
      done_BxP=jnp.zeros((b, p), jnp.bool_),
      cache=cache0,
      constraint_state=None if spec.constraint is None else spec.constraint.init(b, k))


def group_search_output(final: GroupState, spec: GroupSearchSpec) -> GroupBeamResult:
  """Each pool's best N hypotheses, live beams of unfinished pools included (`group_pool`)."""
  seqs, scores = group_pool.finalize(
      final.hyp_scores_BxPxN, final.hyp_seqs_BxPxNxL1, final.done_BxP, final.run_logprobs_BxGK,
      final.run_seqs_BxGKxL1, spec.norm(spec.pools.final_length(final.cur_index)))
  return GroupBeamResult(sequences_BxPxNxL=seqs, scores_BxPxN=scores)


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
                      column_token_ids: Optional[jax.Array] = None,
                      hf_semantics: HfSemantics | str = HfSemantics.PER_GROUP) -> GroupBeamResult:
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
    early_stopping: False | True | 'never' (HF meanings; 'never' is not in transformers 4.26).
    constraint, logits_mask_fn: as in `beam_search`.
    cache_offset: batch axis of cache leaves.
    pad_id: token fed by done groups.
    column_token_ids: as in `beam_search` (logits over a token subset; compact trie).
    hf_semantics: 'per_group' (newer transformers: a pool and a done flag per group) or '4.26'
      (transformers 4.26.0, IDGenRec's: one pool and one done flag per example); see
      `group_pool`.
  Returns:
    `GroupBeamResult`; use `best_first` for HF's pooled `num_return_sequences` order.
  """
  semantics = HfSemantics(hf_semantics)
  if early_stopping not in (True, False, "never"):
    raise ValueError(f"early_stopping must be True, False or 'never', got {early_stopping!r}")
  if early_stopping == "never" and semantics == HfSemantics.HF_4_26:
    raise ValueError("early_stopping='never' does not exist in transformers 4.26")
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
      column_token_ids=column_token_ids,
      pools=group_pool.PoolLayout.of(semantics, num_groups, beams_per_group))
  state0 = init_group_state(cache, inputs.shape[0], spec)
  final = jax.lax.while_loop(
      lambda state: (state.cur_index < spec.length) & ~state.done_BxP.all(),
      functools.partial(group_search_step, spec=spec), state0)
  return group_search_output(final, spec)


def best_first(result: GroupBeamResult, num_return_sequences: Optional[int] = None):
  """HF's output order: all pools' hypotheses together, sorted by score, best first.

  Returns:
    (sequences [B, R, L], scores [B, R], pool [B, R]: the group with per-group pools, 0 with the
    shared one) with R = num_return_sequences (default P*N = G*Kg).
  """
  b, p, n, length = result.sequences_BxPxNxL.shape
  r = p * n if num_return_sequences is None else num_return_sequences
  if r > p * n:
    raise ValueError(f"num_return_sequences={r} > num_groups * beams_per_group = {p * n}")
  scores = result.scores_BxPxN.reshape(b, p * n)
  order = jnp.argsort(-scores, axis=1, stable=True)[:, :r]
  seqs = jnp.take_along_axis(result.sequences_BxPxNxL.reshape(b, p * n, length),
                             order[:, :, None], axis=1)
  return seqs, jnp.take_along_axis(scores, order, axis=1), (order // n).astype(jnp.int32)


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
                   column_token_ids: Optional[jax.Array] = None,
                   hf_semantics: HfSemantics | str = HfSemantics.HF_4_26):
  """T5X `decode_fn` with the semantics of transformers 4.26.0's
  `generate(num_beams=K, num_return_sequences=K, length_penalty=...)`.

  With `trie` bound this is IDGenRec's evaluation (`prefix_allowed_tokens_fn` = the item trie,
  length_penalty 1.0, so scores are sum_logprob / new tokens incl. EOS). Bind `trie=` (and the
  lead's model passes `excluded_items`) with functools.partial / gin. One group, so the two
  `hf_semantics` differ only in the divisor of beams still live at `max_decode_len` (4.26:
  max_decode_len + 1; 'per_group': max_decode_len); a trie whose items all fit ends every beam
  with EOS before that.

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
                          cache_offset=cache_offset, column_token_ids=column_token_ids,
                          hf_semantics=hf_semantics)
  return res.sequences_BxPxNxL[:, 0, ::-1], res.scores_BxPxN[:, 0, ::-1]
