"""Semantic IDs (TIGER, LC-Rec): RQ-VAE codes of item embeddings as item IDs (`codes`), and the
whole-stream recommender trained on them (`run`). Gin files bind `semantic_ids.SemanticIds`."""
from llmrec_jax.systems.semantic_ids.codes import SemanticIds

__all__ = ["SemanticIds"]
