"""Checkpoint I/O: Hugging Face T5 folders (`hf_t5`), Orbax checkpoints in T5X's layout with the
network's config in their metadata (`orbax_t5x`), which folder of a MODEL_DIR holds which model
(`layout`), and resuming from the newest checkpoint that reads back whole (`fail_safe`)."""
from llmrec_jax.checkpoints.hf_t5 import load_hf_t5, save_hf_t5

__all__ = ["load_hf_t5", "save_hf_t5"]
