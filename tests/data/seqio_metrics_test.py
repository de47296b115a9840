"""HR@K / NDCG@K SeqIO metric functions against hand-computed cases."""
import inspect
import math

import numpy as np
import pytest

from llmrec_jax.data import seqio_metrics as sm


def test_hand_computed_hit_and_ndcg():
  targets = ["a b", "c", "d", "e"]
  predictions = [
      ["a b", "x", "y", "z"],     # rank 0
      ["x", "y", "c", "z"],       # rank 2
      ["x", "y", "z", "w"],       # not found
      ["x", "e", "e", "z"],       # rank 1 (first of the duplicates counts)
  ]
  out = sm.hit_ndcg(targets, predictions, ks=(1, 2, 4))
  assert out["hit@1"] == pytest.approx(1 / 4)
  assert out["hit@2"] == pytest.approx(2 / 4)
  assert out["hit@4"] == pytest.approx(3 / 4)
  assert out["ndcg@1"] == pytest.approx(1 / 4)
  assert out["ndcg@2"] == pytest.approx((1 + 1 / math.log2(3)) / 4)
  assert out["ndcg@4"] == pytest.approx((1 + 1 / math.log2(4) + 1 / math.log2(3)) / 4)
  assert list(out) == ["hit@1", "ndcg@1", "hit@2", "ndcg@2", "hit@4", "ndcg@4"]


def test_ranks_match_brute_force_on_random_lists():
  rng = np.random.default_rng(0)
  vocab = [f"id {i}" for i in range(6)]
  targets = [vocab[i] for i in rng.integers(0, 6, size=50)]
  preds = [[vocab[i] for i in rng.integers(0, 6, size=4)] for _ in range(50)]
  ranks = sm.ranks_from_strings(targets, preds)
  for t, p, r in zip(targets, preds, ranks):
    assert r == (p.index(t) if t in p else 4)


def test_postprocess_normalises_strings_and_lists():
  assert sm.postprocess_textual_id("  Sedu IONIC, ceramic!  ") == "sedu ionic ceramic"
  assert sm.postprocess_textual_id(b"A  b") == "a b"
  assert sm.postprocess_textual_id(["A b", "C-d"], example={}, is_target=False) == ["a b", "c d"]


def test_metric_is_a_seqio_predict_metric_and_fails_loudly():
  fn = sm.make_hit_ndcg((5, 10))
  positional = [n for n, p in inspect.signature(fn).parameters.items() if p.default is inspect.Parameter.empty]
  assert positional == ["targets", "predictions"]   # how SeqIO recognises a predict metric
  with pytest.raises(ValueError, match="only 4 predictions"):
    fn(["a"], [["a", "b", "c", "d"]])
  with pytest.raises(ValueError, match="different lengths"):
    sm.ranks_from_strings(["a", "b"], [["a"], ["a", "b"]])
  with pytest.raises(ValueError, match="2 targets but 1"):
    sm.ranks_from_strings(["a", "b"], [["a"]])
