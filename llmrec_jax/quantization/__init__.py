"""Quantization of item content embeddings into semantic IDs (RQ-VAE, k-means); imports no system."""
