"""Leak-free user IDs: a generator that copies its input shows any leak of validation/test items."""
import logging

import numpy as np
import pytest

from llmrec_jax.data import synthetic
from llmrec_jax.data.records import RecData
from llmrec_jax.indexing import uniqueness, user_ids


@pytest.fixture(scope="module")
def data():
  return synthetic.make_synthetic(num_users=80, num_items=60, seed=1, min_len=3, max_len=8)


def _item_ids(data):
  # Two distinct made-up words per item, so every word names exactly one item.
  return [f"alpha{i} beta{i}" for i in range(data.num_items)]


def _copy_fn(texts):
  """A generator that copies its input (then a few crops of it), as a leaking model would."""
  def fn(keys, level):
    out = []
    for k in keys:
      words = texts[k].split()
      out.append([" ".join(words)] + [" ".join(words[j:]) for j in range(1, min(len(words), 4))])
    return out
  return fn


def _assign(data, leaky):
  texts = user_ids.user_history_texts(data, _item_ids(data), leaky=leaky)
  return uniqueness.assign_unique(data.num_users, _copy_fn(texts), uniqueness.EscalationSchedule(max_levels=3),
                                  uniqueness.IdNamespace())


def _held_out_only_words(data, u):
  ids = _item_ids(data)
  seq = data.sequences[u].tolist()
  train = {w for i in seq[:-2] for w in ids[i].split()}
  return {w for i in seq[-2:] for w in ids[i].split()} - train


def test_leak_free_ids_use_training_items_only(data):
  result = _assign(data, leaky=False)
  assert len(set(result.ids)) == data.num_users and all(result.ids)
  for u, uid in enumerate(result.ids):
    assert not set(uid.split()) & _held_out_only_words(data, u), (data.user_ids[u], uid)


def test_leaky_mode_reproduces_the_official_leak(data, caplog):
  with caplog.at_level(logging.WARNING):
    result = _assign(data, leaky=True)
  assert "leaky user IDs" in caplog.text
  leaks = sum(bool(set(uid.split()) & _held_out_only_words(data, u)) for u, uid in enumerate(result.ids))
  assert leaks > data.num_users // 2   # the check above would catch this


def test_history_texts(data):
  ids = _item_ids(data)
  texts = user_ids.user_history_texts(data, ids)
  for seq, text in zip(data.sequences, texts):
    assert text == " ".join(ids[i] for i in seq[:-2].tolist())
  leaky = user_ids.user_history_texts(data, ids, leaky=True)
  assert leaky[0] == " ".join(ids[i] for i in data.sequences[0].tolist())
  with pytest.raises(ValueError, match="item IDs"):
    user_ids.user_history_texts(data, ids[:-1])


def test_too_short_sequence_raises():
  d = RecData(name="t", user_ids=("u",), item_ids=("a", "b"), item_meta=({}, {}),
              sequences=(np.array([0, 1], np.int32),))
  with pytest.raises(ValueError, match="'u' has 2 items"):
    user_ids.user_history_texts(d, ["x", "y"])
