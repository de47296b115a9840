"""Readers: real-data counts, exact parsing of tiny files, and one DataError test per kind of bad input."""
import gzip
import json
import logging

import numpy as np
import pytest

from llmrec_jax.data import sources
from llmrec_jax.data.errors import DataError


def write(path, text, gz=False):
  if gz:
    with gzip.open(path, "wt", encoding="utf-8") as f:
      f.write(text)
  else:
    path.write_text(text, encoding="utf-8")
  return path


def write_items(folder, items, gz=False):
  lines = "".join(json.dumps({"item_id": it, "title": f"title of {it}"}) + "\n" for it in items)
  return write(folder / ("items.jsonl" + (".gz" if gz else "")), lines, gz)


def raw_sequences(data):
  return {u: [data.item_ids[i] for i in s] for u, s in zip(data.user_ids, data.sequences)}


@pytest.mark.parametrize("gz", [False, True])
def test_p5_parses_exactly(tmp_path, gz):
  write(tmp_path / ("user_sequence.txt" + (".gz" if gz else "")), "u1 a b c\nu2 c d a e\nu3 e e b\n", gz)
  write_items(tmp_path, ["e", "d", "c", "b", "a", "unused"], gz)
  data = sources.load_p5(tmp_path)
  assert data.user_ids == ("u1", "u2", "u3")
  assert data.item_ids == ("a", "b", "c", "d", "e")  # first appearance; "unused" left out
  assert raw_sequences(data) == {"u1": ["a", "b", "c"], "u2": ["c", "d", "a", "e"], "u3": ["e", "e", "b"]}
  assert data.item_meta[data.item_index["d"]] == {"title": "title of d"}
  assert data.user_index["u2"] == 1
  assert (data.num_users, data.num_items, data.num_interactions, data.dropped_users) == (3, 5, 10, 0)
  assert all(s.dtype == np.int32 for s in data.sequences)


def test_p5_without_items_file_has_empty_meta(tmp_path):
  write(tmp_path / "user_sequence.txt", "u1 a b c\n")
  data = sources.load_dataset(tmp_path)
  assert data.item_meta == ({}, {}, {})


# ------------------------------------------------------------------------------------------ bad input
def test_missing_file(tmp_path):
  with pytest.raises(DataError, match=r"user_sequence.txt: missing file"):
    sources.load_p5(tmp_path)
  with pytest.raises(DataError, match="does not exist"):
    sources.load_dataset(tmp_path / "nope")
  with pytest.raises(DataError, match="unknown layout"):
    sources.load_dataset(tmp_path)


def test_a_file_as_data_folder_and_an_empty_sequence_file_name_the_path(tmp_path):
  seq = write(tmp_path / "user_sequence.txt", "")
  with pytest.raises(DataError, match=r"user_sequence.txt: no users"):
    sources.load_dataset(tmp_path)
  with pytest.raises(DataError, match=r"user_sequence.txt: is a file; give the data folder"):
    sources.load_dataset(seq)
  write(seq, "u1 a b\n")  # every user dropped: still no users, and the count says why
  with pytest.raises(DataError, match=r"no users: .* \(1 dropped\)"):
    sources.load_p5(tmp_path, drop_bad_users=True)


def test_outlier_sequences_keep_their_most_recent_items_or_fail(tmp_path, caplog):
  write(tmp_path / "user_sequence.txt", "u1 a b c\nu2 " + " ".join(f"i{n}" for n in range(9)) + "\n")
  with caplog.at_level(logging.WARNING):
    data = sources.load_p5(tmp_path, max_len=4)
  assert raw_sequences(data) == {"u1": ["a", "b", "c"], "u2": ["i5", "i6", "i7", "i8"]}
  assert "1 sequence(s) longer than 4 items" in caplog.text and "'u2', 9 items" in caplog.text
  with pytest.raises(DataError, match=r"user_sequence.txt, line 2: user 'u2' has 9 items, more than the bound of 4"):
    sources.load_p5(tmp_path, max_len=4, long_sequences="error")
  assert raw_sequences(sources.load_p5(tmp_path))["u2"][0] == "i0"  # the default bound keeps real lengths


def test_malformed_json_line(tmp_path):
  write(tmp_path / "user_sequence.txt", "u1 a b c\n")
  write(tmp_path / "items.jsonl", '{"item_id": "a"}\n{"item_id": "b"\n{"item_id": "c"}\n')
  with pytest.raises(DataError, match=r"items.jsonl, line 2: malformed JSON") as e:
    sources.load_p5(tmp_path)
  assert e.value.line == 2 and e.value.path.endswith("items.jsonl")


def test_malformed_sequence_line(tmp_path):
  write(tmp_path / "user_sequence.txt", "u1 a b c\n\nu2 a b c\n")
  with pytest.raises(DataError, match=r"user_sequence.txt, line 2: empty line"):
    sources.load_p5(tmp_path)
  (tmp_path / "user_sequence.txt").write_bytes(b"u1 a b c\nu2 a \xff c\n")
  with pytest.raises(DataError, match=r"user_sequence.txt, line 2: not valid utf-8"):
    sources.load_p5(tmp_path)


def test_item_without_metadata(tmp_path):
  write(tmp_path / "user_sequence.txt", "u1 a b c\nu2 a x c\n")
  write_items(tmp_path, ["a", "b", "c"])
  with pytest.raises(DataError, match=r"user_sequence.txt, line 2: user 'u2': item 'x' has no metadata"):
    sources.load_p5(tmp_path)


def test_duplicate_user(tmp_path):
  write(tmp_path / "user_sequence.txt", "u1 a b c\nu2 a b c\nu1 c b a\n")
  with pytest.raises(DataError, match=r"user_sequence.txt, line 3: duplicate user 'u1' \(first seen at line 1\)"):
    sources.load_p5(tmp_path)


def test_short_sequence(tmp_path):
  write(tmp_path / "user_sequence.txt", "u1 a b c\nu2 a b\n")
  with pytest.raises(DataError, match=r"user_sequence.txt, line 2: user 'u2' has 2 item\(s\)"):
    sources.load_p5(tmp_path)


def test_drop_bad_users_drops_counts_and_logs(tmp_path, caplog):
  write(tmp_path / "user_sequence.txt", "u1 a b c\nu2 a b\nu1 a b c\nu3 a x c\nu4 c b a\n")
  write_items(tmp_path, ["a", "b", "c"])
  with caplog.at_level(logging.WARNING):
    data = sources.load_p5(tmp_path, drop_bad_users=True)
  assert data.user_ids == ("u1", "u4") and data.dropped_users == 3
  assert data.item_ids == ("a", "b", "c")  # "x" belonged only to a dropped user
  assert "dropped 3 bad user(s)" in caplog.text


def test_repeated_items_are_valid(tmp_path):
  write(tmp_path / "user_sequence.txt", "u1 a b a a\n")
  assert raw_sequences(sources.load_p5(tmp_path)) == {"u1": ["a", "b", "a", "a"]}


def test_sorted_by_item_id_warning(tmp_path, caplog):
  write(tmp_path / "user_sequence.txt", "u1 a b c\nu2 b c d\nu3 a c d e\n")
  with caplog.at_level(logging.WARNING):
    data = sources.load_p5(tmp_path)
  assert sources.sorted_by_item_id_fraction(data) == 1.0
  assert "sorted by raw item id" in caplog.text
  write(tmp_path / "user_sequence.txt", "u1 a b c\nu2 d c b\nu3 a c d e\nu4 e d a\n")
  assert sources.sorted_by_item_id_fraction(sources.load_p5(tmp_path)) == 0.5


# ------------------------------------------------------------------------------------------ MovieLens
ML_ITEMS = "".join(f"{i}|Movie {i} (1995)|01-Jan-1995||http://x|" + "|".join("1" if g == i % 19 else "0"
                                                                           for g in range(19)) + "\n"
                   for i in range(1, 8))


def test_movielens_100k_sorts_by_time_then_item(tmp_path):
  rows = [(2, 5, 3, 100), (1, 3, 4, 50), (1, 1, 5, 50), (1, 7, 2, 10), (2, 4, 5, 90), (2, 6, 1, 100),
          (1, 2, 4, 60), (2, 1, 4, 10)]
  write(tmp_path / "u.data.gz", "".join("\t".join(map(str, r)) + "\n" for r in rows), gz=True)
  write(tmp_path / "u.item", ML_ITEMS)
  data = sources.load_dataset(tmp_path)
  assert data.user_ids == ("1", "2") and data.item_ids == tuple(str(i) for i in range(1, 8))
  assert raw_sequences(data) == {"1": ["7", "1", "3", "2"], "2": ["1", "4", "5", "6"]}
  assert data.item_meta[0]["title"] == "Movie 1 (1995)" and data.item_meta[0]["categories"] == ["Action"]
  liked = sources.load_movielens(tmp_path, min_rating=4, drop_bad_users=True)
  assert raw_sequences(liked) == {"1": ["1", "3", "2"]} and liked.dropped_users == 1


def test_movielens_bad_line(tmp_path):
  write(tmp_path / "u.data", "1\t2\t3\t4\n1\t2\t3\n")
  with pytest.raises(DataError, match=r"u.data, line 2: expected 4 fields"):
    sources.load_movielens(tmp_path)


def test_movielens_1m_layout(tmp_path):
  write(tmp_path / "ratings.dat", "1::10::5::3\n1::20::5::2\n1::30::5::1\n")
  write(tmp_path / "movies.dat", "10::A (1999)::Drama|Comedy\n20::B (2000)::Drama\n30::C (2001)::Horror\n")
  data = sources.load_dataset(tmp_path)
  assert raw_sequences(data) == {"1": ["30", "20", "10"]}
  assert data.item_meta[0] == {"title": "A (1999)", "categories": ["Drama", "Comedy"]}


# ------------------------------------------------------------------------------------------ real data
def test_beauty_counts_and_first_line(shared_dir):
  folder = shared_dir / "data" / "amazon2014_beauty"
  data = sources.load_p5(folder)
  assert (data.num_users, data.num_items, data.num_interactions) == (22363, 12101, 198502)
  with gzip.open(folder / "user_sequence.txt.gz", "rt") as f:
    first = f.readline().split()
  with gzip.open(folder / "items.jsonl.gz", "rt") as f:
    item0 = json.loads(f.readline())
  assert data.user_ids[0] == first[0] and [data.item_ids[i] for i in data.sequences[0]] == first[1:]
  assert data.item_meta[data.item_index[item0.pop("item_id")]] == item0


def test_movielens_100k_counts(shared_dir):
  data = sources.load_dataset(shared_dir / "data" / "movielens_100k")
  assert (data.num_users, data.num_items, data.num_interactions) == (943, 1682, 100000)
  assert all(m["title"] for m in data.item_meta)


def test_recdata_validates_itself():
  from llmrec_jax.data.records import RecData
  seq = (np.array([0, 1, 2], np.int32),)
  ok = RecData(name="t", user_ids=("u",), item_ids=("a", "b", "c"), item_meta=({},) * 3, sequences=seq)
  assert ok.item_index == {"a": 0, "b": 1, "c": 2} and ok.lengths.tolist() == [3]
  bad = [dict(sequences=(np.array([0, 1, 3], np.int32),)),          # index out of range
         dict(sequences=(np.array([0, 1, 2], np.int64),)),          # wrong dtype
         dict(item_ids=("a", "a", "c")),                            # duplicate item
         dict(item_meta=({},)),                                     # metadata count
         dict(user_ids=("u", "v"))]                                 # sequence count
  for change in bad:
    kwargs = dict(name="t", user_ids=("u",), item_ids=("a", "b", "c"), item_meta=({},) * 3, sequences=seq)
    with pytest.raises(ValueError):
      RecData(**{**kwargs, **change})
