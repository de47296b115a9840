"""T5 multi-head dot-product attention with T5X's KV cache and a cross-attention K/V cache.

`MultiHeadDotProductAttention` (T5X parameter names `query`, `key`, `value`, `out`; see
`layers.DenseGeneral`) over pure helpers: `dot_product_attention` (softmax(q.k + bias) v),
`attention_logit_bias` (mask -> additive bias), `write_cache_position` and
`decode_step_mask_and_bias` (one cached decode step) and `grouped_dot_product_attention` (K
beam queries per cached memory row).

Shape legend inside this module: B batch, L query length, M key/memory length, H heads, Dh head
dim, D d_model, K beams per example. (The package legend's S/T are L or M here, because the same
attention serves encoder self-, decoder self- and cross-attention.)
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax

from llmrec_jax.network import layers

Array = jax.Array


def dot_product_attention(query_BxLxHxDh: Array, key_BxMxHxDh: Array, value_BxMxHxDh: Array,
                          bias: Array | None = None, dropout_rng: Array | None = None,
                          dropout_rate: float = 0.0, deterministic: bool = False,
                          dtype: Any = jnp.float32, float32_logits: bool = False) -> Array:
  """softmax(q.k + bias) v without 1/sqrt(Dh) (T5 folds it into the query init).

  Args:
    query_BxLxHxDh, key_BxMxHxDh, value_BxMxHxDh: projected heads.
    bias: additive logits bias broadcastable as [B|1, H|1, L, M] (mask bias + relative position).
    dropout_rng: rng for dropout on the attention weights (broadcast over queries, like T5X).
  Returns:
    out_BxLxHxDh.
  """
  if float32_logits:
    query_BxLxHxDh = query_BxLxHxDh.astype(jnp.float32)
    key_BxMxHxDh = key_BxMxHxDh.astype(jnp.float32)
  logits_BxHxLxM = jnp.einsum("blhd,bmhd->bhlm", query_BxLxHxDh, key_BxMxHxDh)
  if bias is not None:
    logits_BxHxLxM = logits_BxHxLxM + bias.astype(logits_BxHxLxM.dtype)
  weights_BxHxLxM = jax.nn.softmax(logits_BxHxLxM.astype(jnp.float32)).astype(dtype)
  if not deterministic and dropout_rate > 0.0:
    keep_prob = 1.0 - dropout_rate
    shape = weights_BxHxLxM.shape[:2] + (1,) + weights_BxHxLxM.shape[3:]
    keep_BxHx1xM = jax.random.bernoulli(dropout_rng, keep_prob, shape)
    weights_BxHxLxM = weights_BxHxLxM * (
        jnp.broadcast_to(keep_BxHx1xM, weights_BxHxLxM.shape).astype(dtype) / keep_prob)
  return jnp.einsum("bhlm,bmhd->blhd", weights_BxHxLxM, value_BxMxHxDh.astype(dtype))


def attention_logit_bias(mask: Array | None, bias: Array | None, dtype: Any) -> Array | None:
  """The additive logits bias: 0 where mask > 0 and `layers.MASK_BIAS` elsewhere, plus `bias`;
  None when both are None (shapes broadcast as [B|1, H|1, L, M])."""
  mask_bias = None
  if mask is not None:
    mask_bias = jnp.where(mask > 0, 0.0, layers.MASK_BIAS).astype(dtype)
  return layers.combine_biases(mask_bias, bias)


def write_cache_position(cached_key_BxHxDhxM: Array, cached_value_BxHxDhxM: Array,
                         key_Bx1xHxDh: Array, value_Bx1xHxDh: Array,
                         cur_index: Array) -> tuple[Array, Array]:
  """The cached keys/values [B, H, Dh, M] with one new position written at `cur_index` (added
  through a one-hot over M; that slot of the cache is still zero)."""
  length = cached_key_BxHxDhxM.shape[-1]
  one_hot_M = jax.nn.one_hot(cur_index, length, dtype=key_Bx1xHxDh.dtype)
  one_hot_1x1x1xM = one_hot_M[None, None, None]
  key_BxHxDhxM = cached_key_BxHxDhxM + jnp.moveaxis(key_Bx1xHxDh, -3, -1) * one_hot_1x1x1xM
  value_BxHxDhxM = (cached_value_BxHxDhxM
                    + jnp.moveaxis(value_Bx1xHxDh, -3, -1) * one_hot_1x1x1xM)
  return key_BxHxDhxM, value_BxHxDhxM


def decode_step_mask_and_bias(mask: Array | None, bias: Array | None, cur_index: Array,
                              batch: int, length: int,
                              dtype: Any) -> tuple[Array, Array | None]:
  """Mask and bias of a cached decode step at position `cur_index` of `length`.

  Returns:
    (mask AND positions <= cur_index, [B, 1, 1, M] broadcast with `mask`; row cur_index of the
    full relative bias [.., M, M], as [.., 1, M], or None).
  """
  seen_Bx1x1xM = jnp.broadcast_to(jnp.arange(length) <= cur_index, (batch, 1, 1, length))
  mask = layers.combine_masks(mask, seen_Bx1x1xM, dtype=dtype)
  if bias is not None:
    if bias.shape[-1] != length or bias.shape[-2] != length:
      raise ValueError(f"decode step needs the full [.., {length}, {length}] relative bias "
                       f"(pass max_decode_length={length}), got shape {bias.shape}")
    bias = lax.dynamic_slice_in_dim(bias, cur_index, 1, axis=-2)
  return mask, bias


def _group_queries(query_BqxLxHxDh: Array, bm: int, bias: Array | None) -> Array:
  """[Bm * K, 1, H, Dh] -> [Bm, K, H, Dh] for grouped attention, after checking the shapes."""
  bq, length = query_BqxLxHxDh.shape[:2]
  if length != 1 or bq % bm:
    raise ValueError(f"grouped attention needs one query position and a query batch that is a "
                     f"multiple of the memory batch; got queries {query_BqxLxHxDh.shape} and "
                     f"memory batch {bm}")
  if bias is not None and (bias.shape[0] not in (1, bm) or bias.shape[-2] != 1):
    raise ValueError(f"grouped attention needs a mask/bias of shape [{bm}|1, ., 1, M], got "
                     f"{bias.shape}")
  return query_BqxLxHxDh.reshape((bm, bq // bm) + query_BqxLxHxDh.shape[2:])


def grouped_dot_product_attention(query_BqxLxHxDh: Array, key_BmxMxHxDh: Array,
                                  value_BmxMxHxDh: Array, bias: Array | None,
                                  **kwargs) -> Array:
  """`dot_product_attention` (same keyword arguments); when the memory batch Bm is smaller than
  the query batch Bq = Bm * K, the K one-position queries sharing a memory row take its length
  axis ("grouped" attention).

  Returns:
    out_BqxLxHxDh.
  """
  bq, bm = query_BqxLxHxDh.shape[0], key_BmxMxHxDh.shape[0]
  if bq != bm:
    query_BqxLxHxDh = _group_queries(query_BqxLxHxDh, bm, bias)
  out_BqxLxHxDh = dot_product_attention(query_BqxLxHxDh, key_BmxMxHxDh, value_BmxMxHxDh,
                                        bias=bias, **kwargs)
  if bq != bm:
    out_BqxLxHxDh = out_BqxLxHxDh.reshape((bq, 1) + out_BqxLxHxDh.shape[2:])
  return out_BqxLxHxDh


class MultiHeadDotProductAttention(nn.Module):
  """T5 multi-head attention with T5X's autoregressive KV cache and a cross-attention K/V cache.

  Self-attention cache (collection 'cache', only when `decode=True`): `cached_key`,
  `cached_value` laid out [B, H, Dh, L_max] as in T5X (length last: the one-hot scatter trick),
  and a scalar int32 `cache_index`. The first decode=True call creates a zero cache sized by its
  inputs' length; every later call takes one position [B, 1, D], writes it at `cache_index`,
  attends to positions <= cache_index and uses row `cache_index` of the full relative-position
  bias.

  Cross-attention cache (`cache_kv=True`, the decoder's encoder-decoder attention in decode
  mode): the memory's projected keys/values `projected_key`, `projected_value` [Bm, M, H, Dh]
  are stored by the call that creates the cache and reused by calls with `inputs_kv=None`, so a
  decode step does not re-project the encoder output. They are per example, not per beam:
  queries [Bm * K, 1, D] (the K beams of an example adjacent) attend as [Bm, K, ...] against
  keys [Bm, M, ...] ("grouped" attention, no repetition of the memory). Beam searches leave
  these leaves un-expanded and un-gathered (`decoding.beams._CACHE_SKIP`).
  """
  num_heads: int
  head_dim: int
  dtype: Any = jnp.float32
  dropout_rate: float = 0.0
  kernel_init: layers.Initializer = layers.default_kernel_init
  float32_logits: bool = False

  @nn.compact
  def __call__(self, inputs_q_BxLxD: Array, inputs_kv_BxMxD: Array | None,
               mask: Array | None = None, bias: Array | None = None, *, decode: bool = False,
               deterministic: bool = False, cache_kv: bool = False) -> Array:
    """Attention of `inputs_q` over `inputs_kv`.

    Args:
      inputs_q_BxLxD: queries.
      inputs_kv_BxMxD: memory, or None with `cache_kv` to use the cached projected memory.
        Its batch may divide the queries' (grouped attention, see the class docstring).
      mask: [B|1, 1|H, L, M] (>0 = attend); in grouped attention [Bm|1, 1, 1, M].
      bias: [1, H, L, M].
      decode: self-attention KV cache (see the class docstring).
      deterministic: no dropout.
      cache_kv: the cache-creating call (no `projected_key` yet) stores the projected memory;
        calls with `inputs_kv=None` read it.
    Returns:
      out_BxLxD.
    """
    query_BxLxHxDh, key_BxMxHxDh, value_BxMxHxDh = self._project(inputs_q_BxLxD,
                                                                 inputs_kv_BxMxD, cache_kv)
    if decode:
      key_BxMxHxDh, value_BxMxHxDh, mask, bias = self._decode_cache(
          query_BxLxHxDh, key_BxMxHxDh, value_BxMxHxDh, mask, bias)
    attention_bias = attention_logit_bias(mask, bias, self.dtype)
    dropout_rng = None
    if not deterministic and self.dropout_rate > 0.0:
      dropout_rng = self.make_rng("dropout")
    out_BxLxHxDh = grouped_dot_product_attention(
        query_BxLxHxDh, key_BxMxHxDh, value_BxMxHxDh, attention_bias, dropout_rng=dropout_rng,
        dropout_rate=self.dropout_rate, deterministic=deterministic, dtype=self.dtype,
        float32_logits=self.float32_logits)
    return layers.DenseGeneral(features=inputs_q_BxLxD.shape[-1], axis=(-2, -1),
                               kernel_init=self.kernel_init, kernel_axes=("joined_kv", "embed"),
                               dtype=self.dtype, name="out")(out_BxLxHxDh)

  def _project(self, inputs_q_BxLxD: Array, inputs_kv_BxMxD: Array | None,
               cache_kv: bool) -> tuple[Array, Array, Array]:
    """(query_BxLxHxDh, key_BxMxHxDh, value_BxMxHxDh): the `query`/`key`/`value` projections
    (the query kernel initialised / sqrt(Dh)); with inputs_kv None, the cached projected
    memory, which the cache-creating `cache_kv` call stores."""
    projection = functools.partial(layers.DenseGeneral, axis=-1,
                                   features=(self.num_heads, self.head_dim),
                                   kernel_axes=("embed", "joined_kv"), dtype=self.dtype)
    depth_scaling = jnp.sqrt(self.head_dim).astype(self.dtype)
    query_init = lambda *args: self.kernel_init(*args) / depth_scaling  # noqa: E731
    query_BxLxHxDh = projection(kernel_init=query_init, name="query")(inputs_q_BxLxD)
    key_proj = projection(kernel_init=self.kernel_init, name="key")
    value_proj = projection(kernel_init=self.kernel_init, name="value")
    heads_axes = ("batch", "length", "heads", "kv")
    query_BxLxHxDh = layers.with_sharding_constraint(query_BxLxHxDh, heads_axes)
    if inputs_kv_BxMxD is None:
      if not (cache_kv and self.has_variable("cache", "projected_key")):
        raise ValueError("inputs_kv=None needs cache_kv=True and a cache holding the projected "
                         "memory (create the cache with a decode=True call given the encoder "
                         "output)")
      return (query_BxLxHxDh, self.get_variable("cache", "projected_key"),
              self.get_variable("cache", "projected_value"))
    key_BxMxHxDh = layers.with_sharding_constraint(key_proj(inputs_kv_BxMxD), heads_axes)
    value_BxMxHxDh = layers.with_sharding_constraint(value_proj(inputs_kv_BxMxD), heads_axes)
    if cache_kv and not self.has_variable("cache", "projected_key"):
      # Only the cache-creating call stores (later steps may pass a beam-repeated memory,
      # whose shape must not leak into a loop-carried cache).
      self.put_variable("cache", "projected_key", key_BxMxHxDh)
      self.put_variable("cache", "projected_value", value_BxMxHxDh)
    return query_BxLxHxDh, key_BxMxHxDh, value_BxMxHxDh

  def _decode_cache(self, query_BxLxHxDh: Array, key_BxMxHxDh: Array, value_BxMxHxDh: Array,
                    mask: Array | None, bias: Array | None):
    """The self-attention KV cache: the first call creates it (zeros, [B, H, Dh, M] for its
    inputs' length M) and changes nothing else; later calls write their one position
    ([B, 1, H, Dh] keys/values) at `cache_index` and advance it.

    Returns:
      (key_BxMxHxDh, value_BxMxHxDh, mask, bias): on a step, the whole cache and the step's
      mask and bias (`decode_step_mask_and_bias`); else the arguments.
    """
    is_initialized = self.has_variable("cache", "cached_key")
    # [B, M, H, Dh] -> [B, H, Dh, M]
    swap = lambda s: s[:-3] + (s[-2], s[-1], s[-3])  # noqa: E731
    cached_key = self.variable("cache", "cached_key", jnp.zeros, swap(key_BxMxHxDh.shape),
                               key_BxMxHxDh.dtype)
    cached_value = self.variable("cache", "cached_value", jnp.zeros,
                                 swap(value_BxMxHxDh.shape), value_BxMxHxDh.dtype)
    cache_index = self.variable("cache", "cache_index", lambda: jnp.array(0, dtype=jnp.int32))
    if not is_initialized:
      return key_BxMxHxDh, value_BxMxHxDh, mask, bias
    batch, num_heads, head_dim, length = cached_key.value.shape
    expected = (batch, 1, num_heads, head_dim)
    if query_BxLxHxDh.shape != expected:
      raise ValueError(f"autoregressive cache step expects query shape {expected} (one "
                       f"position per call), got {query_BxLxHxDh.shape}")
    cur_index = cache_index.value
    key_BxHxDhxM, value_BxHxDhxM = write_cache_position(
        cached_key.value, cached_value.value, key_BxMxHxDh, value_BxMxHxDh, cur_index)
    cached_key.value = key_BxHxDhxM
    cached_value.value = value_BxHxDhxM
    cache_index.value = cur_index + 1
    key_BxMxHxDh = jnp.moveaxis(key_BxHxDhxM, -1, -3)
    value_BxMxHxDh = jnp.moveaxis(value_BxHxDhxM, -1, -3)
    mask, bias = decode_step_mask_and_bias(mask, bias, cur_index, batch, length, self.dtype)
    return key_BxMxHxDh, value_BxMxHxDh, mask, bias
