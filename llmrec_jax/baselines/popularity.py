"""Most-popular baseline: rank every item by its number of known training interactions.

Counts follow leave-one-out: when ranking the validation items the counts come from every
user's `seq[:-2]`; when ranking the test items they come from every user's `seq[:-1]` (the
validation interactions are known by test time, exactly as the test histories include them).
Ties are broken by item index (stable sort, see `ranking.ranks_from_scores`). Seen items are
kept unless `exclude_seen=True`, like the generative models' default.
"""
from __future__ import annotations

import numpy as np

from llmrec_jax.baselines import evaluation
from llmrec_jax.data.records import RecData
from llmrec_jax.data.splits import LooSplit


def item_counts(data: RecData, split: str) -> np.ndarray:
  """Interaction count per item over every user's known prefix for `split`.

  Returns:
    counts_N: float32 [num_items] (repeated interactions count every time).
  """
  known = [evaluation.known_prefix(seq, split) for seq in data.sequences]
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
    score_fn = popularity_score_fn(item_counts(data, name))
    out[name] = evaluation.evaluate_split(score_fn, data, name, splits[name], max_len=1,
                                          exclude_seen=exclude_seen, batch_size=batch_size)
  return out
