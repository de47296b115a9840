"""TFDS builder for the Amazon 2014 review datasets (McAuley lab), built the way P5 / IDGenRec use them.

Raw files (no download here; put them in the `manual_dir`):
  reviews_<Category>_5.json[.gz]  one review a line (JSON; python-literal lines also accepted)
  meta_<Category>.json[.gz]       one item a line, python dict literals (JSON also accepted)

Processing (pure functions below, testable without TFDS):
  1. Read (reviewerID, asin, unixReviewTime); a repeated (user, item) pair keeps its first review.
  2. k-core filter (default 5): repeatedly drop users and items with fewer than k interactions until
     none is left (the `_5` files are already 5-core, so this is a no-op on them, but makes raw dumps safe).
  3. Per-user sequences sorted by review time (stable: ties keep file order), users in order of first
     appearance in the review file.
  4. Item metadata (title, brand, categories as paths) for the kept items, items sorted by asin; an item
     missing from the metadata file gets empty fields. Titles keep raw HTML entities.

Configs: `<category>` (split `train`: one example per user) and `<category>_items` (split `items`:
one example per item), e.g. `amazon2014/beauty` and `amazon2014/beauty_items`.
"""
from __future__ import annotations

import collections
import dataclasses
import os

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from llmrec_jax.data.errors import DataError
from llmrec_jax.data.tfds import raw_files

CATEGORIES = (
    "Amazon_Instant_Video", "Apps_for_Android", "Automotive", "Baby", "Beauty", "Books", "CDs_and_Vinyl",
    "Cell_Phones_and_Accessories", "Clothing_Shoes_and_Jewelry", "Digital_Music", "Electronics",
    "Grocery_and_Gourmet_Food", "Health_and_Personal_Care", "Home_and_Kitchen", "Kindle_Store",
    "Movies_and_TV", "Musical_Instruments", "Office_Products", "Patio_Lawn_and_Garden", "Pet_Supplies",
    "Sports_and_Outdoors", "Tools_and_Home_Improvement", "Toys_and_Games", "Video_Games",
)


def read_reviews(path: str | os.PathLike) -> list[tuple[str, str, int]]:
  """(user, item, unix time) per review, in file order, first review of each (user, item) pair only."""
  out, seen = [], set()
  for line_no, rec in raw_files.iter_records(path):
    try:
      user, item, time = str(rec["reviewerID"]), str(rec["asin"]), int(rec["unixReviewTime"])
    except KeyError as e:
      raise DataError(path, f"review without field {e}", line_no) from None
    except (TypeError, ValueError):
      raise DataError(path, f"unixReviewTime {rec.get('unixReviewTime')!r} is not an integer", line_no) from None
    if (user, item) not in seen:
      seen.add((user, item))
      out.append((user, item, time))
  return out


def k_core(reviews: list[tuple[str, str, int]], k: int = 5) -> list[tuple[str, str, int]]:
  """The reviews left after repeatedly removing users and items with fewer than `k` of them (order kept)."""
  if k < 1:
    raise ValueError(f"k_core: k must be >= 1, got {k}")
  while True:
    users = collections.Counter(r[0] for r in reviews)
    items = collections.Counter(r[1] for r in reviews)
    kept = [r for r in reviews if users[r[0]] >= k and items[r[1]] >= k]
    if len(kept) == len(reviews):
      return kept
    reviews = kept


def user_sequences(reviews: list[tuple[str, str, int]]) -> list[tuple[str, list[str], list[int]]]:
  """(user, items, times) per user: users by first appearance, items by time (stable on file order)."""
  per_user: dict[str, list[tuple[int, str]]] = {}
  for user, item, time in reviews:
    per_user.setdefault(user, []).append((time, item))
  out = []
  for user, events in per_user.items():
    events.sort(key=lambda e: e[0])  # stable: equal times keep file order
    out.append((user, [e[1] for e in events], [e[0] for e in events]))
  return out


def read_item_meta(path: str | os.PathLike, keep: set[str]) -> dict[str, dict]:
  """asin -> {'title', 'brand', 'categories'} for the asins in `keep` (first line wins)."""
  meta = {}
  for line_no, rec in raw_files.iter_records(path):
    asin = rec.get("asin")
    if asin is None:
      raise DataError(path, "metadata line without 'asin'", line_no)
    if asin not in keep or asin in meta:
      continue
    cats = rec.get("categories") or []
    if not all(isinstance(c, (list, tuple)) for c in cats):
      raise DataError(path, f"'categories' of {asin} is not a list of category paths", line_no)
    meta[asin] = {"title": str(rec.get("title") or ""), "brand": str(rec.get("brand") or ""),
                  "categories": [[str(x) for x in c] for c in cats]}
  return meta


def config_name(category: str, items: bool = False) -> str:
  return category.lower() + ("_items" if items else "")


@dataclasses.dataclass(eq=False)
class Amazon2014Config(tfds.core.BuilderConfig):
  """category: the McAuley file stem (e.g. `Beauty`); items: the metadata config; k: the core size."""
  category: str = "Beauty"
  items: bool = False
  k: int = 5


class Amazon2014(tfds.core.GeneratorBasedBuilder):
  """Amazon 2014 5-core user sequences (time ordered) and item metadata."""

  VERSION = tfds.core.Version("1.0.0")
  # TFDS finds a builder's folder through `importlib_resources`, which TFDS 4.9 uses without declaring
  # it as a dependency; naming the file directly avoids that import (and the lookup is the same).
  code_path = epath.Path(__file__)
  RELEASE_NOTES = {"1.0.0": "First release: k-core sequences sorted by review time, item metadata."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Download `reviews_<Category>_5.json.gz` and `meta_<Category>.json.gz` of the 2014 Amazon review data
  (McAuley lab, https://jmcauley.ucsd.edu/data/amazon/) into one folder and pass it as
  `download_config=tfds.download.DownloadConfig(manual_dir=FOLDER)`.
  """
  BUILDER_CONFIGS = [
      Amazon2014Config(name=config_name(c, items), category=c, items=items,
                       description=f"{c}: {'item metadata' if items else 'per-user sequences'}")
      for c in CATEGORIES for items in (False, True)
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    if self.builder_config.items:
      features = tfds.features.FeaturesDict({
          "item_id": tfds.features.Text(),
          "title": tfds.features.Text(),
          "brand": tfds.features.Text(),
          "categories": tfds.features.Sequence(tfds.features.Sequence(tfds.features.Text())),
      })
    else:
      features = tfds.features.FeaturesDict({
          "user_id": tfds.features.Text(),
          "item_ids": tfds.features.Sequence(tfds.features.Text()),
          "timestamps": tfds.features.Sequence(tfds.features.Scalar(dtype=np.int64)),
      })
    # disable_shuffling: keep examples in key (user / item position) order; TFDS would otherwise
    # shuffle records by key hash.
    return self.dataset_info_from_configs(features=features, disable_shuffling=True,
                                          homepage="https://jmcauley.ucsd.edu/data/amazon/")

  def _split_generators(self, dl_manager):
    folder = dl_manager.manual_dir
    cat = self.builder_config.category
    reviews = raw_files.find_file(folder, f"reviews_{cat}_5.json", f"reviews_{cat}.json")
    if self.builder_config.items:
      return {"items": self._generate_examples(reviews, raw_files.find_file(folder, f"meta_{cat}.json"))}
    return {"train": self._generate_examples(reviews)}

  def _generate_examples(self, reviews_path, meta_path=None):
    """Users (sequences config) or kept items (items config, `meta_path` given), keyed by position."""
    sequences = user_sequences(k_core(read_reviews(reviews_path), self.builder_config.k))
    if meta_path is None:
      for u, (user, items, times) in enumerate(sequences):
        yield u, {"user_id": user, "item_ids": items, "timestamps": times}
      return
    kept = sorted({item for _, items, _ in sequences for item in items})
    meta = read_item_meta(meta_path, set(kept))
    empty = {"title": "", "brand": "", "categories": []}
    for i, asin in enumerate(kept):
      yield i, {"item_id": asin, **meta.get(asin, empty)}
