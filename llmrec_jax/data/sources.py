"""Readers for raw interaction files -> `RecData` (no JAX).

Layouts:
  P5 / IDGenRec: `user_sequence.txt[.gz]` (`USER ITEM ITEM ...`, one user a line, order = interaction order)
    plus optional `items.jsonl[.gz]` (one JSON object a line with `item_id` and metadata fields).
  MovieLens: 100K (`u.data[.gz]` + optional `u.item`, `u.genre`) or 1M (`ratings.dat[.gz]` + optional `movies.dat`);
    sequences sorted by timestamp, ties by item id.
Every problem raises `DataError` naming file, 1-based line and problem. With `drop_bad_users=True`, users
that are bad as a whole (duplicate id, fewer than 3 items, an item without metadata) are dropped instead,
logged, and counted in `RecData.dropped_users`; malformed lines always raise.
"""
from __future__ import annotations

import gzip
import json
import logging
import os
import pathlib
from typing import Iterator

import numpy as np

from llmrec_jax.data.errors import DataError
from llmrec_jax.data.records import RecData

log = logging.getLogger(__name__)

MIN_SEQUENCE_LEN = 3  # leave-one-out needs a train, a valid and a test item
# A user with more interactions than this (the longest real sequence here: 550, Toys) is an
# outlier (a bot, a joined log): kept as its most recent MAX_SEQUENCE_LEN items with a warning,
# or an error with `long_sequences='error'`. One 200,000-item user multiplies an epoch's steps.
MAX_SEQUENCE_LEN = 2000
P5_SEQUENCES = "user_sequence.txt"
P5_ITEMS = "items.jsonl"
# Fraction of multi-item sequences that, when sorted by raw item id, signals the Sports/Toys quirk.
_SORTED_WARN_FRACTION = 0.9


def find_file(data_dir: str | os.PathLike, name: str) -> pathlib.Path | None:
  """`data_dir/name`, else `data_dir/name.gz`, else None."""
  for candidate in (name, name + ".gz"):
    path = pathlib.Path(data_dir) / candidate
    if path.is_file():
      return path
  return None


def read_lines(path: pathlib.Path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
  """(1-based line number, line without its newline) of a text file, gzipped when it ends in .gz."""
  opener = gzip.open if path.suffix == ".gz" else open
  with opener(path, "rb") as f:
    for lineno, raw in enumerate(f, 1):
      try:
        yield lineno, raw.decode(encoding).rstrip("\r\n")
      except UnicodeDecodeError as e:
        raise DataError(path, f"not valid {encoding} text ({e.reason})", lineno) from None


def _check_folder(data_dir) -> None:
  if pathlib.Path(data_dir).is_file():
    raise DataError(data_dir, "is a file; give the data folder that holds it (e.g. the folder of "
                              "user_sequence.txt[.gz] and items.jsonl[.gz])")
  if not pathlib.Path(data_dir).is_dir():
    raise DataError(data_dir, f"data folder does not exist (working directory: {os.getcwd()})")


def _require(data_dir, name: str) -> pathlib.Path:
  path = find_file(data_dir, name)
  if path is None:
    _check_folder(data_dir)
    raise DataError(pathlib.Path(data_dir) / name, f"missing file (looked for {name} and {name}.gz)")
  return path


class _UserCollector:
  """Applies the per-user checks shared by all readers; drops or raises."""

  def __init__(self, drop_bad_users: bool, has_meta, *, dataset: str,
               max_len: int = MAX_SEQUENCE_LEN, long_sequences: str = "truncate"):
    if long_sequences not in ("truncate", "error"):
      raise ValueError(f"long_sequences={long_sequences!r}: use 'truncate' or 'error'")
    self.max_len, self.long_sequences = max_len, long_sequences
    self.truncated: list[tuple[str, int]] = []  # (user, original length)
    self.drop = drop_bad_users
    self.has_meta = has_meta   # callable raw item id -> bool, or None when there is no metadata
    self.dataset = dataset
    self.users: list[str] = []
    self.seqs: list[list[str]] = []
    self.seen: dict[str, int] = {}  # user -> line where it was first seen
    self.dropped: dict[str, int] = {}  # reason -> count

  def add(self, user: str, items: list[str], path, lineno: int | None):
    problem = None
    if user in self.seen:
      where = f"line {self.seen[user]}" if self.seen[user] else "before"
      problem = "duplicate user", f"duplicate user {user!r} (first seen at {where})"
    elif len(items) < MIN_SEQUENCE_LEN:
      problem = "short sequence", (f"user {user!r} has {len(items)} item(s); leave-one-out needs at least "
                                   f"{MIN_SEQUENCE_LEN}")
    elif self.has_meta is not None:
      missing = [it for it in items if not self.has_meta(it)]
      if missing:
        problem = "item without metadata", (f"user {user!r}: item {missing[0]!r} has no metadata entry "
                                            f"({len(missing)} such item(s) in this sequence)")
    if user not in self.seen:
      self.seen[user] = lineno or 0
    if problem is None and len(items) > self.max_len:
      if self.long_sequences == "error":
        raise DataError(path, f"user {user!r} has {len(items)} items, more than the bound of {self.max_len} "
                              "(long_sequences='truncate' keeps the most recent ones)", lineno)
      self.truncated.append((user, len(items)))
      items = items[-self.max_len:]
    if problem is None:
      self.users.append(user)
      self.seqs.append(items)
      return
    if not self.drop:
      raise DataError(path, problem[1], lineno)
    self.dropped[problem[0]] = self.dropped.get(problem[0], 0) + 1

  def build(self, item_ids: list[str], item_meta: list[dict]) -> RecData:
    index = {it: i for i, it in enumerate(item_ids)}
    seqs = tuple(np.fromiter((index[it] for it in s), dtype=np.int32, count=len(s)) for s in self.seqs)
    if self.truncated:
      user, n = max(self.truncated, key=lambda t: t[1])
      log.warning("%s: %d sequence(s) longer than %d items kept as their most recent %d (longest: user %r, "
                  "%d items)", self.dataset, len(self.truncated), self.max_len, self.max_len, user, n)
    n_dropped = sum(self.dropped.values())
    if n_dropped:
      log.warning("%s: dropped %d bad user(s): %s", self.dataset, n_dropped,
                  ", ".join(f"{k}: {v}" for k, v in sorted(self.dropped.items())))
    return RecData(name=self.dataset, user_ids=tuple(self.users), item_ids=tuple(item_ids),
                   item_meta=tuple(item_meta), sequences=seqs, dropped_users=n_dropped)


def _first_appearance(seqs: list[list[str]]) -> list[str]:
  return list(dict.fromkeys(it for s in seqs for it in s))


def _read_items_jsonl(path: pathlib.Path) -> dict[str, dict]:
  meta = {}
  for lineno, line in read_lines(path):
    if not line.strip():
      raise DataError(path, "empty line", lineno)
    try:
      obj = json.loads(line)
    except json.JSONDecodeError as e:
      raise DataError(path, f"malformed JSON ({e.msg} at column {e.colno})", lineno) from None
    if not isinstance(obj, dict) or not isinstance(obj.get("item_id"), str) or not obj["item_id"]:
      raise DataError(path, "expected a JSON object with a non-empty string 'item_id'", lineno)
    item = obj.pop("item_id")
    if item in meta:
      raise DataError(path, f"duplicate item_id {item!r}", lineno)
    meta[item] = obj
  return meta


def load_p5(data_dir: str | os.PathLike, *, drop_bad_users: bool = False, name: str | None = None,
            max_len: int = MAX_SEQUENCE_LEN, long_sequences: str = "truncate") -> RecData:
  """Reads the P5 / IDGenRec layout (`user_sequence.txt[.gz]` + optional `items.jsonl[.gz]`).

  A sequence longer than `max_len` keeps its most recent `max_len` items (logged), or raises
  DataError naming the line with `long_sequences='error'`.

  Item indices follow the first appearance of each item in the sequence file; items listed in
  items.jsonl but used by no kept user are left out (logged). Without items.jsonl every item gets `{}`.
  """
  name = name or pathlib.Path(data_dir).resolve().name
  seq_path = _require(data_dir, P5_SEQUENCES)
  items_path = find_file(data_dir, P5_ITEMS)
  meta = _read_items_jsonl(items_path) if items_path else None
  users = _UserCollector(drop_bad_users, meta.__contains__ if meta is not None else None, dataset=name,
                         max_len=max_len, long_sequences=long_sequences)
  for lineno, line in read_lines(seq_path):
    parts = line.split()
    if not parts:
      raise DataError(seq_path, "empty line (expected 'USER_ID ITEM_ID ITEM_ID ...')", lineno)
    users.add(parts[0], parts[1:], seq_path, lineno)
  if not users.seqs:
    raise DataError(seq_path, "no users: the file holds no sequence line"
                    + (f" that passes the checks ({sum(users.dropped.values())} dropped)" if users.dropped else ""))
  item_ids = _first_appearance(users.seqs)
  if meta is None:
    item_meta = [{} for _ in item_ids]
  else:
    item_meta = [meta[it] for it in item_ids]
    unused = len(meta) - len(item_ids)
    if unused:
      log.warning("%s: %d item(s) of %s appear in no kept sequence and are left out", name, unused, items_path)
  data = users.build(item_ids, item_meta)
  warn_if_sorted_by_item_id(data)
  return data


def sorted_by_item_id_fraction(data: RecData) -> float:
  """Fraction of sequences (with >= 2 items) whose raw item ids are in non-decreasing string order."""
  order = np.argsort(np.array(data.item_ids, dtype=object), kind="stable")
  rank_N = np.empty(data.num_items, dtype=np.int64)
  rank_N[order] = np.arange(data.num_items)
  lens = data.lengths
  multi = lens >= 2
  if not multi.any():
    return 0.0
  flat = rank_N[np.concatenate(data.sequences)]
  descents = np.diff(flat) < 0
  boundary = np.cumsum(lens)[:-1] - 1   # diff index that crosses from one user to the next
  descents[boundary[(boundary >= 0) & (boundary < descents.size)]] = False
  user_of_diff = np.repeat(np.arange(data.num_users), lens)[:-1]
  unsorted_users = np.zeros(data.num_users, dtype=bool)
  unsorted_users[user_of_diff[descents]] = True
  return float(np.mean(~unsorted_users[multi]))


def warn_if_sorted_by_item_id(data: RecData) -> float:
  """Logs a warning when (almost) every sequence is sorted by raw item id (the Sports/Toys quirk)."""
  frac = sorted_by_item_id_fraction(data)
  if frac >= _SORTED_WARN_FRACTION:
    log.warning("%s: %.1f%% of sequences are sorted by raw item id, not by time; the test item is then each "
                "user's largest id. Kept as is (standard files), but results are not next-item-in-time.",
                data.name, 100 * frac)
  return frac


# ---------------------------------------------------------------------------------------------- MovieLens
ML100K_RATINGS, ML100K_ITEMS, ML100K_GENRES = "u.data", "u.item", "u.genre"
ML1M_RATINGS, ML1M_ITEMS = "ratings.dat", "movies.dat"
_ML100K_DEFAULT_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                          "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
                          "Sci-Fi", "Thriller", "War", "Western")


def _split_fields(path, lineno: int, line: str, sep: str, count: int, what: str) -> list[str]:
  fields = line.split(sep)
  if len(fields) < count:
    raise DataError(path, f"expected {count} {sep!r}-separated fields ({what}), got {len(fields)}", lineno)
  return fields


def _read_ml_ratings(path: pathlib.Path, sep: str | None, min_rating: float):
  """(user, item, time) int64 arrays of the ratings >= min_rating, plus the line of each user's first rating."""
  users, items, times, first_line = [], [], [], {}
  for lineno, line in read_lines(path):
    fields = line.split(sep)
    if len(fields) != 4:
      raise DataError(path, f"expected 4 fields (user, item, rating, timestamp), got {len(fields)}", lineno)
    try:
      u, i, r, t = int(fields[0]), int(fields[1]), float(fields[2]), int(fields[3])
    except ValueError:
      raise DataError(path, f"non-numeric field in {line.strip()!r}", lineno) from None
    first_line.setdefault(u, lineno)
    if r >= min_rating:
      users.append(u)
      items.append(i)
      times.append(t)
  return np.array(users, np.int64), np.array(items, np.int64), np.array(times, np.int64), first_line


def _read_ml100k_items(path: pathlib.Path, genre_path: pathlib.Path | None) -> dict[str, dict]:
  genres = list(_ML100K_DEFAULT_GENRES)
  if genre_path is not None:
    genres = []
    for lineno, line in read_lines(genre_path, "latin-1"):
      if line.strip():
        genres.append(_split_fields(genre_path, lineno, line, "|", 2, "genre|index")[0])
  meta = {}
  for lineno, line in read_lines(path, "latin-1"):
    if not line.strip():
      continue
    fields = _split_fields(path, lineno, line, "|", 5 + len(genres), "id|title|date|video date|url|genre flags")
    flags = fields[5:5 + len(genres)]
    if any(f not in ("0", "1") for f in flags):
      raise DataError(path, "genre flags must be 0 or 1", lineno)
    meta[fields[0]] = {"title": fields[1], "categories": [g for g, f in zip(genres, flags) if f == "1"],
                       "release_date": fields[2]}
  return meta


def _read_ml1m_items(path: pathlib.Path) -> dict[str, dict]:
  meta = {}
  for lineno, line in read_lines(path, "latin-1"):
    if not line.strip():
      continue
    fields = _split_fields(path, lineno, line, "::", 3, "id::title::genres")
    meta[fields[0]] = {"title": fields[1], "categories": [g for g in fields[2].split("|") if g]}
  return meta


def load_movielens(data_dir: str | os.PathLike, *, min_rating: float = 0.0, drop_bad_users: bool = False,
                   name: str | None = None) -> RecData:
  """Reads MovieLens 100K or 1M as next-item sequences.

  Each user's ratings (those >= `min_rating`) are sorted by timestamp, ties by numeric item id.
  Users and items are ordered by numeric id; only items that some kept user rated are listed.
  Metadata: `title`, `categories` (genres), and `release_date` for 100K; `{}` when the item file is absent.
  """
  name = name or pathlib.Path(data_dir).resolve().name
  if find_file(data_dir, ML100K_RATINGS):
    ratings_path, sep = _require(data_dir, ML100K_RATINGS), None
    items_path = find_file(data_dir, ML100K_ITEMS)
    meta = _read_ml100k_items(items_path, find_file(data_dir, ML100K_GENRES)) if items_path else None
  elif find_file(data_dir, ML1M_RATINGS):
    ratings_path, sep = _require(data_dir, ML1M_RATINGS), "::"
    items_path = find_file(data_dir, ML1M_ITEMS)
    meta = _read_ml1m_items(items_path) if items_path else None
  else:
    _require(data_dir, ML100K_RATINGS)  # raises, naming the folder or the missing file
    raise AssertionError("unreachable")
  user_R, item_R, time_R, first_line = _read_ml_ratings(ratings_path, sep, min_rating)
  order = np.lexsort((item_R, time_R, user_R))  # by user, then time, then item id
  user_R, item_R = user_R[order], item_R[order]
  cuts = np.flatnonzero(np.diff(user_R)) + 1
  collector = _UserCollector(drop_bad_users, meta.__contains__ if meta is not None else None, dataset=name)
  for u_items in np.split(np.arange(user_R.size), cuts) if user_R.size else []:
    u = int(user_R[u_items[0]])
    collector.add(str(u), [str(i) for i in item_R[u_items]], ratings_path, first_line[u])
  kept_items = sorted({int(i) for s in collector.seqs for i in s})
  item_ids = [str(i) for i in kept_items]
  item_meta = [dict(meta[i]) for i in item_ids] if meta is not None else [{} for _ in item_ids]
  return collector.build(item_ids, item_meta)


def load_dataset(data_dir: str | os.PathLike, **kwargs) -> RecData:
  """Detects the layout of `data_dir` (P5, MovieLens 100K or 1M) and loads it; kwargs go to the reader."""
  _check_folder(data_dir)
  if find_file(data_dir, P5_SEQUENCES):
    return load_p5(data_dir, **kwargs)
  if find_file(data_dir, ML100K_RATINGS) or find_file(data_dir, ML1M_RATINGS):
    return load_movielens(data_dir, **kwargs)
  raise DataError(data_dir, f"unknown layout: found none of {P5_SEQUENCES}, {ML100K_RATINGS}, {ML1M_RATINGS} "
                            "(optionally .gz)")
