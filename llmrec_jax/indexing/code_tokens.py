"""Semantic-ID code tokens: a vocabulary with one token range per code level (as TIGER).

An item's semantic ID is a tuple of L codes, code l in [0, K_l). Each (level, code) pair is its
own token, so the same code value at two levels is two tokens: the decoder learns level-specific
embeddings and the item trie branches over one level's range at each step. T5's special ids stay
(pad 0, EOS 1, unk 2); level l's range starts at 3 + K_0 + ... + K_{l-1}. Optional user tokens
(TIGER's hashed user ID) follow the code ranges.

An ID's text form names each token, "<a_12><b_3><c_200>" (level letters a, b, c, ...; users
"<u_7>"), so item-ID files stay readable; `encode` parses it back. The class has the slice of
seqio's Vocabulary interface the stream recommender uses (`encode`, `decode`, `vocab_size`,
`eos_id`, `pad_id`, `unk_id`).
"""
from __future__ import annotations

import json
import os
import re
import string
from typing import Sequence

import numpy as np

PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
FIRST_CODE_ID = 3
_TOKEN = re.compile(r"<([a-z])_(\d+)>")
USER_LETTER = "u"
VOCAB_FILE = "code_vocab.json"  # a semantic-ID run's vocabulary, beside its run_config.json
CODES_FILE = "semantic_ids.json"  # a semantic-ID run's item ids and every item's code tuple


class CodeVocabulary:
  """Tokens of L code levels (sizes `level_sizes`) and `user_tokens` hashed user buckets."""

  def __init__(self, level_sizes: Sequence[int], user_tokens: int = 0):
    self.level_sizes = tuple(int(k) for k in level_sizes)
    if not self.level_sizes or any(k < 1 for k in self.level_sizes):
      raise ValueError(f"level_sizes must be positive, got {self.level_sizes}")
    if len(self.level_sizes) > 20:
      raise ValueError(f"{len(self.level_sizes)} code levels: at most 20 are named (a..t)")
    if user_tokens < 0:
      raise ValueError(f"user_tokens must be >= 0, got {user_tokens}")
    self.user_tokens = int(user_tokens)
    self._starts = FIRST_CODE_ID + np.concatenate([[0], np.cumsum(self.level_sizes)]).astype(int)
    self.pad_id, self.eos_id, self.unk_id = PAD_ID, EOS_ID, UNK_ID

  @property
  def num_levels(self) -> int:
    return len(self.level_sizes)

  @property
  def vocab_size(self) -> int:
    return int(self._starts[-1]) + self.user_tokens

  def code_token(self, level: int, code: int) -> int:
    if not 0 <= code < self.level_sizes[level]:
      raise ValueError(f"code {code} is outside level {level}'s range [0, {self.level_sizes[level]})")
    return int(self._starts[level]) + int(code)

  def user_token(self, user_id: str) -> int:
    """TIGER's hashed user token: a stable hash of the raw user id into `user_tokens` buckets."""
    if not self.user_tokens:
      raise ValueError("this vocabulary has no user tokens (user_tokens=0)")
    return int(self._starts[-1]) + stable_hash(user_id) % self.user_tokens

  def item_tokens(self, codes_NxL: np.ndarray) -> list[list[int]]:
    """Every item's ID tokens (without EOS) from its code tuple."""
    codes_NxL = np.asarray(codes_NxL)
    if codes_NxL.ndim != 2 or codes_NxL.shape[1] != self.num_levels:
      raise ValueError(f"codes of shape {codes_NxL.shape}: expected [N, {self.num_levels}]")
    out_NxL = codes_NxL.astype(np.int64) + self._starts[:-1][None, :]
    bad = (codes_NxL < 0) | (codes_NxL >= np.asarray(self.level_sizes)[None, :])
    if bad.any():
      n, l = map(int, np.argwhere(bad)[0])
      raise ValueError(f"item {n}: code {int(codes_NxL[n, l])} is outside level {l}'s range "
                       f"[0, {self.level_sizes[l]})")
    return out_NxL.tolist()

  def id_text(self, codes_L: Sequence[int]) -> str:
    """The text form of one code tuple, e.g. "<a_12><b_3><c_200>"."""
    return "".join(f"<{string.ascii_lowercase[l]}_{int(c)}>" for l, c in enumerate(codes_L))

  def encode(self, text: str) -> list[int]:
    """Token ids of a text form ("<a_12><b_3>..."; user tokens "<u_7>"); anything else is an error."""
    tokens, end = [], 0
    for m in _TOKEN.finditer(text):
      if text[end:m.start()].strip():
        raise ValueError(f"{text!r}: {text[end:m.start()]!r} is not a code token")
      letter, value = m.group(1), int(m.group(2))
      if letter == USER_LETTER:
        if value >= self.user_tokens:
          raise ValueError(f"{text!r}: user token {value} >= user_tokens={self.user_tokens}")
        tokens.append(int(self._starts[-1]) + value)
      else:
        level = string.ascii_lowercase.index(letter)
        if level >= self.num_levels:
          raise ValueError(f"{text!r}: level {letter!r} but the vocabulary has {self.num_levels}")
        tokens.append(self.code_token(level, value))
      end = m.end()
    if text[end:].strip():
      raise ValueError(f"{text!r}: {text[end:]!r} is not a code token")
    return tokens

  def decode(self, ids: Sequence[int]) -> str:
    """The text form of token ids (stops at EOS; pad dropped; anything else "<unk>")."""
    out = []
    for t in ids:
      t = int(t)
      if t == EOS_ID:
        break
      if t == PAD_ID:
        continue
      out.append(self._token_text(t))
    return "".join(out)

  def save(self, model_dir: str) -> None:
    """Writes `model_dir/code_vocab.json` (what `load` rebuilds this vocabulary from)."""
    with open(os.path.join(model_dir, VOCAB_FILE), "w", encoding="utf-8") as f:
      json.dump({"level_sizes": list(self.level_sizes), "user_tokens": self.user_tokens}, f)

  @classmethod
  def load(cls, model_dir: str) -> "CodeVocabulary":
    path = os.path.join(model_dir, VOCAB_FILE)
    try:
      with open(path, encoding="utf-8") as f:
        saved = json.load(f)
      return cls(saved["level_sizes"], saved["user_tokens"])
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise ValueError(f"{path}: not a code vocabulary ({type(e).__name__}: {e})") from e

  def _token_text(self, token: int) -> str:
    if token < FIRST_CODE_ID or token >= self.vocab_size:
      return "<unk>"
    if token >= self._starts[-1]:
      return f"<{USER_LETTER}_{token - int(self._starts[-1])}>"
    level = int(np.searchsorted(self._starts, token, side="right")) - 1
    return f"<{string.ascii_lowercase[level]}_{token - int(self._starts[level])}>"


def stable_hash(text: str) -> int:
  """A hash of `text` that is the same in every process (Python's `hash` of str is salted)."""
  h = 2166136261
  for byte in text.encode("utf-8"):  # FNV-1a, 32 bits
    h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
  return h
