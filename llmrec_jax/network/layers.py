"""T5 building blocks: RMS norm, dense, embedding, relative position bias, masks, MLP.

Parameter names, shapes, logical axes and initialisers follow T5X `examples/t5/layers.py`, so a
T5X checkpoint's `params` tree and `params_axes` collection line up with ours. Every parameter is
declared with `flax.linen.partitioning.param_with_axes` (float32 storage, cast to `dtype` on use).

Shape legend inside this module: B batch, L query length, M key/memory length, D d_model,
H heads, Dh head dim, F MLP width, V vocab. (The package legend's S/T are L or M here, because the
same masks serve encoder self-, decoder self- and cross-attention.) The attention module itself is
`attention.MultiHeadDotProductAttention`.
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
