import numpy as np
import pytest

from llmrec_jax.metrics import ranking


def test_ranks_from_topk_found_and_missing():
  topk = np.array([[3, 1, 2], [5, 6, 7], [9, 8, 4]])
  ranks = ranking.ranks_from_topk(topk, np.array([2, 0, 9]))
  np.testing.assert_array_equal(ranks, [2, 3, 0])


def test_hand_computed_hit_and_ndcg():
  ranks = np.array([0, 1, 4, 5, 9, 10])
  m = ranking.ranking_metrics(ranks, ks=(5, 10))
  assert m["hit@5"] == pytest.approx(3 / 6)
  assert m["hit@10"] == pytest.approx(5 / 6)
  assert m["ndcg@5"] == pytest.approx((1 + 1 / np.log2(3) + 1 / np.log2(6)) / 6)
  assert m["ndcg@10"] == pytest.approx(
      (1 + 1 / np.log2(3) + 1 / np.log2(6) + 1 / np.log2(7) + 1 / np.log2(11)) / 6)


def test_ranks_from_scores_equals_stable_sort_brute_force():
  rng = np.random.default_rng(0)
  scores = rng.integers(0, 4, size=(50, 12)).astype(np.float32)  # many ties
  target = rng.integers(0, 12, size=50)
  want = [int(np.where(np.argsort(-s, kind="stable") == t)[0][0]) for s, t in zip(scores, target)]
  np.testing.assert_array_equal(ranking.ranks_from_scores(scores, target), want)


def test_excluded_items_do_not_count():
  scores = np.array([[5.0, -np.inf, 1.0, 3.0]])
  assert ranking.ranks_from_scores(scores, np.array([3]))[0] == 1
