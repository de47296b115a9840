import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llmrec_jax import losses


def _np_logsoftmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


@pytest.fixture(scope="module")
def case():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 5, 7)).astype(np.float32)
  targets = np.array([[4, 2, 1, 0, 0], [3, 1, 0, 0, 0], [5, 6, 2, 1, 0]], np.int32)
  return logits, targets


def test_mean_over_real_tokens_matches_numpy(case):
  logits, targets = case
  loss, z, w = losses.weighted_cross_entropy(jnp.asarray(logits), jnp.asarray(targets))
  lp = _np_logsoftmax(logits)
  nll = -np.take_along_axis(lp, targets[..., None], -1)[..., 0]
  mask = targets > 0
  np.testing.assert_allclose(loss, nll[mask].mean(), rtol=1e-5)
  assert float(z) == 0.0 and float(w) == mask.sum()


def test_idgenrec_official_averages_padding_up_to_longest_target(case):
  logits, targets = case
  loss, _, _ = losses.weighted_cross_entropy(jnp.asarray(logits), jnp.asarray(targets),
                                             loss_normalizing_factor="IDGENREC_OFFICIAL")
  # HF with labels padded by 0 to the longest target (4 tokens here): mean over B x 4.
  lp = _np_logsoftmax(logits[:, :4])
  nll = -np.take_along_axis(lp, targets[:, :4, None], -1)[..., 0]
  np.testing.assert_allclose(loss, nll.mean(), rtol=1e-5)


def test_label_smoothing_and_z_loss_match_definition(case):
  logits, targets = case
  ls, zc = 0.1, 1e-3
  loss, z, _ = losses.weighted_cross_entropy(jnp.asarray(logits), jnp.asarray(targets),
                                             label_smoothing=ls, z_loss=zc, loss_normalizing_factor=None)
  v = logits.shape[-1]
  q = np.full(logits.shape, ls / (v - 1))
  np.put_along_axis(q, targets[..., None], 1 - ls, -1)
  const = -((1 - ls) * np.log(1 - ls) + ls * np.log(ls / (v - 1)))
  lse = np.log(np.exp(logits).sum(-1))
  per = -(q * _np_logsoftmax(logits)).sum(-1) - const + zc * lse ** 2
  mask = targets > 0
  np.testing.assert_allclose(loss, per[mask].sum(), rtol=1e-5)
  np.testing.assert_allclose(z, (zc * lse ** 2)[mask].sum(), rtol=1e-5)


def test_perfect_smoothed_prediction_has_zero_loss():
  v, ls = 6, 0.2
  q = np.full((1, 1, v), ls / (v - 1))
  q[0, 0, 3] = 1 - ls
  loss, _, _ = losses.weighted_cross_entropy(jnp.log(jnp.asarray(q)), jnp.array([[3]]), label_smoothing=ls)
  assert abs(float(loss)) < 1e-5


def test_unknown_normalization_fails_loudly():
  with pytest.raises(ValueError, match="unknown loss_normalizing_factor"):
    losses.parse_normalization("NUM_REAL_TOKENS")
  assert losses.parse_normalization(None) is losses.LossNormalization.SUM
  assert losses.parse_normalization(2) == 2.0
