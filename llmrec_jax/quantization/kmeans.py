"""Seeded k-means in numpy, and residual k-means: the level-by-level codebook initialisation of an RQ-VAE.

`kmeans` starts from greedy k-means++ (or k distinct random rows) and runs up to `num_iters` Lloyd
iterations (it stops early at a fixed point, where further iterations change nothing). A cluster
left empty by an iteration is moved onto the point farthest from its own center. With
`num_inits` > 1 it keeps the run of lowest inertia (sum of squared distances to the nearest center).

Letters: N points, Z dims, K clusters, L levels.
"""
from __future__ import annotations

import enum

import numpy as np


class Init(enum.Enum):
  PLUS_PLUS = "k-means++"  # greedy k-means++: next centers drawn with probability ~ D(x)^2
  RANDOM = "random"  # k distinct rows drawn uniformly


def squared_distances(x_NxZ: np.ndarray, centers_KxZ: np.ndarray) -> np.ndarray:
  """[N, K] squared Euclidean distances (float64, clipped at 0)."""
  x_NxZ, centers_KxZ = np.asarray(x_NxZ, np.float64), np.asarray(centers_KxZ, np.float64)
  d_NxK = (np.sum(x_NxZ ** 2, axis=1)[:, None] - 2.0 * x_NxZ @ centers_KxZ.T
           + np.sum(centers_KxZ ** 2, axis=1)[None, :])
  return np.maximum(d_NxK, 0.0)


def squared_distances_to(x_NxZ: np.ndarray, point_Z: np.ndarray) -> np.ndarray:
  """[N] squared Euclidean distances to one point, as sums of squared differences (exactly 0 at the point)."""
  diff_NxZ = np.asarray(x_NxZ, np.float64) - np.asarray(point_Z, np.float64)[None, :]
  return np.sum(diff_NxZ * diff_NxZ, axis=1)


def assign(x_NxZ: np.ndarray, centers_KxZ: np.ndarray) -> np.ndarray:
  """int32 [N]: the nearest center of each point (the lowest index on ties)."""
  return np.argmin(squared_distances(x_NxZ, centers_KxZ), axis=1).astype(np.int32)


def kmeans_plus_plus(x_NxZ: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
  """[K, Z] centers, rows of x, by greedy k-means++: the first uniform; then at each step
  2 + floor(ln k) candidates drawn with probability ~ D(x)^2 (the squared distance to the nearest
  center so far; uniform when every D is 0), keeping the one that lowers sum D^2 most (plain
  k-means++ with a single candidate often puts two centers in one of many separated clusters)."""
  x_NxZ = np.asarray(x_NxZ, np.float64)
  n = x_NxZ.shape[0]
  trials = 2 + int(np.log(k))
  chosen = [int(rng.integers(n))]
  d2_N = squared_distances_to(x_NxZ, x_NxZ[chosen[0]])
  for _ in range(1, k):
    total = d2_N.sum()
    candidates_C = rng.choice(n, trials, p=d2_N / total) if total > 0 else rng.integers(n, size=trials)
    d2_CxN = np.stack([np.minimum(d2_N, squared_distances_to(x_NxZ, x_NxZ[c])) for c in candidates_C])
    best = int(np.argmin(d2_CxN.sum(axis=1)))
    chosen.append(int(candidates_C[best]))
    d2_N = d2_CxN[best]
  return x_NxZ[chosen]


def lloyd_step(x_NxZ: np.ndarray, centers_KxZ: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """One Lloyd iteration: assign, then move each center to its points' mean; an empty cluster's
  center goes to the point farthest from its center (distinct points for distinct empties).

  Returns:
    (new centers_KxZ float64, the labels_N of the assignment made).
  """
  x_NxZ = np.asarray(x_NxZ, np.float64)
  k = centers_KxZ.shape[0]
  d_NxK = squared_distances(x_NxZ, centers_KxZ)
  labels_N = np.argmin(d_NxK, axis=1)
  onehot_NxK = labels_N[:, None] == np.arange(k)[None, :]
  counts_K = onehot_NxK.sum(axis=0)
  new_KxZ = (onehot_NxK.T.astype(np.float64) @ x_NxZ) / np.maximum(counts_K, 1)[:, None]
  empty_K = counts_K == 0
  if empty_K.any():
    farthest = np.argsort(-d_NxK[np.arange(x_NxZ.shape[0]), labels_N], kind="stable")
    new_KxZ[empty_K] = x_NxZ[farthest[:int(empty_K.sum())]]
  return new_KxZ, labels_N.astype(np.int32)


def kmeans(x_NxZ: np.ndarray, k: int, *, num_iters: int = 50, seed: int = 0, init: Init = Init.PLUS_PLUS,
           num_inits: int = 1) -> tuple[np.ndarray, np.ndarray]:
  """k-means of the rows of `x_NxZ`: the lowest-inertia result of `num_inits` runs (run i seeded
  by (seed, i); one run is seeded by `seed` alone).

  Returns:
    (centers_KxZ in x's dtype (float64 for integer x), labels_N int32: the nearest final center
    of each point).
  """
  x_NxZ = np.asarray(x_NxZ)
  if x_NxZ.ndim != 2:
    raise ValueError(f"kmeans needs [N, Z] points, got shape {x_NxZ.shape}")
  if not 1 <= k <= x_NxZ.shape[0]:
    raise ValueError(f"kmeans needs 1 <= k <= N points, got k={k}, N={x_NxZ.shape[0]}")
  if num_iters < 0 or num_inits < 1:
    raise ValueError(f"kmeans needs num_iters >= 0 and num_inits >= 1, got {num_iters}, {num_inits}")
  init = Init(init)
  best, best_inertia = None, np.inf
  for i in range(num_inits):
    rng = np.random.default_rng(seed if num_inits == 1 else [seed, i])
    centers_KxZ = _one_run(x_NxZ, k, num_iters, rng, init)
    inertia = float(np.sum(np.min(squared_distances(x_NxZ, centers_KxZ), axis=1)))
    if inertia < best_inertia:
      best, best_inertia = centers_KxZ, inertia
  best = best.astype(x_NxZ.dtype if np.issubdtype(x_NxZ.dtype, np.floating) else np.float64)
  return best, assign(x_NxZ, best)


def _one_run(x_NxZ: np.ndarray, k: int, num_iters: int, rng: np.random.Generator, init: Init) -> np.ndarray:
  """float64 [K, Z] centers of one seeded k-means run."""
  if init is Init.PLUS_PLUS:
    centers_KxZ = kmeans_plus_plus(x_NxZ, k, rng)
  else:
    centers_KxZ = np.asarray(x_NxZ[rng.choice(x_NxZ.shape[0], k, replace=False)], np.float64)
  labels_N = None
  for _ in range(num_iters):
    new_KxZ, new_labels_N = lloyd_step(x_NxZ, centers_KxZ)
    if labels_N is not None and np.array_equal(new_labels_N, labels_N) and np.array_equal(new_KxZ, centers_KxZ):
      break  # a fixed point: every further iteration returns the same centers
    centers_KxZ, labels_N = new_KxZ, new_labels_N
  return centers_KxZ


def residual_kmeans(latent_NxZ: np.ndarray, num_levels: int, k: int, *, num_iters: int = 50,
                    seed: int = 0, num_inits: int = 1) -> np.ndarray:
  """[L, K, Z] codebooks fitted level by level: codebook 0 by k-means of the latents, codebook l
  by k-means of the residuals left by codebooks 0..l-1 (each point minus its nearest code).
  Level l uses seed `seed + l`."""
  residual_NxZ = np.asarray(latent_NxZ)
  codebooks = []
  for level in range(num_levels):
    centers_KxZ, labels_N = kmeans(residual_NxZ, k, num_iters=num_iters, seed=seed + level,
                                num_inits=num_inits)
    codebooks.append(centers_KxZ)
    residual_NxZ = residual_NxZ - centers_KxZ[labels_N]
  return np.stack(codebooks)
