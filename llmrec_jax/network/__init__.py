"""Flax T5 encoder-decoder with T5X's parameter tree (imports neither gin nor seqio)."""
from llmrec_jax.network.config import ACTIVATIONS, T5Config
from llmrec_jax.network.t5 import Decoder, Encoder, Transformer

__all__ = ["ACTIVATIONS", "Decoder", "Encoder", "T5Config", "Transformer"]
