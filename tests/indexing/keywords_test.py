"""TF-IDF bootstrap targets: drawn from the title, in title order, the most distinctive words."""
import collections
import math

import pytest

from llmrec_jax.data import synthetic
from llmrec_jax.indexing import keywords

HANDMADE = [
    "OPI Nail Lacquer, Simmer and Shimmer, 0.5-Fluid Ounce",
    "OPI Nail Lacquer, Red and Hot",
    "Nail Polish Remover and Nail Polish",
    "Rose Water",
    "",
    "The the THE",
]


def _titles():
  data = synthetic.make_synthetic(num_users=40, num_items=60, seed=3)
  return [keywords.item_title(m) for m in data.item_meta] + HANDMADE


def _is_subsequence(sub, seq):
  it = iter(seq)
  return all(w in it for w in sub)


def test_targets_are_title_words_in_title_order():
  titles = _titles()
  for title, tid in zip(titles, keywords.keyword_ids(titles)):
    words = tid.split()
    distinct = list(dict.fromkeys(keywords.title_words(title)))
    assert len(words) == len(set(words))
    assert _is_subsequence(words, distinct), (title, tid)
    assert len(words) == keywords.num_keywords(len(distinct))
    if len(distinct) >= 3:
      assert 3 <= len(words) <= 5


def test_keeps_the_highest_tfidf_words():
  titles = _titles()
  df = keywords.document_frequencies(titles)
  n = len(titles)
  for title, tid in zip(titles, keywords.keyword_ids(titles)):
    tf = collections.Counter(keywords.title_words(title))
    score = {w: (1 + math.log(c)) * (math.log((1 + n) / (1 + df[w])) + 1) for w, c in tf.items()}
    kept = set(tid.split())
    dropped = set(tf) - kept
    if kept and dropped:
      assert min(score[w] for w in kept) >= max(score[w] for w in dropped) - 1e-12, (title, tid)


def test_rare_words_beat_catalogue_wide_words():
  tid = keywords.keyword_ids(HANDMADE)[0]
  assert "simmer" in tid.split() and "shimmer" in tid.split()
  assert "and" not in tid.split()   # in 3 of 6 titles


def test_title_field_unescapes_html_and_falls_back_to_name():
  assert keywords.item_title({"title": "Salt &amp;amp; Pepper"}) == "Salt & Pepper"
  assert keywords.item_title({"name": "Joe's Diner", "categories": ["Food"]}) == "Joe's Diner"
  assert keywords.item_title({"categories": ["x"]}) == ""


def test_title_word_share():
  assert keywords.title_word_share(["a b", "c x"], ["A B C", "c d"]) == pytest.approx(3 / 4)
  with pytest.raises(ValueError):
    keywords.title_word_share(["a"], [])


TEXTS = ["OPI Nail Lacquer, Simmer and Shimmer. OPI. Beauty, Nails", "Neutrogena Oil-Free Acne Wash, 6 Fl. Oz"]


def test_ids_made_of_text_words_share_all_their_words():
  ids = ["opi simmer shimmer", "neutrogena oil free wash"]
  assert keywords.title_word_share(ids, TEXTS) == 1.0
  assert keywords.wordless_id_share(ids, TEXTS) == 0.0


def test_garbage_ids_share_no_words():
  ids = ["ssssssssss", "zzq"]
  assert keywords.title_word_share(ids, TEXTS) == 0.0
  assert keywords.wordless_id_share(ids, TEXTS) == 1.0


def test_mixed_ids_count_every_word_occurrence():
  # Item 0: "opi" x2 and "nail" in the text, "qq" not (3 of 4); item 1: "oz" yes, "sss" no (1 of 2).
  ids = ["opi opi nail qq", "oz sss"]
  assert keywords.title_word_share(ids, TEXTS) == pytest.approx(4 / 6)
  assert keywords.wordless_id_share(ids, TEXTS) == 0.0
  # Words are matched in the normalised form of both sides; an empty ID has no text word.
  ids = ["Oil-Free", "", "lacquer"]
  texts = [TEXTS[1], TEXTS[0], TEXTS[1]]
  assert keywords.title_word_share(ids, texts) == pytest.approx(2 / 3)
  assert keywords.wordless_id_share(ids, texts) == pytest.approx(2 / 3)
  assert keywords.wordless_id_share([], []) == 0.0 and keywords.title_word_share([], []) == 0.0
  with pytest.raises(ValueError, match="wordless_id_share: 1 ids for 0 texts"):
    keywords.wordless_id_share(["a"], [])


def test_bad_sizes_raise():
  with pytest.raises(ValueError, match="min_words"):
    keywords.keyword_id("a b c", collections.Counter(), 1, min_words=4, max_words=3)


def test_keep_case_picks_the_same_words_in_title_case():
  titles = _titles()
  for title, low, cased in zip(titles, keywords.keyword_ids(titles), keywords.keyword_ids(titles, keep_case=True)):
    assert cased.lower() == low
    title_forms = set(keywords._WORD.findall(title))   # pylint: disable=protected-access
    assert set(cased.split()) <= title_forms   # each word exactly as written in the title
  assert keywords.keyword_ids(HANDMADE, keep_case=True)[3] == "Rose Water"
