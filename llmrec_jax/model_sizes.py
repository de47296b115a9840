"""Named T5 sizes for code paths without gin (demo, benchmarks, tests).

The gin files `gin_configs/models/{t5_tiny,t5_small,t5_base}.gin` state the same numbers;
`tests/model_sizes_test.py` checks that they agree.
"""
from __future__ import annotations

from typing import Any

from llmrec_jax.network import T5Config

SIZES: dict[str, dict[str, Any]] = {
    # CPU-sized: tests, demos, and every run on a laptop.
    "t5_tiny": dict(emb_dim=128, num_heads=4, head_dim=32, num_encoder_layers=2,
                    num_decoder_layers=2, mlp_dim=512, mlp_activations=("relu",),
                    logits_via_embedding=True),
    # t5-small v1.0 exactly (the IDGenRec recommender and generator).
    "t5_small": dict(emb_dim=512, num_heads=8, head_dim=64, num_encoder_layers=6,
                     num_decoder_layers=6, mlp_dim=2048, mlp_activations=("relu",),
                     logits_via_embedding=True),
    "t5_base": dict(emb_dim=768, num_heads=12, head_dim=64, num_encoder_layers=12,
                    num_decoder_layers=12, mlp_dim=3072, mlp_activations=("relu",),
                    logits_via_embedding=True),
}


def t5_config(size: str, vocab_size: int = 32128, **overrides: Any) -> T5Config:
  """`T5Config` of a named size; unknown sizes and fields fail loudly."""
  if size not in SIZES:
    raise ValueError(f"unknown model size {size!r}; known: {sorted(SIZES)}")
  return T5Config(vocab_size=vocab_size, **{**SIZES[size], **overrides})
