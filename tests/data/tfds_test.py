"""TFDS builders on tiny raw files written here (and the real MovieLens 100K folder when present)."""
import gzip
import json
import pathlib

import numpy as np
import pytest

import tensorflow_datasets as tfds

from llmrec_jax.data.errors import DataError  # noqa: E402
from llmrec_jax.data.tfds import amazon2014, movielens  # noqa: E402
from llmrec_jax.data.tfds.recdata import recdata_from_tfds  # noqa: E402


def _write_gz(path: pathlib.Path, lines):
  with gzip.open(path, "wt", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")


def _rows(builder, split):
  ds = builder.as_dataset(split=split, shuffle_files=False)
  return list(tfds.as_numpy(ds))


def _text(x):
  return x.decode() if isinstance(x, bytes) else str(x)


@pytest.fixture(scope="module")
def amazon_raw(tmp_path_factory):
  """7 users x 6 items. u6 has 2 reviews (-> dropped by 3-core); item i5 then drops below 3, too."""
  rng = np.random.default_rng(0)
  reviews = []
  users = [f"U{u}" for u in range(7)]
  for u, user in enumerate(users[:6]):
    for i in range(5):
      if (u + i) % 5 != 4:           # each of u0..u5 reviews 4 of items i0..i4
        reviews.append((user, f"I{i}", int(rng.integers(100, 110))))
  reviews += [("U6", "I0", 50), ("U6", "I5", 51), ("U0", "I5", 52), ("U1", "I5", 53)]
  reviews.append(("U0", "I0", 1))     # repeated (user, item): only the first review counts
  order = rng.permutation(len(reviews))
  reviews = [reviews[j] for j in order]
  root = tmp_path_factory.mktemp("amazon_raw")
  lines = [json.dumps({"reviewerID": u, "asin": i, "unixReviewTime": t, "overall": 5.0}) for u, i, t in reviews]
  _write_gz(root / "reviews_Beauty_5.json.gz", lines)
  meta = [repr({"asin": f"I{i}", "title": f"Item &amp; {i}", "brand": f"B{i % 2}",
                "categories": [["Beauty", f"C{i}"], ["Beauty"]]}) for i in range(5)]  # python literals
  meta.append(json.dumps({"asin": "I9", "title": "not kept"}))                       # JSON line, unused
  (root / "meta_Beauty.json").write_text("\n".join(meta) + "\n")                    # plain, not gzipped
  return root, reviews


def _expected_amazon(reviews, k):
  """The k-core sequences built by brute force: drop, recount, repeat; then sort each user by time."""
  firsts, seen = [], set()
  for u, i, t in reviews:
    if (u, i) not in seen:
      seen.add((u, i))
      firsts.append((u, i, t))
  while True:
    cu = {u: sum(r[0] == u for r in firsts) for u, _, _ in firsts}
    ci = {i: sum(r[1] == i for r in firsts) for _, i, _ in firsts}
    kept = [r for r in firsts if cu[r[0]] >= k and ci[r[1]] >= k]
    if kept == firsts:
      break
    firsts = kept
  users = list(dict.fromkeys(r[0] for r in firsts))
  return {u: [i for _, i, _ in sorted([r for r in firsts if r[0] == u], key=lambda r: r[2])] for u in users}, users


@pytest.fixture(scope="module")
def amazon_builders(amazon_raw, tmp_path_factory):
  raw, _ = amazon_raw
  data_dir = tmp_path_factory.mktemp("tfds_amazon")
  cfg = tfds.download.DownloadConfig(manual_dir=str(raw))
  out = {}
  for items in (False, True):
    config = amazon2014.Amazon2014Config(name=f"tiny3{'_items' if items else ''}", category="Beauty",
                                         items=items, k=3)
    b = amazon2014.Amazon2014(config=config, data_dir=str(data_dir))
    b.download_and_prepare(download_config=cfg)
    out[items] = b
  return out


def test_amazon_sequences_match_brute_force(amazon_raw, amazon_builders):
  _, reviews = amazon_raw
  expected, user_order = _expected_amazon(reviews, k=3)
  rows = _rows(amazon_builders[False], "train")
  assert [_text(r["user_id"]) for r in rows] == user_order
  assert "U6" not in expected and all("I5" not in s for s in expected.values())  # the cascade happened
  for r in rows:
    items = [_text(x) for x in r["item_ids"]]
    assert items == expected[_text(r["user_id"])]
    assert np.all(np.diff(r["timestamps"]) >= 0)
  assert sum(len(r["item_ids"]) for r in rows) == sum(len(s) for s in expected.values())


def test_amazon_items_metadata(amazon_builders):
  rows = _rows(amazon_builders[True], "items")
  assert [_text(r["item_id"]) for r in rows] == [f"I{i}" for i in range(5)]  # kept items, sorted
  for i, r in enumerate(rows):
    assert _text(r["title"]) == f"Item &amp; {i}"  # raw entities kept, unescaping is render_item_text's job
    assert _text(r["brand"]) == f"B{i % 2}"
    cats = r["categories"]
    cats = cats.to_list() if hasattr(cats, "to_list") else cats  # nested sequences come back ragged
    cats = [[_text(c) for c in path] for path in cats]
    assert cats == [["Beauty", f"C{i}"], ["Beauty"]]


def test_amazon_to_recdata(amazon_raw, amazon_builders):
  expected, user_order = _expected_amazon(amazon_raw[1], k=3)
  data = recdata_from_tfds(amazon_builders[False], amazon_builders[True], name="tiny")
  assert data.user_ids == tuple(user_order) and data.item_ids == tuple(f"I{i}" for i in range(5))
  assert [[data.item_ids[i] for i in s] for s in data.sequences] == [expected[u] for u in user_order]
  assert data.item_meta[2]["categories"] == [["Beauty", "C2"], ["Beauty"]] and data.item_meta[2]["brand"] == "B0"


def test_amazon_k_core_is_stable_and_bad_lines_are_located(tmp_path):
  reviews = [("a", "x", 1), ("a", "y", 2), ("b", "x", 3), ("b", "y", 4), ("c", "x", 5)]
  kept = amazon2014.k_core(reviews, k=2)
  assert kept == reviews[:4]
  assert amazon2014.k_core(kept, k=2) == kept
  bad = tmp_path / "reviews_Beauty_5.json"
  bad.write_text(json.dumps({"reviewerID": "a", "asin": "x", "unixReviewTime": 1}) + "\n{oops\n")
  with pytest.raises(DataError, match=r"reviews_Beauty_5.json, line 2"):
    amazon2014.read_reviews(bad)


def _write_ml100k(root: pathlib.Path, ratings, n_items=4):
  _write_gz(root / "u.data.gz", [f"{u}\t{i}\t{r}\t{t}" for u, i, r, t in ratings])
  (root / "u.genre").write_text("unknown|0\nAction|1\nComedy|2\n\n")
  (root / "u.item").write_text("".join(
      f"{i}|Movie {i} (1995)|01-Jan-1995||http://x|0|{i % 2}|1\n" for i in range(1, n_items + 1)),
      encoding="latin-1")


def test_movielens_100k_tiny(tmp_path):
  ratings = [(2, 3, 4, 10), (1, 2, 5, 7), (2, 1, 3, 10), (1, 4, 1, 3), (10, 2, 2, 1), (2, 4, 5, 5)]
  raw = tmp_path / "raw"
  raw.mkdir()
  _write_ml100k(raw, ratings)
  cfg = tfds.download.DownloadConfig(manual_dir=str(raw))
  seq = movielens.MovieLens(config="100k", data_dir=str(tmp_path / "tfds"))
  seq.download_and_prepare(download_config=cfg)
  rows = _rows(seq, "train")
  # numeric user order (1, 2, 10 - not "1", "10", "2"); time order, ties (user 2, t=10) by movie id
  assert [_text(r["user_id"]) for r in rows] == ["1", "2", "10"]
  assert [[_text(x) for x in r["item_ids"]] for r in rows] == [["4", "2"], ["4", "1", "3"], ["2"]]
  assert rows[1]["ratings"].tolist() == [5.0, 3.0, 4.0]
  items = movielens.MovieLens(config="100k_items", data_dir=str(tmp_path / "tfds"))
  items.download_and_prepare(download_config=cfg)
  movies = _rows(items, "items")
  assert [_text(m["item_id"]) for m in movies] == ["1", "2", "3", "4"]
  assert [[_text(g) for g in m["genres"]] for m in movies] == [["Action", "Comedy"] if i % 2 else ["Comedy"]
                                                                for i in range(1, 5)]


def test_movielens_1m_tiny(tmp_path):
  raw = tmp_path / "raw"
  raw.mkdir()
  (raw / "ratings.dat").write_text("5::7::4::100\n5::3::2::90\n1::7::1::5\n")
  (raw / "movies.dat").write_text("3::Three (2000)::Drama|Comedy\n7::Seven (1995)::Thriller\n", encoding="latin-1")
  cfg = tfds.download.DownloadConfig(manual_dir=str(raw))
  seq = movielens.MovieLens(config="1m", data_dir=str(tmp_path / "tfds"))
  seq.download_and_prepare(download_config=cfg)
  rows = _rows(seq, "train")
  assert [(_text(r["user_id"]), [_text(x) for x in r["item_ids"]]) for r in rows] == [("1", ["7"]), ("5", ["3", "7"])]
  items = movielens.MovieLens(config="1m_items", data_dir=str(tmp_path / "tfds"))
  items.download_and_prepare(download_config=cfg)
  assert [[_text(g) for g in m["genres"]] for m in _rows(items, "items")] == [["Drama", "Comedy"], ["Thriller"]]


def test_movielens_100k_real_matches_load_movielens(shared_dir, tmp_path):
  raw = shared_dir / "data" / "movielens_100k"
  assert raw.is_dir(), f"{raw} is missing from ../shared"
  seq = movielens.MovieLens(config="100k", data_dir=str(tmp_path / "tfds"))
  seq.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(raw)))
  rows = _rows(seq, "train")
  assert len(rows) == 943
  assert sum(len(r["item_ids"]) for r in rows) == 100_000
  assert all(np.all(np.diff(r["timestamps"]) >= 0) for r in rows)
  from llmrec_jax.data import sources
  data = sources.load_movielens(raw)
  assert [_text(r["user_id"]) for r in rows] == list(data.user_ids)
  for r, s in zip(rows, data.sequences):
    assert [_text(x) for x in r["item_ids"]] == [data.item_ids[i] for i in s]
  items = movielens.MovieLens(config="100k_items", data_dir=str(tmp_path / "tfds"))
  items.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(raw)))
  ours = recdata_from_tfds(seq, items)
  assert ours.item_ids == data.item_ids and ours.user_ids == data.user_ids
  assert all(np.array_equal(a, b) for a, b in zip(ours.sequences, data.sequences))
  assert [(m["title"], m["categories"]) for m in ours.item_meta] == [(m["title"], m["categories"])
                                                                     for m in data.item_meta]
