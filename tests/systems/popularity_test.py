"""Popularity baseline against brute force (counts, full-ranking metrics with and without seen items)."""
import collections

import numpy as np
import pytest

from llmrec_jax.data.records import RecData
from llmrec_jax.data.splits import leave_one_out
from llmrec_jax.systems import popularity


def _data(seed=0, num_users=40, num_items=9):
  rng = np.random.default_rng(seed)
  # skewed item frequencies and repeats, so counts differ and ties happen
  p = rng.dirichlet(np.full(num_items, 0.7))
  seqs = tuple(rng.choice(num_items, size=rng.integers(3, 9), p=p).astype(np.int32) for _ in range(num_users))
  return RecData("tiny", tuple(f"u{i}" for i in range(num_users)), tuple(f"i{i}" for i in range(num_items)),
                 tuple({} for _ in range(num_items)), seqs)


@pytest.mark.parametrize("split, cut", [("valid", 2), ("test", 1)])
def test_counts_equal_brute_force(split, cut):
  data = _data()
  want = collections.Counter(int(i) for seq in data.sequences for i in seq[:-cut])
  got = popularity.item_counts(data, split)
  assert got.shape == (data.num_items,)
  assert got.tolist() == [want[i] for i in range(data.num_items)]


@pytest.mark.parametrize("exclude_seen", [False, True])
def test_popularity_metrics_equal_brute_force_ranking(exclude_seen):
  data = _data(seed=1)
  splits = leave_one_out(data, max_his=3)
  got = popularity.evaluate_popularity(data, splits, exclude_seen=exclude_seen, batch_size=7)
  for split, cut in (("valid", 2), ("test", 1)):
    counts = collections.Counter(int(i) for seq in data.sequences for i in seq[:-cut])
    ranks = []
    for seq in data.sequences:
      target = int(seq[-cut])
      seen = set(seq[:-cut].tolist()) if exclude_seen else set()
      # most popular first, ties by smaller item index; excluded items score -inf (last, by index)
      order = sorted(range(data.num_items), key=lambda i: (i in seen, 0 if i in seen else -counts[i], i))
      ranks.append(order.index(target))
    ranks = np.array(ranks)
    for k in (5, 10):
      assert got[split][f"hit@{k}"] == pytest.approx(np.mean(ranks < k))
      assert got[split][f"ndcg@{k}"] == pytest.approx(np.mean(np.where(ranks < k, 1 / np.log2(ranks + 2), 0)))
