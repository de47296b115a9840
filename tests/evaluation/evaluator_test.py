"""The evaluator contract: a score-based, an encoder-decoder and a decoder-only ranker that rank
the items the same way give the same metrics, equal to those of the full ranks."""
import numpy as np
import pytest

from llmrec_jax.data import splits, synthetic
from llmrec_jax.evaluation import evaluator, generative, scores
from llmrec_jax.indexing.item_tokens import ItemTokens
from llmrec_jax.metrics import ranking

N, K, KS = 15, 10, (1, 5, 10)


@pytest.fixture(scope="module")
def setup():
  data = synthetic.make_synthetic(num_users=30, num_items=N, num_topics=3, max_len=9, seed=5)
  # Scores depend on the last history item only: row h + 1 for item h (row 0 = padding).
  table_HxN = np.random.default_rng(0).standard_normal((N + 1, N)).astype(np.float32)
  return data, splits.leave_one_out(data, max_his=4), table_HxN


def _stub_topk(table_HxN, last_B):
  """Top-K of the table rows of the last history items (+1), stable, best first."""
  scores_BxN = table_HxN[np.asarray(last_B)]
  items_BxK = np.argsort(-scores_BxN, axis=1, kind="stable")[:, :K]
  return items_BxK, np.take_along_axis(scores_BxN, items_BxK, axis=1)


def _rankers(table_HxN):
  score = scores.ScoreRanker(lambda tokens_BxT: table_HxN[tokens_BxT[:, -1]], N, max_len=4, k=K,
                             batch_size=7)

  def prompt_batches(examples, batch_size=4):  # fixed size, the last batch wraps around
    rows = examples.rows
    for start in range(0, len(rows), batch_size):
      idx = rows[np.arange(start, start + batch_size) % len(rows)]
      yield {"last": np.asarray([examples.split.history[i][-1] + 1 for i in idx], np.int32)}

  table = ItemTokens([[3 + i] for i in range(N)])
  prompt = generative.PromptRanker(lambda params, batch, arrays: _stub_topk(table_HxN, batch["last"]),
                                   None, table.trie(), prompt_batches, batch_size=4)
  # Stream prompts end with the last history item's one token (3 + item).
  stream = generative.StreamRanker(
      lambda params, prompt_BxP, valid_BxP, arrays: _stub_topk(table_HxN, prompt_BxP[:, -1] - 3 + 1),
      None, table.trie(), table.as_lists(), eos_id=1, batch_size=8)
  return score, prompt, stream


@pytest.mark.parametrize("name", ["valid", "test"])
def test_generative_and_score_rankers_give_identical_metrics(setup, name):
  data, split, table_HxN = setup
  rows = np.random.default_rng(1).permutation(data.num_users)[:23]  # any subset, any order
  examples = evaluator.HeldOut(name, split[name], rows)
  got = [evaluator.evaluate_split(r, examples, ks=KS) for r in _rankers(table_HxN)]
  last_E = np.asarray([split[name].history[r][-1] + 1 for r in rows])
  want = ranking.ranking_metrics(ranking.ranks_from_scores(table_HxN[last_E], split[name].target[rows]), KS)
  assert got[0] == got[1] == got[2] == want
  assert want["hit@10"] > 0  # not vacuous


def test_held_out_rows_and_names(setup):
  data, split, _ = setup
  examples = evaluator.HeldOut("valid", split["valid"], [4, 0, 2])
  np.testing.assert_array_equal(examples.targets, [data.sequences[u][-2] for u in (4, 0, 2)])
  np.testing.assert_array_equal(examples.users, [4, 0, 2])
  assert [h.tolist() for h in examples.histories()] == [data.sequences[u][:-2][-4:].tolist() for u in (4, 0, 2)]
  with pytest.raises(ValueError, match="'valid', 'test'|\\['test', 'valid'\\]"):
    evaluator.HeldOut("validation", split["valid"], [0])


def test_top_k_shorter_than_the_largest_cut_off_fails():
  with pytest.raises(ValueError, match="@10 need top-10 lists, got top-5"):
    evaluator.metrics_from_topk(np.zeros((3, 5), np.int64), np.zeros(3, np.int64), ks=(5, 10))
