"""Restoring the newest checkpoint that is whole, across the managers of one run.

A run keeps several checkpoint folders written at the same step (e.g. `recommender/` and
`generator/`, or `recommender/` and `best/`). `restore_newest_good` tries the steps that every
folder holds, newest first. A step whose state or metadata cannot be read (a truncated array
file, garbage JSON, a deleted `state/`, shapes that do not match the model) is reported with a
warning that names the folder and the reason, set aside by renaming each of its folders to
`checkpoint_<step>.corrupt` (Orbax ignores that name; nothing is deleted), and the next older
step is tried. So a bad latest checkpoint costs the steps since the previous one, not the run.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Mapping, Optional

from llmrec_jax.checkpoints import orbax_t5x

log = logging.getLogger(__name__)

CORRUPT_SUFFIX = ".corrupt"


class NoGoodCheckpointError(RuntimeError):
  """Checkpoints exist but none of them can be restored."""


def _set_aside(manager: orbax_t5x.CheckpointManager, step: int) -> Optional[str]:
  """Renames `checkpoint_<step>` to `checkpoint_<step>.corrupt[.n]`; returns the new path."""
  path = manager.step_path(step)
  if not os.path.isdir(path):
    return None
  target, n = path + CORRUPT_SUFFIX, 1
  while os.path.exists(target):
    n += 1
    target = f"{path}{CORRUPT_SUFFIX}.{n}"
  os.rename(path, target)
  return target


def restore_newest_good(items: Mapping[str, tuple[orbax_t5x.CheckpointManager, Any]]
                        ) -> Optional[tuple[int, dict[str, tuple[Any, dict[str, Any]]]]]:
  """Restores every item at the newest step that all of them hold and that reads back whole.

  Args:
    items: {name: (manager, template)}; each template gives the structure, shapes, dtypes and
      shardings of that manager's state (see `CheckpointManager.restore`).
  Returns:
    (step, {name: (state, metadata)}), or None when the folders hold no common step.
  Raises:
    NoGoodCheckpointError: checkpoints exist, but every one failed (each was set aside).
  """
  managers = {name: manager for name, (manager, _) in items.items()}
  steps = sorted(set.intersection(*(set(m.all_steps()) for m in managers.values())), reverse=True)
  failures = []
  for step in steps:
    restored, error = {}, None
    for name, (manager, template) in items.items():
      try:
        restored[name] = manager.restore(template, step)
      except orbax_t5x.CheckpointReadError as e:
        error = e
        break
    if error is None:
      if failures:
        log.warning("resuming from checkpoint %d, the newest that reads back whole", step)
      return step, restored
    moved = [p for p in (_set_aside(m, step) for m in managers.values()) if p]
    for manager in managers.values():
      manager.reload()
    log.warning("%s; set aside as %s; trying an older checkpoint", error, ", ".join(moved))
    failures.append(str(error))
  if failures:
    raise NoGoodCheckpointError("no checkpoint could be restored (each was set aside as "
                                f"checkpoint_<step>{CORRUPT_SUFFIX}):\n  " + "\n  ".join(failures))
  return None
