"""Chunked subset logits: exact full-vocab log-probs without [N, V] logits."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llmrec_jax.network import output_subset

V, D, N = 37, 8, 5


def _full_log_softmax(y, kernel, scale):
  x = (y.astype(np.float64) @ kernel.astype(np.float64)) * scale
  m = x.max(1, keepdims=True)
  return x - (m + np.log(np.exp(x - m).sum(1, keepdims=True)))


@pytest.mark.parametrize("subset", [[1, 4, 7, 30], [0], list(range(V)), list(range(V - 1))])
@pytest.mark.parametrize("chunk", [1, 5, 8, 64])
def test_log_softmax_over_subset_and_rest_equals_full_vocab(subset, chunk):
  """log_softmax over [U subset columns, rest] equals the full-vocab log_softmax at the U tokens,
  for chunk sizes that divide V - U, leave a padded last chunk, or exceed it; with U = V the
  rest column is -inf."""
  rng = np.random.default_rng(chunk)
  y = rng.normal(size=(N, D)).astype(np.float32) * 3
  kernel = rng.normal(size=(D, V)).astype(np.float32)
  ids = np.asarray(subset, np.int32)
  split = jax.jit(output_subset.split_kernel, static_argnums=2)(jnp.asarray(kernel), jnp.asarray(ids), chunk)
  cols = output_subset.subset_logits_with_rest(jnp.asarray(y), split, scale=0.5)
  got = np.asarray(jax.nn.log_softmax(cols, axis=-1))
  assert got.shape == (N, len(ids) + 1)
  np.testing.assert_allclose(got[:, :-1], _full_log_softmax(y, kernel, 0.5)[:, ids], atol=2e-5)
  if len(ids) == V:
    assert np.all(np.isneginf(got[:, -1]))
  else:
    rest = [t for t in range(V) if t not in subset]
    x = (y.astype(np.float64) @ kernel.astype(np.float64)[:, rest]) * 0.5
    np.testing.assert_allclose(np.asarray(cols[:, -1]), np.log(np.exp(x).sum(1)), rtol=1e-5)


def test_rest_columns_are_each_other_column_once():
  """Every column outside the subset appears exactly once in the chunks; padding has bias -inf."""
  kernel = np.arange(2 * V, dtype=np.float32).reshape(2, V)  # column t holds (t, V + t)
  ids = np.asarray([3, 9, 0], np.int32)
  split = output_subset.split_kernel(jnp.asarray(kernel), jnp.asarray(ids), chunk=4)
  real = np.asarray(split.rest_bias_Cxc).reshape(-1) == 0
  cols = np.asarray(split.rest_CxDxc)[:, 0, :].reshape(-1)[real].astype(int)
  assert sorted(cols.tolist()) == sorted(set(range(V)) - {3, 9, 0})
  assert np.all(np.isneginf(np.asarray(split.rest_bias_Cxc).reshape(-1)[~real]))
  np.testing.assert_array_equal(np.asarray(split.subset_DxU)[0], ids)


def test_large_logits_do_not_overflow():
  y = jnp.full((2, D), 100.0)
  kernel = jnp.ones((D, V)) * 10.0
  cols = output_subset.subset_logits_with_rest(y, output_subset.split_kernel(kernel, jnp.asarray([2]), 4))
  lp = np.asarray(jax.nn.log_softmax(cols, axis=-1))
  np.testing.assert_allclose(lp[:, 0], -np.log(V), rtol=1e-5)
