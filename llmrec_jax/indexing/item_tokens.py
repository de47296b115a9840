"""The item-token table: item index <-> textual ID <-> ID token sequence, and its trie.

A generative recommender names an item by its textual ID run through the vocabulary. The prompt
batches (history slots, decoder targets), the item trie that constrains decoding, and the mapping
of decoded sequences back to items (metrics) all read that one table. Token sequences are stored
without EOS; the trie and the decoder targets append it.
"""
from __future__ import annotations

import logging
from typing import Callable, Iterable, Optional, Sequence

from llmrec_jax.decoding import trie as trie_lib

log = logging.getLogger(__name__)


def build_item_trie(id_tokens: Iterable[Sequence[int]], *, eos_id: int = 1, vocab_size: Optional[int] = None,
                    source: str = "<current item IDs>") -> trie_lib.ItemTrie:
  """Trie over every item's ID tokens + EOS; item index = position in `id_tokens`."""
  return trie_lib.ItemTrie.from_sequences([list(t) + [eos_id] for t in id_tokens], eos_id=eos_id,
                                          vocab_size=vocab_size, source=source)


class ItemTokens:
  """ID tokens (without EOS) per item index, optionally with the textual IDs they encode.

  Attributes:
    ids: textual ID per item index, or None when built from tokens alone.
    eos_id: the token that ends every item in the trie and the decoder targets.
  """

  def __init__(self, tokens: Sequence[Sequence[int]], *, ids: Optional[Sequence[str]] = None,
               eos_id: int = 1):
    self._tokens = [list(t) for t in tokens]
    self.ids = None if ids is None else list(ids)
    self.eos_id = int(eos_id)
    if self.ids is not None and len(self.ids) != len(self._tokens):
      raise ValueError(f"{len(self.ids)} item IDs but {len(self._tokens)} token sequences")
    for item, toks in enumerate(self._tokens):
      if not toks:
        raise ValueError(f"item {item} has an empty textual ID ({self._name(item)})")
    self._item_of = None
    self._tries: dict[Optional[int], trie_lib.ItemTrie] = {}

  @classmethod
  def encode(cls, ids: Sequence[str], encode: Callable[[str], Sequence[int]], *,
             eos_id: int = 1) -> "ItemTokens":
    """The table of textual `ids` under `encode` (text -> token ids without EOS)."""
    return cls([encode(i) for i in ids], ids=ids, eos_id=eos_id)

  def _name(self, item: int) -> str:
    return repr(self.ids[item]) if self.ids is not None else f"tokens {self._tokens[item]}"

  def __len__(self) -> int:
    return len(self._tokens)

  @property
  def num_items(self) -> int:
    return len(self._tokens)

  def tokens(self, item: int) -> list[int]:
    """ID tokens of `item`, without EOS."""
    return self._tokens[item]

  def as_lists(self) -> list[list[int]]:
    """Every item's ID tokens (without EOS), in item order (a copy)."""
    return [list(t) for t in self._tokens]

  @property
  def max_len(self) -> int:
    """Tokens of the longest ID, without EOS."""
    return max((len(t) for t in self._tokens), default=0)

  def longest(self) -> int:
    """Index of the (first) longest item."""
    return max(range(len(self._tokens)), key=lambda i: len(self._tokens[i]))

  def fit_length(self, length: int, *, name: str = "id_len", grow: bool = False) -> int:
    """`length` when every ID + EOS fits in it. Otherwise a ValueError naming the longest item
    and its length, or with `grow` the smallest multiple of 4 that fits (logged): for IDs whose
    length a generator decides (its escalation lengthens IDs that collide)."""
    need = self.max_len + 1
    if need <= length:
      return length
    item = self.longest()
    what = f"item {item} ({self._name(item)}) has {self.max_len} ID tokens + EOS > {name}={length}"
    if not grow:
      raise ValueError(f"{what}: raise {name} to at least {need}")
    grown = -(-need // 4) * 4
    log.warning("%s: using %s=%d", what, name, grown)
    return grown

  def item_of(self, tokens: Sequence[int]) -> int:
    """The item whose ID tokens are `tokens` (cut at the first EOS, if any), or -1."""
    if self._item_of is None:
      self._item_of = {tuple(t): i for i, t in enumerate(self._tokens)}
    toks = list(tokens)
    if self.eos_id in toks:
      toks = toks[:toks.index(self.eos_id)]
    return self._item_of.get(tuple(toks), -1)

  def trie(self, vocab_size: Optional[int] = None, source: str = "<current item IDs>") -> trie_lib.ItemTrie:
    """The item trie (every ID + EOS; leaf i = item i), built once per `vocab_size`."""
    if vocab_size not in self._tries:
      self._tries[vocab_size] = build_item_trie(self._tokens, eos_id=self.eos_id, vocab_size=vocab_size,
                                                source=source)
    return self._tries[vocab_size]
