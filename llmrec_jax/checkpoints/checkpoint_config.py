"""T5X's checkpoint configuration (`t5x.utils.{Save,Restore}CheckpointConfig`, `CheckpointConfig`).

Same field names, defaults and meaning as T5X, so a T5X gin file's `utils.SaveCheckpointConfig.period
= 100` binds here (the entry point registers these classes under gin's module name `utils`). What
this library cannot honour fails at construction, naming the field, instead of being ignored:
  save     `dtype` 'float32' (or None: as trained), `period`, `keep`; `use_gda` is accepted and
           moot (every array is a `jax.Array`). Not supported: `save_dataset` (the single-model
           mode replays its seeded data stream to the restored step instead of saving the
           iterator), `keep_dataset_checkpoints`, `checkpointer_cls`, `checkpoint_manager_cls`,
           `state_transformation_fns`, dtype 'bfloat16'.
  restore  `path`, `mode` 'latest' | 'specific' ('all' is for evaluation: training refuses it,
           as t5x.train), `strict` (False: the params only, a fresh optimizer), `dtype` None or
           'float32'. Not supported: `assignment_map`, `fallback_to_scratch`,
           `restore_dataset`, `checkpointer_cls`, `checkpoint_manager_cls`,
           `state_transformation_fns`, dtypes other than float32.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence, Union

RESTORE_MODES = ("specific", "latest", "all")


def _refuse(cls: str, field: str, value: Any, why: str) -> None:
  raise ValueError(f"{cls}.{field}={value!r} is not supported here: {why}")


def _refuse_any(config: Any, refused: dict[str, tuple[bool, str]]) -> None:
  """`_refuse` the first field of `config` whose (bad, why) says it is set to what we cannot honour."""
  for field, (bad, why) in refused.items():
    if bad:
      _refuse(type(config).__name__, field, getattr(config, field), why)


def _one_checkpointer(config: Any, done: str) -> dict[str, tuple[bool, str]]:
  """The T5X fields both configs share that name another checkpointer or state transformation."""
  one = "checkpoints.orbax_t5x.CheckpointManager is the only checkpointer"
  return {"checkpointer_cls": (config.checkpointer_cls is not None, one),
          "checkpoint_manager_cls": (config.checkpoint_manager_cls is not None, one),
          "state_transformation_fns": (bool(tuple(config.state_transformation_fns)),
                                       f"the state is {done} as it is")}


@dataclasses.dataclass(frozen=True)
class SaveCheckpointConfig:
  """How training saves checkpoints (`MODEL_DIR/checkpoint_<step>`, T5X's Orbax layout).

  Attributes:
    dtype: dtype of the saved arrays: 'float32' or None (as trained).
    period: steps between checkpoints (None: only at the end of training).
    keep: newest checkpoints kept (None: all).
    keep_dataset_checkpoints, save_dataset, checkpointer_cls, state_transformation_fns,
    checkpoint_manager_cls: T5X's; only their defaults are supported (see the module doc).
    use_gda: T5X's; any value (arrays are always global `jax.Array`s).
  """
  dtype: Optional[str] = "float32"
  period: Optional[int] = None
  keep: Optional[int] = None
  keep_dataset_checkpoints: Optional[int] = None
  save_dataset: bool = False
  checkpointer_cls: Any = None
  state_transformation_fns: Sequence[Any] = ()
  use_gda: bool = True
  checkpoint_manager_cls: Any = None

  def __post_init__(self):
    name = type(self).__name__
    if self.dtype not in (None, "float32"):
      _refuse(name, "dtype", self.dtype, "checkpoints hold the float32 train state as trained")
    for field in ("period", "keep"):
      value = getattr(self, field)
      if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name}.{field} must be None or an int >= 1, got {value!r}")
    _refuse_any(self, {
        "save_dataset": (self.save_dataset, "the data stream is seeded and replayed to the "
                         "restored step; no dataset iterator checkpoint is written"),
        "keep_dataset_checkpoints": (self.keep_dataset_checkpoints is not None,
                                     "no dataset checkpoints are written"),
        **_one_checkpointer(self, "saved")})


@dataclasses.dataclass(frozen=True)
class RestoreCheckpointConfig:
  """Where training starts from when MODEL_DIR holds no checkpoint of its own (T5X's order:
  MODEL_DIR's latest checkpoint, then this, then from scratch).

  Attributes:
    path: 'latest': a folder of `checkpoint_<step>` folders; 'specific': one `checkpoint_<step>`
      folder. A sequence of one path is accepted (training restores one checkpoint); [] restores
      nothing (from scratch).
    mode: 'latest' | 'specific' | 'all' (T5X's; training refuses 'all', see `check_for_training`).
    strict: True restores the whole train state (params, optimizer state, step); False the
      params only, with a fresh optimizer state at step 0.
    dtype: None or 'float32'.
    assignment_map, fallback_to_scratch, restore_dataset, checkpointer_cls,
    state_transformation_fns, checkpoint_manager_cls: T5X's; only their defaults are supported.
    use_gda: T5X's; any value.
  """
  path: Union[str, Sequence[str]]
  mode: str = "latest"
  assignment_map: Optional[Sequence[tuple[str, Optional[str]]]] = None
  strict: bool = True
  fallback_to_scratch: bool = False
  dtype: Optional[str] = None
  restore_dataset: bool = False
  checkpointer_cls: Any = None
  state_transformation_fns: Sequence[Any] = ()
  use_gda: bool = True
  checkpoint_manager_cls: Any = None

  def __post_init__(self):
    name = type(self).__name__
    if self.mode not in RESTORE_MODES:
      raise ValueError(f"{name}.mode must be one of {RESTORE_MODES}, got {self.mode!r}")
    if not all(isinstance(p, str) and p for p in self.paths):
      raise ValueError(f"{name}.path must be a path or a sequence of paths ([]: nothing to "
                       f"restore), got {self.path!r}")
    if self.dtype not in (None, "float32"):
      _refuse(name, "dtype", self.dtype, "the model trains in float32; restore None or 'float32'")
    _refuse_any(self, {
        "assignment_map": (self.assignment_map is not None, "parameters are restored by their own names"),
        "fallback_to_scratch": (self.fallback_to_scratch, "every parameter must be in the checkpoint"),
        "restore_dataset": (self.restore_dataset, "no dataset checkpoints are written"),
        **_one_checkpointer(self, "restored")})

  @property
  def paths(self) -> list[str]:
    return [self.path] if isinstance(self.path, str) else list(self.path)

  def check_for_training(self) -> Optional[str]:
    """The one path training restores from (None for `path=[]`: from scratch, as T5X's
    pretraining config); fails on mode 'all' or several paths (as t5x.train)."""
    if self.mode == "all":
      raise ValueError("RestoreCheckpointConfig.mode='all' restores every checkpoint in turn, "
                       "which is for evaluation; training takes 'latest' or 'specific'")
    if not self.paths:
      return None
    if len(self.paths) != 1:
      raise ValueError(f"training restores one checkpoint; RestoreCheckpointConfig.path has "
                       f"{len(self.paths)}: {self.paths}")
    return self.paths[0]


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
  """T5X's `CheckpointConfig`: saving and restoring (None: do not save / nothing to restore)."""
  save: Optional[SaveCheckpointConfig] = None
  restore: Optional[RestoreCheckpointConfig] = None

  def __post_init__(self):
    for field, cls in (("save", SaveCheckpointConfig), ("restore", RestoreCheckpointConfig)):
      value = getattr(self, field)
      if value is not None and not isinstance(value, cls):
        raise TypeError(f"CheckpointConfig.{field} must be a {cls.__name__} or None, got "
                        f"{type(value).__name__}")
