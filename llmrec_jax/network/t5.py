"""T5 encoder-decoder `Transformer` with T5X's parameter tree, methods and decode-cache protocol.

Parameter tree (see layers.py and attention.py for axes): `token_embedder/embedding`,
`encoder/{relpos_bias, layers_i/{pre_attention_layer_norm, attention, pre_mlp_layer_norm, mlp},
encoder_norm}`, `decoder/{relpos_bias, layers_i/{pre_self_attention_layer_norm, self_attention,
pre_cross_attention_layer_norm, encoder_decoder_attention, pre_mlp_layer_norm, mlp}, decoder_norm,
logits_dense}` (`logits_dense` only when `logits_via_embedding=False`).

Incremental decoding (T5X `EncoderDecoderModel` convention):
  1. `_, v = model.apply({'params': p}, enc_BxS, zeros_BxL, zeros_BxL, decode=True,
     enable_dropout=False, mutable=['cache'])` creates a zero cache for length L.
  2. `logits_Bx1xV, v = model.apply({'params': p, 'cache': v['cache']}, encoded_BxSxD, enc_BxS,
     tok_Bx1, tok_Bx1, decode=True, max_decode_length=L, enable_dropout=False,
     mutable=['cache'], method=model.decode)` advances one position per call.
  The cache-creating call (1., or a `decode=True` call of `model.decode` without a cache) also
  stores each layer's cross-attention keys/values of its encoder states; steps that pass
  `encoded=None` use them instead of re-projecting the encoder output, and may run B*K beams
  against the B cached examples (what `models.EncoderDecoderModel` does).
"""
from __future__ import annotations

import jax.numpy as jnp
from flax import linen as nn

from llmrec_jax.network import attention, layers
from llmrec_jax.network import output_subset
from llmrec_jax.network.config import T5Config

Array = layers.Array
_EMBED_AXES = ("batch", "length", "embed")


def _dropout(cfg: T5Config) -> nn.Dropout:
  # Broadcast over length like T5X: one mask per (example, feature), shared by all positions.
  return nn.Dropout(rate=cfg.dropout_rate, broadcast_dims=(-2,))


def _norm(cfg: T5Config, name: str) -> layers.RmsNorm:
  return layers.RmsNorm(epsilon=cfg.layer_norm_epsilon, dtype=cfg.dtype, name=name)


def _attention(cfg: T5Config, name: str) -> attention.MultiHeadDotProductAttention:
  return attention.MultiHeadDotProductAttention(
      num_heads=cfg.num_heads, head_dim=cfg.head_dim, dtype=cfg.dtype,
      dropout_rate=cfg.dropout_rate, float32_logits=cfg.float32_attention_logits, name=name)


def _mlp(cfg: T5Config) -> layers.MlpBlock:
  return layers.MlpBlock(intermediate_dim=cfg.mlp_dim, activations=cfg.mlp_activations,
                         intermediate_dropout_rate=cfg.dropout_rate, dtype=cfg.dtype, name="mlp")


def _relpos(cfg: T5Config) -> layers.RelativePositionBiases:
  return layers.RelativePositionBiases(
      num_buckets=cfg.relative_attention_num_buckets,
      max_distance=cfg.relative_attention_max_distance, num_heads=cfg.num_heads, dtype=cfg.dtype,
      name="relpos_bias")


class EncoderLayer(nn.Module):
  """Pre-norm self-attention + MLP block, both residual."""
  config: T5Config
  relative_embedding: nn.Module

  @nn.compact
  def __call__(self, x_BxSxD: Array, encoder_mask: Array | None = None,
               deterministic: bool = False) -> Array:
    cfg = self.config
    seq_len = x_BxSxD.shape[-2]
    bias_1xHxSxS = self.relative_embedding(seq_len, seq_len, True)
    h_BxSxD = _norm(cfg, "pre_attention_layer_norm")(x_BxSxD)
    h_BxSxD = _attention(cfg, "attention")(h_BxSxD, h_BxSxD, encoder_mask, bias_1xHxSxS,
                                           deterministic=deterministic)
    x_BxSxD = x_BxSxD + _dropout(cfg)(h_BxSxD, deterministic=deterministic)
    h_BxSxD = _norm(cfg, "pre_mlp_layer_norm")(x_BxSxD)
    h_BxSxD = _mlp(cfg)(h_BxSxD, deterministic=deterministic)
    x_BxSxD = x_BxSxD + _dropout(cfg)(h_BxSxD, deterministic=deterministic)
    return layers.with_sharding_constraint(x_BxSxD, _EMBED_AXES)


class DecoderLayer(nn.Module):
  """Pre-norm causal self-attention, cross-attention and MLP, all residual."""
  config: T5Config
  relative_embedding: nn.Module

  @nn.compact
  def __call__(self, y_BxTxD: Array, encoded_BxSxD: Array | None,
               decoder_mask: Array | None = None,
               encoder_decoder_mask: Array | None = None, deterministic: bool = False,
               decode: bool = False, max_decode_length: int | None = None) -> Array:
    cfg = self.config
    # In a decode step y has length 1; the bias is built for the full cache length and the
    # attention takes its `cache_index` row.
    length = max_decode_length if decode and max_decode_length else y_BxTxD.shape[-2]
    bias_1xHxTxT = self.relative_embedding(length, length, False)
    h_BxTxD = _norm(cfg, "pre_self_attention_layer_norm")(y_BxTxD)
    h_BxTxD = _attention(cfg, "self_attention")(h_BxTxD, h_BxTxD, decoder_mask, bias_1xHxTxT,
                                                deterministic=deterministic, decode=decode)
    y_BxTxD = y_BxTxD + _dropout(cfg)(h_BxTxD, deterministic=deterministic)
    h_BxTxD = _norm(cfg, "pre_cross_attention_layer_norm")(y_BxTxD)
    h_BxTxD = _attention(cfg, "encoder_decoder_attention")(
        h_BxTxD, encoded_BxSxD, encoder_decoder_mask, deterministic=deterministic,
        cache_kv=decode)
    y_BxTxD = y_BxTxD + _dropout(cfg)(h_BxTxD, deterministic=deterministic)
    h_BxTxD = _norm(cfg, "pre_mlp_layer_norm")(y_BxTxD)
    h_BxTxD = _mlp(cfg)(h_BxTxD, deterministic=deterministic)
    y_BxTxD = y_BxTxD + _dropout(cfg)(h_BxTxD, deterministic=deterministic)
    return layers.with_sharding_constraint(y_BxTxD, _EMBED_AXES)


class Encoder(nn.Module):
  """Embedding (or given input embeddings) -> layers -> final norm."""
  config: T5Config
  shared_embedding: nn.Module

  @nn.compact
  def __call__(self, encoder_input_tokens_BxS: Array, encoder_mask: Array | None = None,
               deterministic: bool = False,
               encoder_input_embeddings_BxSxD: Array | None = None) -> Array:
    cfg = self.config
    relpos = _relpos(cfg)
    if encoder_input_embeddings_BxSxD is None:
      x_BxSxD = self.shared_embedding(encoder_input_tokens_BxS.astype(jnp.int32))
    else:
      x_BxSxD = encoder_input_embeddings_BxSxD
    x_BxSxD = _dropout(cfg)(x_BxSxD, deterministic=deterministic).astype(cfg.dtype)
    for i in range(cfg.num_encoder_layers):
      x_BxSxD = EncoderLayer(config=cfg, relative_embedding=relpos, name=f"layers_{i}")(
          x_BxSxD, encoder_mask, deterministic)
    x_BxSxD = _norm(cfg, "encoder_norm")(x_BxSxD)
    return _dropout(cfg)(x_BxSxD, deterministic=deterministic)


class Decoder(nn.Module):
  """Embedding -> layers -> final norm -> logits (tied `attend` * D**-0.5, or `logits_dense`)."""
  config: T5Config
  shared_embedding: nn.Module

  @nn.compact
  def __call__(self, encoded_BxSxD: Array | None, decoder_input_tokens_BxT: Array,
               decoder_positions: Array | None = None, decoder_mask: Array | None = None,
               encoder_decoder_mask: Array | None = None, deterministic: bool = False,
               decode: bool = False, max_decode_length: int | None = None,
               output_kernel_DxU: Array | None = None) -> Array:
    del decoder_positions  # relative attention only needs index differences
    cfg = self.config
    relpos = _relpos(cfg)
    y_BxTxD = self.shared_embedding(decoder_input_tokens_BxT.astype(jnp.int32))
    y_BxTxD = _dropout(cfg)(y_BxTxD, deterministic=deterministic).astype(cfg.dtype)
    for i in range(cfg.num_decoder_layers):
      y_BxTxD = DecoderLayer(config=cfg, relative_embedding=relpos, name=f"layers_{i}")(
          y_BxTxD, encoded_BxSxD, decoder_mask=decoder_mask,
          encoder_decoder_mask=encoder_decoder_mask, deterministic=deterministic,
          decode=decode, max_decode_length=max_decode_length)
    y_BxTxD = _norm(cfg, "decoder_norm")(y_BxTxD)
    y_BxTxD = _dropout(cfg)(y_BxTxD, deterministic=deterministic)
    scale = y_BxTxD.shape[-1] ** -0.5 if cfg.logits_via_embedding else 1.0
    if isinstance(output_kernel_DxU, output_subset.SplitKernel):
      # Subset logits + the exact rest-of-vocab log-sum-exp column, no [B, T, V] temporary.
      b, t, d = y_BxTxD.shape
      logits_BxTxV = output_subset.subset_logits_with_rest(
          y_BxTxD.reshape(b * t, d), output_kernel_DxU, scale).reshape(b, t, -1)
    elif output_kernel_DxU is not None:
      # Logits of a token subset only (columns of `Transformer.output_kernel`).
      logits_BxTxV = jnp.dot(y_BxTxD.astype(jnp.float32), output_kernel_DxU.astype(jnp.float32))
      logits_BxTxV = logits_BxTxV * scale
    elif cfg.logits_via_embedding:
      # Tied output layer; D**-0.5 keeps logits at unit scale (T5 v1.0, HF tie_word_embeddings).
      logits_BxTxV = self.shared_embedding.attend(y_BxTxD) * (y_BxTxD.shape[-1] ** -0.5)
    else:
      logits_BxTxV = layers.DenseGeneral(cfg.vocab_size, dtype=jnp.float32,
                                         kernel_axes=("embed", "vocab"),
                                         name="logits_dense")(y_BxTxD)
    return layers.with_sharding_constraint(logits_BxTxV, ("batch", "length", "vocab"))


class Transformer(nn.Module):
  """T5 encoder-decoder; `__call__`, `encode`, `decode` have T5X's signatures.

  Shapes: B batch, S source length, T target length, D emb_dim, V vocab_size. Token id 0 is
  padding everywhere (masks come from `tokens > 0`).
  """
  config: T5Config

  def setup(self):
    cfg = self.config
    self.shared_embedding = layers.Embed(num_embeddings=cfg.vocab_size, features=cfg.emb_dim,
                                         dtype=cfg.dtype, attend_dtype=jnp.float32,
                                         name="token_embedder")
    self.encoder = Encoder(config=cfg, shared_embedding=self.shared_embedding)
    self.decoder = Decoder(config=cfg, shared_embedding=self.shared_embedding)

  def encode(self, encoder_input_tokens: Array, encoder_segment_ids: Array | None = None,
             enable_dropout: bool = True,
             encoder_input_embeddings: Array | None = None) -> Array:
    """Encoder states.

    Args:
      encoder_input_tokens: [B, S] int; 0 = padding (sets the attention mask even when
        `encoder_input_embeddings` is given).
      encoder_segment_ids: [B, S] packing segments, or None.
      enable_dropout: dropout on (needs the 'dropout' rng).
      encoder_input_embeddings: [B, S, D] used instead of the token-embedding lookup (soft
        prompts / spliced ID embeddings).
    Returns:
      encoded_BxSxD in `config.dtype`.
    """
    cfg = self.config
    tokens_BxS = encoder_input_tokens
    if encoder_input_embeddings is not None:
      expected = tokens_BxS.shape + (cfg.emb_dim,)
      if encoder_input_embeddings.shape != expected:
        raise ValueError(f"encoder_input_embeddings shape {encoder_input_embeddings.shape} != "
                         f"encoder_input_tokens shape + (emb_dim,) = {expected}")
    encoder_mask = layers.make_attention_mask(tokens_BxS > 0, tokens_BxS > 0, dtype=cfg.dtype)
    if encoder_segment_ids is not None:
      encoder_mask = layers.combine_masks(
          encoder_mask, layers.make_attention_mask(encoder_segment_ids, encoder_segment_ids,
                                                   jnp.equal, dtype=cfg.dtype), dtype=cfg.dtype)
    return self.encoder(tokens_BxS, encoder_mask, deterministic=not enable_dropout,
                        encoder_input_embeddings_BxSxD=encoder_input_embeddings)

  def decode(self, encoded: Array | None, encoder_input_tokens: Array, decoder_input_tokens: Array,
             decoder_target_tokens: Array, encoder_segment_ids: Array | None = None,
             decoder_segment_ids: Array | None = None, decoder_positions: Array | None = None,
             enable_dropout: bool = True, decode: bool = False,
             max_decode_length: int | None = None,
             output_kernel_DxU: Array | None = None) -> Array:
    """Decoder logits given encoder states.

    Args:
      encoded: [B, S, D] from `encode`. In a cached decode step: None to use the encoder
        states' cross-attention keys/values projected when the cache was created (no
        re-projection per step); then the step's batch may be a multiple B*K of the cache's B
        (K beams per example, adjacent) and the memory is not repeated.
      encoder_input_tokens: [B, S] (only `> 0` is used, for the cross-attention mask; in decode
        mode its batch is the memory's, B, even when the queries are B*K beams).
      decoder_input_tokens: [B, T] (shifted right), or [B, 1] in a cached decode step.
      decoder_target_tokens: [B, T]; `> 0` masks padded targets (ignored except for its shape
        when `decode=True`).
      encoder_segment_ids, decoder_segment_ids: [B, S], [B, T] packing segments (not in decode).
      decoder_positions: accepted for T5X compatibility; unused (relative attention).
      enable_dropout: dropout on.
      decode: use/update the 'cache' collection (see module docstring).
      max_decode_length: cache length L; required for single-step calls.
      output_kernel_DxU: from `output_kernel(token_ids_U)`: compute the logits of those U
        tokens only (column j = token_ids_U[j]) instead of all V; from
        `output_kernel(token_ids_U, rest_chunk=c)` (an `output_subset.SplitKernel`) also a last
        column with the exact log-sum-exp of the other V - U logits.
    Returns:
      logits_BxTxV float32 (V = U, or U + 1, with `output_kernel_DxU`).
    """
    cfg = self.config
    if decode:
      decoder_mask = None  # causality comes from the cache index
      # [B, 1, 1, S]: the same for every query position and beam.
      encoder_decoder_mask = (encoder_input_tokens > 0)[:, None, None, :].astype(cfg.dtype)
    else:
      decoder_mask = layers.make_decoder_mask(decoder_target_tokens, cfg.dtype,
                                              decoder_segment_ids_BxT=decoder_segment_ids)
      encoder_decoder_mask = layers.make_attention_mask(
          decoder_target_tokens > 0, encoder_input_tokens > 0, dtype=cfg.dtype)
    if encoder_segment_ids is not None:
      if decode:
        raise ValueError("packing (encoder_segment_ids) is not supported with decode=True")
      if decoder_segment_ids is None:
        raise ValueError("encoder_segment_ids given without decoder_segment_ids")
      encoder_decoder_mask = layers.combine_masks(
          encoder_decoder_mask,
          layers.make_attention_mask(decoder_segment_ids, encoder_segment_ids, jnp.equal,
                                     dtype=cfg.dtype), dtype=cfg.dtype)
    return self.decoder(encoded, decoder_input_tokens, decoder_positions=decoder_positions,
                        decoder_mask=decoder_mask, encoder_decoder_mask=encoder_decoder_mask,
                        deterministic=not enable_dropout, decode=decode,
                        max_decode_length=max_decode_length, output_kernel_DxU=output_kernel_DxU)

  def output_kernel(self, token_ids_U: Array, rest_chunk: int | None = None
                    ) -> Array | output_subset.SplitKernel:
    """kernel_DxU: the output-projection columns of `token_ids_U` (int32 [U]), gathered once
    per batch for `decode(..., output_kernel_DxU=...)`: the tied embedding rows (the D**-0.5
    scale is applied in `decode`) or the `logits_dense` kernel columns. With `rest_chunk`, an
    `output_subset.SplitKernel` that also holds the other columns in chunks of that size."""
    if self.config.logits_via_embedding:
      kernel_DxV = self.shared_embedding.embedding.T
    else:
      kernel_DxV = self.variables["params"]["decoder"]["logits_dense"]["kernel"]
    if rest_chunk is not None:
      return output_subset.split_kernel(kernel_DxV, token_ids_U, rest_chunk)
    return jnp.take(kernel_DxV, token_ids_U, axis=1)

  def __call__(self, encoder_input_tokens: Array, decoder_input_tokens: Array,
               decoder_target_tokens: Array, encoder_segment_ids: Array | None = None,
               decoder_segment_ids: Array | None = None, encoder_positions: Array | None = None,
               decoder_positions: Array | None = None, *, enable_dropout: bool = True,
               decode: bool = False, max_decode_length: int | None = None,
               encoder_input_embeddings: Array | None = None) -> Array:
    """Teacher-forced logits_BxTxV (float32) for [B, S] inputs and [B, T] decoder tokens."""
    del encoder_positions  # relative attention
    encoded_BxSxD = self.encode(encoder_input_tokens, encoder_segment_ids=encoder_segment_ids,
                                enable_dropout=enable_dropout,
                                encoder_input_embeddings=encoder_input_embeddings)
    return self.decode(encoded_BxSxD, encoder_input_tokens, decoder_input_tokens,
                       decoder_target_tokens, encoder_segment_ids=encoder_segment_ids,
                       decoder_segment_ids=decoder_segment_ids,
                       decoder_positions=decoder_positions, enable_dropout=enable_dropout,
                       decode=decode, max_decode_length=max_decode_length)
