"""Finished-hypothesis pools of HF group beam search, in the two conventions transformers used.

A finished hypothesis is an EOS candidate ranked in the top Kg of its group's step; it scores
`sum_logprob / n ** length_penalty` with n = new tokens incl. EOS (transformers 4.26 divides by
the length of the prefix before EOS, decoder start included: the same number). Where the
finished hypotheses go, when a search stops and how live beams end at max length depend on
`HfSemantics`:

* PER_GROUP (newer transformers: separate pools since PR #24407 "Fix group beam search"; the
  group search that moved to the Hub in 4.57): P = G pools of N = Kg hypotheses, one done flag per
  group; at max length the live beams of an unfinished group are added to its pool, normalised
  by their new tokens.
* HF_4_26 (transformers 4.26.0, which IDGenRec pins): P = 1 pool of N = G * Kg hypotheses per
  example shared by every group (`BeamSearchScorer._beam_hyps[batch_idx]`) and one done flag per
  example, set by whichever group's `process` finds the pool full and its best candidate
  hopeless (the later groups of that step, and every later step, then feed pad); at max length
  the live beams of an unfinished example are added to the pool normalised by their whole length
  `input_ids.shape[-1]`, decoder start included: new tokens + 1.

With one group both keep one pool of K per example and differ only in that max-length divisor.
"""
from __future__ import annotations

import dataclasses
import enum

import jax
import jax.numpy as jnp

from llmrec_jax.decoding import beams

NEG_INF = beams.NEG_INF


class HfSemantics(str, enum.Enum):
  PER_GROUP = "per_group"  # a pool and a done flag per group (newer transformers)
  HF_4_26 = "4.26"  # one pool and one done flag per example (transformers 4.26.0)


@dataclasses.dataclass(frozen=True)
class PoolLayout:
  """P pools of N hypotheses per example; group g's hypotheses go to pool `pool_of(g)`."""
  num_pools: int  # P
  size: int  # N
  shared: bool  # one pool for all groups (HF_4_26)

  @classmethod
  def of(cls, semantics: HfSemantics | str, num_groups: int, beams_per_group: int) -> "PoolLayout":
    if HfSemantics(semantics) == HfSemantics.HF_4_26:
      return cls(num_pools=1, size=num_groups * beams_per_group, shared=True)
    return cls(num_pools=num_groups, size=beams_per_group, shared=False)

  def pool_of(self, g: int) -> int:
    return 0 if self.shared else g

  def final_length(self, cur_index: jax.Array) -> jax.Array:
    """The length live beams are normalised by at the end (new tokens so far, +1 for 4.26)."""
    return cur_index + 1 if self.shared else cur_index


def merge_hypotheses(hyp_scores_BxN: jax.Array, hyp_seqs_BxNxL1: jax.Array,
                     cands: beams.Candidates, done_B: jax.Array, divisor: jax.Array,
                     num_finishers: int):
  """The pool's best N of its hypotheses and the finite EOS candidates ranked in the top
  `num_finishers` (Kg) of the group (scored value / divisor), unless the pool is done.

  Returns:
    (hyp_scores_BxN, hyp_seqs_BxNxL1), best first.
  """
  n = hyp_scores_BxN.shape[1]
  rank_C = jnp.arange(cands.value_BxN.shape[1])
  add_BxC = (cands.is_eos_BxN & (rank_C < num_finishers)[None, :] & (cands.value_BxN > NEG_INF)
             & ~done_B[:, None])
  merged = jnp.concatenate(
      [hyp_scores_BxN, jnp.where(add_BxC, cands.value_BxN / divisor, NEG_INF)], axis=1)
  scores_BxN, pick_BxN = jax.lax.top_k(merged, n)
  seqs_BxNxL1 = jnp.take_along_axis(
      jnp.concatenate([hyp_seqs_BxNxL1, cands.seqs_BxNxL1], axis=1), pick_BxN[:, :, None],
      axis=1)
  return scores_BxN, seqs_BxNxL1


def pool_finished(hyp_scores_BxN: jax.Array, value_BxC: jax.Array, bound_divisor: jax.Array,
                  early_stopping: bool | str) -> jax.Array:
  """bool [B]: the pool holds N hypotheses and, unless `early_stopping=True`, its worst one
  beats the group's best candidate of this step divided by `bound_divisor` (HF `is_done`)."""
  full_B = hyp_scores_BxN[:, -1] > NEG_INF
  if early_stopping is True:
    return full_B
  return full_B & (hyp_scores_BxN[:, -1] >= value_BxC.max(axis=1) / bound_divisor)


def finalize(hyp_scores_BxPxN: jax.Array, hyp_seqs_BxPxNxL1: jax.Array, done_BxP: jax.Array,
             run_logprobs_BxGK: jax.Array, run_seqs_BxGKxL1: jax.Array, divisor: jax.Array):
  """Each pool's best N of its hypotheses and, unless it is done, its groups' live beams
  (without EOS, running score / divisor). Flat beam g*Kg + j belongs to pool g (per group) or
  to the one pool (shared), so a reshape to [B, P, N] lines the beams up with their pools.

  Returns:
    (sequences_BxPxNxL without the BOS slot, scores_BxPxN), best first.
  """
  b, p, n, l1 = hyp_seqs_BxPxNxL1.shape
  run_BxPxN = run_logprobs_BxGK.reshape(b, p, n)
  run_scores_BxPxN = jnp.where(done_BxP[:, :, None] | ~(run_BxPxN > NEG_INF), NEG_INF,
                               run_BxPxN / divisor)
  merged = jnp.concatenate([hyp_scores_BxPxN, run_scores_BxPxN], axis=2)
  scores_BxPxN, pick_BxPxN = jax.lax.top_k(merged, n)
  seqs_all = jnp.concatenate([hyp_seqs_BxPxNxL1, run_seqs_BxGKxL1.reshape(b, p, n, l1)], axis=2)
  seqs_BxPxNxL1 = jnp.take_along_axis(seqs_all, pick_BxPxN[:, :, :, None], axis=2)
  return seqs_BxPxNxL1[..., 1:], scores_BxPxN
