"""The registry of fixed ID schemes: names, unknown names, and unique IDs from every builder
(the schemes' own rules are checked in tests/systems/idgenrec/components_test.py)."""
import pytest

from llmrec_jax.data import synthetic
from llmrec_jax.indexing import id_schemes


def test_registered_schemes_and_unknown_names():
  assert id_schemes.names() == ("reference", "title", "random", "sequential")
  with pytest.raises(ValueError, match=r"unknown fixed ID scheme 'semantic'; known: \('reference', "):
    id_schemes.build("semantic", synthetic.make_synthetic(num_users=5, num_items=8, num_topics=2, max_len=6), "")
  with pytest.raises(ValueError, match="already registered"):
    id_schemes.register("title")(lambda data, data_dir, **kw: [])


@pytest.mark.parametrize("name", ["title", "random", "sequential"])
def test_every_builder_gives_unique_non_empty_ids(name):
  data = synthetic.make_synthetic(num_users=30, num_items=20, num_topics=4, max_len=9, seed=1)
  ids = id_schemes.build(name, data, "", seed=2)
  assert len(ids) == data.num_items and all(ids) and len(set(ids)) == len(ids)
  assert ids == id_schemes.build(name, data, "", seed=2)  # deterministic


def test_make_unique_suffixes_empty_and_taken_ids():
  assert id_schemes.make_unique(["a", "", "a", "a 2"], None, what="t") == ["a", "item 1", "a 2", "a 2 2"]
