"""Checkpoint I/O: Hugging Face T5 interop (orbax train-state checkpoints are added separately)."""
from llmrec_jax.checkpoints.hf_t5 import load_hf_t5, save_hf_t5

__all__ = ["load_hf_t5", "save_hf_t5"]
