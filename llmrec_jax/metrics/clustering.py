"""Agreement between two clusterings of the same items; pure numpy."""
from __future__ import annotations

import numpy as np


def _pairs(counts: np.ndarray) -> int:
  """sum of C(c, 2) over the counts, as an exact Python int."""
  counts = np.asarray(counts, np.int64)
  return int(np.sum(counts * (counts - 1) // 2))


def contingency_counts(labels_a: np.ndarray, labels_b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The nonzero cells n_ij of the contingency table and its margins (sparse: memory O(N)).

  Returns:
    (cells: int64 counts of the nonzero n_ij, a_A: row sums (items per cluster of `labels_a`),
     b_B: column sums (items per cluster of `labels_b`)).
  """
  labels_a, labels_b = np.asarray(labels_a), np.asarray(labels_b)
  if labels_a.ndim != 1 or labels_a.shape != labels_b.shape:
    raise ValueError(f"need two 1-D labelings of the same items, got shapes {labels_a.shape}, {labels_b.shape}")
  _, a_N, a_A = np.unique(labels_a, return_inverse=True, return_counts=True)
  _, b_N, b_B = np.unique(labels_b, return_inverse=True, return_counts=True)
  cell_N = a_N.reshape(-1).astype(np.int64) * max(b_B.size, 1) + b_N.reshape(-1)
  _, cells = np.unique(cell_N, return_counts=True)
  return cells, a_A, b_B


def adjusted_rand_index(labels_a: np.ndarray, labels_b: np.ndarray) -> float:
  """Hubert and Arabie's adjusted Rand index, from the contingency table n_ij with row sums a_i,
  column sums b_j and n items:

    ARI = (sum_ij C(n_ij, 2) - E) / ((sum_i C(a_i, 2) + sum_j C(b_j, 2)) / 2 - E),
    E = sum_i C(a_i, 2) * sum_j C(b_j, 2) / C(n, 2).

  1 for identical partitions (whatever the label names), about 0 for independent ones, and can be
  negative. When the denominator is 0 (both labelings one cluster, or both all singletons: the
  partitions are then identical) it is 1. Higher is better.
  """
  cells, a_A, b_B = contingency_counts(labels_a, labels_b)
  n = int(a_A.sum())
  index, rows, cols = _pairs(cells), _pairs(a_A), _pairs(b_B)
  total = n * (n - 1) // 2
  # The formula times 2 * C(n, 2), in exact integers.
  numerator = 2 * (index * total - rows * cols)
  denominator = (rows + cols) * total - 2 * rows * cols
  if denominator == 0:
    return 1.0
  return numerator / denominator
