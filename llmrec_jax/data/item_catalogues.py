"""Which SeqIO tasks name items in their targets, and the items they name: a registry keyed by
task name, filled by the code that registers the task.

A recommendation task's `targets` is one item's textual ID; evaluating a model on it by full
ranking needs every item's ID (the trie that constrains decoding) and which item each example's
target is. `ItemCatalogue.item_ids()` gives the IDs per item index, read when asked (IDGenRec
changes the IDs between phases: `task_builders.IdProvider`); examples that carry an int
`target_index` feature name their item by index, others are matched by their target tokens.
A task with no catalogue here is trained only.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

TARGET_INDEX = "target_index"  # the example feature naming its target item (int scalar)

_CATALOGUES: dict[str, "ItemCatalogue"] = {}


@dataclasses.dataclass(frozen=True)
class ItemCatalogue:
  """The items of a task.

  Attributes:
    item_ids: () -> textual ID per item index (all items, distinct).
  """
  item_ids: Callable[[], Sequence[str]]


def register(task_name: str, catalogue: ItemCatalogue, *, overwrite: bool = False) -> None:
  """Records `catalogue` for `task_name`; a second registration fails unless `overwrite`."""
  if not isinstance(catalogue, ItemCatalogue):
    raise TypeError(f"register({task_name!r}): expected an ItemCatalogue, got {type(catalogue).__name__}")
  if task_name in _CATALOGUES and not overwrite:
    raise ValueError(f"task {task_name!r} already has an item catalogue (pass overwrite=True)")
  _CATALOGUES[task_name] = catalogue


def get(task_name: str) -> Optional[ItemCatalogue]:
  """The catalogue of `task_name`, or None when the task names no items."""
  return _CATALOGUES.get(task_name)


def remove(task_name: str) -> None:
  _CATALOGUES.pop(task_name, None)
