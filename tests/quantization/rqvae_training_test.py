"""RQ-VAE training: k-means init plus dead-code restarts use every code; a collapsed codebook stays
collapsed without restarts and recovers with them; the stats equal brute-force counts."""
import collections
import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from llmrec_jax.quantization import rqvae, rqvae_training

# The shapes of rqvae_test (one compilation for both files).
CONFIG = rqvae.RQVAEConfig(input_dim=16, hidden_dims=(32,), latent_dim=16, num_levels=2, codebook_size=8)
TRAIN = rqvae_training.RQVAETrainConfig(epochs=50, batch_size=128, restart_every_steps=50, log_every=50,
                                        show_progress=False)


def _balanced_hierarchy(seed: int = 0) -> np.ndarray:
  """512 items in 16-D: 8 clusters (N(0, 9) centers) x the same 8 sub-offsets (N(0, 1)) x 8 points."""
  rng = np.random.default_rng(seed)
  top, sub = 3.0 * rng.normal(size=(8, 16)), rng.normal(size=(8, 16))
  x = top[:, None, None, :] + sub[None, :, None, :] + 0.1 * rng.normal(size=(8, 8, 8, 16))
  return x.reshape(512, 16).astype(np.float32)


def _collapsed_params(seed: int = 0):
  """Fresh parameters with every code of every codebook at one point (10, ..., 10), far from the
  latents: the tie picks code 0 for every item and only code 0 gets a gradient (another code is
  picked only once some latent ends up nearer the old point than code 0)."""
  params = rqvae.init_params(CONFIG, seed)
  return rqvae.replace_codebooks(params, [jnp.full_like(c, 10.0) for c in rqvae.codebooks_of(params)])


def _brute_force_collision_rate(codes_NxL: np.ndarray) -> float:
  counts = collections.Counter(tuple(row) for row in codes_NxL.tolist())
  return sum(counts[tuple(row)] > 1 for row in codes_NxL.tolist()) / len(codes_NxL)


def test_kmeans_init_and_restarts_use_every_code_and_stats_equal_brute_force():
  x = _balanced_hierarchy()
  params, stats = rqvae_training.train_rqvae(x, CONFIG, TRAIN)
  assert stats["codebook_utilisation"] == [1.0, 1.0]
  codes = np.asarray(rqvae.encode_codes(params, x))
  assert [len(set(codes[:, level].tolist())) / 8 for level in range(2)] == stats["codebook_utilisation"]
  assert stats["collision_rate"] == _brute_force_collision_rate(codes)
  assert stats["restarts"] == sum(stats["restarts_per_level"]) and stats["steps"] == 200


def test_collapsed_codebooks_stay_collapsed_without_restarts_and_recover_with_them():
  x = _balanced_hierarchy()
  off = dataclasses.replace(TRAIN, kmeans_init=False, dead_code_restart=False)
  _, stats = rqvae_training.train_rqvae(x, CONFIG, off, params=_collapsed_params())
  assert max(stats["codebook_utilisation"]) <= 1 / 2 and stats["restarts"] == 0
  on = dataclasses.replace(off, dead_code_restart=True)
  _, stats = rqvae_training.train_rqvae(x, CONFIG, on, params=_collapsed_params())
  assert stats["codebook_utilisation"] == [1.0, 1.0] and stats["restarts"] >= 2 * 6


@pytest.mark.parametrize("sampling", list(rqvae_training.RestartSampling))
def test_restart_dead_codes_copies_residual_rows_and_brings_every_code_back(sampling):
  """On a collapsed codebook: live codes stay, each restarted code is one of the residual rows, and
  afterwards every code is some row's nearest code."""
  x = _balanced_hierarchy()
  params = _collapsed_params()
  residuals_NxZ = np.asarray(rqvae.encode_latent(params, x))
  codebook_KxZ = np.asarray(rqvae.codebooks_of(params)[0]).copy()
  codebook_KxZ[0] = residuals_NxZ.mean(axis=0)
  usage_K = np.bincount(np.asarray(rqvae.nearest_codes(residuals_NxZ, codebook_KxZ)), minlength=8)
  np.testing.assert_array_equal(usage_K, [512, 0, 0, 0, 0, 0, 0, 0])
  new_KxZ = rqvae_training.restart_dead_codes(codebook_KxZ, usage_K, residuals_NxZ, np.random.default_rng(0),
                                              sampling)
  live = usage_K > 0
  np.testing.assert_array_equal(new_KxZ[live], codebook_KxZ[live])
  for code in new_KxZ[~live]:
    assert np.any(np.all(residuals_NxZ == code, axis=1))
  assert np.unique(np.asarray(rqvae.nearest_codes(residuals_NxZ, new_KxZ))).size == 8
  np.testing.assert_array_equal(codebook_KxZ[~live], 10.0)  # the input is not modified


def test_code_usage_utilisation_and_collisions_equal_brute_force():
  rng = np.random.default_rng(4)
  codes = rng.integers(0, 5, size=(40, 2)).astype(np.int32)
  usage = np.asarray(rqvae_training.code_usage(jnp.asarray(codes), 6))
  want = np.stack([np.bincount(codes[:, level], minlength=6) for level in range(2)])
  np.testing.assert_array_equal(usage, want)
  assert rqvae_training.codebook_utilisation(codes, 6) == [len(set(codes[:, l].tolist())) / 6 for l in range(2)]
  assert rqvae_training.collision_rate(codes) == _brute_force_collision_rate(codes)
  assert 0 < rqvae_training.collision_rate(codes) < 1  # 40 items on 25 tuples: some shared, some not
  assert rqvae_training.collision_rate(np.arange(10).reshape(5, 2)) == 0.0


def test_bad_settings_fail_loudly():
  with pytest.raises(ValueError, match="batch_size"):
    rqvae_training.RQVAETrainConfig(batch_size=0)
  with pytest.raises(ValueError, match="restart_sampling"):
    rqvae_training.RQVAETrainConfig(restart_sampling="distance")
  with pytest.raises(ValueError, match=r"x must be \[N >= 1, 16\]"):
    rqvae_training.train_rqvae(np.zeros((4, 3), np.float32), CONFIG, TRAIN)
  with pytest.raises(ValueError, match="at least codebook_size"):
    rqvae_training.train_rqvae(np.zeros((5, 16), np.float32), CONFIG, TRAIN)
