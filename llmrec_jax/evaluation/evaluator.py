"""One evaluator for every recommender: a ranker's top-K over held-out examples -> HR@k / NDCG@k.

A `Ranker` returns, for the examples of one held-out split (`HeldOut`: the split's name, its
`LooSplit` and the example rows, in the order results come back), the K best item indices per
example. Generative rankers decode them under the item trie (`generative.PromptRanker`,
`generative.StreamRanker`); score-based ones take the stable top-K of full-catalogue scores
(`scores.ScoreRanker`). `evaluate_split` turns any ranker's top-K into the metrics of
`llmrec_jax.metrics.ranking` (one target per example, leave-one-out), so every system's numbers
come from the same function. Metrics are means over the rows in the given order.
"""
from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np

from llmrec_jax.data import splits as splits_lib
from llmrec_jax.data.splits import LooSplit
from llmrec_jax.metrics import ranking


@dataclasses.dataclass(frozen=True, eq=False)
class HeldOut:
  """Examples of one held-out split to rank, in the order of `rows`.

  Attributes:
    name: 'valid' or 'test' (which items count as seen: `splits.seen_before_target`).
    split: that split's examples (one per user for `leave_one_out` / `held_out_split`).
    rows: int [E] example indices of `split`; results and metrics follow this order.
  """
  name: str
  split: LooSplit
  rows: np.ndarray

  def __post_init__(self):
    splits_lib.held_out_count(self.name)  # fails loudly on anything but 'valid' / 'test'
    object.__setattr__(self, "rows", np.asarray(self.rows, np.int64))

  @classmethod
  def every(cls, name: str, split: LooSplit) -> "HeldOut":
    """Every example of `split`, in split order."""
    return cls(name, split, np.arange(split.num_examples))

  @property
  def users(self) -> np.ndarray:
    """int32 [E]: user index per row."""
    return self.split.user[self.rows]

  @property
  def targets(self) -> np.ndarray:
    """int32 [E]: held-out item per row."""
    return self.split.target[self.rows]

  def histories(self) -> list[np.ndarray]:
    """Each row's history (oldest first, at most the split's max_his items)."""
    return [self.split.history[r] for r in self.rows]


class Ranker(Protocol):
  """Anything that ranks the catalogue for held-out examples."""

  def topk(self, examples: HeldOut) -> np.ndarray:
    """int [E, K]: item indices best first per row of `examples` (-1: no item), K >= the
    largest metric cut-off."""


def metrics_from_topk(topk_ExK: np.ndarray, targets_E: np.ndarray, ks=(5, 10)) -> dict[str, float]:
  """{'hit@k', 'ndcg@k'} of top-K lists against one target per example (`ranking`)."""
  topk_ExK = np.asarray(topk_ExK)
  if topk_ExK.shape[0] and topk_ExK.shape[1] < max(ks):
    raise ValueError(f"metrics @{max(ks)} need top-{max(ks)} lists, got top-{topk_ExK.shape[1]}")
  ranks_E = ranking.ranks_from_topk(topk_ExK, np.asarray(targets_E))
  return ranking.ranking_metrics(ranks_E, ks)


def evaluate_split(ranker: Ranker, examples: HeldOut, ks=(5, 10)) -> dict[str, float]:
  """HR@k / NDCG@k of `ranker` on `examples`."""
  return metrics_from_topk(ranker.topk(examples), examples.targets, ks)
