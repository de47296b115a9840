"""T5 building blocks against brute-force numpy versions."""
import jax.numpy as jnp
import numpy as np
import pytest

from llmrec_jax.network import layers


@pytest.mark.parametrize("bidirectional", [True, False])
def test_relative_position_bucket_invariants(bidirectional):
  buckets, max_distance = 16, 40
  rel = np.arange(-200, 201)
  got = layers.relative_position_bucket(rel, bidirectional, buckets, max_distance)
  half = buckets // 2 if bidirectional else buckets
  max_exact = half // 2
  assert got.min() >= 0 and got.max() < buckets
  # Keys before the query (rel < 0) use buckets [0, half); after it [half, 2*half) if bidirectional.
  before, after = got[rel < 0], got[rel > 0]
  dist_before, dist_after = -rel[rel < 0], rel[rel > 0]
  exact = dist_before < max_exact
  np.testing.assert_array_equal(before[exact], dist_before[exact])
  assert np.all(np.diff(before[::-1]) >= 0)  # non-decreasing with distance
  assert np.all(before[dist_before >= max_distance] == half - 1)
  assert got[rel == 0][0] == 0
  if bidirectional:
    np.testing.assert_array_equal(after - half, layers.relative_position_bucket(
        -dist_after, bidirectional, buckets, max_distance))
  else:
    assert np.all(after == 0)  # the future is one bucket (masked anyway)


def test_relative_position_biases_index_the_table():
  module = layers.RelativePositionBiases(num_buckets=8, max_distance=10, num_heads=3)
  table = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
  bias = np.asarray(module.apply({"params": {"rel_embedding": table}}, 5, 7, False))
  assert bias.shape == (1, 3, 5, 7)
  for i in range(5):
    for j in range(7):
      bucket = layers.relative_position_bucket(np.array(j - i), False, 8, 10)
      np.testing.assert_array_equal(bias[0, :, i, j], table[:, bucket])


def test_rms_norm_matches_numpy():
  x = np.random.default_rng(1).normal(size=(2, 3, 8)).astype(np.float32)
  scale = np.linspace(0.5, 2.0, 8).astype(np.float32)
  got = layers.RmsNorm(epsilon=1e-6).apply({"params": {"scale": scale}}, x)
  want = x / np.sqrt(np.mean(x ** 2, axis=-1, keepdims=True) + 1e-6) * scale
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_make_decoder_mask_brute_force():
  tgt = np.array([[5, 3, 2, 0, 0], [4, 4, 1, 7, 2]])
  seg = np.array([[1, 1, 2, 0, 0], [1, 2, 2, 2, 3]])
  got = np.asarray(layers.make_decoder_mask(tgt, jnp.float32, decoder_segment_ids_BxT=seg))
  assert got.shape == (2, 1, 5, 5)
  for b in range(2):
    for i in range(5):
      for j in range(5):
        want = j <= i and tgt[b, i] > 0 and tgt[b, j] > 0 and seg[b, i] == seg[b, j]
        assert got[b, 0, i, j] == float(want), (b, i, j)


def test_unknown_activation_is_rejected():
  with pytest.raises(ValueError, match="unknown MLP activation 'tanh'"):
    layers.activation_fn("tanh")
