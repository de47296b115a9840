"""Relative paths that name the checkout's `../shared` folder, resolved from any directory.

The gin files name data and vocabularies as `../shared/...`, relative to the repository root
(where `make` and the README's commands run). `resolve` keeps a path that exists as given
(relative to the working directory) and otherwise resolves a `../shared/...` path against the
checkout that holds this package, so a run started from another directory finds the same files.
"""
from __future__ import annotations

import os
from typing import Optional

# llmrec_jax/data/shared_paths.py -> the checkout (an editable install's repository root).
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED_PREFIX = os.path.join(os.pardir, "shared") + os.sep


def resolve(path: Optional[str], repo_root: str = REPO_ROOT) -> Optional[str]:
  """`path` as given when it is empty, absolute, exists, or does not start with `../shared/`;
  else the same path under `repo_root`'s sibling `shared/` (whether or not that exists, so the
  error that follows names where it was looked for)."""
  if not path or os.path.isabs(path) or os.path.exists(path):
    return path
  if not os.path.normpath(path).startswith(SHARED_PREFIX):
    return path
  return os.path.normpath(os.path.join(repo_root, path))
