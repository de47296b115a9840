"""The registry of fixed ID schemes: names, unknown names, and unique IDs from every builder
(the schemes' own rules are checked in tests/systems/idgenrec/components_test.py)."""
import dataclasses

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


def test_title_ids_keep_case_only_on_request():
  data = synthetic.make_synthetic(num_users=30, num_items=20, num_topics=4, max_len=9, seed=1)
  metas = list(data.item_meta)
  metas[1] = {**metas[1], "title": metas[0]["title"].upper()}   # differs from item 0 only in case
  data = dataclasses.replace(data, item_meta=tuple(metas))
  lower = id_schemes.build("title", data, "")
  cased = id_schemes.build("title", data, "", keep_case=True)
  assert len(set(cased)) == len(cased) == data.num_items
  assert cased[1] == cased[0].upper() != cased[0]              # no suffix needed with case kept
  assert lower[1] == lower[0] + " 2"                            # lowercase: a clash, suffixed
  assert [c.lower() for i, c in enumerate(cased) if i != 1] == [t for i, t in enumerate(lower) if i != 1]
  assert id_schemes.build("sequential", data, "", keep_case=True) == id_schemes.build("sequential", data, "")
