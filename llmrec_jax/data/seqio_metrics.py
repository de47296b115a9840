"""HR@K / NDCG@K as SeqIO metric functions over top-K decoded textual IDs.

SeqIO hands a predict metric `(targets, predictions)`: `targets[b]` is the postprocessed target
string of example b, and with top-K decoding `predictions[b]` is the list of K postprocessed decoded
strings. Here that list must be ordered **best first** (t5x's `return_all_decodes=True` gives beams in
ascending score order: reverse them in the predict fn). The math is `llmrec_jax.metrics.ranking`:
rank = position of the first prediction equal to the target, K when none is.

No seqio import here: these are plain functions that `seqio.Task(metric_fns=...)` accepts.
"""
from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

from llmrec_jax.data.id_tables import normalize_id
from llmrec_jax.metrics import ranking


def normalize_text_id(text: str | bytes) -> str:
  """`normalize_id` (lowercase `\\b\\w+\\b` words, single spaces) that also accepts bytes."""
  return normalize_id(text.decode("utf-8") if isinstance(text, bytes) else text)


def postprocess_textual_id(output, example=None, is_target: bool = False):
  """SeqIO `postprocess_fn`: normalise a decoded string, or each string of a top-K list.

  Args:
    output: a decoded string (targets, top-1 predictions) or a list of K strings (top-K predictions).
    example: the task example (unused; SeqIO passes it).
    is_target: SeqIO passes True for targets (same normalisation either way).
  """
  del example, is_target
  if isinstance(output, (str, bytes)):
    return normalize_text_id(output)
  return [normalize_text_id(p) for p in output]


def ranks_from_strings(targets: Sequence[str], predictions: Sequence[Sequence[str]]) -> np.ndarray:
  """0-based rank of each target in its best-first prediction list, or K when absent.

  Args:
    targets: B target strings.
    predictions: B lists of K strings, best first (a bare string counts as a list of one).
  Returns:
    ranks_B int64. Duplicated predictions are not collapsed: the first equal one counts.
  """
  if len(targets) != len(predictions):
    raise ValueError(f"{len(targets)} targets but {len(predictions)} prediction lists")
  preds = [[p] if isinstance(p, (str, bytes)) else list(p) for p in predictions]
  ks = {len(p) for p in preds}
  if len(ks) > 1:
    raise ValueError(f"prediction lists have different lengths {sorted(ks)}; pad them to one K")
  k = ks.pop() if ks else 0
  ranks = np.full((len(targets),), k, dtype=np.int64)
  for b, (t, p) in enumerate(zip(targets, preds)):
    for j, s in enumerate(p):
      if s == t:
        ranks[b] = j
        break
  return ranks


def hit_ndcg(targets: Sequence[str], predictions: Sequence[Sequence[str]], ks: Sequence[int] = (5, 10)
             ) -> dict[str, float]:
  """SeqIO predict metric: {'hit@k', 'ndcg@k'} for each k (higher is better).

  HR@k = mean_b [rank_b < k];  NDCG@k = mean_b [rank_b < k] / log2(rank_b + 2)  (one relevant item).
  Raises when a k exceeds the number of predictions per example (the metric would be silently capped).
  """
  ranks_B = ranks_from_strings(targets, predictions)
  k_have = len(predictions[0]) if len(predictions) and not isinstance(predictions[0], (str, bytes)) else 1
  if len(predictions) and max(ks) > k_have:
    raise ValueError(f"asked for @{max(ks)} with only {k_have} predictions per example")
  return ranking.ranking_metrics(ranks_B, ks)


def make_hit_ndcg(ks: Sequence[int] = (5, 10)):
  """`hit_ndcg` with fixed `ks`; its positional signature stays `(targets, predictions)` as SeqIO needs."""
  return functools.partial(hit_ndcg, ks=tuple(ks))
