"""Gin configs shipped as package data (`llmrec_jax.gin_configs`); always on the gin search path."""
import os

PATH = os.path.dirname(os.path.abspath(__file__))
