"""Textual-ID tables: raw item / user id -> textual ID (`\\b\\w+\\b` words), as files and in memory.

File format (the IDGenRec one): one entry a line, `RAW_ID textual id words` (split on the first
whitespace), optionally gzipped. Reference IDs released by the IDGenRec authors ship as
`reference_textual_ids.txt.gz` in each dataset folder.
"""
from __future__ import annotations

import dataclasses
import enum
import gzip
import logging
import os
import pathlib
import re

from llmrec_jax.data.errors import DataError
from llmrec_jax.data.sources import read_lines

log = logging.getLogger(__name__)

REFERENCE_IDS = "reference_textual_ids.txt.gz"
_WORD = re.compile(r"\b\w+\b")


class IdKind(str, enum.Enum):
  ITEM = "item"
  USER = "user"


def normalize_id(text: str, keep_case: bool = False) -> str:
  """The `\\b\\w+\\b` words of `text` joined by single spaces, lowercased unless `keep_case`.

  `keep_case=True` is the official normalisation of generated IDs (IDGenRec's
  `" ".join(re.findall(r"\\b\\w+\\b", decoded))` keeps case); lowercasing merges IDs that differ
  only in case ("OPI Top Coat" / "opi top coat").
  """
  return " ".join(_WORD.findall(text if keep_case else text.lower()))


@dataclasses.dataclass(frozen=True, eq=False)
class IdTable:
  """Textual IDs of one kind at one phase of alternating training.

  Attributes:
    kind: "item" or "user".
    phase: cumulative ID-training epochs when the table was made (0 = initial IDs).
    ids: raw id -> textual ID, in file / insertion order.
  """
  kind: str
  phase: int
  ids: dict[str, str]

  def __post_init__(self):
    object.__setattr__(self, "kind", IdKind(self.kind).value)  # "item" | "user"; anything else raises
    if self.phase < 0:
      raise ValueError(f"IdTable: phase must be >= 0, got {self.phase}")
    for raw, text in self.ids.items():
      if not raw or any(c.isspace() for c in raw):
        raise ValueError(f"IdTable: raw id {raw!r} is empty or contains whitespace")
      if "\n" in text or text != text.strip():
        raise ValueError(f"IdTable: textual ID {text!r} of {raw!r} spans lines or has outer whitespace")

  def __len__(self) -> int:
    return len(self.ids)

  def __getitem__(self, raw_id: str) -> str:
    return self.ids[raw_id]

  def inverse(self) -> dict[str, str]:
    """Textual ID -> raw id. Raises ValueError naming the clash when two raw ids share a textual ID."""
    inv: dict[str, str] = {}
    for raw, text in self.ids.items():
      if text in inv:
        raise ValueError(f"{self.kind} IdTable (phase {self.phase}): textual ID {text!r} is shared by "
                         f"{inv[text]!r} and {raw!r}")
      inv[text] = raw
    return inv

  def validate_unique(self) -> None:
    """Raises ValueError when two raw ids share a textual ID."""
    self.inverse()

  def for_ids(self, raw_ids) -> list[str]:
    """Textual IDs of `raw_ids` in order; raises KeyError naming the first raw id without one."""
    missing = [r for r in raw_ids if r not in self.ids]
    if missing:
      raise KeyError(f"{self.kind} IdTable (phase {self.phase}): no textual ID for {missing[0]!r} "
                     f"({len(missing)} missing)")
    return [self.ids[r] for r in raw_ids]

  def save(self, path: str | os.PathLike) -> pathlib.Path:
    """Writes `RAW_ID textual id` lines (gzipped when `path` ends in .gz)."""
    path = pathlib.Path(path)
    text = "".join(f"{raw} {tid}\n" for raw, tid in self.ids.items())
    if path.suffix == ".gz":
      with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(text)
    else:
      path.write_text(text, encoding="utf-8")
    return path

  @classmethod
  def load(cls, path: str | os.PathLike, kind: str, phase: int = 0, *, allow_empty: bool = False) -> IdTable:
    """Reads a `RAW_ID textual id words` file.

    Empty lines and duplicate raw ids raise DataError, and so does a raw id without textual ID unless
    `allow_empty` (the released reference files have one such line each in Beauty and Yelp).
    """
    path = pathlib.Path(path)
    if not path.is_file():
      raise DataError(path, "missing file")
    ids: dict[str, str] = {}
    for lineno, line in read_lines(path):
      parts = line.split(None, 1)
      if not parts:
        raise DataError(path, "empty line (expected 'RAW_ID textual id words')", lineno)
      if len(parts) == 1 and not allow_empty:
        raise DataError(path, f"raw id {parts[0]!r} has no textual ID (expected 'RAW_ID textual id words')", lineno)
      raw, text = parts[0], " ".join(parts[1].split()) if len(parts) == 2 else ""
      if raw in ids:
        raise DataError(path, f"duplicate raw id {raw!r}", lineno)
      ids[raw] = text
    return cls(kind=kind, phase=phase, ids=ids)


def load_reference_ids(data_dir: str | os.PathLike) -> IdTable:
  """The item IDs released by the IDGenRec authors (`data_dir/reference_textual_ids.txt.gz`), phase 0.

  Kept verbatim: the released Beauty and Yelp files each give one item an empty textual ID; that
  is allowed here (it is still unique) and logged.
  """
  table = IdTable.load(pathlib.Path(data_dir) / REFERENCE_IDS, kind="item", phase=0, allow_empty=True)
  empty = [raw for raw, text in table.ids.items() if not text]
  if empty:
    log.warning("%s: %d item(s) have an empty reference textual ID (kept as is): %s", data_dir, len(empty),
                ", ".join(empty[:5]))
  return table
