"""Full-ranking leave-one-out evaluation shared by every baseline.

Each user is scored against all N items; the metrics come from `llmrec_jax.metrics.ranking`.
Nothing is excluded unless `exclude_seen=True`, in which case the items the user already
interacted with before the held-out item (`seq[:-2]` for valid, `seq[:-1]` for test) get -inf.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from llmrec_jax.data.records import RecData
from llmrec_jax.data.splits import LooSplit
from llmrec_jax.metrics import ranking

# Number of items at the end of each sequence that are NOT known when ranking that split.
HELD_OUT = {"valid": 2, "test": 1}


def known_prefix(seq: np.ndarray, split: str) -> np.ndarray:
  """The part of a user's sequence available when ranking `split`: seq[:-2] (valid) or seq[:-1] (test)."""
  if split not in HELD_OUT:
    raise ValueError(f"split must be one of {sorted(HELD_OUT)}, got {split!r}")
  return seq[:-HELD_OUT[split]]


def split_tokens(split: LooSplit, max_len: int) -> np.ndarray:
  """Left-padded input tokens of a split: int32 [E, max_len], 0 = padding, item i -> i + 1."""
  return split.padded_history(max_len, pad_value=-1) + 1


def rank_split(score_fn: Callable[[np.ndarray], np.ndarray], tokens_ExT: np.ndarray, target_E: np.ndarray,
               num_items: int, *, seen: tuple[np.ndarray, ...] | None = None,
               batch_size: int = 1024) -> np.ndarray:
  """0-based full-ranking rank of every target.

  Args:
    score_fn: tokens_BxT -> scores_BxN over all N items (item-index order). It is always called
      with exactly `batch_size` rows (the last chunk is padded), so a jitted fn compiles once.
    tokens_ExT: int32 model inputs, one row per example.
    target_E: held-out item index per example.
    num_items: N; checked against the scores.
    seen: optional per-example item indices to exclude (set to -inf).
    batch_size: rows per score_fn call.
  Returns:
    ranks_E (int64), see `ranking.ranks_from_scores`.
  """
  E = tokens_ExT.shape[0]
  ranks = np.zeros((E,), np.int64)
  for start in range(0, E, batch_size):
    stop = min(start + batch_size, E)
    chunk_BxT = tokens_ExT[start:stop]
    if stop - start < batch_size:
      fill = np.zeros((batch_size - (stop - start),) + tokens_ExT.shape[1:], tokens_ExT.dtype)
      chunk_BxT = np.concatenate([chunk_BxT, fill])
    scores_BxN = np.array(score_fn(chunk_BxT), dtype=np.float32)[: stop - start]
    if scores_BxN.shape[1] != num_items:
      raise ValueError(f"score_fn returned {scores_BxN.shape[1]} columns for {num_items} items")
    if seen is not None:
      rows = np.concatenate([np.full(len(seen[e]), e - start) for e in range(start, stop)]).astype(np.int64)
      cols = np.concatenate([seen[e] for e in range(start, stop)]).astype(np.int64)
      scores_BxN[rows, cols] = -np.inf
    ranks[start:stop] = ranking.ranks_from_scores(scores_BxN, target_E[start:stop])
  return ranks


def evaluate_split(score_fn: Callable[[np.ndarray], np.ndarray], data: RecData, split_name: str,
                   split: LooSplit, *, max_len: int, exclude_seen: bool = False,
                   batch_size: int = 1024, ks=(5, 10)) -> dict[str, float]:
  """HR@k / NDCG@k of `score_fn` on one held-out split ("valid" or "test")."""
  seen = None
  if exclude_seen:
    seen = tuple(known_prefix(data.sequences[u], split_name) for u in split.user.tolist())
  ranks_E = rank_split(score_fn, split_tokens(split, max_len), split.target, data.num_items,
                       seen=seen, batch_size=batch_size)
  return ranking.ranking_metrics(ranks_E, ks=ks)
