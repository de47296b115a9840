"""Registry of fixed item-ID schemes: name -> builder of every item's textual ID.

These schemes need no ID generator (the ID-scheme ablations); learned IDs ('bootstrap') come
from the generator and are not registered here.

  reference: the IDs the IDGenRec authors released (`data_dir`), verbatim.
  title: the first `title_words` words of the normalised title (Yelp: name; 8 words leave ~3% of
    Beauty / Toys titles to suffix; items without a title get "item <index>"), lowercase unless
    `keep_case` (`id_tables.normalize_id`).
  random: a seeded random permutation of the sequential numbers (P5 random indexing; the same
    lengths and tokens as sequential, so the pair isolates what the assignment order carries).
  sequential: P5 sequential indexing, "1", "2", ... in order of first appearance over the users'
    training items (`splits.train_items`, users in file order, so no number encodes a valid /
    test position), then items seen only in valid / test.

`build` makes the IDs unique: an empty or already-taken ID (as a string, or as a token sequence
under `encode`) becomes "<id> <n>" with the smallest free n >= 2 ("item <index>" when empty).
An unknown name fails listing the registered ones.
"""
from __future__ import annotations

import logging
from typing import Callable, Optional, Sequence

import numpy as np

from llmrec_jax.data import id_tables, splits
from llmrec_jax.data.records import RecData
from llmrec_jax.indexing import keywords, uniqueness

log = logging.getLogger(__name__)

TITLE_ID_WORDS = 8

# builder(data, data_dir, *, seed, title_words, keep_case) -> one ID text per item index (maybe not
# unique); `keep_case` matters to the builders that normalise text ('title').
Builder = Callable[..., list[str]]
_SCHEMES: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
  """Decorator: registers a builder under `name` (each name once)."""
  def add(fn: Builder) -> Builder:
    if name in _SCHEMES:
      raise ValueError(f"ID scheme {name!r} is already registered")
    _SCHEMES[name] = fn
    return fn
  return add


def names() -> tuple[str, ...]:
  """The registered scheme names, in registration order."""
  return tuple(_SCHEMES)


def get(name: str) -> Builder:
  if name not in _SCHEMES:
    raise ValueError(f"unknown fixed ID scheme {name!r}; known: {names()}")
  return _SCHEMES[name]


def build(name: str, data: RecData, data_dir: str, *,
          encode: Optional[Callable[[str], Sequence[int]]] = None, seed: int = 0,
          title_words: int = TITLE_ID_WORDS, keep_case: bool = False) -> list[str]:
  """N unique, non-empty ID strings of scheme `name` (see the module doc)."""
  texts = get(name)(data, data_dir, seed=seed, title_words=title_words, keep_case=keep_case)
  return make_unique(texts, encode, what=f"{data.name} {name} IDs")


@register("reference")
def reference_ids(data: RecData, data_dir: str, *, seed: int, title_words: int,
                  keep_case: bool) -> list[str]:
  del seed, title_words, keep_case  # verbatim, as released
  ref = id_tables.load_reference_ids(data_dir)
  missing = [i for i in data.item_ids if i not in ref.ids]
  if missing:
    raise ValueError(f"{data_dir}: {len(missing)} items have no reference ID, e.g. {missing[0]}")
  return [ref.ids[i] for i in data.item_ids]


@register("title")
def title_ids(data: RecData, data_dir: str, *, seed: int, title_words: int,
              keep_case: bool) -> list[str]:
  del data_dir, seed
  return [" ".join(id_tables.normalize_id(keywords.item_title(m), keep_case).split()[:title_words])
          for m in data.item_meta]


@register("random")
def random_ids(data: RecData, data_dir: str, *, seed: int, title_words: int,
               keep_case: bool) -> list[str]:
  del data_dir, title_words, keep_case
  rank_N = np.random.default_rng(seed).permutation(data.num_items)[first_appearance_rank(data)]
  return [str(int(r) + 1) for r in rank_N]


@register("sequential")
def sequential_ids(data: RecData, data_dir: str, *, seed: int, title_words: int,
                   keep_case: bool) -> list[str]:
  del data_dir, seed, title_words, keep_case
  return [str(int(r) + 1) for r in first_appearance_rank(data)]


def first_appearance_rank(data: RecData) -> np.ndarray:
  """int [N]: each item's rank in order of first appearance over the users' training items
  (`splits.train_items`, users in file order), then over the held-out items."""
  seqs = list(data.sequences)
  train = [splits.train_items(seq) for seq in seqs]
  order = train + [seq[len(t):] for seq, t in zip(seqs, train)]
  flat = np.concatenate(order + [np.arange(data.num_items)]).astype(np.int64)  # unseen items last
  _, first = np.unique(flat, return_index=True)  # first position of item n, n = 0 .. N-1
  rank_N = np.empty(data.num_items, np.int64)
  rank_N[np.argsort(first, kind="stable")] = np.arange(data.num_items)
  return rank_N


def make_unique(texts: Sequence[str], encode: Optional[Callable[[str], Sequence[int]]], *,
                what: str) -> list[str]:
  """`texts` with empty or taken IDs suffixed (see the module doc); `what` names them in the log."""
  key = (lambda t: tuple(encode(t))) if encode is not None else None
  namespace = uniqueness.IdNamespace(key)
  out, fixed = [], 0
  for i, text in enumerate(texts):
    base = text or f"item {i}"
    if key is not None and not key(base):
      base = f"item {i}"
    candidate, n = base, 2
    while not namespace.try_take(candidate):
      candidate, n = f"{base} {n}", n + 1
    fixed += candidate != text
    out.append(candidate)
  if fixed:
    log.info("%s: %d of %d IDs were empty or taken and got a suffix", what, fixed, len(texts))
  return out
