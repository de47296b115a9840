"""Score-based rankers (SASRec, popularity): full ranking over all N items.

`ScoreRanker` scores every example against all N items in fixed-size chunks, gives -inf to the
items the user interacted with before the target when asked to exclude them
(`splits.seen_before_target`: `seq[:-2]` for valid, `seq[:-1]` for test), and returns the stable
top-K (ties by smaller item index, the order of `ranking.ranks_from_scores`), so the metrics of
`evaluator.evaluate_split` equal those of the full ranks.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

import numpy as np

from llmrec_jax.data import splits as splits_lib
from llmrec_jax.data.splits import LooSplit
from llmrec_jax.evaluation import evaluator


def split_tokens(split: LooSplit, max_len: int) -> np.ndarray:
  """Left-padded input tokens of a split: int32 [E, max_len], 0 = padding, item i -> i + 1."""
  return split.padded_history(max_len, pad_value=-1) + 1


def topk_from_scores(scores_BxN: np.ndarray, k: int) -> np.ndarray:
  """Indices of the k best items per row, best first, ties by smaller index: the first k of a
  stable descending sort, in O(N) per row (a partition, then a sort of k items). A NaN score
  ranks last, like -inf.

  Returns:
    topk_BxK int64, K = min(k, N).
  """
  scores_BxN = np.asarray(scores_BxN)
  B, N = scores_BxN.shape
  k = min(k, N)
  if B == 0 or k == 0:
    return np.zeros((B, k), np.int64)
  if np.isnan(scores_BxN).any():
    scores_BxN = np.where(np.isnan(scores_BxN), -np.inf, scores_BxN)
  kth_B = np.partition(scores_BxN, N - k, axis=1)[:, N - k]  # the k-th largest score
  greater_BxN = scores_BxN > kth_B[:, None]  # fewer than k per row
  tied_BxN = scores_BxN == kth_B[:, None]
  keep_BxN = greater_BxN | tied_BxN
  over = np.flatnonzero(keep_BxN.sum(axis=1) > k)  # rows with more ties at the k-th score than room
  if over.size:  # keep the first `room` tied items by index
    room_R = k - greater_BxN[over].sum(axis=1)
    first_RxN = np.cumsum(tied_BxN[over], axis=1, dtype=np.int32) <= room_R[:, None]
    keep_BxN[over] = greater_BxN[over] | (tied_BxN[over] & first_RxN)
  idx_BxK = np.nonzero(keep_BxN)[1].reshape(B, k)  # exactly k per row, ascending index
  vals_BxK = np.take_along_axis(scores_BxN, idx_BxK, axis=1)
  order_BxK = np.lexsort((idx_BxK, -vals_BxK), axis=1)  # score descending, then index
  return np.take_along_axis(idx_BxK, order_BxK, axis=1).astype(np.int64)


def score_topk(score_fn: Callable[[np.ndarray], np.ndarray], tokens_ExT: np.ndarray, num_items: int,
               k: int, *, seen: Optional[Sequence[np.ndarray]] = None, batch_size: int = 1024) -> np.ndarray:
  """Top-k items [E, k] of every example under `score_fn`, seen items excluded (-1 fills the
  columns past N when the catalogue has fewer than k items).

  Args:
    score_fn: tokens_BxT -> scores_BxN over all N items (item-index order). It is always called
      with exactly `batch_size` rows (the last chunk is padded), so a jitted fn compiles once.
    tokens_ExT: int32 model inputs, one row per example.
    num_items: N; checked against the scores.
    k: list length.
    seen: optional per-example item indices to exclude (set to -inf).
    batch_size: rows per score_fn call.
  """
  E = tokens_ExT.shape[0]
  out = np.full((E, k), -1, np.int64)  # -1 past the N items of a catalogue smaller than k
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
    out[start:stop, :min(k, num_items)] = topk_from_scores(scores_BxN, k)
  return out


@dataclasses.dataclass
class ScoreRanker:
  """`evaluator.Ranker` over a score function of left-padded item-token histories.

  Attributes:
    score_fn: tokens_BxT -> scores_BxN (see `score_topk`).
    num_items: N.
    max_len: T, history items per input row (`split_tokens`).
    k: top-K length (>= the largest metric cut-off).
    exclude_seen_of: users' full sequences to exclude each user's items before the target
      (None: nothing is excluded).
    batch_size: rows per score_fn call.
  """
  score_fn: Callable[[np.ndarray], np.ndarray]
  num_items: int
  max_len: int
  k: int = 10
  exclude_seen_of: Optional[Sequence[np.ndarray]] = None
  batch_size: int = 1024

  def topk(self, examples: evaluator.HeldOut) -> np.ndarray:
    seen = None
    if self.exclude_seen_of is not None:
      seen = tuple(splits_lib.seen_before_target(self.exclude_seen_of[u], examples.name)
                   for u in examples.users.tolist())
    tokens_ExT = split_tokens(examples.split, self.max_len)[examples.rows]
    return score_topk(self.score_fn, tokens_ExT, self.num_items, self.k, seen=seen,
                      batch_size=self.batch_size)
