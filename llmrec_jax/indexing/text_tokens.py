"""Texts <-> fixed-shape token arrays for the ID generator (T5 conventions: pad 0, eos 1).

Works with any tokenizer that has `encode(str) -> list[int]` and `decode(list[int]) -> str`:
`sentencepiece.SentencePieceProcessor` (fast to import) or a `seqio.SentencePieceVocabulary`.
No JAX here.
"""
from __future__ import annotations

import os
from typing import Protocol, Sequence

import numpy as np

PAD_ID, EOS_ID = 0, 1


class Tokenizer(Protocol):

  def encode(self, text: str) -> list[int]: ...

  def decode(self, ids: list[int]) -> str: ...


def load_sentencepiece(path: str | os.PathLike):
  """A `sentencepiece.SentencePieceProcessor` for a `.model` file (raises naming a missing file)."""
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: SentencePiece model file not found")
  return spm.SentencePieceProcessor(model_file=str(path))


def num_pieces(tokenizer) -> int:
  """Number of real pieces; ids at or above it (e.g. T5's 100 extra ids) cannot be decoded."""
  base = getattr(tokenizer, "tokenizer", tokenizer)  # seqio vocab -> its SentencePieceProcessor
  if hasattr(base, "get_piece_size"):
    return int(base.get_piece_size())
  if hasattr(tokenizer, "vocab_size"):
    return int(tokenizer.vocab_size)
  raise TypeError(f"cannot tell the piece count of tokenizer {type(tokenizer).__name__}")


def encode_texts(texts: Sequence[str], tokenizer: Tokenizer, length: int) -> np.ndarray:
  """int32 [N, length]: each text's ids, right-truncated to `length - 1`, then EOS, then pad 0.

  (HF `truncation=True, max_length=length` keeps the EOS the same way.)
  """
  if length < 2:
    raise ValueError(f"encode_texts: length must be >= 2, got {length}")
  out_NxL = np.zeros((len(texts), length), np.int32)
  for n, text in enumerate(texts):
    ids = list(tokenizer.encode(text))[:length - 1] + [EOS_ID]
    out_NxL[n, :len(ids)] = ids
  return out_NxL


def token_lengths(texts: Sequence[str], tokenizer: Tokenizer) -> np.ndarray:
  """int64 [N]: number of ids of each text, EOS included."""
  return np.fromiter((len(tokenizer.encode(t)) + 1 for t in texts), np.int64, count=len(texts))


def decode_ids(ids_T: Sequence[int], tokenizer: Tokenizer) -> str:
  """Text of a generated sequence: stops at the first EOS and drops padding."""
  ids = [int(i) for i in ids_T]
  if EOS_ID in ids:
    ids = ids[:ids.index(EOS_ID)]
  return tokenizer.decode([i for i in ids if i != PAD_ID])


def bucket_length(max_len: int, limit: int, multiple: int = 16) -> int:
  """`max_len` rounded up to a multiple of `multiple`, at most `limit` (fewer compiled shapes)."""
  return int(min(limit, max(multiple, -(-max_len // multiple) * multiple)))
