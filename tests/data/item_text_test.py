"""Item text rendering: unescaping, flattening, de-duplication, field order, length cap."""
import gzip
import html
import json

import pytest

from llmrec_jax.data import item_text

META = {"title": "Tom &amp; Jerry&#39;s   Cream", "brand": "ACME",
        "categories": [["Beauty", "Skin Care", "Face"], ["Beauty", "Skin Care", "Body"]], "price": 3.5}


def test_default_fields_order_and_cleaning():
  text = item_text.render_item_text(META)
  assert text == "Tom & Jerry's Cream. ACME. Beauty, Skin Care, Face, Body"


def test_fields_are_configurable_and_missing_fields_skipped():
  assert item_text.render_item_text(META, fields=("brand", "price", "nope")) == "ACME. 3.5"
  assert item_text.render_item_text({}, fields=("title",)) == ""
  assert item_text.render_item_text({"name": "Sal's", "categories": ["Pizza", "Food", "Pizza"]},
                                    fields=item_text.YELP_FIELDS) == "Sal's. Pizza, Food"
  with pytest.raises(TypeError):
    item_text.render_item_text(META, fields="title")


@pytest.mark.parametrize("max_words", [1, 3, 5, 100])
def test_max_words_is_a_prefix(max_words):
  full = item_text.render_item_text(META, max_words=1000).split()
  capped = item_text.render_item_text(META, max_words=max_words).split()
  assert capped == full[:max_words]
  with pytest.raises(ValueError):
    item_text.render_item_text(META, max_words=0)


def test_double_escaped_entities():
  assert item_text.render_item_text({"title": "A &amp;amp; B"}) == "A & B"


def test_real_beauty_items_have_no_entities(shared_dir):
  with gzip.open(shared_dir / "data" / "amazon2014_beauty" / "items.jsonl.gz", "rt") as f:
    metas = [json.loads(line) for _, line in zip(range(2000), f)]
  for m in metas:
    text = item_text.render_item_text(m, max_words=1000)
    assert html.unescape(text) == text
    assert 0 < len(text.split()) <= 1000
    for cat in {c for path in m["categories"] for c in path}:
      assert text.count(html.unescape(cat)) >= 1
