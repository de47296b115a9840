"""Training views of (item text, keyword ID) pairs that only copying can fit, not memorising.

A generator trained from random init on one fixed (text -> keyword ID) pair per item learns to
recall each item's ID from a few cues (brand, category) and then writes plausible IDs of the wrong
item. Each training example is therefore a fresh view of its item:

- word dropout: whitespace chunks of the text are dropped at random (at least one is kept) and the
  target keeps only its words still present in the view, so the same item asks for different IDs;
- copy targets: with probability `copy_rate` the target is instead a contiguous run of 1 to
  `max_copy_words` title words of the view (from its first title word with probability
  `prefix_rate`), which teaches the decoder to read its output off the input;
- spliced titles (`splice`): the head of one title joined to the tail of another, with the
  spliced title's own TF-IDF keyword ID as target: an item nobody can have memorised.

Targets are written in the text's own case ("OPI Simmer Shimmer"): the IDs are normalised
(lowercased) afterwards, and a cased target is a plain token copy of the input, whereas a
lowercased one needs a case mapping per piece. Pure host functions, no JAX.
"""
from __future__ import annotations

import re

import collections

import numpy as np

from llmrec_jax.indexing import keywords

_WORD = re.compile(r"\b\w+\b")


def title_chunk_count(text: str, title: str) -> int:
  """Leading whitespace chunks of `text` that hold `title` (`render_item_text` puts the title first);
  all of `text`'s chunks when the title is unknown or not at its start."""
  title = " ".join(title.split())
  if title and text.startswith(title):
    return len(title.split())
  return len(text.split())


def restrict_target(target: str, text: str) -> str:
  """The words of `target` (order and case kept) whose lowercase form is a `\\b\\w+\\b` word of `text`."""
  present = {w.lower() for w in _WORD.findall(text)}
  return " ".join(w for w in _WORD.findall(target) if w.lower() in present)


def drop_chunks(num_chunks: int, rate: float, rng: np.random.Generator) -> np.ndarray:
  """bool [num_chunks]: chunks kept when each is dropped with probability `rate` (>= 1 kept)."""
  keep = rng.random(num_chunks) >= rate
  if num_chunks and not keep.any():
    keep[rng.integers(num_chunks)] = True
  return keep


def copy_span(words: list[str], max_words: int, prefix_rate: float, rng: np.random.Generator) -> str:
  """A contiguous run of 1..`max_words` of `words`, starting at 0 with probability `prefix_rate`."""
  if not words:
    return ""
  length = int(rng.integers(1, min(max_words, len(words)) + 1))
  start = 0 if rng.random() < prefix_rate else int(rng.integers(len(words) - length + 1))
  return " ".join(words[start:start + length])


def augment(text: str, target: str, title_chunks: int, rng: np.random.Generator, *, word_dropout: float,
            copy_rate: float, max_copy_words: int = 4, prefix_rate: float = 0.5) -> tuple[str, str]:
  """One training view (input text, target) of an item.

  Args:
    text: the item's generator input (`render_item_text`).
    target: its keyword ID (words of the title).
    title_chunks: how many leading whitespace chunks of `text` are the title (`title_chunk_count`).
    rng: host random generator (advanced in place).
    word_dropout: probability of dropping each whitespace chunk of `text`.
    copy_rate: probability of a copy target instead of the (restricted) keyword target.
    max_copy_words, prefix_rate: see `copy_span`.
  Returns:
    (view, view_target). Every `\\b\\w+\\b` word of `view_target` occurs in `view` (a copy target is
    even a contiguous run of the view's title words); `(text, target)` itself when the view leaves
    no target word.
  """
  chunks = text.split()
  keep = drop_chunks(len(chunks), word_dropout, rng) if word_dropout > 0 else np.ones(len(chunks), bool)
  view = " ".join(c for c, k in zip(chunks, keep) if k)
  if rng.random() < copy_rate:
    title_view = " ".join(c for c, k in zip(chunks[:title_chunks], keep[:title_chunks]) if k)
    view_target = copy_span(_WORD.findall(title_view), max_copy_words, prefix_rate, rng)
  else:
    view_target = restrict_target(target, view)
  if not view_target:
    return text, target
  return view, view_target


def splice(text: str, title_chunks: int, other_title: str, df: collections.Counter, num_docs: int,
           rng: np.random.Generator) -> tuple[str, str, int]:
  """A synthetic item: `text` whose title part is replaced by a random non-empty head of its own
  title chunks followed by a random non-empty tail of `other_title`'s.

  Args:
    text: an item's generator input, title first.
    title_chunks: its title's whitespace chunks (`title_chunk_count`).
    other_title: another item's title.
    df, num_docs: the catalogue's title document frequencies (`keywords.document_frequencies`).
    rng: host random generator.
  Returns:
    (spliced text, its cased TF-IDF keyword ID `keywords.keyword_id(..., keep_case=True)`, its
    number of title chunks).
  """
  chunks, other = text.split(), other_title.split()
  if not title_chunks or not other:
    return text, "", title_chunks
  head = chunks[:int(rng.integers(1, title_chunks + 1))]
  tail = other[int(rng.integers(len(other))):]
  title = head + tail
  spliced = " ".join(title + chunks[title_chunks:])
  return spliced, keywords.keyword_id(" ".join(title), df, num_docs, keep_case=True), len(title)
