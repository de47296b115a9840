"""What a run computes before its first training step, kept in MODEL_DIR so a resumed run skips it.

Two things cost minutes before training starts: bootstrapping the ID generator (21 minutes on
Beauty at `bootstrap_steps=2000` here) and writing every item's and user's initial ID with it.
`train` saves both once they are done, and on a restart in the same MODEL_DIR loads them instead
of recomputing, before any checkpoint is restored:
  - `bootstrap/`: the bootstrapped generator's params (an Orbax checkpoint in T5X's layout,
    metadata = the bootstrap's stats);
  - `initial_ids.json`: the initial item and user IDs and the assigner's stats.
Both are deterministic given the config and seed, so loading them gives the run the same inputs
as recomputing them would. Each is saved with a `key` (the settings it depends on); a saved one
whose key differs from the run's is ignored with a warning and recomputed.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Callable, Optional

from llmrec_jax.checkpoints import layout, orbax_t5x

log = logging.getLogger(__name__)

INITIAL_IDS = "initial_ids.json"


def _matches(saved_key: Any, key: dict[str, Any], path: str) -> bool:
  if saved_key == key:
    return True
  log.warning("%s was made with %s, this run has %s: recomputing it", path, saved_key, key)
  return False


def load_bootstrap(model_dir: str, template: Callable[[], Any],
                   key: dict[str, Any]) -> Optional[tuple[Any, dict[str, Any]]]:
  """(params, stats) of the bootstrapped generator saved in `model_dir` with this `key`, or None;
  `template()` gives the params' structure, shapes and dtypes (called only when one is saved)."""
  path = layout.bootstrap_root(model_dir)
  if not os.path.isdir(path):
    return None
  manager = orbax_t5x.CheckpointManager(path, keep=1)
  if manager.latest_step() is None:
    return None
  tree, meta = manager.restore({"target": template()})
  if not _matches(meta.get("key"), key, path):
    return None
  log.warning("loaded the bootstrapped generator from %s (skipping the bootstrap)", path)
  return tree["target"], meta["stats"]


def save_bootstrap(model_dir: str, params: Any, stats: dict[str, Any], key: dict[str, Any]) -> None:
  manager = orbax_t5x.CheckpointManager(layout.bootstrap_root(model_dir), keep=1)
  manager.save(int(stats.get("steps", 0)), {"target": params}, {"stats": stats, "key": key})


def load_initial_ids(model_dir: str, key: dict[str, Any]) -> Optional[dict[str, Any]]:
  """{'item_ids', 'user_ids', 'stats'} saved in `model_dir` with this `key`, or None."""
  path = os.path.join(model_dir, INITIAL_IDS)
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as f:
    try:
      saved = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}: not valid JSON ({e}); delete it to recompute the initial IDs") from e
  if not _matches(saved.get("key"), key, path):
    return None
  log.warning("loaded the initial IDs from %s (skipping ID assignment)", path)
  return saved


def save_initial_ids(model_dir: str, item_ids: list[str], user_ids: list[str],
                     stats: dict[str, Any], key: dict[str, Any]) -> None:
  """Writes `initial_ids.json` atomically (a temporary file renamed over it)."""
  path = os.path.join(model_dir, INITIAL_IDS)
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    json.dump({"item_ids": list(item_ids), "user_ids": list(user_ids), "stats": stats, "key": key}, f)
  os.replace(path + ".tmp", path)
