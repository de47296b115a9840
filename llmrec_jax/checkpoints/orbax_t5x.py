"""Orbax checkpoints in T5X's on-disk layout: `<dir>/checkpoint_<step>/state` (+ `metadata`).

The state item holds T5X's pytree `{'target': params, 'state': {'step', 'param_states'}}`, so a
T5X user can point `RestoreCheckpointConfig.path` at our params. A JSON `metadata` item carries
what is not an array (ID tables, data position, configs). Orbax writes to a temporary folder and
renames it when complete, so a crash never leaves a partial `checkpoint_<step>`.
"""
from __future__ import annotations

import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp

from llmrec_jax.train_state import TrainState

STEP_PREFIX = "checkpoint"


def to_t5x_tree(state: TrainState) -> dict[str, Any]:
  return {"target": state.params, "state": {"step": state.step, "param_states": state.opt_state}}


def from_t5x_tree(tree: dict[str, Any]) -> TrainState:
  return TrainState(step=tree["state"]["step"], params=tree["target"],
                    opt_state=tree["state"]["param_states"])


def _abstract(tree: Any) -> Any:
  """ShapeDtypeStructs carrying each leaf's sharding, so restore lands where the template lives."""
  def leaf(x):
    sharding = getattr(x, "sharding", None)
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)
  return jax.tree_util.tree_map(leaf, tree)


class CheckpointManager:
  """Save/restore with a keep-N policy. Thin wrapper over `ocp.CheckpointManager`."""

  def __init__(self, directory: str, *, keep: Optional[int] = None):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(step_prefix=STEP_PREFIX, max_to_keep=keep, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=("state", "metadata"))

  def save(self, step: int, state: Any, metadata: Optional[dict[str, Any]] = None) -> None:
    """Writes `checkpoint_<step>/{state,metadata}` and waits until it is complete on disk."""
    args = {"state": ocp.args.PyTreeSave(state)}
    args["metadata"] = ocp.args.JsonSave(metadata or {})
    self._manager.save(int(step), args=ocp.args.Composite(**args), force=True)
    self._manager.wait_until_finished()

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def restore(self, template: Any, step: Optional[int] = None) -> tuple[Any, dict[str, Any]]:
    """Restores (state, metadata) at `step` (default latest) into `template`'s structure,
    shapes, dtypes and shardings. Raises FileNotFoundError when there is no checkpoint."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no {STEP_PREFIX}_<step> found in {self.directory}")
    abstract = _abstract(template)
    restored = self._manager.restore(int(step), args=ocp.args.Composite(
        state=ocp.args.PyTreeRestore(
            abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract)),
        metadata=ocp.args.JsonRestore()))
    return restored["state"], dict(restored["metadata"] or {})

  def close(self) -> None:
    self._manager.close()
