"""Data core: readers, leave-one-out splits, textual-ID tables, prompt templates, synthetic data.

Everything here is plain Python / numpy (no JAX). SeqIO tasks live in their own modules on top.
"""
from llmrec_jax.data.errors import DataError
from llmrec_jax.data.records import RecData
from llmrec_jax.data.sources import load_dataset, load_movielens, load_p5
from llmrec_jax.data.splits import LooSplit, leave_one_out

__all__ = ["DataError", "RecData", "load_dataset", "load_movielens", "load_p5", "LooSplit", "leave_one_out"]
