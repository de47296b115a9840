"""Orbax checkpoints in T5X's on-disk layout: `<dir>/checkpoint_<step>/state` (+ `metadata`).

The state item holds T5X's pytree `{'target': params, 'state': {'step', 'param_states'}}`, so a
T5X user can point `RestoreCheckpointConfig.path` at our params. A JSON `metadata` item carries
what is not an array (ID tables, data position, configs), and `model_config`: the network's
`T5Config` (JSON) when the manager was given one, so a loader rebuilds the very network that
was saved. Orbax writes to a temporary folder and renames it when complete, so a crash never
leaves a partial `checkpoint_<step>`. Which root holds which model of a run: `layout`.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp

from llmrec_jax.network import T5Config
from llmrec_jax.training.train_state import TrainState

STEP_PREFIX = "checkpoint"
MODEL_CONFIG = "model_config"  # metadata key of the saved network's T5Config


class CheckpointReadError(RuntimeError):
  """A checkpoint that exists but cannot be restored; the message names its folder and why."""


class CheckpointMismatchError(ValueError):
  """A readable checkpoint whose arrays do not fit the model (another run's sizes)."""


def step_dir(root: str, step: int) -> str:
  """`<root>/checkpoint_<step>`: one saved step of a checkpoint root."""
  return os.path.join(root, f"{STEP_PREFIX}_{int(step)}")


def all_steps(root: str) -> list[int]:
  """Steps saved whole under `root`, ascending (none when `root` does not exist; nothing is
  created). Orbax's temporary folders and `fail_safe`'s set-aside ones do not count."""
  if not os.path.isdir(root):
    return []
  pattern = re.compile(rf"{STEP_PREFIX}_(\d+)")
  return sorted(int(m.group(1)) for m in map(pattern.fullmatch, os.listdir(root))
                if m and os.path.isdir(os.path.join(root, m.group(0))))


def latest_step(root: str) -> Optional[int]:
  steps = all_steps(root)
  return steps[-1] if steps else None


def config_to_json(config: T5Config) -> dict[str, Any]:
  """`dataclasses.asdict(config)` with the dtype as its name: JSON for checkpoint metadata."""
  return {**dataclasses.asdict(config), "dtype": config.dtype.name}


def config_from_json(fields: Any, where: str) -> T5Config:
  """The `T5Config` of `config_to_json`; fails naming `where` (the metadata's folder)."""
  if not isinstance(fields, dict):
    raise CheckpointReadError(f"{where}: {MODEL_CONFIG} is a {type(fields).__name__}, not a JSON object")
  try:
    return T5Config(**fields)
  except (TypeError, ValueError) as e:
    raise CheckpointReadError(f"{where}: {MODEL_CONFIG} is not a T5Config: {e}") from e


def restore_metadata(path: str) -> dict[str, Any]:
  """The JSON metadata of the saved step folder `path` (`step_dir`)."""
  return ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(os.path.join(path, "metadata"))


def restore_params(path: str) -> Any:
  """The params (`target`) of T5X's state tree in the saved step folder `path`, as stored (no
  template: host arrays)."""
  return ocp.PyTreeCheckpointer().restore(os.path.join(path, "state"))["target"]


def saved_model_config(path: str, metadata: Optional[dict[str, Any]] = None) -> Optional[T5Config]:
  """The `T5Config` saved with the step folder `path` (its `metadata`, read when not given), or
  None for a checkpoint saved without one."""
  metadata = restore_metadata(path) if metadata is None else metadata
  if MODEL_CONFIG not in metadata:
    return None
  return config_from_json(metadata[MODEL_CONFIG], f"{path}/metadata")


def to_t5x_tree(state: TrainState) -> dict[str, Any]:
  return {"target": state.params, "state": {"step": state.step, "param_states": state.opt_state}}


def from_t5x_tree(tree: dict[str, Any]) -> TrainState:
  return TrainState(step=tree["state"]["step"], params=tree["target"],
                    opt_state=tree["state"]["param_states"])


def _first_line(error: Exception, limit: int = 300) -> str:
  text = str(error).split(" See full TensorStore details")[0].strip().splitlines()
  line = f"{type(error).__name__}: {text[0] if text else ''}"
  return line if len(line) <= limit else line[:limit] + "..."


def _path_str(path: tuple[Any, ...]) -> str:
  """'state/param_states/0/mu/...': the same for a tuple, list, namedtuple or dict on either side
  (Orbax's stored tree may hold a container of another kind than the live state)."""
  parts = (getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))) for k in path)
  return "/".join(str(p) for p in parts)


def _abstract(tree: Any) -> Any:
  """ShapeDtypeStructs carrying each leaf's sharding, so restore lands where the template lives."""
  def leaf(x):
    sharding = getattr(x, "sharding", None)
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)
  return jax.tree_util.tree_map(leaf, tree)


class CheckpointManager:
  """Save/restore with a keep-N policy. Thin wrapper over `ocp.CheckpointManager`.

  With `model_config`, every save also records it in the metadata (`MODEL_CONFIG`)."""

  def __init__(self, directory: str, *, keep: Optional[int] = None,
               model_config: Optional[T5Config] = None):
    self.directory = os.path.abspath(directory)
    self._model_config = None if model_config is None else config_to_json(model_config)
    options = ocp.CheckpointManagerOptions(step_prefix=STEP_PREFIX, max_to_keep=keep, create=True)
    self._manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={"state": ocp.PyTreeCheckpointHandler(), "metadata": ocp.JsonCheckpointHandler()})

  def save(self, step: int, state: Any, metadata: Optional[dict[str, Any]] = None) -> None:
    """Writes `checkpoint_<step>/{state,metadata}` and waits until it is complete on disk."""
    metadata = dict(metadata or {})
    if self._model_config is not None:
      metadata[MODEL_CONFIG] = self._model_config
    args = {"state": ocp.args.PyTreeSave(state), "metadata": ocp.args.JsonSave(metadata)}
    self._manager.save(int(step), args=ocp.args.Composite(**args), force=True)
    self._manager.wait_until_finished()

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def step_path(self, step: int) -> str:
    return step_dir(self.directory, step)

  def reload(self) -> None:
    """Re-reads which steps are on disk (after folders were moved by hand or by `fail_safe`)."""
    self._manager.reload()

  def restore(self, template: Any, step: Optional[int] = None) -> tuple[Any, dict[str, Any]]:
    """Restores (state, metadata) at `step` (default latest) into `template`'s structure,
    shapes, dtypes and shardings.

    Raises:
      FileNotFoundError: there is no checkpoint.
      CheckpointReadError: the step's `state` or `metadata` is missing, unreadable or does not
        fit `template` (the message names the item's folder and the first line of the cause).
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no {STEP_PREFIX}_<step> found in {self.directory}")
    path = self.step_path(step)
    abstract = _abstract(template)
    restore_args = ocp.checkpoint_utils.construct_restore_args(abstract)
    for item in ("state", "metadata"):
      if not os.path.isdir(os.path.join(path, item)):
        raise CheckpointReadError(f"{path}/{item} is missing")
    try:
      metadata = self._manager.restore(int(step), args=ocp.args.Composite(
          metadata=ocp.args.JsonRestore()))["metadata"]
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointReadError(f"{path}/metadata cannot be read: {_first_line(e)}") from e
    if not isinstance(metadata, (dict, type(None))):
      raise CheckpointReadError(f"{path}/metadata holds a {type(metadata).__name__}, not a JSON object")
    self._check_shapes(step, abstract)
    try:
      state = self._manager.restore(int(step), args=ocp.args.Composite(
          state=ocp.args.PyTreeRestore(abstract, restore_args=restore_args)))["state"]
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointReadError(f"{path}/state cannot be restored: {_first_line(e)}") from e
    return state, dict(metadata or {})

  def _check_shapes(self, step: int, abstract: Any) -> None:
    """CheckpointMismatchError when the stored tree's paths or shapes differ from `abstract`;
    CheckpointReadError when the stored tree's description cannot be read."""
    path = f"{self.step_path(step)}/state"
    try:
      stored = self._manager.item_metadata(int(step))["state"]
      stored = getattr(stored, "tree", stored)
      stored_shapes = {_path_str(k): tuple(v.shape) for k, v in jax.tree_util.tree_leaves_with_path(stored)}
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointReadError(f"{path} cannot be read: {_first_line(e)}") from e
    wanted = {_path_str(k): tuple(v.shape) for k, v in jax.tree_util.tree_leaves_with_path(abstract)}
    for key in sorted(set(stored_shapes) | set(wanted)):
      if stored_shapes.get(key) != wanted.get(key):
        raise CheckpointMismatchError(
            f"{path}: {key} is {stored_shapes.get(key, 'absent')} in the checkpoint but "
            f"{wanted.get(key, 'absent')} in the model: this folder holds a run with other sizes "
            "or another model; restore it with its own config, or train into a new MODEL_DIR")

  def close(self) -> None:
    self._manager.close()
