"""Where a training run keeps its checkpoints in MODEL_DIR: one root per model it saves.

Each root is an `orbax_t5x.CheckpointManager` folder of `checkpoint_<step>` steps
(`orbax_t5x.step_dir`); the other files of MODEL_DIR (config.gin, metrics, ID tables,
run records) are not checkpoints and are named by their writers.

  MODEL_DIR/recommender/   the recommender's train state (+ ID tables, loop position)
  MODEL_DIR/generator/     the ID generator's train state
  MODEL_DIR/best/          the best-on-validation recommender params (stream trainer)
  MODEL_DIR/bootstrap/     the bootstrapped generator (a restart skips the bootstrap)
"""
from __future__ import annotations

import os

RECOMMENDER = "recommender"
GENERATOR = "generator"
BEST = "best"
BOOTSTRAP = "bootstrap"
ROOTS = (RECOMMENDER, GENERATOR, BEST, BOOTSTRAP)


def root(model_dir: str, name: str) -> str:
  """`MODEL_DIR/<name>` for one of `ROOTS`; another name fails listing them."""
  if name not in ROOTS:
    raise ValueError(f"no checkpoint root {name!r} in a model dir; roots: {list(ROOTS)}")
  return os.path.join(model_dir, name)


def recommender_root(model_dir: str) -> str:
  return root(model_dir, RECOMMENDER)


def generator_root(model_dir: str) -> str:
  return root(model_dir, GENERATOR)


def best_root(model_dir: str) -> str:
  return root(model_dir, BEST)


def bootstrap_root(model_dir: str) -> str:
  return root(model_dir, BOOTSTRAP)
