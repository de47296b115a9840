"""`RecData`: one interaction dataset in memory (raw ids, item metadata, per-user sequences).

No JAX here. Item and user indices are positions in `item_ids` / `user_ids`; every module that
needs integers (splits, ID tables, SeqIO tasks, baselines) works on these indices.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class RecData:
  """An interaction dataset.

  Attributes:
    name: dataset name (usually the folder name).
    user_ids: raw user ids, in file order; position = user index.
    item_ids: raw item ids; position = item index 0..N-1.
    item_meta: one dict per item (same order as `item_ids`); `{}` when the dataset ships no metadata.
    sequences: per user, the int32 item indices in file / time order (oldest first).
    dropped_users: users dropped by the loader (`drop_bad_users=True`); 0 otherwise.
  """
  name: str
  user_ids: tuple[str, ...]
  item_ids: tuple[str, ...]
  item_meta: tuple[dict, ...]
  sequences: tuple[np.ndarray, ...]
  dropped_users: int = 0

  def __post_init__(self):
    if len(self.sequences) != len(self.user_ids):
      raise ValueError(f"{self.name}: {len(self.sequences)} sequences for {len(self.user_ids)} users")
    if len(self.item_meta) != len(self.item_ids):
      raise ValueError(f"{self.name}: {len(self.item_meta)} metadata dicts for {len(self.item_ids)} items")
    if len(set(self.user_ids)) != len(self.user_ids):
      raise ValueError(f"{self.name}: duplicate user ids")
    if len(set(self.item_ids)) != len(self.item_ids):
      raise ValueError(f"{self.name}: duplicate item ids")
    for u, seq in enumerate(self.sequences):
      if not isinstance(seq, np.ndarray) or seq.dtype != np.int32 or seq.ndim != 1:
        raise ValueError(f"{self.name}: sequence of user {self.user_ids[u]!r} is not a 1-D int32 array")
      if seq.size and (seq.min() < 0 or seq.max() >= len(self.item_ids)):
        raise ValueError(f"{self.name}: sequence of user {self.user_ids[u]!r} has item indices out of range")

  @property
  def num_users(self) -> int:
    return len(self.user_ids)

  @property
  def num_items(self) -> int:
    return len(self.item_ids)

  @property
  def num_interactions(self) -> int:
    return int(sum(s.size for s in self.sequences))

  @functools.cached_property
  def item_index(self) -> dict[str, int]:
    """Raw item id -> item index."""
    return {item: i for i, item in enumerate(self.item_ids)}

  @functools.cached_property
  def user_index(self) -> dict[str, int]:
    """Raw user id -> user index."""
    return {user: u for u, user in enumerate(self.user_ids)}

  @functools.cached_property
  def lengths(self) -> np.ndarray:
    """int64 [num_users]: sequence length per user."""
    return np.fromiter((s.size for s in self.sequences), dtype=np.int64, count=len(self.sequences))
