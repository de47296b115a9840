"""Vocabularies: trained on the dataset (round trip, cache), and the real T5 SentencePiece model."""
import pytest

import seqio  # noqa: F401  (a required dependency: vocab wraps seqio vocabularies)

from llmrec_jax.data import vocab as vocab_lib  # noqa: E402
from llmrec_jax.data.item_text import render_item_text  # noqa: E402
from llmrec_jax.data.synthetic import make_synthetic  # noqa: E402


@pytest.fixture(scope="module")
def data():
  return make_synthetic(num_users=20, num_items=40, seed=3, num_topics=4)


def test_trained_vocab_round_trips_dataset_text(data, tmp_path):
  v = vocab_lib.get_vocabulary(data=data, extra_texts=["What comes next ? what is next"], cache_dir=tmp_path,
                               vocab_size=300)
  assert (v.pad_id, v.eos_id, v.unk_id) == (0, 1, 2)
  texts = [render_item_text(m) for m in data.item_meta[:20]] + ["what comes next ? a ; b -> 42"]
  for t in texts:
    ids = v.encode(t)
    assert v.unk_id not in ids
    assert v.decode(ids) == t
  assert 20 < v.vocab_size <= 300


def test_trained_vocab_is_cached_by_content(data, tmp_path):
  texts = vocab_lib.dataset_texts(data)
  p1 = vocab_lib.trained_vocab_path(texts, cache_dir=tmp_path, vocab_size=200)
  mtime = p1.stat().st_mtime_ns
  p2 = vocab_lib.trained_vocab_path(list(texts), cache_dir=tmp_path, vocab_size=200)
  assert p1 == p2 and p2.stat().st_mtime_ns == mtime            # reused, not retrained
  p3 = vocab_lib.trained_vocab_path(texts + ["one more line"], cache_dir=tmp_path, vocab_size=200)
  p4 = vocab_lib.trained_vocab_path(texts, cache_dir=tmp_path, vocab_size=150)
  assert len({p1, p3, p4}) == 3
  assert sorted(x.name for x in tmp_path.iterdir()) == sorted({p1.name, p3.name, p4.name})  # no temp files left


def test_bad_vocab_arguments_fail_loudly(tmp_path):
  with pytest.raises(ValueError, match="give vocab_path"):
    vocab_lib.get_vocabulary(cache_dir=tmp_path)
  with pytest.raises(ValueError, match="offline"):
    vocab_lib.get_vocabulary("gs://t5-data/vocabs/cc_all.32000/sentencepiece.model")
  with pytest.raises(FileNotFoundError, match="nope.model"):
    vocab_lib.get_vocabulary(tmp_path / "nope.model")


def test_t5_vocab(shared_dir):
  path = shared_dir / "vocab" / "t5_spiece.model"
  assert path.is_file(), f"{path} is missing from ../shared"
  v = vocab_lib.get_vocabulary(path)
  assert v.encode("Hello world") == [8774, 296]
  assert v.vocab_size == 32100 and (v.pad_id, v.eos_id, v.unk_id) == (0, 1, 2)
  assert v.decode([8774, 296]) == "Hello world"
