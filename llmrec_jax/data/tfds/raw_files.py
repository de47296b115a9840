"""Reading the raw public files the TFDS builders start from (plain or gzipped, located errors)."""
from __future__ import annotations

import ast
import gzip
import json
import os
import pathlib
from typing import Iterator

from llmrec_jax.data.errors import DataError


def find_file(folder: str | os.PathLike, *names: str) -> pathlib.Path:
  """The first of `names` (each tried as given and with `.gz`) that exists in `folder`."""
  folder = pathlib.Path(folder)
  for name in names:
    for candidate in (folder / name, folder / f"{name}.gz"):
      if candidate.is_file():
        return candidate
  tried = ", ".join(f"{n}[.gz]" for n in names)
  raise DataError(folder, f"none of {tried} found (put the raw files in the manual_dir)")


def open_text(path: str | os.PathLike, encoding: str = "utf-8"):
  """Text handle on `path`, gunzipping when the name ends in `.gz`."""
  path = pathlib.Path(path)
  if path.suffix == ".gz":
    return gzip.open(path, "rt", encoding=encoding, newline="\n")
  return open(path, "rt", encoding=encoding, newline="\n")


def iter_records(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
  """(1-based line, dict) per non-empty line of a JSON-lines or python-literal-lines file.

  The 2014 Amazon review files are strict JSON; the metadata files are python dict literals
  (single quotes), which `ast.literal_eval` reads safely. Both are accepted in both files.
  """
  with open_text(path) as f:
    for line_no, line in enumerate(f, start=1):
      line = line.strip()
      if not line:
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        try:
          record = ast.literal_eval(line)
        except (ValueError, SyntaxError) as e:
          raise DataError(path, f"neither JSON nor a python literal ({type(e).__name__}: {e})", line_no) from None
      if not isinstance(record, dict):
        raise DataError(path, f"expected an object, got {type(record).__name__}", line_no)
      yield line_no, record
