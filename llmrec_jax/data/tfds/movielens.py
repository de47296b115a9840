"""TFDS builder for MovieLens 100K and 1M as next-item sequences (GroupLens files, via `manual_dir`).

Raw files (the unzipped GroupLens folder; `.gz` copies accepted):
  100K: u.data (user \\t item \\t rating \\t unix time), u.item (`|` separated, latin-1), u.genre
  1M:   ratings.dat (`UserID::MovieID::Rating::Timestamp`), movies.dat (`MovieID::Title::Genres`, latin-1)

Every rating is an interaction. Users are ordered by numeric id; each user's movies are sorted by
timestamp, ties by numeric movie id (the same rule as `llmrec_jax.data.sources.load_movielens`).
Builder `movielens_sequences`. Configs: `100k`, `1m` (split `train`: one example per user) and `100k_items`, `1m_items`
(split `items`: one example per movie of the movie file, in file order).
"""
from __future__ import annotations

import dataclasses
import os

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from llmrec_jax.data.errors import DataError
from llmrec_jax.data.tfds import raw_files


def _fields(path, line_no: int, line: str, sep: str, count: int) -> list[str]:
  parts = line.rstrip("\r\n").split(sep)
  if len(parts) < count:
    raise DataError(path, f"expected at least {count} {sep!r}-separated fields, got {len(parts)}", line_no)
  return parts


def read_ratings(path: str | os.PathLike, sep: str) -> list[tuple[int, int, float, int]]:
  """(user, item, rating, time) per line; `sep` is '\\t' for u.data and '::' for ratings.dat."""
  out = []
  with raw_files.open_text(path, "latin-1") as f:
    for line_no, line in enumerate(f, start=1):
      if not line.strip():
        continue
      u, i, r, t = _fields(path, line_no, line, sep, 4)[:4]
      try:
        out.append((int(u), int(i), float(r), int(t)))
      except ValueError:
        raise DataError(path, f"non-numeric rating line {line.strip()!r}", line_no) from None
  return out


def user_sequences(ratings: list[tuple[int, int, float, int]]) -> list[tuple[int, list[int], list[float], list[int]]]:
  """(user, items, ratings, times) per user in numeric user order; items by (time, item id)."""
  per_user: dict[int, list[tuple[int, int, float]]] = {}
  for u, i, r, t in ratings:
    per_user.setdefault(u, []).append((t, i, r))
  out = []
  for u in sorted(per_user):
    events = sorted(per_user[u], key=lambda e: (e[0], e[1]))
    out.append((u, [e[1] for e in events], [e[2] for e in events], [e[0] for e in events]))
  return out


def read_movies_100k(item_path, genre_path) -> list[dict]:
  """u.item rows as {'item_id', 'title', 'genres'} (genre flags mapped through u.genre)."""
  names = {}
  with raw_files.open_text(genre_path, "latin-1") as f:
    for line_no, line in enumerate(f, start=1):
      if line.strip():
        name, idx = _fields(genre_path, line_no, line, "|", 2)[:2]
        names[int(idx)] = name
  out = []
  with raw_files.open_text(item_path, "latin-1") as f:
    for line_no, line in enumerate(f, start=1):
      if not line.strip():
        continue
      parts = _fields(item_path, line_no, line, "|", 5 + len(names))
      flags = parts[5:5 + len(names)]
      out.append({"item_id": parts[0], "title": parts[1],
                  "genres": [names[g] for g, flag in enumerate(flags) if flag.strip() == "1"]})
  return out


def read_movies_1m(path) -> list[dict]:
  """movies.dat rows as {'item_id', 'title', 'genres'}."""
  out = []
  with raw_files.open_text(path, "latin-1") as f:
    for line_no, line in enumerate(f, start=1):
      if line.strip():
        movie, title, genres = _fields(path, line_no, line, "::", 3)[:3]
        out.append({"item_id": movie, "title": title, "genres": [g for g in genres.split("|") if g]})
  return out


@dataclasses.dataclass(eq=False)
class MovieLensConfig(tfds.core.BuilderConfig):
  """size: '100k' or '1m'; items: the movie-metadata config."""
  size: str = "100k"
  items: bool = False


class MovieLens(tfds.core.GeneratorBasedBuilder):
  """MovieLens 100K / 1M per-user rating sequences sorted by time, and movie metadata."""

  # TFDS's own catalog already has `movielens` (ratings, not sequences): use a distinct name.
  name = "movielens_sequences"
  VERSION = tfds.core.Version("1.0.0")
  # TFDS finds a builder's folder through `importlib_resources`, which TFDS 4.9 uses without declaring
  # it as a dependency; naming the file directly avoids that import (and the lookup is the same).
  code_path = epath.Path(__file__)
  RELEASE_NOTES = {"1.0.0": "First release: time-sorted sequences (ties by movie id), movie metadata."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Unzip ml-100k.zip (u.data, u.item, u.genre) or ml-1m.zip (ratings.dat, movies.dat) from
  https://grouplens.org/datasets/movielens/ and pass the folder as
  `download_config=tfds.download.DownloadConfig(manual_dir=FOLDER)`.
  """
  BUILDER_CONFIGS = [
      MovieLensConfig(name=size + ("_items" if items else ""), size=size, items=items,
                      description=f"MovieLens {size}: {'movies' if items else 'per-user sequences'}")
      for size in ("100k", "1m") for items in (False, True)
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    if self.builder_config.items:
      features = tfds.features.FeaturesDict({
          "item_id": tfds.features.Text(),
          "title": tfds.features.Text(),
          "genres": tfds.features.Sequence(tfds.features.Text()),
      })
    else:
      features = tfds.features.FeaturesDict({
          "user_id": tfds.features.Text(),
          "item_ids": tfds.features.Sequence(tfds.features.Text()),
          "ratings": tfds.features.Sequence(tfds.features.Scalar(dtype=np.float32)),
          "timestamps": tfds.features.Sequence(tfds.features.Scalar(dtype=np.int64)),
      })
    # disable_shuffling: keep examples in key (user / item position) order; TFDS would otherwise
    # shuffle records by key hash.
    return self.dataset_info_from_configs(features=features, disable_shuffling=True,
                                          homepage="https://grouplens.org/datasets/movielens/")

  def _split_generators(self, dl_manager):
    folder = dl_manager.manual_dir
    small = self.builder_config.size == "100k"
    if self.builder_config.items:
      if small:
        movies = read_movies_100k(raw_files.find_file(folder, "u.item"), raw_files.find_file(folder, "u.genre"))
      else:
        movies = read_movies_1m(raw_files.find_file(folder, "movies.dat"))
      return {"items": self._generate_examples(movies=movies)}
    ratings_path = raw_files.find_file(folder, "u.data" if small else "ratings.dat")
    return {"train": self._generate_examples(ratings_path=ratings_path, sep="\t" if small else "::")}

  def _generate_examples(self, ratings_path=None, sep=None, movies=None):
    """Users (from `ratings_path`) or movies (from `movies`), keyed by position."""
    if movies is not None:
      yield from enumerate(movies)
      return
    for u, (user, items, ratings, times) in enumerate(user_sequences(read_ratings(ratings_path, sep))):
      yield u, {"user_id": str(user), "item_ids": [str(i) for i in items], "ratings": ratings, "timestamps": times}
