"""Training views: every target word is in its view, copy targets are contiguous title words."""
import numpy as np
import pytest

from llmrec_jax.data import item_text, synthetic
from llmrec_jax.indexing import keywords
from llmrec_jax.systems.idgenrec import augment

HANDMADE = [
    {"title": "OPI Nail Lacquer, Simmer and Shimmer, 0.5-Fluid Ounce", "brand": "OPI",
     "categories": [["Beauty", "Makeup", "Nails", "Nail Polish"]]},
    {"title": "Dr. Scholl's Quick Heat Paraffin Spa Bath", "brand": "Dr. Scholl's"},
    {"title": "Rose", "categories": [["Beauty"]]},
    {"brand": "NoTitle", "categories": [["Beauty", "Skin Care"]]},
]


def _catalogue():
  metas = list(synthetic.make_synthetic(num_users=30, num_items=40, seed=5).item_meta) + HANDMADE
  texts = [item_text.render_item_text(m) for m in metas]
  titles = [keywords.item_title(m) for m in metas]
  return texts, titles, keywords.keyword_ids(titles, keep_case=True)


def _contiguous(sub, seq):
  return any(seq[i:i + len(sub)] == sub for i in range(len(seq) - len(sub) + 1))


@pytest.mark.parametrize("word_dropout,copy_rate", [(0.0, 0.0), (0.3, 0.0), (0.5, 0.5), (0.2, 1.0)])
def test_every_target_word_is_in_its_view(word_dropout, copy_rate):
  texts, titles, targets = _catalogue()
  rng = np.random.default_rng(0)
  for _ in range(20):
    for text, title, target in zip(texts, titles, targets):
      if not target:
        continue
      chunks = augment.title_chunk_count(text, title)
      view, view_target = augment.augment(text, target, chunks, rng, word_dropout=word_dropout,
                                          copy_rate=copy_rate, max_copy_words=3)
      assert view_target
      assert set(keywords.title_words(view_target)) <= set(keywords.title_words(view)), (view, view_target)
      # a view keeps whole chunks of the text, in order
      it = iter(text.split())
      assert all(c in it for c in view.split())
      if view == text and view_target == target:
        continue
      title_view = keywords.title_words(" ".join(view.split()[:chunks]))   # holds the view's title part
      if not set(keywords.title_words(view_target)) <= set(keywords.title_words(target)):
        # a copy target: a contiguous run of the view's title words, at most max_copy_words long
        assert len(view_target.split()) <= 3
        assert _contiguous(keywords.title_words(view_target), title_view), (view, view_target)


def test_no_augmentation_is_identity():
  texts, titles, targets = _catalogue()
  rng = np.random.default_rng(1)
  for text, title, target in zip(texts, titles, targets):
    view = augment.augment(text, target, augment.title_chunk_count(text, title), rng, word_dropout=0.0,
                           copy_rate=0.0)
    assert view == (text, augment.restrict_target(target, text) or target)
    assert augment.restrict_target(target, text) == target   # keyword IDs are title words


def test_restricted_target_keeps_order_and_case():
  target = "OPI Simmer Shimmer Fluid"
  assert augment.restrict_target(target, "opi nail and shimmer 0.5-Fluid") == "OPI Shimmer Fluid"
  assert augment.restrict_target(target, "nothing here") == ""


def test_views_vary_and_drop_rate_is_respected():
  rng = np.random.default_rng(2)
  kept = np.stack([augment.drop_chunks(40, 0.25, rng) for _ in range(500)])
  assert abs(1 - kept.mean() - 0.25) < 0.02
  assert kept.any(axis=1).all()
  assert augment.drop_chunks(3, 0.999, rng).sum() >= 1   # never an empty view
  spans = {augment.copy_span("a b c d e".split(), 2, 0.0, rng) for _ in range(200)}
  assert spans == {"a", "b", "c", "d", "e", "a b", "b c", "c d", "d e"}   # every run of 1-2 words


def test_title_chunk_count():
  assert augment.title_chunk_count("Rose Water. Acme. Beauty", "Rose  Water") == 2
  assert augment.title_chunk_count("Acme. Beauty", "Rose Water") == 2   # unknown: the whole text
  assert augment.title_chunk_count("Acme. Beauty", "") == 2


def test_splice_is_a_new_item_with_its_own_keyword_id():
  texts, titles, _ = _catalogue()
  df = keywords.document_frequencies(titles)
  rng = np.random.default_rng(3)
  for _ in range(10):
    for text, title in zip(texts, titles):
      chunks = augment.title_chunk_count(text, title)
      other = titles[int(rng.integers(len(titles)))]
      spliced, target, n = augment.splice(text, chunks, other, df, len(titles), rng)
      if not other.split():
        assert (spliced, target) == (text, "")
        continue
      words = spliced.split()
      head, rest = words[:n], words[n:]
      assert rest == text.split()[chunks:]   # brand and categories stay
      k = next(i for i in range(len(head), 0, -1) if head[:i] == text.split()[:i])   # own head ...
      assert " ".join(other.split()).endswith(" ".join(head[k:]))   # ... then a tail of the other title
      assert target == keywords.keyword_id(" ".join(head), df, len(titles), keep_case=True)
      assert set(keywords.title_words(target)) <= set(keywords.title_words(" ".join(head)))
