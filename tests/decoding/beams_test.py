"""Beam bookkeeping shared by the searches: cache expansion and beam gathers against numpy
indexing, and the leaves they must leave alone."""
import jax.numpy as jnp
import numpy as np

from llmrec_jax.decoding import beams


def test_cache_index_and_scalars_are_not_beam_expanded():
  cache = {"a": {"k": jnp.ones((2, 3)), "cache_index": jnp.array(5)},
           "cached_bias": jnp.ones((1, 4))}
  out = beams.cache_map(lambda x: beams.add_beam_dim(x, 4), cache)
  assert out["a"]["k"].shape == (2, 4, 3)
  assert out["a"]["cache_index"].shape == ()
  assert out["cached_bias"].shape == (1, 4)


def test_expand_cache_repeats_each_example_for_its_beams_and_keeps_projected_memory():
  b, k = 2, 3
  rng = np.random.default_rng(0)
  h = rng.normal(size=(b, 5)).astype(np.float32)
  memory = rng.normal(size=(b, 4, 2)).astype(np.float32)
  cache = {"layer": {"h": jnp.asarray(h), "projected_key": jnp.asarray(memory)}}
  out = beams.expand_cache(cache, k, cache_offset=0)
  np.testing.assert_array_equal(out["layer"]["h"], np.repeat(h, k, axis=0))
  np.testing.assert_array_equal(out["layer"]["projected_key"], memory)


def test_gather_beams_tree_equals_numpy_indexing_at_both_offsets():
  b, k_old, k_new = 2, 3, 4
  rng = np.random.default_rng(1)
  beam_BxK = rng.integers(0, k_old, size=(b, k_new)).astype(np.int32)
  x_BKx5 = rng.normal(size=(b * k_old, 5)).astype(np.float32)
  got = beams.gather_beams_tree({"x": jnp.asarray(x_BKx5)}, jnp.asarray(beam_BxK), b)["x"]
  want = np.stack([x_BKx5[i * k_old + beam_BxK[i]] for i in range(b)]).reshape(b * k_new, 5)
  np.testing.assert_array_equal(got, want)
  # Scanned layers: [layers, B*K, ...] with the batch at axis 1.
  y_2xBKx5 = rng.normal(size=(2, b * k_old, 5)).astype(np.float32)
  got = beams.gather_beams_tree(jnp.asarray(y_2xBKx5), jnp.asarray(beam_BxK), b, offset=1)
  want = np.stack([np.stack([y[i * k_old + beam_BxK[i]] for i in range(b)]).reshape(b * k_new, 5)
                   for y in y_2xBKx5])
  np.testing.assert_array_equal(got, want)


def test_extend_beams_copies_the_parent_and_writes_the_token_after_cur_index():
  rng = np.random.default_rng(2)
  seqs_BxKxL1 = rng.integers(0, 9, size=(2, 3, 6)).astype(np.int32)
  beam_BxN = np.array([[2, 0, 2, 1], [1, 1, 0, 2]], np.int32)
  token_BxN = np.array([[5, 6, 7, 8], [1, 2, 3, 4]], np.int32)
  got = np.asarray(beams.extend_beams(jnp.asarray(seqs_BxKxL1), jnp.asarray(beam_BxN),
                                      jnp.asarray(token_BxN), jnp.array(2)))
  for i in range(2):
    for n in range(4):
      want = seqs_BxKxL1[i, beam_BxN[i, n]].copy()
      want[3] = token_BxN[i, n]
      np.testing.assert_array_equal(got[i, n], want)
