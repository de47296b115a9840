"""Texts <-> fixed-shape token arrays (T5 conventions) and the generator's emittable tokens."""
import numpy as np
import pytest

from llmrec_jax.indexing import text_tokens
from llmrec_jax.systems.idgenrec import generator


class CharTokenizer:
  """ids 3.. for letters; decode joins them (enough to pin down padding, truncation and EOS)."""
  vocab_size = 3 + 26

  def encode(self, text):
    return [3 + ord(c) - ord("a") for c in text if c.isalpha()]

  def decode(self, ids):
    assert all(3 <= i < self.vocab_size for i in ids), ids
    return "".join(chr(ord("a") + i - 3) for i in ids)


def test_encode_truncates_on_the_right_and_keeps_eos():
  tok = CharTokenizer()
  out = text_tokens.encode_texts(["abcdef", "ab", ""], tok, 4)
  assert out.dtype == np.int32 and out.shape == (3, 4)
  np.testing.assert_array_equal(out, [[3, 4, 5, 1], [3, 4, 1, 0], [1, 0, 0, 0]])
  np.testing.assert_array_equal(text_tokens.token_lengths(["abcdef", ""], tok), [7, 1])
  with pytest.raises(ValueError):
    text_tokens.encode_texts(["a"], tok, 1)


def test_decode_stops_at_eos_and_drops_padding():
  tok = CharTokenizer()
  assert text_tokens.decode_ids([3, 0, 4, 1, 5, 5], tok) == "ab"
  assert text_tokens.decode_ids([3, 4], tok) == "ab"      # unfinished (max length reached)
  assert text_tokens.num_pieces(tok) == 29


def test_bucket_length():
  assert [text_tokens.bucket_length(n, 40) for n in (1, 16, 17, 33, 99)] == [16, 16, 32, 40, 40]


def test_allowed_tokens():
  allowed = generator.allowed_tokens(8, 5)
  np.testing.assert_array_equal(allowed, [False, True, True, True, True, False, False, False])
  assert not generator.allowed_tokens(8, 5, ban_unk=True)[2]
  with pytest.raises(ValueError, match="num_return"):
    generator.GeneratorOptions(num_groups=2, num_return=3)
