"""Published numbers quoted in the data README ("Published numbers on these splits").

The table looks like this (HR@5 / NDCG@5 / HR@10 / NDCG@10 per cell, as the heading says):

  ## Published numbers on these splits (full ranking, HR@5 / NDCG@5 / HR@10 / NDCG@10)
  | model | Beauty | Sports | Toys |
  |---|---|---|---|
  | SASRec (BCE loss, as quoted by TIGER) | .0387 .0249 .0605 .0318 | ... | ... |
  | IDGenRec official code, rerun by a user | hit@5 .0634, hit@10 .0832 | | |

A cell is four numbers, "-" or empty (not reported), or labelled values ("hit@5 .0634, hit@10
.0832"). Anything else, or a changed heading / column order, raises a ValueError naming the file
and line: the quoted numbers must never be read wrongly in silence.
"""
from __future__ import annotations

import os
import re

HEADING = "## Published numbers on these splits"
METRICS = ("hit@5", "ndcg@5", "hit@10", "ndcg@10")
_HEADING_ORDER = "HR@5 / NDCG@5 / HR@10 / NDCG@10"
_NUMBER = r"(?:0?\.\d+|[01](?:\.\d+)?)"
_LABELLED = re.compile(rf"^(hit|hr|ndcg)@(5|10)\s+({_NUMBER})$", re.IGNORECASE)

# {model label: {dataset (lowercase column name): {metric: value}}}
Published = dict[str, dict[str, dict[str, float]]]


def parse_published(path: str | os.PathLike) -> Published:
  """The published-numbers table of the README at `path`.

  Returns:
    {model label as written: {dataset: {metric: value}}}, datasets being the lowercased column
    names ("beauty", "sports", "toys"); a cell that reports nothing gives no dataset entry.
  Raises:
    ValueError naming `path:line` when the heading, the header row or a cell is not as expected.
  """
  with open(path, encoding="utf-8") as f:
    lines = f.read().splitlines()
  start = next((i for i, line in enumerate(lines) if line.startswith(HEADING)), None)
  if start is None:
    raise ValueError(f"{path}: no heading starting with {HEADING!r}")
  if _HEADING_ORDER not in lines[start]:
    raise ValueError(f"{path}:{start + 1}: the heading no longer says the cells are {_HEADING_ORDER!r}")
  rows = []
  for i in range(start + 1, len(lines)):
    if lines[i].startswith("|"):
      rows.append((i + 1, lines[i]))
    elif rows or lines[i].startswith("#"):
      break  # the table ended, or the next section began
  if len(rows) < 3:
    raise ValueError(f"{path}:{start + 1}: expected a markdown table (header, separator, rows) under the heading")
  (header_line, header), (sep_line, sep) = rows[0], rows[1]
  columns = _cells(header)
  if not columns or columns[0].lower() != "model" or len(columns) < 2:
    raise ValueError(f"{path}:{header_line}: header must be '| model | <dataset> | ... |', got {header!r}")
  if not all(re.fullmatch(r":?-+:?", c) for c in _cells(sep)) or len(_cells(sep)) != len(columns):
    raise ValueError(f"{path}:{sep_line}: expected the separator row of a {len(columns)}-column table")
  datasets = [c.lower() for c in columns[1:]]
  out: Published = {}
  for lineno, row in rows[2:]:
    cells = _cells(row)
    if len(cells) != len(columns):
      raise ValueError(f"{path}:{lineno}: {len(cells)} cells, the header has {len(columns)}")
    label = cells[0]
    if not label or label in out:
      raise ValueError(f"{path}:{lineno}: empty or repeated model label {label!r}")
    out[label] = {}
    for dataset, cell in zip(datasets, cells[1:]):
      try:
        values = parse_cell(cell)
      except ValueError as e:
        raise ValueError(f"{path}:{lineno}: {label!r} / {dataset}: {e}") from None
      if values:
        out[label][dataset] = values
  return out


def parse_cell(cell: str) -> dict[str, float]:
  """{metric: value} of one cell: four numbers in `METRICS` order, labelled values, or {} for
  "-" / empty. Raises ValueError otherwise."""
  cell = cell.strip()
  if cell in ("", "-", "–"):
    return {}
  parts = cell.split()
  if len(parts) == len(METRICS) and all(re.fullmatch(_NUMBER, p) for p in parts):
    return {m: float(p) for m, p in zip(METRICS, parts)}
  out = {}
  for piece in cell.split(","):
    m = _LABELLED.match(piece.strip())
    if not m:
      raise ValueError(f"cannot read {cell!r}: expected 4 numbers (HR@5 NDCG@5 HR@10 NDCG@10), "
                       f"'-', or labelled values such as 'hit@5 .0634, hit@10 .0832'")
    name = f"{'hit' if m.group(1).lower() in ('hit', 'hr') else 'ndcg'}@{m.group(2)}"
    out[name] = float(m.group(3))
  return out


def _cells(row: str) -> list[str]:
  row = row.strip()
  if not (row.startswith("|") and row.endswith("|")):
    return []
  return [c.strip() for c in row[1:-1].split("|")]
