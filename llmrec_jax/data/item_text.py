"""Item metadata -> one line of plain text (the input of the ID generator and of text-based prompts)."""
from __future__ import annotations

import html
from typing import Any, Iterable, Sequence

DEFAULT_FIELDS = ("title", "brand", "categories")
YELP_FIELDS = ("name", "categories")   # Yelp businesses have a `name` instead of a `title`
FIELD_SEP = ". "   # between fields
LIST_SEP = ", "    # between the values of a list field (e.g. categories)


def _flatten(value: Any) -> Iterable[Any]:
  if isinstance(value, (list, tuple)):
    for v in value:
      yield from _flatten(v)
  else:
    yield value


def _clean(value: Any) -> str:
  # Titles keep raw HTML entities (`&amp;`, sometimes double-escaped `&amp;amp;`): unescape until stable.
  text = str(value)
  for _ in range(3):
    unescaped = html.unescape(text)
    if unescaped == text:
      break
    text = unescaped
  return " ".join(text.split())


def field_text(value: Any) -> str:
  """One field as text: scalars as they are, (nested) lists flattened and de-duplicated in order."""
  if value is None:
    return ""
  parts = [p for p in (_clean(v) for v in _flatten(value) if v is not None) if p]
  return LIST_SEP.join(dict.fromkeys(parts))


def render_item_text(meta: dict, fields: Sequence[str] = DEFAULT_FIELDS, max_words: int = 64) -> str:
  """Plain text of one item.

  Args:
    meta: the item's metadata dict (`RecData.item_meta[i]`); absent or empty fields are skipped.
    fields: which fields to use, in this order (e.g. `YELP_FIELDS`).
    max_words: keep at most this many whitespace-separated words (>= 1).
  Returns:
    e.g. "OPI Nail Lacquer, Simmer and Shimmer. OPI. Beauty, Makeup, Nails, Nail Polish";
    "" when none of the fields is present.
  """
  if isinstance(fields, str):
    raise TypeError(f"render_item_text: fields must be a sequence of field names, not the string {fields!r}")
  if max_words < 1:
    raise ValueError(f"render_item_text: max_words must be >= 1, got {max_words}")
  texts = [t for t in (field_text(meta.get(f)) for f in fields) if t]
  words = FIELD_SEP.join(texts).split()
  return " ".join(words[:max_words])
