"""A run's checkpoint roots, by name."""
import os

import pytest

from llmrec_jax.checkpoints import layout


def test_named_roots_sit_in_the_model_dir():
  named = {layout.recommender_root: layout.RECOMMENDER, layout.generator_root: layout.GENERATOR,
           layout.best_root: layout.BEST, layout.bootstrap_root: layout.BOOTSTRAP}
  for fn, name in named.items():
    assert fn("/runs/a") == layout.root("/runs/a", name) == os.path.join("/runs/a", name)
  assert sorted(named.values()) == sorted(layout.ROOTS)


def test_unknown_root_lists_the_known_ones():
  with pytest.raises(ValueError, match=r"'recomender'.*'recommender', 'generator'"):
    layout.root("/runs/a", "recomender")
