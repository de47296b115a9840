"""The SentencePiece vocabulary extended with code tokens: base ids unchanged, one id range per
level after the base's, text with words and code tokens round-trips (Python and TF paths)."""
import re

import numpy as np
import pytest
import tensorflow as tf

from llmrec_jax.data import synthetic
from llmrec_jax.data import vocab as vocab_lib
from llmrec_jax.data.code_vocabulary import CodeExtendedVocabulary
from llmrec_jax.indexing.code_tokens import CodeVocabulary

LEVELS = (5, 3, 7)


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
  """Two different SentencePiece models trained on the synthetic titles."""
  data = synthetic.make_synthetic(num_users=20, num_items=30, seed=0)
  cache = tmp_path_factory.mktemp("spm")
  return [vocab_lib.get_vocabulary(data=data, extra_texts=["history: next title after:"], vocab_size=size,
                                   cache_dir=cache) for size in (200, 220)]


def _texts(codes: CodeVocabulary, seed: int = 0) -> list[str]:
  """Texts in decode's canonical form: words, then code ids, words between code ids."""
  rng = np.random.default_rng(seed)
  ids = [codes.id_text(rng.integers(0, LEVELS)) for _ in range(4)]
  return [f"history: {ids[0]} ; {ids[1]}", f"{ids[2]} Cream No. 3", ids[3],
          f"item code of: Kit Brush. Synthetic {ids[0]}{ids[1]} next"]


def test_base_ids_are_the_bases_and_codes_follow_it_one_range_per_level(bases):
  base = bases[0]
  vocab = CodeExtendedVocabulary(base, LEVELS)
  assert vocab.first_code_id == base.vocab_size
  assert vocab.vocab_size == base.vocab_size + sum(LEVELS)
  ranges = [{vocab.code_id(l, c) for c in range(k)} for l, k in enumerate(LEVELS)]
  start = base.vocab_size
  for level, k in enumerate(LEVELS):   # level l: [start_l, start_l + K_l), in level order
    assert ranges[level] == set(range(start, start + k))
    start += k
  codes = CodeVocabulary(LEVELS)
  for level, k in enumerate(LEVELS):   # each code token encodes alone to its id
    for c in range(k):
      text = f"<{'abc'[level]}_{c}>"
      assert vocab.encode(text) == [vocab.code_id(level, c)]
      assert codes.encode(text) == [vocab.code_id(level, c) - base.vocab_size + codes.code_token(0, 0)]
  words = "Cream Kit Brush history: ; next"
  assert vocab.encode(words) == base.encode(words)
  assert (vocab.eos_id, vocab.unk_id, vocab.pad_id) == (base.eos_id, base.unk_id, base.pad_id)


def test_mixed_text_round_trips(bases):
  vocab = CodeExtendedVocabulary(bases[0], LEVELS)
  for text in _texts(vocab.codes):
    ids = vocab.encode(text)
    assert vocab.decode(ids) == text
    assert vocab.decode(ids + [vocab.eos_id, 7, 8]) == text    # stops at EOS
    assert vocab.encode(vocab.decode(ids)) == ids
    code_ids = [i for i in ids if i >= vocab.first_code_id]   # the code tokens, in text order
    assert code_ids == [vocab.code_id("abc".index(l), int(c)) for l, c in re.findall(r"<([abc])_(\d+)>", text)]


def test_tf_paths_equal_the_python_ones(bases):
  vocab = CodeExtendedVocabulary(bases[0], LEVELS)
  texts = _texts(vocab.codes, seed=1)
  ds = tf.data.Dataset.from_tensor_slices(texts).map(vocab.encode_tf)
  encoded = [row.tolist() for row in ds.as_numpy_iterator()]
  assert encoded == [vocab.encode(t) for t in texts]
  width = max(map(len, encoded))
  ids_BxN = np.array([e + [vocab.eos_id] + [0] * (width - len(e)) for e in encoded], np.int32)
  assert [s.decode() for s in vocab.decode_tf(tf.constant(ids_BxN)).numpy()] == texts
  assert vocab.decode_tf(tf.constant(ids_BxN[0])).numpy().decode() == texts[0]


def test_only_this_vocabularys_levels_are_code_tokens(bases):
  vocab = CodeExtendedVocabulary(bases[0], LEVELS)
  assert vocab.encode("<d_1>") == bases[0].encode("<d_1>")   # no fourth level: plain text
  with pytest.raises(ValueError, match="outside level 1"):
    vocab.encode("title <b_3>")


def test_equality_needs_the_same_base_and_levels(bases):
  a = CodeExtendedVocabulary(bases[0], LEVELS)
  assert a == CodeExtendedVocabulary(bases[0], list(LEVELS))
  assert a != CodeExtendedVocabulary(bases[0], (5, 3, 8))
  assert a != CodeExtendedVocabulary(bases[0], (5, 3))
  assert a != CodeExtendedVocabulary(bases[1], LEVELS)
  assert a != bases[0]
  with pytest.raises(TypeError, match="already extended"):
    CodeExtendedVocabulary(a, LEVELS)
