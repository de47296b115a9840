"""The one error type of the data package: bad input, located by file and line."""
from __future__ import annotations

import os


class DataError(ValueError):
  """Bad or missing input data. The message names the file, the 1-based line and the problem.

  Attributes:
    path: the offending file (or folder), as given.
    line: 1-based line number, or None when the problem is not tied to a line.
    problem: what is wrong, in words.
  """

  def __init__(self, path: str | os.PathLike, problem: str, line: int | None = None):
    self.path = str(path)
    self.line = line
    self.problem = problem
    where = self.path if line is None else f"{self.path}, line {line}"
    super().__init__(f"{where}: {problem}")
