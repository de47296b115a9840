"""Leave-one-out splits, exactly as the IDGenRec / P5 reference code builds them.

For each user with sequence `seq` (oldest first):
  train: one example per position i >= 1 of `seq[:-2]`: history `seq[:-2][:i][-max_his:]`, target `seq[:-2][i]`;
  valid: history `seq[:-2][-max_his:]`, target `seq[-2]`;
  test:  history `seq[:-1][-max_his:]`, target `seq[-1]` (the history includes the validation item).
Users come in file order; train examples are user-major, position-minor. Histories are views into
one flat int32 array, so building the Sports split costs one pass of slicing, no per-item Python.

The held-out rule lives here and nowhere else: `held_out_count(split)` items at the end of a
sequence are unknown when ranking `split` (valid 2, test 1), so the target is `seq[-n]` and
everything before it (`seen_before_target`) is what the user is known to have interacted with.
Evaluation (exclude-seen), popularity counts and the decoder-only prompts all call these.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from llmrec_jax.data.records import RecData

SPLITS = ("train", "valid", "test")
# Items at the end of each sequence that are not known when ranking a held-out split.
HELD_OUT = {"valid": 2, "test": 1}


def held_out_count(split: str) -> int:
  """n such that `split`'s target is `seq[-n]`: 2 for 'valid', 1 for 'test'."""
  if split not in HELD_OUT:
    raise ValueError(f"held-out split must be one of {sorted(HELD_OUT)}, got {split!r}")
  return HELD_OUT[split]


def seen_before_target(seq: np.ndarray, split: str) -> np.ndarray:
  """Every item of `seq` before `split`'s target (`seq[:-n]`): the exclude-seen set."""
  return seq[:len(seq) - held_out_count(split)]


def history_and_target(seq: np.ndarray, split: str, max_his: int | None = None) -> tuple[np.ndarray, int]:
  """(the last `max_his` items before `split`'s target, the target) of one sequence."""
  n = held_out_count(split)
  if len(seq) <= n:
    raise ValueError(f"a {split} example needs more than {n} items, got {len(seq)}")
  history = seen_before_target(seq, split)
  return (history if max_his is None else history[-max_his:]), int(seq[len(seq) - n])


def train_items(seq: np.ndarray) -> np.ndarray:
  """The items of `seq` that training may see: those before the validation target."""
  return seen_before_target(seq, "valid")


@dataclasses.dataclass(frozen=True, eq=False)
class LooSplit:
  """E examples of one split.

  Attributes:
    user: int32 [E] user index per example.
    history: E int32 arrays of item indices, oldest first, at most max_his long (never empty).
    target: int32 [E] item index to predict.
  """
  user: np.ndarray
  history: tuple[np.ndarray, ...]
  target: np.ndarray

  def __post_init__(self):
    if not (self.user.shape == self.target.shape == (len(self.history),)):
      raise ValueError(f"LooSplit: user {self.user.shape}, target {self.target.shape} and "
                       f"{len(self.history)} histories disagree")

  @property
  def num_examples(self) -> int:
    return int(self.target.shape[0])

  def history_lengths(self) -> np.ndarray:
    """int64 [E]: number of history items per example."""
    return np.fromiter((h.size for h in self.history), dtype=np.int64, count=len(self.history))

  def padded_history(self, length: int, pad_value: int = -1) -> np.ndarray:
    """History as a dense int32 [E, length] matrix, right-aligned (most recent item last).

    Longer histories keep their last `length` items; shorter ones are left-padded with `pad_value`.
    """
    if length < 1:
      raise ValueError(f"padded_history: length must be >= 1, got {length}")
    lens_E = np.minimum(self.history_lengths(), length)
    out_ExL = np.full((self.num_examples, length), pad_value, dtype=np.int32)
    if self.num_examples == 0:
      return out_ExL
    flat = np.concatenate([h[h.size - n:] for h, n in zip(self.history, lens_E)])
    rows = np.repeat(np.arange(self.num_examples), lens_E)
    # column of each kept item: length - n + (0..n-1) within its row
    starts = np.cumsum(lens_E) - lens_E
    cols = length - np.repeat(lens_E, lens_E) + (np.arange(flat.size) - np.repeat(starts, lens_E))
    out_ExL[rows, cols] = flat
    return out_ExL


def _views(flat: np.ndarray, start: np.ndarray, stop: np.ndarray) -> tuple[np.ndarray, ...]:
  return tuple(flat[a:b] for a, b in zip(start.tolist(), stop.tolist()))


def _flatten(sequences) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(flat int32 items, offset_U of each sequence in it, lens_U)."""
  lens_U = np.asarray([len(s) for s in sequences], np.int64)
  flat = (np.concatenate(sequences) if len(sequences) else np.zeros((0,), np.int32)).astype(np.int32, copy=False)
  return flat, np.cumsum(lens_U) - lens_U, lens_U


def _held_out(flat: np.ndarray, offset_U: np.ndarray, lens_U: np.ndarray, split: str,
              max_his: int) -> LooSplit:
  """One example per sequence: target `seq[-n]`, history the `max_his` items before it."""
  pos_U = offset_U + lens_U - held_out_count(split)
  start_U = np.maximum(pos_U - max_his, offset_U)
  user_U = np.arange(lens_U.shape[0], dtype=np.int32)
  return LooSplit(user=user_U, history=_views(flat, start_U, pos_U), target=flat[pos_U].astype(np.int32))


def held_out_split(sequences, split: str, max_his: int = 20) -> LooSplit:
  """The 'valid' or 'test' examples of `sequences` (user u = sequences[u]), as `leave_one_out`'s.

  Raises:
    ValueError: a sequence too short to hold a non-empty history before the target.
  """
  if max_his < 1:
    raise ValueError(f"held_out_split: max_his must be >= 1, got {max_his}")
  flat, offset_U, lens_U = _flatten(sequences)
  short = np.flatnonzero(lens_U <= held_out_count(split))
  if short.size:
    raise ValueError(f"sequence {int(short[0])} has {lens_U[short[0]]} items: a {split} example needs "
                     f"more than {held_out_count(split)} ({short.size} such sequences)")
  return _held_out(flat, offset_U, lens_U, split, max_his)


def leave_one_out(data: RecData, max_his: int = 20) -> dict[str, LooSplit]:
  """Train / valid / test examples of `data` (see the module docstring for the exact rule).

  Args:
    data: sequences of at least 3 items each (the loaders guarantee it).
    max_his: keep at most the last `max_his` history items.
  Returns:
    {"train": LooSplit, "valid": LooSplit, "test": LooSplit}; valid and test have one example per user.
  """
  if max_his < 1:
    raise ValueError(f"leave_one_out: max_his must be >= 1, got {max_his}")
  lens_U = data.lengths
  short = np.flatnonzero(lens_U < 3)
  if short.size:
    u = int(short[0])
    raise ValueError(f"{data.name}: user {data.user_ids[u]!r} has {lens_U[u]} items; leave-one-out needs >= 3 "
                     f"({short.size} such users)")
  flat, offset_U, _ = _flatten(data.sequences)  # offset_U: start of each user's sequence in `flat`
  user_U = np.arange(data.num_users, dtype=np.int32)

  # train: positions i = 1 .. len-3 of each sequence (targets inside `train_items(seq)`, i >= 1).
  per_user = lens_U - held_out_count("valid") - 1
  user_E = np.repeat(user_U, per_user)
  first_E = np.repeat(np.cumsum(per_user) - per_user, per_user)
  i_E = np.arange(user_E.size) - first_E + 1
  target_pos_E = offset_U[user_E] + i_E
  start_E = np.maximum(target_pos_E - max_his, offset_U[user_E])
  train = LooSplit(user=user_E, history=_views(flat, start_E, target_pos_E),
                   target=flat[target_pos_E].astype(np.int32))
  held = {name: _held_out(flat, offset_U, lens_U, name, max_his) for name in HELD_OUT}
  return {"train": train, "valid": held["valid"], "test": held["test"]}
