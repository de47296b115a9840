"""T5X's `DatasetConfig` (`t5x.utils.DatasetConfig`): which SeqIO Task or Mixture, split, lengths
and batch a run reads.

Same fields, defaults and meaning as T5X (the entry point registers it under gin's module name
`utils`, so `train/utils.DatasetConfig.batch_size = 32` binds here). Bad values fail at
construction; `use_custom_packing_ops=True` and `trim_output_features=False` are refused (batches
have the static shapes of `task_feature_lengths`). The airio-only fields of T5X
(`runtime_preprocessors`, `num_prefetch_threads`, `num_workers`) do not exist here, so gin
rejects them.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Mapping, Optional, Union


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
  """One dataset of a run.

  Attributes:
    mixture_or_task_name: a registered SeqIO Task or Mixture name (or the object itself).
    task_feature_lengths: {feature: length}, e.g. {'inputs': 256, 'targets': 16}.
    split: the split read, e.g. 'train'.
    batch_size: global batch size (over all hosts).
    shuffle: shuffle the examples (with `seed`).
    seed: the shuffle / mixing seed; None draws one (a resumed run then cannot replay its order).
    use_cached: read SeqIO's offline cache of the task.
    pack: pack several examples per row (seqio `EncDecFeatureConverter(pack=True)`).
    use_custom_packing_ops: T5X's; only False.
    module: a module imported before the name is looked up (it registers the task), e.g.
      'llmrec_jax.tasks.synthetic' (T5X's `MIXTURE_OR_TASK_MODULE`).
    use_memory_cache: T5X's (evaluation caches); accepted, unused in training.
    trim_output_features: T5X's; only True.
  """
  mixture_or_task_name: Union[str, Any]
  task_feature_lengths: Mapping[str, int]
  split: str
  batch_size: int
  shuffle: bool
  seed: Optional[int]
  use_cached: bool = False
  pack: bool = False
  use_custom_packing_ops: bool = False
  module: Optional[str] = None
  use_memory_cache: bool = True
  trim_output_features: bool = True

  def __post_init__(self):
    name = self.mixture_or_task_name
    if isinstance(name, str):
      if not name:
        raise ValueError("DatasetConfig.mixture_or_task_name is empty")
    elif not hasattr(name, "get_dataset"):
      raise TypeError("DatasetConfig.mixture_or_task_name must be a registered name or a SeqIO "
                      f"Task / Mixture, got {type(name).__name__}")
    if not isinstance(self.task_feature_lengths, Mapping) or not self.task_feature_lengths:
      raise ValueError("DatasetConfig.task_feature_lengths must be a non-empty {feature: length} "
                       f"dict, got {self.task_feature_lengths!r}")
    for feature, length in self.task_feature_lengths.items():
      if not _is_int(length) or length < 1:
        raise ValueError(f"DatasetConfig.task_feature_lengths[{feature!r}] must be an int >= 1, "
                         f"got {length!r}")
    object.__setattr__(self, "task_feature_lengths", dict(self.task_feature_lengths))
    if not isinstance(self.split, str) or not self.split:
      raise ValueError(f"DatasetConfig.split must be a split name, got {self.split!r}")
    if not _is_int(self.batch_size) or self.batch_size < 1:
      raise ValueError(f"DatasetConfig.batch_size must be an int >= 1, got {self.batch_size!r}")
    if self.seed is not None and not _is_int(self.seed):
      raise ValueError(f"DatasetConfig.seed must be None or an int, got {self.seed!r}")
    for field in ("shuffle", "use_cached", "pack", "use_memory_cache"):
      if not isinstance(getattr(self, field), bool):
        raise ValueError(f"DatasetConfig.{field} must be True or False, got {getattr(self, field)!r}")
    if self.use_custom_packing_ops:
      raise ValueError("DatasetConfig.use_custom_packing_ops=True is not supported: seqio's "
                       "packing (pack=True) is used")
    if not self.trim_output_features:
      raise ValueError("DatasetConfig.trim_output_features=False is not supported: batches have "
                       "the static lengths of task_feature_lengths")
    if self.module is not None and (not isinstance(self.module, str) or not self.module):
      raise ValueError(f"DatasetConfig.module must be None or a module name, got {self.module!r}")

  @property
  def name(self) -> str:
    """The Task or Mixture name."""
    name = self.mixture_or_task_name
    return name if isinstance(name, str) else name.name

  def get_provider(self):
    """The SeqIO Task or Mixture, after importing `module` (which registers it). An unknown
    name fails listing the close registered names."""
    import seqio  # pylint: disable=g-import-not-at-top  # ~35 s cold: only when a run reads data
    if self.module:
      importlib.import_module(self.module)
    if not isinstance(self.mixture_or_task_name, str):
      return self.mixture_or_task_name
    try:
      return seqio.get_mixture_or_task(self.mixture_or_task_name)
    except ValueError as e:
      import difflib  # pylint: disable=g-import-not-at-top
      known = sorted(set(seqio.TaskRegistry.names()) | set(seqio.MixtureRegistry.names()))
      near = difflib.get_close_matches(self.mixture_or_task_name, known, n=3)
      hint = (f"; did you mean {', '.join(near)}?" if near else
              "; is the module that registers it imported (DatasetConfig.module, "
              "MIXTURE_OR_TASK_MODULE)?")
      raise ValueError(f"no SeqIO Task or Mixture named {self.mixture_or_task_name!r}{hint}") from e
