"""Score-based ranking: stable top-K equals a full stable sort, its metrics equal those of the
full ranks, chunks have a fixed size, and inputs are the left-padded histories."""
import numpy as np
import pytest

from llmrec_jax.data import splits, synthetic
from llmrec_jax.evaluation import evaluator, scores
from llmrec_jax.metrics import ranking


def _tied_scores(rng, B, N):
  """Few distinct values (many ties) and some -inf (excluded) items."""
  s = rng.integers(-2, 3, size=(B, N)).astype(np.float32)
  s[rng.random((B, N)) < 0.2] = -np.inf
  return s


@pytest.mark.parametrize("seed", range(4))
def test_topk_from_scores_is_the_head_of_a_stable_descending_sort(seed):
  rng = np.random.default_rng(seed)
  for _ in range(50):
    B, N, k = int(rng.integers(1, 6)), int(rng.integers(1, 30)), int(rng.integers(1, 35))
    s = _tied_scores(rng, B, N)
    np.testing.assert_array_equal(scores.topk_from_scores(s, k),
                                  np.argsort(-s, axis=1, kind="stable")[:, :min(k, N)])


def test_nan_scores_rank_last_like_minus_inf():
  rng = np.random.default_rng(3)
  s = _tied_scores(rng, 8, 20)
  s[rng.random(s.shape) < 0.3] = np.nan
  want = np.argsort(-np.where(np.isnan(s), -np.inf, s), axis=1, kind="stable")[:, :12]
  np.testing.assert_array_equal(scores.topk_from_scores(s, 12), want)


def test_metrics_from_topk_equal_metrics_of_the_full_ranks():
  """The top-K position of a target is its full rank whenever that rank is < K (ties by index,
  -inf last), so every @k metric with k <= K is the same."""
  rng = np.random.default_rng(7)
  s = _tied_scores(rng, 64, 40)
  target = rng.integers(0, 40, size=64)
  full = ranking.ranking_metrics(ranking.ranks_from_scores(s, target), ks=(1, 5, 10))
  assert full == evaluator.metrics_from_topk(scores.topk_from_scores(s, 10), target, ks=(1, 5, 10))


def test_score_topk_covers_every_item_and_pads_last_chunk():
  num_items = 11
  target = np.arange(num_items).repeat(2)  # every item, including the first and the last, is a target
  calls = []

  def score_fn(tokens_BxT):
    calls.append(tokens_BxT.shape)
    return np.eye(num_items, dtype=np.float32)[tokens_BxT[:, 0]]  # the input token is the top item

  top = scores.score_topk(score_fn, target[:, None].astype(np.int32), num_items, 3, batch_size=5)
  np.testing.assert_array_equal(top[:, 0], target)
  assert set(calls) == {(5, 1)}  # the 22 rows came in fixed-size chunks


def test_score_ranker_excludes_the_items_before_the_target():
  """With exclude_seen_of, every item of seq[:-n] is ranked after every other item."""
  data = synthetic.make_synthetic(num_users=30, num_items=12, num_topics=3, max_len=9, seed=4)
  split = splits.leave_one_out(data, max_his=3)
  flat = lambda tokens_BxT: np.zeros((tokens_BxT.shape[0], data.num_items), np.float32)  # all tied
  for name in ("valid", "test"):
    ranker = scores.ScoreRanker(flat, data.num_items, max_len=3, k=data.num_items,
                                exclude_seen_of=data.sequences, batch_size=8)
    top = ranker.topk(evaluator.HeldOut.every(name, split[name]))
    for u, row in enumerate(top):
      seen = set(splits.seen_before_target(data.sequences[u], name).tolist())
      unseen = [i for i in range(data.num_items) if i not in seen]
      assert row.tolist() == unseen + sorted(seen)


def test_split_tokens_are_left_padded_item_tokens():
  data = synthetic.make_synthetic(num_users=20, num_items=9, num_topics=3, max_len=9, seed=2)
  split = splits.leave_one_out(data, max_his=4)["test"]
  tok = scores.split_tokens(split, 6)
  for row, hist in zip(tok, split.history):
    np.testing.assert_array_equal(row, np.concatenate([np.zeros(6 - hist.size, np.int32), hist + 1]))
