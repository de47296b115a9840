"""k-means: every code used on a balanced set, separated clusters found exactly, seeded."""
import numpy as np
import pytest

from llmrec_jax.metrics.clustering import adjusted_rand_index
from llmrec_jax.quantization import kmeans


def _blobs(k: int, per: int, dim: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """k Gaussian clusters of `per` points each around N(0, 1) centers; (x float32, labels)."""
  rng = np.random.default_rng(seed)
  labels = np.repeat(np.arange(k), per)
  x = rng.normal(size=(k, dim))[labels] + noise * rng.normal(size=(k * per, dim))
  return x.astype(np.float32), labels


@pytest.mark.parametrize("init,k", [(kmeans.Init.PLUS_PLUS, 8), (kmeans.Init.RANDOM, 2)])
def test_separated_clusters_are_found_exactly(init, k):
  """(Random init finds many clusters only by luck: it is checked on two.)"""
  x, labels = _blobs(k=k, per=32, dim=16, noise=0.1, seed=0)
  centers, found = kmeans.kmeans(x, k, seed=1, init=init, num_inits=3)
  assert adjusted_rand_index(found, labels) == 1.0
  np.testing.assert_array_equal(found, kmeans.assign(x, centers))  # labels are the nearest centers
  means = np.stack([x[found == c].mean(axis=0) for c in range(k)])
  np.testing.assert_allclose(centers, means, rtol=1e-5, atol=1e-5)  # a Lloyd fixed point


def test_balanced_set_uses_every_code_and_the_runs_are_seeded():
  x, _ = _blobs(k=16, per=16, dim=8, noise=0.3, seed=2)
  centers, found = kmeans.kmeans(x, 16, seed=0)
  assert np.unique(found).size == 16
  again, _ = kmeans.kmeans(x, 16, seed=0)
  np.testing.assert_array_equal(centers, again)


def test_kmeans_plus_plus_picks_distinct_data_rows():
  x, _ = _blobs(k=4, per=10, dim=3, noise=0.5, seed=4)
  centers = kmeans.kmeans_plus_plus(x, 12, np.random.default_rng(0))
  rows = [int(np.flatnonzero(np.all(x == c.astype(np.float32), axis=1))[0]) for c in centers]
  assert len(set(rows)) == 12


def test_empty_cluster_moves_to_the_farthest_point():
  x = np.array([[0.0], [1.0], [10.0]])
  centers = np.array([[0.5], [100.0]])  # the second center gets no point
  new, labels = kmeans.lloyd_step(x, centers)
  np.testing.assert_array_equal(labels, [0, 0, 0])
  np.testing.assert_allclose(new, [[11.0 / 3.0], [10.0]])


def test_residual_kmeans_uses_every_code_at_every_level_on_a_balanced_hierarchy():
  """4 clusters, each split by the same 4 sub-offsets (8 points each): every code of both levels
  is some point's nearest code, and level 0 finds the clusters."""
  rng = np.random.default_rng(6)
  top, sub = rng.normal(size=(4, 6)) * 4.0, rng.normal(size=(4, 6))
  x = (top[:, None, None, :] + sub[None, :, None, :] + 0.05 * rng.normal(size=(4, 4, 8, 6))).reshape(-1, 6)
  codebooks = kmeans.residual_kmeans(x.astype(np.float32), num_levels=2, k=4, seed=0, num_inits=3)
  assert codebooks.shape == (2, 4, 6)
  residual, codes = x, []
  for codebook in codebooks:
    codes.append(kmeans.assign(residual, codebook))
    assert np.unique(codes[-1]).size == 4
    residual = residual - codebook[codes[-1]]
  assert adjusted_rand_index(codes[0], np.repeat(np.arange(4), 32)) == 1.0


def test_bad_arguments_fail_loudly():
  x, _ = _blobs(k=2, per=3, dim=2, noise=0.1, seed=0)
  with pytest.raises(ValueError, match="k <= N"):
    kmeans.kmeans(x, 7)
  with pytest.raises(ValueError, match=r"\[N, Z\]"):
    kmeans.kmeans(x[0], 1)
