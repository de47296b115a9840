"""Ranking metrics for one held-out target per user (leave-one-out).

All functions are pure numpy and work on 0-based ranks: rank 0 means the target was
recommended first. A target that is not in the top-K list gets rank K (= "not found"),
which every @k metric with k <= K scores as 0. Higher is better for every metric here.
"""
from __future__ import annotations

import numpy as np

HIGHER_IS_BETTER = {"hit": True, "ndcg": True}


def ranks_from_topk(topk_BxK: np.ndarray, target_B: np.ndarray) -> np.ndarray:
  """0-based position of each target in its top-K list, or K when absent.

  Args:
    topk_BxK: recommended item indices, best first (duplicates are a caller bug).
    target_B: the held-out item index per example.
  Returns:
    ranks_B (int64).
  """
  topk_BxK = np.asarray(topk_BxK)
  target_B = np.asarray(target_B)
  if topk_BxK.ndim != 2 or target_B.shape != topk_BxK.shape[:1]:
    raise ValueError(f"shapes {topk_BxK.shape} and {target_B.shape} are not [B, K] and [B]")
  hit_BxK = topk_BxK == target_B[:, None]
  first_B = np.argmax(hit_BxK, axis=1)
  return np.where(hit_BxK.any(axis=1), first_B, topk_BxK.shape[1]).astype(np.int64)


def ranks_from_scores(scores_BxN: np.ndarray, target_B: np.ndarray) -> np.ndarray:
  """Full-ranking 0-based rank of each target among all N items.

  rank = #{j : s_j > s_t} + #{j < t : s_j == s_t}, i.e. the position of the target in a
  stable descending sort, so ties are broken by item index and never in the target's favour
  by accident of the metric. Items to exclude must be given -inf beforehand.
  """
  scores_BxN = np.asarray(scores_BxN)
  target_B = np.asarray(target_B)
  b = np.arange(scores_BxN.shape[0])
  s_t_B = scores_BxN[b, target_B]
  greater_B = (scores_BxN > s_t_B[:, None]).sum(axis=1)
  idx_N = np.arange(scores_BxN.shape[1])
  ties_B = ((scores_BxN == s_t_B[:, None]) & (idx_N[None, :] < target_B[:, None])).sum(axis=1)
  return (greater_B + ties_B).astype(np.int64)


def hit_at_k(ranks_B: np.ndarray, k: int) -> float:
  """HR@k = mean_b [rank_b < k]."""
  return float(np.mean(np.asarray(ranks_B) < k))


def ndcg_at_k(ranks_B: np.ndarray, k: int) -> float:
  """NDCG@k with one relevant item: mean_b [rank_b < k] / log2(rank_b + 2) (IDCG = 1)."""
  r = np.asarray(ranks_B, dtype=np.float64)
  return float(np.mean(np.where(r < k, 1.0 / np.log2(r + 2.0), 0.0)))


def ranking_metrics(ranks_B: np.ndarray, ks=(5, 10)) -> dict[str, float]:
  """{'hit@5': ..., 'ndcg@5': ..., 'hit@10': ..., 'ndcg@10': ...} in that order."""
  out = {}
  for k in ks:
    out[f"hit@{k}"] = hit_at_k(ranks_B, k)
    out[f"ndcg@{k}"] = ndcg_at_k(ranks_B, k)
  return out
