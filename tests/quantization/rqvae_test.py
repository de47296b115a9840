"""RQ-VAE: codes are nearest codes (brute force), the STE carries the reconstruction gradient to the
encoder, the loss matches its formula, and training on clustered data recovers the clusters."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llmrec_jax.metrics.clustering import adjusted_rand_index
from llmrec_jax.quantization import rqvae, rqvae_training

# One shape for every RQ-VAE test (also rqvae_training_test): 512 items in 16-D, 2 levels of 8 codes.
CONFIG = rqvae.RQVAEConfig(input_dim=16, hidden_dims=(32,), latent_dim=16, num_levels=2, codebook_size=8)
TRAIN = rqvae_training.RQVAETrainConfig(epochs=50, batch_size=128, restart_every_steps=50, log_every=50,
                                        show_progress=False)


def _clusters(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """8 Gaussian clusters of 64 points: N(0, 1) centers in 16-D (about 5.7 apart), noise sd 0.3."""
  rng = np.random.default_rng(seed)
  labels = np.repeat(np.arange(8), 64)
  x = rng.normal(size=(8, 16))[labels] + 0.3 * rng.normal(size=(512, 16))
  return x.astype(np.float32), labels


def _brute_force_codes(latent_NxZ: np.ndarray, codebooks) -> tuple[np.ndarray, np.ndarray]:
  """(codes_NxL, last residuals_NxZ) by a per-item, per-code loop."""
  latent_NxZ = np.asarray(latent_NxZ, np.float64)
  codebooks = [np.asarray(c, np.float64) for c in codebooks]
  codes = np.zeros((latent_NxZ.shape[0], len(codebooks)), np.int32)
  last = np.zeros_like(latent_NxZ)
  for i, residual in enumerate(latent_NxZ):
    for level, codebook in enumerate(codebooks):
      last[i] = residual
      distances = [float(np.sum((residual - code) ** 2)) for code in codebook]
      codes[i, level] = int(np.argmin(distances))
      residual = residual - codebook[codes[i, level]]
  return codes, last


def test_encode_codes_are_the_nearest_codes_level_by_level():
  x, _ = _clusters()
  params = rqvae.init_params(CONFIG, 0)
  want, last_residual_NxZ = _brute_force_codes(rqvae.encode_latent(params, x), rqvae.codebooks_of(params))
  codes = np.asarray(rqvae.encode_codes(params, x))
  assert codes.dtype == np.int32 and codes.shape == (512, 2)
  np.testing.assert_array_equal(codes, want)
  assert np.unique(codes[:, 1]).size > 1  # the check sees more than one code
  last_codebook = np.asarray(rqvae.codebooks_of(params)[-1], np.float64)
  want_d = np.sum((last_residual_NxZ[:, None, :] - last_codebook[None, :, :]) ** 2, axis=-1)
  np.testing.assert_allclose(rqvae.last_level_distances(params, x), want_d, rtol=1e-4, atol=1e-4)


def test_losses_follow_their_formula():
  x, _ = _clusters()
  params = rqvae.init_params(CONFIG, 1)
  recon_N, quant_N, codes = rqvae.item_losses(params, x, CONFIG)
  q = rqvae.encode_residuals(params, x)
  np.testing.assert_array_equal(codes, q.codes_NxL)
  # sg changes no value: each level adds (1 + beta) * mean_Z (r_l - e_l)^2
  gap_LxN = np.mean((np.asarray(q.residuals_LxNxZ) - np.asarray(q.chosen_LxNxZ)) ** 2, axis=-1)
  np.testing.assert_allclose(quant_N, (1 + CONFIG.commitment_weight) * gap_LxN.sum(axis=0), rtol=1e-5)
  decoded = rqvae.RQVAE(CONFIG).apply({"params": params}, jnp.sum(q.chosen_LxNxZ, axis=0),
                                      method=rqvae.RQVAE.decode)
  np.testing.assert_allclose(recon_N, np.mean((np.asarray(decoded) - x) ** 2, axis=-1), rtol=1e-5)
  loss, (metrics, codes_2) = rqvae.rqvae_loss(params, x, CONFIG)
  np.testing.assert_allclose(loss, np.mean(recon_N) + np.mean(quant_N), rtol=1e-6)
  assert set(metrics) == {"loss", "reconstruction", "quantization"}
  np.testing.assert_array_equal(codes_2, codes)


def test_straight_through_gradient_reaches_the_encoder_and_not_the_codebooks():
  """The reconstruction gradient w.r.t. the encoder equals that of decode(z + c) with the constant
  c = (sum of codes) - z; the codebooks get none of it."""
  x, _ = _clusters()
  params = rqvae.init_params(CONFIG, 2)
  grads = jax.grad(lambda p: jnp.mean(rqvae.item_losses(p, x, CONFIG)[0]))(params)
  q = rqvae.encode_residuals(params, x)
  offset_NxZ = jnp.sum(q.chosen_LxNxZ, axis=0) - rqvae.encode_latent(params, x)
  model = rqvae.RQVAE(CONFIG)

  def reference(encoder):
    variables = {"params": dict(params, encoder=encoder)}
    z = model.apply(variables, x, method=rqvae.RQVAE.encode)
    return jnp.mean(jnp.square(model.apply(variables, z + offset_NxZ, method=rqvae.RQVAE.decode) - x))

  want = jax.grad(reference)(params["encoder"])
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), grads["encoder"], want)
  assert float(jnp.linalg.norm(grads["encoder"]["dense_0"]["kernel"])) > 0
  for codebook in rqvae.codebooks_of(grads):
    np.testing.assert_array_equal(codebook, 0.0)


def test_training_lowers_the_reconstruction_loss_and_level_0_recovers_the_clusters():
  x, labels = _clusters()
  logged = []
  params, stats = rqvae_training.train_rqvae(x, CONFIG, TRAIN, log_fn=lambda step, m: logged.append(step))
  assert logged == [50, 100, 150, 200]
  # The initial loss is after k-means init; 200 AdamW steps bring it below a fifth.
  assert stats["reconstruction_loss"] < 0.2 * stats["reconstruction_loss_initial"]
  codes = np.asarray(rqvae.encode_codes(params, x))
  assert adjusted_rand_index(codes[:, 0], labels) > 0.9


def test_config_from_params_reads_the_architecture_back():
  assert rqvae.config_from_params(rqvae.init_params(CONFIG, 0)) == CONFIG


@pytest.mark.parametrize("bad", [dict(input_dim=0), dict(hidden_dims=(8, -1)), dict(latent_dim=2.5),
                                 dict(num_levels=0), dict(codebook_size=0), dict(commitment_weight=-0.1)])
def test_bad_configs_fail_loudly(bad):
  with pytest.raises(ValueError, match="RQVAEConfig"):
    rqvae.RQVAEConfig(**{"input_dim": 4, **bad})
