"""T5 attention against brute-force numpy versions."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llmrec_jax.network import attention, layers


def test_dot_product_attention_matches_numpy_softmax():
  rng = np.random.default_rng(2)
  q, k, v = (rng.normal(size=(2, 3, 4, 5)).astype(np.float32) for _ in range(3))
  mask = rng.random((2, 1, 3, 3)) > 0.3
  mask[..., 0] = True  # keep every row non-empty
  bias = np.where(mask, 0.0, layers.MASK_BIAS) + rng.normal(size=(1, 4, 3, 3))
  got = jax.jit(attention.dot_product_attention)(q, k, v, bias.astype(np.float32))
  logits = np.einsum("blhd,bmhd->bhlm", q, k) + bias  # no 1/sqrt(d): T5 folds it into init
  w = np.exp(logits - logits.max(-1, keepdims=True))
  w /= w.sum(-1, keepdims=True)
  np.testing.assert_allclose(got, np.einsum("bhlm,bmhd->blhd", w, v), rtol=1e-5, atol=1e-5)


def test_query_init_is_scaled_by_head_dim():
  attn = attention.MultiHeadDotProductAttention(num_heads=4, head_dim=16)
  x = jnp.ones((1, 2, 64))
  params = jax.jit(lambda: attn.init(jax.random.key(0), x, x, deterministic=True))()["params"]
  q_std, k_std = float(params["query"]["kernel"].std()), float(params["key"]["kernel"].std())
  assert q_std * 4 == pytest.approx(k_std, rel=0.1)  # 1/sqrt(head_dim) = 1/4


def test_grouped_attention_equals_attention_over_a_repeated_memory():
  bm, k, m, h, dh = 2, 3, 4, 2, 5
  rng = np.random.default_rng(3)
  q = rng.normal(size=(bm * k, 1, h, dh)).astype(np.float32)
  key, value = (rng.normal(size=(bm, m, h, dh)).astype(np.float32) for _ in range(2))
  mask = rng.random((bm, 1, 1, m)) > 0.3
  mask[..., 0] = True
  bias = attention.attention_logit_bias(mask, None, jnp.float32)
  got = attention.grouped_dot_product_attention(q, key, value, bias, deterministic=True)
  want = attention.dot_product_attention(q, np.repeat(key, k, axis=0), np.repeat(value, k, axis=0),
                                         bias=np.repeat(np.asarray(bias), k, axis=0),
                                         deterministic=True)
  assert got.shape == (bm * k, 1, h, dh)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_write_cache_position_sets_one_slot_and_keeps_the_rest():
  b, h, dh, m, cur = 2, 3, 4, 5, 2
  rng = np.random.default_rng(4)
  cached_k, cached_v = (rng.normal(size=(b, h, dh, m)).astype(np.float32) for _ in range(2))
  cached_k[..., cur] = 0.0  # the slot a step writes is still zero
  cached_v[..., cur] = 0.0
  new_k, new_v = (rng.normal(size=(b, 1, h, dh)).astype(np.float32) for _ in range(2))
  got_k, got_v = attention.write_cache_position(cached_k, cached_v, new_k, new_v, jnp.array(cur))
  for cached, new, got in ((cached_k, new_k, got_k), (cached_v, new_v, got_v)):
    want = cached.copy()
    want[..., cur] = new[:, 0]
    np.testing.assert_array_equal(got, want)
