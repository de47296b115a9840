"""Collision handling for semantic IDs: make every item's tuple of codes unique (pure numpy).

A semantic ID gives item n the tuple `codes_NxL[n]`, with level l in [0, K_l). Residual quantisation can
give two items the same tuple; the two published fixes are here.

TIGER (Rajput et al., 2023), `tiger_extra_level`: append one level holding the item's index within its
group of identical tuples (0, 1, 2, ... by item index, or by a given order). Unique by construction; the
new level needs as many codes as the largest group.

LC-Rec (Zheng et al., 2024), "uniform semantic mapping": the RQ-VAE's last level assigns codes to the
colliding items with Sinkhorn-Knopp (balanced optimal transport between the items and the K codes, on
distances scaled to [-1, 1], epsilon 0.003, 50 iterations) instead of the nearest code. LC-Rec
re-quantises each group of identical tuples, takes the argmax of each row of the plan, and repeats (20
rounds at most) until no tuple is shared. That argmax is not one-to-one and ignores the codes other items
of the same prefix hold, so collisions can survive; items with identical embeddings get identical rows
and never part.

Ours, `uniform_last_level`: one round. The colliding items (every member of a group of identical tuples)
of each prefix (levels 0..L-2) get a Sinkhorn plan over the K last-level codes (rows sum to 1, columns
to m/K), and `greedy_assignment` turns it into a one-to-one assignment to the codes that no other item of
that prefix holds. Items that did not collide keep their codes. The result is unique whenever no prefix
holds more than K items; otherwise it raises a ValueError. `lcrec_unique` also handles those: items that
find no free last-level code move to another code of the level above whose subtree has room (Sinkhorn
with that level's distances when given, else the codes with the most room), then take codes below it
the same way, climbing level by level; it fails only when N exceeds the number of tuples. The distances
of the levels below a moved code are the ones given (computed for the item's old residual).
"""
import dataclasses
import math
from typing import NamedTuple, Optional, Sequence

import numpy as np

LCREC_EPSILON = 0.003  # LC-Rec's Sinkhorn epsilon for the last level (distances scaled to [-1, 1])
LCREC_ITERATIONS = 50  # LC-Rec's Sinkhorn iterations


def _as_codes(codes_NxL) -> np.ndarray:
  codes_NxL = np.asarray(codes_NxL)
  if codes_NxL.ndim != 2 or not np.issubdtype(codes_NxL.dtype, np.integer):
    raise ValueError(f"codes must be an integer N x L array, got {codes_NxL.dtype} {codes_NxL.shape}")
  if (codes_NxL < 0).any():
    raise ValueError("codes must be non-negative")
  return codes_NxL


def _row_groups(keys_NxD: np.ndarray) -> np.ndarray:
  """Group id of each row: equal rows share one (every row is in group 0 when D is 0)."""
  if keys_NxD.shape[1] == 0:
    return np.zeros(keys_NxD.shape[0], np.int64)
  _, group_N = np.unique(keys_NxD, axis=0, return_inverse=True)
  return group_N.reshape(-1)


def _shared_N(codes_NxL: np.ndarray) -> np.ndarray:
  """Whether each item's tuple is also another item's."""
  group_N = _row_groups(codes_NxL)
  return np.bincount(group_N, minlength=1)[group_N] > 1


def colliding_groups(codes_NxL) -> list[np.ndarray]:
  """The groups of two or more items with identical tuples: item indices ascending, groups by first item."""
  group_N = _row_groups(_as_codes(codes_NxL))
  by_group_N = np.argsort(group_N, kind="stable")
  bounds = np.flatnonzero(np.diff(group_N[by_group_N])) + 1
  return sorted((g for g in np.split(by_group_N, bounds) if len(g) > 1), key=lambda g: g[0])


def collision_rate(codes_NxL) -> float:
  """The fraction of items whose tuple is shared with another item (0.0 for no items)."""
  codes_NxL = _as_codes(codes_NxL)
  return float(_shared_N(codes_NxL).mean()) if len(codes_NxL) else 0.0


class ExtraLevel(NamedTuple):
  codes_NxM: np.ndarray  # M = L + 1: the given levels, then the index within the group of identical tuples
  size: int  # codes the new level uses: the largest group of identical tuples (1 when all are unique)


def tiger_extra_level(codes_NxL, order: Optional[Sequence[int]] = None) -> ExtraLevel:
  """TIGER's fix: append each item's index within its group of identical tuples.

  Items of a group are numbered 0, 1, 2, ... by item index, or in the sequence `order` lists them
  (a permutation of range(N), e.g. by descending popularity). Items whose tuple is unique get 0.
  """
  codes_NxL = _as_codes(codes_NxL)
  n = len(codes_NxL)
  order_N = np.arange(n) if order is None else np.asarray(order)
  if sorted(order_N.tolist()) != list(range(n)):
    raise ValueError(f"order must be a permutation of range({n})")
  rank_N = np.empty(n, np.int64)
  rank_N[order_N] = np.arange(n)
  group_N = _row_groups(codes_NxL)
  by_group_N = np.lexsort((rank_N, group_N))  # by group, then by place in the order
  sorted_groups_N = group_N[by_group_N]
  extra_N = np.empty(n, np.int64)
  extra_N[by_group_N] = np.arange(n) - np.searchsorted(sorted_groups_N, sorted_groups_N)
  codes_NxM = np.concatenate([codes_NxL, extra_N[:, None].astype(codes_NxL.dtype)], axis=1)
  return ExtraLevel(codes_NxM, int(extra_N.max()) + 1 if n else 0)


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
  top = x.max(axis=axis, keepdims=True)
  return (top + np.log(np.exp(x - top).sum(axis=axis, keepdims=True))).squeeze(axis)


def _log_sinkhorn(cost_MxK, epsilon: float, iterations: int) -> np.ndarray:
  cost_MxK = np.asarray(cost_MxK, np.float64)
  if epsilon <= 0:
    raise ValueError(f"epsilon must be positive, got {epsilon}")
  m, k = cost_MxK.shape
  log_kernel_MxK = -cost_MxK / epsilon
  f_M = -_logsumexp(log_kernel_MxK, axis=1)
  g_K = np.zeros(k)
  for _ in range(iterations):
    g_K = np.log(m / k) - _logsumexp(log_kernel_MxK + f_M[:, None], axis=0)
    f_M = -_logsumexp(log_kernel_MxK + g_K[None, :], axis=1)
  return log_kernel_MxK + f_M[:, None] + g_K[None, :]


def sinkhorn(cost_MxK, epsilon: float, iterations: int) -> np.ndarray:
  """Balanced entropic optimal transport of M items (mass 1 each) onto K codes (mass M/K each).

  Sinkhorn-Knopp on exp(-cost/epsilon) in the log domain: rows normalised, then `iterations` rounds of
  rescaling the columns and then the rows. Rows sum to 1 exactly, columns to M/K as it converges.
  """
  cost_MxK = np.asarray(cost_MxK, np.float64)
  if cost_MxK.shape[0] == 0:
    return np.zeros_like(cost_MxK)
  return np.exp(_log_sinkhorn(cost_MxK, epsilon, iterations))


def greedy_assignment(score_MxK, capacity_K) -> np.ndarray:
  """One code per row, code k to at most capacity_K[k] rows; -1 for rows left without room.

  Walks the (row, code) pairs by descending score (ties: lower row, then lower code) and takes each pair
  whose row has no code yet and whose code has room.
  """
  score_MxK = np.asarray(score_MxK, np.float64)
  m, k = score_MxK.shape
  room_K = np.array(capacity_K, np.int64)
  code_M = np.full(m, -1, np.int64)
  open_rows, open_room = m, int(room_K.clip(min=0).sum())
  for flat in np.argsort(-score_MxK.ravel(), kind="stable"):
    if not open_rows or not open_room:
      break
    row, code = divmod(int(flat), k)
    if code_M[row] < 0 and room_K[code] > 0:
      code_M[row], room_K[code] = code, room_K[code] - 1
      open_rows, open_room = open_rows - 1, open_room - 1
  return code_M


def _most_room_first(m: int, capacity_K: np.ndarray) -> np.ndarray:
  """Rows in turn take the code with the most room left (lowest code on ties): the least-used codes."""
  room_K = np.array(capacity_K, np.int64)
  code_M = np.full(m, -1, np.int64)
  for row in range(m):
    code = int(np.argmax(room_K))
    if room_K[code] <= 0:
      break
    code_M[row], room_K[code] = code, room_K[code] - 1
  return code_M


def _centred(distances_MxK: np.ndarray) -> np.ndarray:
  """LC-Rec's scaling of distances to [-1, 1] before Sinkhorn (all zeros when they are all equal)."""
  top, bottom = distances_MxK.max(), distances_MxK.min()
  middle = (top + bottom) / 2
  return (distances_MxK - middle) / (top - middle + 1e-5)


@dataclasses.dataclass(frozen=True)
class _Level:
  distances_NxK: Optional[np.ndarray]  # None: codes with the most room first
  size: int  # K: codes at this level
  room: int  # tuples below one code of this level (the product of the deeper sizes, at most N + 1)
  epsilon: float
  iterations: int


def _codes_at_level(codes_NxL, placed_N, items_M, level: int, spec: _Level) -> np.ndarray:
  """Codes at `level` for `items_M` whose subtree has room beside the placed items; -1 where none has.

  Items sharing levels 0..level-1 are assigned together; the codes at deeper levels are not read.
  """
  group_N = _row_groups(codes_NxL[:, :level])
  code_M = np.full(len(items_M), -1, np.int64)
  for group in np.unique(group_N[items_M]):
    mine_M = group_N[items_M] == group
    taken_K = np.bincount(codes_NxL[placed_N & (group_N == group), level], minlength=spec.size)
    room_K = spec.room - taken_K
    if spec.distances_NxK is None:
      code_M[mine_M] = _most_room_first(int(mine_M.sum()), room_K)
    else:
      cost_MxK = _centred(spec.distances_NxK[items_M[mine_M]])
      code_M[mine_M] = greedy_assignment(_log_sinkhorn(cost_MxK, spec.epsilon, spec.iterations), room_K)
  return code_M


def _settle(codes_NxL, placed_N, items_M, level: int, specs: Sequence[Optional[_Level]]) -> np.ndarray:
  """Moves `items_M` to free tuples by changing their codes from `level` down (in place).

  Returns the items that found no room below their levels 0..level-1 (unchanged, not placed).
  """
  code_M = _codes_at_level(codes_NxL, placed_N, items_M, level, specs[level])
  fits_M = code_M >= 0
  moved_M = items_M[fits_M]
  codes_NxL[moved_M, level] = code_M[fits_M]
  for deeper in range(level + 1, codes_NxL.shape[1]):
    deeper_M = _codes_at_level(codes_NxL, placed_N, moved_M, deeper, specs[deeper])
    assert (deeper_M >= 0).all(), "a code with room above always has room below"
    codes_NxL[moved_M, deeper] = deeper_M
  placed_N[moved_M] = True
  return items_M[~fits_M]


def uniform_last_level(codes_NxL, distances_NxK, *, sinkhorn_epsilon: float = LCREC_EPSILON,
                       iterations: int = LCREC_ITERATIONS) -> np.ndarray:
  """LC-Rec's uniform semantic mapping, made one-to-one: new last-level codes for the colliding items.

  `distances_NxK` are each item's distances to the K last-level codewords. Levels 0..L-2 and the items
  whose tuple is unique keep their codes; the result has no shared tuple. Raises ValueError when a prefix
  holds more than K items (no last-level assignment can separate them).
  """
  codes_NxL = _as_codes(codes_NxL).copy()
  n, num_levels = codes_NxL.shape
  distances_NxK = np.asarray(distances_NxK, np.float64)
  if distances_NxK.ndim != 2 or len(distances_NxK) != n:
    raise ValueError(f"distances must be N x K with N = {n}, got {distances_NxK.shape}")
  k = distances_NxK.shape[1]
  if n and codes_NxL[:, -1].max() >= k:
    raise ValueError(f"last-level codes reach {codes_NxL[:, -1].max()} but distances have K = {k}")
  prefix_N = _row_groups(codes_NxL[:, :-1])
  sizes_G = np.bincount(prefix_N, minlength=1)
  largest = int(sizes_G.max())
  if largest > k:
    prefix = tuple(codes_NxL[np.argmax(prefix_N == np.argmax(sizes_G)), :-1].tolist())
    raise ValueError(
        f"{largest} items share the prefix {prefix} but the last level has only K = {k} codes, so no "
        "last-level assignment makes them unique: use tiger_extra_level, a larger codebook, or "
        "lcrec_unique (which also moves items at earlier levels)")
  placed_N = ~_shared_N(codes_NxL)
  specs = [None] * (num_levels - 1) + [_Level(distances_NxK, k, 1, sinkhorn_epsilon, iterations)]
  left_M = _settle(codes_NxL, placed_N, np.flatnonzero(~placed_N), num_levels - 1, specs)
  assert not len(left_M), "every prefix holds at most K items"
  return codes_NxL


def lcrec_unique(codes_NxL, distances_per_level: Sequence[Optional[np.ndarray]], *,
                 codebook_sizes: Optional[Sequence[int]] = None,
                 sinkhorn_epsilon: float = LCREC_EPSILON, iterations: int = LCREC_ITERATIONS) -> np.ndarray:
  """Unique tuples for any N up to the number of tuples: `uniform_last_level`, climbing when a prefix is full.

  `distances_per_level[l]` holds each item's distances to the K_l codewords of level l (N x K_l), or
  None: that level then gives moved items the codes with the most room. `codebook_sizes` gives K_l for
  the levels without distances. Items whose tuple is unique keep their codes. When every prefix holds at
  most K_{L-1} items this equals `uniform_last_level`.
  """
  codes_NxL = _as_codes(codes_NxL).copy()
  n, num_levels = codes_NxL.shape
  if len(distances_per_level) != num_levels:
    raise ValueError(f"need one distances entry per level ({num_levels}), got {len(distances_per_level)}")
  sizes = []
  for level, distances in enumerate(distances_per_level):
    if distances is None and codebook_sizes is None:
      raise ValueError(f"level {level} has no distances: give codebook_sizes")
    if distances is not None and (np.ndim(distances) != 2 or len(distances) != n):
      raise ValueError(f"distances at level {level} must be N x K_l with N = {n}, got {np.shape(distances)}")
    size = int(codebook_sizes[level]) if distances is None else np.shape(distances)[1]
    if n and codes_NxL[:, level].max() >= size:
      raise ValueError(f"codes at level {level} reach {codes_NxL[:, level].max()} but K = {size}")
    sizes.append(size)
  if n > math.prod(sizes):
    raise ValueError(f"{n} items but only {math.prod(sizes)} distinct tuples (codebook sizes {sizes})")
  specs = [_Level(None if d is None else np.asarray(d, np.float64), sizes[l],
                  min(math.prod(sizes[l + 1:]), n + 1), sinkhorn_epsilon, iterations)
           for l, d in enumerate(distances_per_level)]
  placed_N = ~_shared_N(codes_NxL)
  left_M = np.flatnonzero(~placed_N)
  for level in reversed(range(num_levels)):
    if len(left_M):
      left_M = _settle(codes_NxL, placed_N, left_M, level, specs)
  assert not len(left_M), "N is at most the number of tuples"
  return codes_NxL
