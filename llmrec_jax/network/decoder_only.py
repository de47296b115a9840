"""A T5-style decoder-only (causal) Transformer for whole-sequence recommendation.

The layers are T5's (pre-norm RMS norm, relative position bias, ReLU or gated MLP, tied output
embedding scaled by D**-0.5) without cross-attention, the form T5X's `DecoderOnlyModel` trains.
Parameter tree: `token_embedder/embedding`, `decoder/{relpos_bias, layers_i/{
pre_self_attention_layer_norm, self_attention/{query,key,value,out}, pre_mlp_layer_norm, mlp},
decoder_norm}` (+ `decoder/logits_dense` when `logits_via_embedding=False`).

Three ways to run it, all with the same parameters:
* `__call__(tokens_BxL, ...)`: teacher-forced logits at every position (training, scoring);
  `input_embeddings_BxLxD` replaces the token lookup (the ID phase's soft item IDs).
* `hidden` / `logits`: the same in two steps, so a loss can project only some positions, or
  only some output columns (`output_kernel`).
* `prefill(tokens_BxP, valid_BxP)`: a left-padded prompt -> every layer's keys/values
  [B, P, H, Dh] (`PromptMemory`).
* `step(token_BKx1, memory, cache, index)`: one generated position for B*K beams (K adjacent
  per example). Beams attend to the prompt memory of their example (grouped, never repeated per
  beam) and to their own generated keys/values in `cache` ([BK, T, H, Dh] per layer, written at
  slot `index`); the query sits at absolute position P + index.
Relative positions make left padding invisible: only distances between real tokens matter.
"""
from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
from flax import linen as nn

from llmrec_jax.network import attention, layers
from llmrec_jax.network.config import T5Config

Array = jax.Array


@flax.struct.dataclass
class PromptMemory:
  """Per-layer prompt keys/values and which prompt positions are real."""
  keys: tuple[Array, ...]  # per layer [B, P, H, Dh]
  values: tuple[Array, ...]  # per layer [B, P, H, Dh]
  valid_BxP: Array  # bool


class CausalSelfAttention(nn.Module):
  """T5 self-attention (T5X parameter names) with full, prefill and single-step paths."""
  config: T5Config

  def setup(self):
    cfg = self.config
    scale = jnp.sqrt(cfg.head_dim).astype(cfg.dtype)
    query_init = lambda *a: layers.default_kernel_init(*a) / scale  # noqa: E731
    proj = dict(axis=-1, features=(cfg.num_heads, cfg.head_dim), dtype=cfg.dtype,
                kernel_axes=("embed", "joined_kv"))
    self.query = layers.DenseGeneral(kernel_init=query_init, **proj)
    self.key = layers.DenseGeneral(**proj)
    self.value = layers.DenseGeneral(**proj)
    self.out = layers.DenseGeneral(features=cfg.emb_dim, axis=(-2, -1), dtype=cfg.dtype,
                                   kernel_axes=("joined_kv", "embed"))

  def __call__(self, x_BxLxD: Array, bias_BxHxLxL: Array, deterministic: bool = True
               ) -> tuple[Array, tuple[Array, Array]]:
    """Output [B, L, D] and this layer's (keys, values) [B, L, H, Dh]."""
    k_BxLxHxDh, v_BxLxHxDh = self.key(x_BxLxD), self.value(x_BxLxD)
    rate = self.config.dropout_rate
    use_dropout = not deterministic and rate > 0.0
    out_BxLxHxDh = attention.dot_product_attention(
        self.query(x_BxLxD), k_BxLxHxDh, v_BxLxHxDh, bias=bias_BxHxLxL,
        dropout_rng=self.make_rng("dropout") if use_dropout else None, dropout_rate=rate,
        deterministic=not use_dropout, dtype=self.config.dtype)
    return self.out(out_BxLxHxDh), (k_BxLxHxDh, v_BxLxHxDh)

  def step(self, x_BKx1xD: Array, prompt_k_BxPxHxDh: Array, prompt_v_BxPxHxDh: Array,
           prompt_bias_BxHx1xP: Array, cache: dict[str, Array], index: Array,
           gen_bias_1xHx1xT: Array) -> tuple[Array, dict[str, Array]]:
    """One position for B*K beams; returns (out [BK, 1, D], updated cache)."""
    b = prompt_k_BxPxHxDh.shape[0]
    bk = x_BKx1xD.shape[0]
    q_BKx1xHxDh = self.query(x_BKx1xD)
    k_new, v_new = self.key(x_BKx1xD), self.value(x_BKx1xD)
    cache = {"cached_key": jax.lax.dynamic_update_slice_in_dim(cache["cached_key"], k_new, index, 1),
             "cached_value": jax.lax.dynamic_update_slice_in_dim(cache["cached_value"], v_new,
                                                                 index, 1)}
    # Grouped scores against the example's prompt: [B, K, H, Dh] . [B, P, H, Dh] -> [B, H, K, P].
    q_BxKxHxDh = q_BKx1xHxDh.reshape((b, bk // b) + q_BKx1xHxDh.shape[2:])
    prompt_BxHxKxP = jnp.einsum("bkhd,bphd->bhkp", q_BxKxHxDh, prompt_k_BxPxHxDh)
    prompt_BxHxKxP = prompt_BxHxKxP + prompt_bias_BxHx1xP
    gen_BKxHx1xT = jnp.einsum("blhd,bthd->bhlt", q_BKx1xHxDh, cache["cached_key"])
    gen_BKxHx1xT = gen_BKxHx1xT + gen_bias_1xHx1xT
    # One softmax over prompt and generated keys.
    prompt_BKxHx1xP = jnp.swapaxes(prompt_BxHxKxP, 1, 2).reshape(bk, -1, 1,
                                                                 prompt_BxHxKxP.shape[-1])
    logits = jnp.concatenate([prompt_BKxHx1xP, gen_BKxHx1xT], axis=-1).astype(jnp.float32)
    weights = jax.nn.softmax(logits).astype(q_BKx1xHxDh.dtype)
    p = prompt_k_BxPxHxDh.shape[1]
    w_prompt_BxKxHxP = weights[..., 0, :p].reshape(b, bk // b, -1, p)
    out_BxKxHxDh = jnp.einsum("bkhp,bphd->bkhd", w_prompt_BxKxHxP, prompt_v_BxPxHxDh)
    out_BKx1xHxDh = out_BxKxHxDh.reshape(bk, 1, *out_BxKxHxDh.shape[2:])
    out_BKx1xHxDh = out_BKx1xHxDh + jnp.einsum("bhlt,bthd->blhd", weights[..., p:],
                                               cache["cached_value"])
    return self.out(out_BKx1xHxDh), cache


def _dropout(cfg: T5Config) -> nn.Dropout:
  return nn.Dropout(rate=cfg.dropout_rate, broadcast_dims=(-2,))


class DecoderOnlyLayer(nn.Module):
  """Pre-norm causal self-attention and MLP, both residual."""
  config: T5Config

  def setup(self):
    cfg = self.config
    norm = lambda: layers.RmsNorm(epsilon=cfg.layer_norm_epsilon, dtype=cfg.dtype)  # noqa: E731
    self.pre_self_attention_layer_norm = norm()
    self.self_attention = CausalSelfAttention(cfg)
    self.pre_mlp_layer_norm = norm()
    self.mlp = layers.MlpBlock(intermediate_dim=cfg.mlp_dim, activations=cfg.mlp_activations,
                               intermediate_dropout_rate=cfg.dropout_rate, dtype=cfg.dtype)
    self.dropout = _dropout(cfg)

  def __call__(self, x_BxLxD: Array, bias_BxHxLxL: Array, deterministic: bool = True):
    h_BxLxD, kv = self.self_attention(self.pre_self_attention_layer_norm(x_BxLxD), bias_BxHxLxL,
                                      deterministic)
    x_BxLxD = x_BxLxD + self.dropout(h_BxLxD, deterministic=deterministic)
    x_BxLxD = x_BxLxD + self._mlp(x_BxLxD, deterministic)
    return layers.with_sharding_constraint(x_BxLxD, ("batch", "length", "embed")), kv

  def _mlp(self, x_BxLxD: Array, deterministic: bool) -> Array:
    h_BxLxD = self.mlp(self.pre_mlp_layer_norm(x_BxLxD), deterministic=deterministic)
    return self.dropout(h_BxLxD, deterministic=deterministic)

  def step(self, x_BKx1xD, prompt_k, prompt_v, prompt_bias, cache, index, gen_bias):
    h, cache = self.self_attention.step(self.pre_self_attention_layer_norm(x_BKx1xD), prompt_k,
                                        prompt_v, prompt_bias, cache, index, gen_bias)
    x_BKx1xD = x_BKx1xD + h
    return x_BKx1xD + self._mlp(x_BKx1xD, True), cache


def causal_bias(valid_BxL: Array, relpos_1xHxLxL: Array, dtype: Any) -> Array:
  """Attention bias [B, H, L, L]: relative positions, -1e10 on future or invalid keys (a padded
  query also sees itself, so no row is empty)."""
  length = valid_BxL.shape[1]
  causal_LxL = jnp.tril(jnp.ones((length, length), jnp.bool_))
  allowed_BxLxL = causal_LxL[None] & valid_BxL[:, None, :]
  allowed_BxLxL = allowed_BxLxL | jnp.eye(length, dtype=jnp.bool_)[None]
  mask_bias = jnp.where(allowed_BxLxL, 0.0, layers.MASK_BIAS).astype(dtype)
  return mask_bias[:, None] + relpos_1xHxLxL


class DecoderOnlyTransformer(nn.Module):
  """Causal T5 stack over token streams; token id 0 is padding / the start token."""
  config: T5Config

  def setup(self):
    cfg = self.config
    self.token_embedder = layers.Embed(num_embeddings=cfg.vocab_size, features=cfg.emb_dim,
                                       dtype=cfg.dtype, attend_dtype=jnp.float32)
    self.decoder = _DecoderStack(cfg, self.token_embedder)

  def __call__(self, tokens_BxL: Array, valid_BxL: Array | None = None, *,
               input_embeddings_BxLxD: Array | None = None,
               enable_dropout: bool = False) -> Array:
    """Teacher-forced logits_BxLxV (float32). `valid_BxL` (default: all) marks real positions."""
    y_BxLxD = self.hidden(tokens_BxL, valid_BxL, input_embeddings_BxLxD=input_embeddings_BxLxD,
                          enable_dropout=enable_dropout)
    return self.decoder.logits(y_BxLxD)

  def hidden(self, tokens_BxL: Array, valid_BxL: Array | None = None, *,
             input_embeddings_BxLxD: Array | None = None, enable_dropout: bool = False) -> Array:
    """Final hidden states y_BxLxD (after the last norm): `logits` of them are the outputs."""
    if valid_BxL is None:
      valid_BxL = jnp.ones(tokens_BxL.shape, jnp.bool_)
    y_BxLxD, _ = self.decoder(tokens_BxL, valid_BxL, input_embeddings_BxLxD,
                              deterministic=not enable_dropout)
    return y_BxLxD

  def logits(self, y_XxD: Array, output_kernel_DxU: Array | None = None) -> Array:
    """Output logits of hidden states: over all V, or over the columns of `output_kernel`."""
    return self.decoder.logits(y_XxD, output_kernel_DxU)

  def output_kernel(self, token_ids_U: Array) -> Array:
    """kernel_DxU: the output-projection columns of `token_ids_U` (for `logits` and `step`)."""
    if self.config.logits_via_embedding:
      kernel_DxV = self.token_embedder.embedding.T
    else:
      kernel_DxV = self.variables["params"]["decoder"]["logits_dense"]["kernel"]
    return jnp.take(kernel_DxV, token_ids_U, axis=1)

  def prefill(self, tokens_BxP: Array, valid_BxP: Array) -> PromptMemory:
    """The `PromptMemory` (every layer's keys/values) of a left-padded prompt."""
    _, (keys, values) = self.decoder(tokens_BxP, valid_BxP, None, deterministic=True)
    return PromptMemory(keys=keys, values=values, valid_BxP=valid_BxP)

  def step(self, token_BKx1: Array, memory: PromptMemory, cache: dict, index: Array,
           max_len: int, output_kernel_DxU: Array | None = None) -> tuple[Array, dict]:
    """Logits [BK, V] (or [BK, U] with `output_kernel_DxU`) of one generated position at
    absolute position P + index, and the updated cache."""
    return self.decoder.step(token_BKx1, memory, cache, index, max_len, output_kernel_DxU)

  def init_cache(self, batch_size: int, max_len: int) -> dict:
    """Zero generated-key/value cache for `max_len` generated positions (batch B)."""
    cfg = self.config
    shape = (batch_size, max_len, cfg.num_heads, cfg.head_dim)
    return {f"layers_{i}": {"cached_key": jnp.zeros(shape, cfg.dtype),
                            "cached_value": jnp.zeros(shape, cfg.dtype)}
            for i in range(cfg.num_decoder_layers)}


class _DecoderStack(nn.Module):
  config: T5Config
  embedder: nn.Module

  def setup(self):
    cfg = self.config
    self.relpos_bias = layers.RelativePositionBiases(
        num_buckets=cfg.relative_attention_num_buckets,
        max_distance=cfg.relative_attention_max_distance, num_heads=cfg.num_heads,
        dtype=cfg.dtype)
    self.layers = [DecoderOnlyLayer(cfg, name=f"layers_{i}")
                   for i in range(cfg.num_decoder_layers)]
    self.decoder_norm = layers.RmsNorm(epsilon=cfg.layer_norm_epsilon, dtype=cfg.dtype)
    self.dropout = _dropout(cfg)
    if not cfg.logits_via_embedding:
      self.logits_dense = layers.DenseGeneral(cfg.vocab_size, dtype=jnp.float32,
                                              kernel_axes=("embed", "vocab"))

  def logits(self, y_XxD: Array, output_kernel_DxU: Array | None = None) -> Array:
    scale = y_XxD.shape[-1] ** -0.5 if self.config.logits_via_embedding else 1.0
    if output_kernel_DxU is not None:
      return jnp.dot(y_XxD.astype(jnp.float32), output_kernel_DxU.astype(jnp.float32)) * scale
    if self.config.logits_via_embedding:
      logits = self.embedder.attend(y_XxD) * scale
    else:
      logits = self.logits_dense(y_XxD)
    axes = ("batch", "length", "vocab") if logits.ndim == 3 else ("batch", "vocab")
    return layers.with_sharding_constraint(logits, axes)

  def __call__(self, tokens_BxL, valid_BxL, input_embeddings_BxLxD, deterministic: bool):
    cfg = self.config
    length = tokens_BxL.shape[1]
    if input_embeddings_BxLxD is None:
      x_BxLxD = self.embedder(tokens_BxL.astype(jnp.int32))
    else:
      x_BxLxD = input_embeddings_BxLxD
    x_BxLxD = self.dropout(x_BxLxD, deterministic=deterministic).astype(cfg.dtype)
    bias = causal_bias(valid_BxL, self.relpos_bias(length, length, False), cfg.dtype)
    keys, values = [], []
    for layer in self.layers:
      x_BxLxD, (k, v) = layer(x_BxLxD, bias, deterministic)
      keys.append(k)
      values.append(v)
    y_BxLxD = self.dropout(self.decoder_norm(x_BxLxD), deterministic=deterministic)
    return y_BxLxD, (tuple(keys), tuple(values))

  def step(self, token_BKx1, memory: PromptMemory, cache: dict, index, max_len: int,
           output_kernel_DxU=None):
    cfg = self.config
    b, p = memory.valid_BxP.shape
    # Relative bias of the query at P + index against keys 0 .. P + max_len - 1.
    full_1xHxNxN = self.relpos_bias(p + max_len, p + max_len, False)
    row_1xHx1xN = jax.lax.dynamic_slice_in_dim(full_1xHxNxN, p + index, 1, axis=2)
    prompt_mask = jnp.where(memory.valid_BxP, 0.0, layers.MASK_BIAS).astype(cfg.dtype)
    prompt_bias_BxHx1xP = row_1xHx1xN[..., :p] + prompt_mask[:, None, None, :]
    seen_1x1x1xT = (jnp.arange(max_len) <= index).reshape(1, 1, 1, max_len)
    gen_bias_1xHx1xT = row_1xHx1xN[..., p:] + jnp.where(seen_1x1x1xT, 0.0,
                                                        layers.MASK_BIAS).astype(cfg.dtype)
    x_BKx1xD = self.embedder(token_BKx1.astype(jnp.int32)).astype(cfg.dtype)
    new_cache = {}
    for i, layer in enumerate(self.layers):
      x_BKx1xD, new_cache[f"layers_{i}"] = layer.step(
          x_BKx1xD, memory.keys[i], memory.values[i], prompt_bias_BxHx1xP,
          cache[f"layers_{i}"], index, gen_bias_1xHx1xT)
    logits = self.logits(self.decoder_norm(x_BKx1xD)[:, 0], output_kernel_DxU)
    return logits, new_cache
