"""T5 building blocks: RMS norm, dense, embedding, relative position bias, attention, MLP, masks.

Parameter names, shapes, logical axes and initialisers follow T5X `examples/t5/layers.py`, so a
T5X checkpoint's `params` tree and `params_axes` collection line up with ours. Every parameter is
declared with `flax.linen.partitioning.param_with_axes` (float32 storage, cast to `dtype` on use).

Shape legend inside this module: B batch, L query length, M key/memory length, D d_model,
H heads, Dh head dim, F MLP width, V vocab. (The package legend's S/T are L or M here, because the
same attention serves encoder self-, decoder self- and cross-attention.)
"""
from __future__ import annotations

import functools
import operator
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax.linen import partitioning as nn_partitioning
from jax import lax

Array = jax.Array
Initializer = Callable[..., Array]
param_with_axes = nn_partitioning.param_with_axes
# Logical-axis activation constraints (T5X's); a no-op unless partitioning rules are active.
with_sharding_constraint = nn_partitioning.with_sharding_constraint

# T5X defaults: fan-in truncated normal for kernels, N(0, 1) for the token embedding and a
# fan-avg uniform for the relative position table.
default_kernel_init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
default_embed_init = nn.initializers.normal(stddev=1.0)
default_relpos_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")
# Attention-logit bias at masked positions (T5X's; finite, so fully masked rows stay NaN-free).
MASK_BIAS = -1e10

_ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "relu": nn.relu,
    "gelu": functools.partial(nn.gelu, approximate=True),   # HF gelu_new, T5 v1.1
    "gelu_exact": functools.partial(nn.gelu, approximate=False),
    "silu": nn.silu,
    "linear": lambda x: x,
}


def activation_fn(name: str) -> Callable[[Array], Array]:
  """Activation by `T5Config.mlp_activations` name."""
  if name not in _ACTIVATIONS:
    raise ValueError(f"unknown MLP activation {name!r}; known: {sorted(_ACTIVATIONS)}")
  return _ACTIVATIONS[name]


def _lead_ones(x: Array, ndim: int) -> Array:
  """Reshape a trailing-axis vector [D] to [1, ..., 1, D] (explicit rank; rank promotion raises)."""
  return jnp.reshape(x, (1,) * (ndim - x.ndim) + x.shape)


class RmsNorm(nn.Module):
  """T5 layer norm: x / sqrt(mean(x^2) + eps) * scale, in float32, no mean subtraction, no bias."""
  epsilon: float = 1e-6
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxLxD: Array) -> Array:
    x_BxLxD = jnp.asarray(x_BxLxD, jnp.float32)
    mean2_BxLx1 = jnp.mean(lax.square(x_BxLxD), axis=-1, keepdims=True)
    y_BxLxD = jnp.asarray(x_BxLxD * lax.rsqrt(mean2_BxLx1 + self.epsilon), self.dtype)
    scale_D = param_with_axes("scale", nn.initializers.ones, (x_BxLxD.shape[-1],), jnp.float32,
                              axes=("embed",))
    return y_BxLxD * _lead_ones(jnp.asarray(scale_D, self.dtype), y_BxLxD.ndim)


class DenseGeneral(nn.Module):
  """Bias-free linear map over `axis`; the kernel is stored 2-D [prod(in), prod(out)] like T5X."""
  features: int | tuple[int, ...]
  axis: int | tuple[int, ...] = -1
  dtype: Any = jnp.float32
  kernel_init: Initializer = default_kernel_init
  kernel_axes: tuple[str, ...] = ()

  @nn.compact
  def __call__(self, inputs: Array) -> Array:
    features = tuple(self.features) if isinstance(self.features, Sequence) else (self.features,)
    axis = tuple(self.axis) if isinstance(self.axis, Sequence) else (self.axis,)
    inputs = jnp.asarray(inputs, self.dtype)
    axis = tuple(a % inputs.ndim for a in axis)
    in_shape = tuple(inputs.shape[a] for a in axis)
    kernel = param_with_axes("kernel", self.kernel_init,
                             (int(np.prod(in_shape)), int(np.prod(features))), jnp.float32,
                             axes=self.kernel_axes)
    kernel = jnp.reshape(jnp.asarray(kernel, self.dtype), in_shape + features)
    contract = tuple(range(len(axis)))
    return lax.dot_general(inputs, kernel, ((axis, contract), ((), ())))


class Embed(nn.Module):
  """Token embedding table [V, D] ('vocab', 'embed') with `attend` for tied output logits."""
  num_embeddings: int
  features: int
  dtype: Any = jnp.float32
  attend_dtype: Any = jnp.float32
  embedding_init: Initializer = default_embed_init

  def setup(self):
    self.embedding = param_with_axes("embedding", self.embedding_init,
                                     (self.num_embeddings, self.features), jnp.float32,
                                     axes=("vocab", "embed"))

  def __call__(self, tokens_BxL: Array) -> Array:
    """[B, L] int -> [B, L, D] (gather; T5X's one-hot matmul only pays off on TPU)."""
    if not jnp.issubdtype(tokens_BxL.dtype, jnp.integer):
      raise ValueError(f"token ids must be integers, got dtype {tokens_BxL.dtype}")
    x_BxLxD = jnp.take(jnp.asarray(self.embedding, self.dtype), tokens_BxL, axis=0)
    return with_sharding_constraint(x_BxLxD, ("batch", "length", "embed"))

  def attend(self, y_BxLxD: Array) -> Array:
    """[B, L, D] -> [B, L, V] inner products with every embedding row."""
    return jnp.dot(jnp.asarray(y_BxLxD, self.attend_dtype),
                   jnp.asarray(self.embedding, self.attend_dtype).T)


def relative_position_bucket(relative_position: np.ndarray, bidirectional: bool = True,
                             num_buckets: int = 32, max_distance: int = 128) -> np.ndarray:
  """T5 bucket of (memory_position - query_position); numpy, so it folds into a jit constant.

  Half the buckets (per direction when bidirectional) are exact small distances, the rest grow
  logarithmically up to `max_distance`, beyond which all distances share the last bucket.
  Causal (bidirectional=False) maps every future position to bucket 0. Identical to HF's
  `T5Attention._relative_position_bucket` (checked in tests) and to T5X's.
  Returns int32 buckets in [0, num_buckets) with the shape of `relative_position`.
  """
  n = -np.asarray(relative_position, dtype=np.int64)
  ret = np.zeros_like(n, dtype=np.int32)
  if bidirectional:
    num_buckets //= 2
    ret += (n < 0).astype(np.int32) * num_buckets
    n = np.abs(n)
  else:
    n = np.maximum(n, 0)
  max_exact = num_buckets // 2
  is_small = n < max_exact
  with np.errstate(divide="ignore"):  # log(0) is only taken on the `is_small` branch
    log_ratio = np.log(n.astype(np.float32) / max_exact + np.finfo(np.float32).eps)
  val_if_large = max_exact + (log_ratio / np.log(max_distance / max_exact)
                              * (num_buckets - max_exact)).astype(np.int32)
  val_if_large = np.minimum(val_if_large, num_buckets - 1)
  return ret + np.where(is_small, n, val_if_large).astype(np.int32)


class RelativePositionBiases(nn.Module):
  """Learned per-head bias for each relative-position bucket; table `rel_embedding` [H, buckets]."""
  num_buckets: int
  max_distance: int
  num_heads: int
  dtype: Any = jnp.float32
  embedding_init: Initializer = default_relpos_init

  @nn.compact
  def __call__(self, qlen: int, klen: int, bidirectional: bool = True) -> Array:
    """Returns bias_1xHxLxM for query positions arange(qlen) and key positions arange(klen)."""
    relative_LxM = np.arange(klen)[None, :] - np.arange(qlen)[:, None]
    bucket_LxM = relative_position_bucket(relative_LxM, bidirectional, self.num_buckets,
                                          self.max_distance)
    table_HxNb = param_with_axes("rel_embedding", self.embedding_init,
                                 (self.num_heads, self.num_buckets), jnp.float32,
                                 axes=("heads", "relpos_buckets"))
    bias_HxLxM = jnp.take(jnp.asarray(table_HxNb, self.dtype), bucket_LxM, axis=1)
    return bias_HxLxM[None]


# ----------------------------------------------------------------------------- masks
def make_attention_mask(query_input_BxL: Array, key_input_BxM: Array,
                        pairwise_fn: Callable[[Array, Array], Array] = jnp.multiply,
                        dtype: Any = jnp.float32) -> Array:
  """mask_Bx1xLxM[b, 0, i, j] = pairwise_fn(query_input[b, i], key_input[b, j])."""
  mask_BxLxM = pairwise_fn(query_input_BxL[:, :, None], key_input_BxM[:, None, :])
  return mask_BxLxM[:, None].astype(dtype)


def make_causal_mask(x_BxL: Array, dtype: Any = jnp.float32) -> Array:
  """mask_Bx1xLxL allowing key j for query i iff j <= i."""
  idx_BxL = jnp.broadcast_to(jnp.arange(x_BxL.shape[-1], dtype=jnp.int32), x_BxL.shape)
  return make_attention_mask(idx_BxL, idx_BxL, jnp.greater_equal, dtype=dtype)


def combine_masks(*masks: Array | None, dtype: Any = jnp.float32) -> Array | None:
  """Logical AND of the non-None masks (same rank), or None."""
  masks = [m for m in masks if m is not None]
  if not masks:
    return None
  return functools.reduce(jnp.logical_and, masks).astype(dtype)


def combine_biases(*biases: Array | None) -> Array | None:
  """Sum of the non-None biases (same rank), or None."""
  biases = [b for b in biases if b is not None]
  return functools.reduce(operator.add, biases) if biases else None


def make_decoder_mask(decoder_target_tokens_BxT: Array, dtype: Any = jnp.float32,
                      decoder_segment_ids_BxT: Array | None = None) -> Array:
  """Teacher-forced decoder self-attention mask_Bx1xTxT: causal AND non-pad AND same segment."""
  nonpad_BxT = decoder_target_tokens_BxT > 0
  masks = [make_causal_mask(decoder_target_tokens_BxT, dtype),
           make_attention_mask(nonpad_BxT, nonpad_BxT, dtype=dtype)]
  if decoder_segment_ids_BxT is not None:
    masks.append(make_attention_mask(decoder_segment_ids_BxT, decoder_segment_ids_BxT,
                                     jnp.equal, dtype=dtype))
  return combine_masks(*masks, dtype=dtype)


# ----------------------------------------------------------------------------- attention
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
  """The additive logits bias: 0 where mask > 0 and MASK_BIAS elsewhere, plus `bias`; None when
  both are None (shapes broadcast as [B|1, H|1, L, M])."""
  mask_bias = None
  if mask is not None:
    mask_bias = jnp.where(mask > 0, 0.0, MASK_BIAS).astype(dtype)
  return combine_biases(mask_bias, bias)


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
  mask = combine_masks(mask, seen_Bx1x1xM, dtype=dtype)
  if bias is not None:
    if bias.shape[-1] != length or bias.shape[-2] != length:
      raise ValueError(f"decode step needs the full [.., {length}, {length}] relative bias "
                       f"(pass max_decode_length={length}), got shape {bias.shape}")
    bias = lax.dynamic_slice_in_dim(bias, cur_index, 1, axis=-2)
  return mask, bias


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
  these leaves un-expanded and un-gathered (`beam_search._CACHE_SKIP`).
  """
  num_heads: int
  head_dim: int
  dtype: Any = jnp.float32
  dropout_rate: float = 0.0
  kernel_init: Initializer = default_kernel_init
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
    return DenseGeneral(features=inputs_q_BxLxD.shape[-1], axis=(-2, -1),
                        kernel_init=self.kernel_init, kernel_axes=("joined_kv", "embed"),
                        dtype=self.dtype, name="out")(out_BxLxHxDh)

  def _project(self, inputs_q_BxLxD: Array, inputs_kv_BxMxD: Array | None,
               cache_kv: bool) -> tuple[Array, Array, Array]:
    """(query_BxLxHxDh, key_BxMxHxDh, value_BxMxHxDh): the `query`/`key`/`value` projections
    (the query kernel initialised / sqrt(Dh)); with inputs_kv None, the cached projected
    memory, which the cache-creating `cache_kv` call stores."""
    projection = functools.partial(DenseGeneral, axis=-1, features=(self.num_heads, self.head_dim),
                                   kernel_axes=("embed", "joined_kv"), dtype=self.dtype)
    depth_scaling = jnp.sqrt(self.head_dim).astype(self.dtype)
    query_init = lambda *args: self.kernel_init(*args) / depth_scaling  # noqa: E731
    query_BxLxHxDh = projection(kernel_init=query_init, name="query")(inputs_q_BxLxD)
    key_proj = projection(kernel_init=self.kernel_init, name="key")
    value_proj = projection(kernel_init=self.kernel_init, name="value")
    heads_axes = ("batch", "length", "heads", "kv")
    query_BxLxHxDh = with_sharding_constraint(query_BxLxHxDh, heads_axes)
    if inputs_kv_BxMxD is None:
      if not (cache_kv and self.has_variable("cache", "projected_key")):
        raise ValueError("inputs_kv=None needs cache_kv=True and a cache holding the projected "
                         "memory (create the cache with a decode=True call given the encoder "
                         "output)")
      return (query_BxLxHxDh, self.get_variable("cache", "projected_key"),
              self.get_variable("cache", "projected_value"))
    key_BxMxHxDh = with_sharding_constraint(key_proj(inputs_kv_BxMxD), heads_axes)
    value_BxMxHxDh = with_sharding_constraint(value_proj(inputs_kv_BxMxD), heads_axes)
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


class MlpBlock(nn.Module):
  """Feed-forward: wo(dropout(prod_i act_i(wi_i x))); one `wi` when a single activation."""
  intermediate_dim: int = 2048
  activations: tuple[str, ...] = ("relu",)
  kernel_init: Initializer = default_kernel_init
  intermediate_dropout_rate: float = 0.1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxLxD: Array, deterministic: bool = False) -> Array:
    hidden = []
    for idx, name in enumerate(self.activations):
      h_BxLxF = DenseGeneral(self.intermediate_dim, dtype=self.dtype, kernel_init=self.kernel_init,
                             kernel_axes=("embed", "mlp"),
                             name="wi" if len(self.activations) == 1 else f"wi_{idx}")(x_BxLxD)
      hidden.append(activation_fn(name)(h_BxLxF))
    h_BxLxF = functools.reduce(operator.mul, hidden)
    h_BxLxF = nn.Dropout(rate=self.intermediate_dropout_rate, broadcast_dims=(-2,))(
        h_BxLxF, deterministic=deterministic)
    h_BxLxF = with_sharding_constraint(h_BxLxF, ("batch", "length", "mlp"))
    return DenseGeneral(x_BxLxD.shape[-1], dtype=self.dtype, kernel_init=self.kernel_init,
                        kernel_axes=("mlp", "embed"), name="wo")(h_BxLxF)
