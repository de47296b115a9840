"""TF-IDF keyword IDs: bootstrap targets for an ID generator trained from random init.

A title's keyword ID is its `k` most distinctive words (TF-IDF over the catalogue's titles),
kept in title order, lowercased and joined by spaces, e.g.
"OPI Nail Lacquer, Simmer and Shimmer, 0.5-Fluid Ounce" -> "opi simmer shimmer".
No JAX here.
"""
from __future__ import annotations

import collections
import math
import re
from typing import Sequence

from llmrec_jax.data import item_text

_WORD = re.compile(r"\b\w+\b")
TITLE_FIELDS = ("title", "name")  # Amazon items have a `title`, Yelp businesses a `name`


def title_words(text: str) -> list[str]:
  """Lowercase `\\b\\w+\\b` words of `text`, in order (the `normalize_id` word rule)."""
  return _WORD.findall(text.lower())


def item_title(meta: dict) -> str:
  """The item's title (`title`, else Yelp's `name`); "" when it has neither."""
  for field in TITLE_FIELDS:
    value = item_text.field_text(meta.get(field))   # unescapes HTML entities such as &amp;
    if value:
      return value
  return ""


def document_frequencies(titles: Sequence[str]) -> collections.Counter:
  """word -> number of titles containing it."""
  df: collections.Counter = collections.Counter()
  for title in titles:
    df.update(set(title_words(title)))
  return df


def num_keywords(num_distinct: int, min_words: int = 3, max_words: int = 5) -> int:
  """How many words a title with `num_distinct` distinct words keeps: half of them, clamped to
  [min_words, max_words], and never more than it has."""
  return min(num_distinct, max(min_words, min(max_words, math.ceil(num_distinct / 2))))


def keyword_id(title: str, df: collections.Counter, num_docs: int, *, min_words: int = 3,
               max_words: int = 5, keep_case: bool = False) -> str:
  """The title's most distinctive words by TF-IDF, in title order.

  Args:
    title: the item title.
    df: `document_frequencies` of the catalogue (words missing from it count as df 0).
    num_docs: number of titles behind `df`.
    min_words, max_words: size range (see `num_keywords`).
    keep_case: write each kept word as it first appears in the title ("OPI Simmer Shimmer"), so
      that it is a token copy of the generator's input; the choice of words is the same.
  Returns:
    lowercase (or title-cased, see `keep_case`) words joined by single spaces; "" for a title
    without words. Score = (1 + log tf) * (log((1 + num_docs) / (1 + df)) + 1) (sublinear tf,
    smoothed idf); ties go to the earlier word.
  """
  if not 1 <= min_words <= max_words:
    raise ValueError(f"keyword_id: need 1 <= min_words ({min_words}) <= max_words ({max_words})")
  surface = _WORD.findall(title) if keep_case else title_words(title)
  words = [w.lower() for w in surface] if keep_case else surface
  tf = collections.Counter(words)
  first_pos, first_form = {}, {}
  for pos, (word, form) in enumerate(zip(words, surface)):
    first_pos.setdefault(word, pos)
    first_form.setdefault(word, form)
  def score(word: str) -> float:
    return (1.0 + math.log(tf[word])) * (math.log((1 + num_docs) / (1 + df.get(word, 0))) + 1.0)
  ranked = sorted(first_pos, key=lambda w: (-score(w), first_pos[w]))
  keep = set(ranked[:num_keywords(len(first_pos), min_words, max_words)])
  return " ".join(first_form[w] for w in first_pos if w in keep)


def keyword_ids(titles: Sequence[str], *, min_words: int = 3, max_words: int = 5,
                keep_case: bool = False) -> list[str]:
  """`keyword_id` of every title, with document frequencies over `titles` themselves."""
  df = document_frequencies(titles)
  return [keyword_id(t, df, len(titles), min_words=min_words, max_words=max_words, keep_case=keep_case)
          for t in titles]


def title_word_share(ids: Sequence[str], titles: Sequence[str]) -> float:
  """Fraction of all ID words (over all IDs) that occur among their own item's words.

  Both sides are split by `title_words` (lowercase `\\b\\w+\\b`, the `normalize_id` rule), so
  `titles` may be the titles or the whole text the generator reads. Every occurrence counts:
  "kroro kroro zzz" for a text with "Kroro" is 2 of 3. 0.0 when no ID has a word.
  """
  _check_pairs("title_word_share", ids, titles)
  found = total = 0
  for tid, title in zip(ids, titles):
    words = title_words(tid)
    vocab = set(title_words(title))
    total += len(words)
    found += sum(w in vocab for w in words)
  return found / total if total else 0.0


def wordless_id_share(ids: Sequence[str], texts: Sequence[str]) -> float:
  """Fraction of IDs with no word from their own item's text (an empty ID counts as one);
  words as in `title_word_share`. 0.0 for no IDs."""
  _check_pairs("wordless_id_share", ids, texts)
  wordless = sum(not set(title_words(tid)) & set(title_words(text)) for tid, text in zip(ids, texts))
  return wordless / len(ids) if ids else 0.0


def _check_pairs(name: str, ids: Sequence[str], texts: Sequence[str]) -> None:
  if len(ids) != len(texts):
    raise ValueError(f"{name}: {len(ids)} ids for {len(texts)} texts")
