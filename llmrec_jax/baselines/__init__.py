"""Classic sequential-recommendation baselines with full-ranking leave-one-out evaluation.

Modules: `popularity` (most-popular by training counts), `sasrec` (Flax SASRec + CE / BCE losses),
`sasrec_train` (jitted train step, epoch loop, early stopping), `evaluation` (ranking over all N
items, shared by both), `run` (CLI: `python -m llmrec_jax.baselines.run --model sasrec ...`).
"""
