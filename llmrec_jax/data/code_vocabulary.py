"""A SentencePiece vocabulary extended with semantic-ID code tokens (LC-Rec's extended LLM vocabulary).

Ids below `base.vocab_size` are the base vocabulary's; the code tokens follow, one range per code
level in the order of `indexing.code_tokens.CodeVocabulary` (level l's range starts at
`base.vocab_size + K_0 + ... + K_{l-1}`). A text mixes words and code tokens written as
`CodeVocabulary.id_text` writes them, e.g. "history: <a_12><b_3><c_200> ; <a_7><b_1><c_9>":
`encode` splits it on the code tokens of this vocabulary's levels (other "<x_N>" strings are
text), encodes the text pieces with the base and maps each code token to its id. `decode` is the
reverse; its canonical form puts one space between a text piece and a code token and none
between two code tokens (whitespace around code tokens is not kept by `encode`).

seqio's `tokenize` preprocessor calls `encode_tf` on each example's scalar string; the TF methods
run the Python ones through `tf.numpy_function`.
"""
from __future__ import annotations

import re
import string
from typing import Sequence

import numpy as np
import seqio
import tensorflow as tf

from llmrec_jax.indexing import code_tokens


class CodeExtendedVocabulary(seqio.Vocabulary):
  """`base`'s ids, then the code tokens of levels of sizes `level_sizes`."""

  def __init__(self, base: seqio.SentencePieceVocabulary, level_sizes: Sequence[int]):
    if isinstance(base, CodeExtendedVocabulary):
      raise TypeError("CodeExtendedVocabulary: the base is already extended with code tokens")
    self.base = base
    self.codes = code_tokens.CodeVocabulary(level_sizes)
    self._first_code_id = int(base.vocab_size)
    letters = string.ascii_lowercase[:self.codes.num_levels]
    self._token = re.compile(rf"<([{letters}])_(\d+)>")
    super().__init__(extra_ids=0)

  @property
  def level_sizes(self) -> tuple[int, ...]:
    return self.codes.level_sizes

  @property
  def first_code_id(self) -> int:
    """The id of level 0's code 0 (= the base's vocab_size)."""
    return self._first_code_id

  def code_id(self, level: int, code: int) -> int:
    return self._first_code_id + self.codes.code_token(level, code) - code_tokens.FIRST_CODE_ID

  @property
  def bos_id(self):
    return self.base.bos_id

  @property
  def eos_id(self):
    return self.base.eos_id

  @property
  def unk_id(self):
    return self.base.unk_id

  @property
  def _base_vocab_size(self) -> int:
    return self._first_code_id + sum(self.codes.level_sizes)

  def _encode(self, s: str) -> list[int]:
    ids, end = [], 0
    for m in self._token.finditer(s):
      ids.extend(self._encode_text(s[end:m.start()]))
      ids.append(self.code_id(string.ascii_lowercase.index(m.group(1)), int(m.group(2))))
      end = m.end()
    ids.extend(self._encode_text(s[end:]))
    return ids

  def _encode_text(self, text: str) -> list[int]:
    return list(self.base.encode(text)) if text.strip() else []

  def _decode(self, ids) -> str:
    """Text pieces and code tokens, up to the first EOS (pad dropped)."""
    pieces, run = [], []   # pieces: (is_code, text); run: consecutive base ids not decoded yet
    for i in (int(t) for t in ids):
      if i == self.eos_id:
        break
      if i == self.pad_id:
        continue
      if i < self._first_code_id:
        run.append(i)
        continue
      pieces.append((False, self._decode_text(run)))
      run = []
      pieces.append((True, self.codes.decode([i - self._first_code_id + code_tokens.FIRST_CODE_ID])))
    pieces.append((False, self._decode_text(run)))
    return _join([(is_code, text) for is_code, text in pieces if text])

  def _decode_text(self, ids: list[int]) -> str:
    return self.base.decode(ids).strip() if ids else ""

  def _encode_tf(self, s: tf.Tensor) -> tf.Tensor:
    """int32 [n] ids of a scalar tf.string."""
    s = tf.convert_to_tensor(s, tf.string)
    if s.shape.rank != 0:
      raise NotImplementedError(f"CodeExtendedVocabulary.encode_tf encodes one scalar string (seqio's "
                                f"tokenize maps it per example); got rank {s.shape.rank}")
    ids = tf.numpy_function(lambda b: np.asarray(self._encode(b.decode("utf-8")), np.int32), [s],
                            tf.int32, stateful=False)
    ids.set_shape([None])
    return ids

  def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
    """tf.string of int [n] ids, or [B] strings of int [B, n] ids."""
    ids = tf.convert_to_tensor(ids)
    if ids.shape.rank not in (1, 2):
      raise NotImplementedError(f"CodeExtendedVocabulary.decode_tf takes rank 1 or 2 ids, got {ids.shape}")

    def decode(ids_np: np.ndarray) -> np.ndarray:
      rows = [ids_np] if ids_np.ndim == 1 else list(ids_np)
      out = np.array([self._decode(r.tolist()).encode("utf-8") for r in rows], dtype=object)
      return out[0] if ids_np.ndim == 1 else out

    out = tf.numpy_function(decode, [ids], tf.string, stateful=False)
    out.set_shape(ids.shape[:-1])
    return out

  def __eq__(self, other) -> bool:
    return (isinstance(other, CodeExtendedVocabulary) and self.level_sizes == other.level_sizes
            and self.base == other.base)

  __hash__ = None  # as seqio's vocabularies: compared by content, never hashed

  def __str__(self) -> str:
    return f"CodeExtendedVocabulary(base={self.base}, level_sizes={list(self.level_sizes)})"


def _join(pieces: list[tuple[bool, str]]) -> str:
  """Code tokens side by side; one space between a text piece and its neighbours."""
  out, prev_code = "", None
  for is_code, text in pieces:
    if prev_code is not None and not (prev_code and is_code):
      out += " "
    out += text
    prev_code = is_code
  return out
