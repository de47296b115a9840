"""T5Config: the frozen, validated hyper-parameters of the Flax T5 network.

Field names follow T5X `examples/t5/network.py` so gin files written for T5X bind unchanged;
the relative-attention and epsilon fields are ours (T5X hard-codes them).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

# Names accepted in `mlp_activations`. 'gelu' is the tanh approximation (flax `nn.gelu`'s
# default, = HF `gelu_new`, which T5 v1.1 uses); 'gelu_exact' is the erf form (HF `gelu`).
ACTIVATIONS = ("relu", "gelu", "gelu_exact", "silu", "linear")


@dataclasses.dataclass(frozen=True)
class T5Config:
  """Global hyper-parameters of the T5 encoder-decoder.

  Attributes:
    vocab_size: V, rows of the shared token embedding.
    dtype: activation dtype (params are always float32); a dtype or its name ('bfloat16').
    emb_dim: D, model width.
    num_heads: H.
    num_encoder_layers: encoder depth.
    num_decoder_layers: decoder depth.
    head_dim: per-head width; H * head_dim need not equal D (T5 v1.1 XL does that).
    mlp_dim: hidden width of the feed-forward block.
    mlp_activations: one name per `wi` projection; their product feeds `wo`
      (('relu',) = T5 v1.0, ('gelu', 'linear') = T5 v1.1 gated-gelu).
    dropout_rate: after embeddings, sublayers and final norms, in the MLP, on attention weights.
    logits_via_embedding: tie the output projection to the token embedding (v1.0); then
      logits = y @ E.T * emb_dim**-0.5, else a separate `logits_dense` kernel (v1.1).
    float32_attention_logits: compute q.k and softmax in float32 even when dtype is bf16.
    relative_attention_num_buckets: relative-position buckets per direction pair (HF default 32).
    relative_attention_max_distance: distances >= this share the last bucket (HF default 128).
    layer_norm_epsilon: RMS-norm epsilon.
  """
  vocab_size: int
  dtype: Any = jnp.float32
  emb_dim: int = 512
  num_heads: int = 8
  num_encoder_layers: int = 6
  num_decoder_layers: int = 6
  head_dim: int = 64
  mlp_dim: int = 2048
  mlp_activations: tuple[str, ...] = ("relu",)
  dropout_rate: float = 0.1
  logits_via_embedding: bool = False
  float32_attention_logits: bool = False
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  layer_norm_epsilon: float = 1e-6

  def __post_init__(self):
    positive = ("vocab_size", "emb_dim", "num_heads", "num_encoder_layers",
                "num_decoder_layers", "head_dim", "mlp_dim",
                "relative_attention_num_buckets", "relative_attention_max_distance")
    for name in positive:
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"T5Config.{name} must be a positive int, got {value!r}")
    if self.relative_attention_num_buckets < 4:
      raise ValueError("T5Config.relative_attention_num_buckets must be >= 4 (half are "
                       f"exact, half logarithmic), got {self.relative_attention_num_buckets}")
    acts = self.mlp_activations
    if isinstance(acts, str):
      raise ValueError(f"T5Config.mlp_activations must be a sequence of names such as "
                       f"('relu',), got the string {acts!r}")
    acts = tuple(acts)
    unknown = [a for a in acts if a not in ACTIVATIONS]
    if not acts or unknown:
      raise ValueError(f"T5Config.mlp_activations={acts!r}: need >= 1 of {ACTIVATIONS}, "
                       f"unknown {unknown}")
    object.__setattr__(self, "mlp_activations", acts)  # gin may hand us a list
    try:
      dtype = jnp.dtype(self.dtype)
    except TypeError as e:
      raise ValueError(f"T5Config.dtype={self.dtype!r} is not a dtype") from e
    if not jnp.issubdtype(dtype, jnp.floating):
      raise ValueError(f"T5Config.dtype must be a float dtype, got {dtype}")
    object.__setattr__(self, "dtype", dtype)
    if not 0.0 <= float(self.dropout_rate) < 1.0:
      raise ValueError(f"T5Config.dropout_rate must be in [0, 1), got {self.dropout_rate}")
    if not float(self.layer_norm_epsilon) > 0.0:
      raise ValueError(f"T5Config.layer_norm_epsilon must be > 0, got {self.layer_norm_epsilon}")
