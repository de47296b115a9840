"""Most-popular baseline: rank every item by its number of known training interactions.

Counts follow leave-one-out (`splits.seen_before_target`): when ranking the validation items the
counts come from every user's `seq[:-2]`; when ranking the test items they come from every user's
`seq[:-1]` (the validation interactions are known by test time, exactly as the test histories
include them). Ranked by `scores.ScoreRanker` (ties by item index) and scored by
`evaluator.evaluate_split`. Seen items are kept unless `exclude_seen=True`, like the generative
models' default.
"""
from __future__ import annotations

import numpy as np

from llmrec_jax.data import splits as splits_lib
from llmrec_jax.data.records import RecData
from llmrec_jax.data.splits import LooSplit
from llmrec_jax.evaluation import evaluator, scores


def item_counts(data: RecData, split: str) -> np.ndarray:
  """Interaction count per item over every user's known prefix for `split`.

  Returns:
    counts_N: float32 [num_items] (repeated interactions count every time).
  """
  known = [splits_lib.seen_before_target(seq, split) for seq in data.sequences]
  flat = np.concatenate(known) if known else np.zeros((0,), np.int32)
  return np.bincount(flat, minlength=data.num_items).astype(np.float32)


def popularity_score_fn(counts_N: np.ndarray):
  """tokens_BxT -> scores_BxN, the same counts for every row (inputs are ignored)."""
  counts_1xN = np.asarray(counts_N, np.float32)[None, :]

  def score_fn(tokens_BxT: np.ndarray) -> np.ndarray:
    return np.repeat(counts_1xN, tokens_BxT.shape[0], axis=0)

  return score_fn


def evaluate_popularity(data: RecData, splits: dict[str, LooSplit], *, exclude_seen: bool = False,
                        batch_size: int = 1024) -> dict[str, dict[str, float]]:
  """{'valid': metrics, 'test': metrics} of the popularity ranking."""
  out = {}
  for name in ("valid", "test"):
    ranker = scores.ScoreRanker(popularity_score_fn(item_counts(data, name)), data.num_items, max_len=1,
                                exclude_seen_of=data.sequences if exclude_seen else None,
                                batch_size=batch_size)
    out[name] = evaluator.evaluate_split(ranker, evaluator.HeldOut.every(name, splits[name]))
  return out
