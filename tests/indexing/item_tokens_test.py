"""The item-token table: item <-> ID <-> tokens round-trips, its trie holds exactly the items,
and an ID too long for a configured length fails naming the item (or grows when asked)."""
import logging

import numpy as np
import pytest

from llmrec_jax.indexing.item_tokens import ItemTokens

IDS = ["red lip", "red lip stick", "blue pen", "pen", "green ink pot"]


def encode(text):
  return [3 + (sum(map(ord, w)) % 40) for w in text.split()]


def test_round_trip_item_id_tokens():
  table = ItemTokens.encode(IDS, encode, eos_id=1)
  assert len(table) == table.num_items == len(IDS) and table.ids == IDS
  assert table.max_len == 3
  for i, text in enumerate(IDS):
    assert table.tokens(i) == encode(text)
    assert table.item_of(table.tokens(i)) == i
    assert table.item_of(table.tokens(i) + [1, 0, 0]) == i  # EOS and padding are cut
  assert table.item_of(encode("red")) == -1 and table.item_of([]) == -1
  assert table.as_lists() == [encode(t) for t in IDS]


def test_trie_holds_exactly_the_items():
  table = ItemTokens.encode(IDS, encode)
  trie = table.trie(vocab_size=64)
  assert trie is table.trie(vocab_size=64)  # built once
  padded = np.zeros((len(IDS), table.max_len + 1), np.int32)
  for i in range(len(IDS)):
    padded[i, :len(table.tokens(i)) + 1] = table.tokens(i) + [1]
  np.testing.assert_array_equal(trie.items_from_sequences(padded), np.arange(len(IDS)))
  # Every leaf is a real item, reached by exactly that item's tokens + EOS.
  leaves = {}
  for item in range(len(IDS)):
    node = np.zeros(1, np.int64)
    for t in table.tokens(item) + [1]:
      node = trie.step_np(node, np.asarray([t]))
    leaves[item] = int(trie.leaf_item[node[0]])
  assert leaves == {i: i for i in range(len(IDS))}
  assert sorted(trie.leaf_item[trie.leaf_item >= 0].tolist()) == list(range(len(IDS)))  # no other leaf
  # Prefixes and unknown sequences are no item.
  probes = np.asarray([[encode("red")[0], 1, 0, 0], [7, 8, 9, 1]], np.int32)
  assert (trie.items_from_sequences(probes) == -1).all()


def test_id_longer_than_the_configured_length_names_the_item():
  table = ItemTokens.encode(IDS, encode)
  assert table.fit_length(4) == 4  # 3 tokens + EOS fit
  with pytest.raises(ValueError, match=r"item 1 \('red lip stick'\) has 3 ID tokens \+ EOS > id_len=3"):
    table.fit_length(3)
  with pytest.raises(ValueError, match="target_len=2"):
    table.fit_length(2, name="target_len")


def test_growth_is_a_logged_choice(caplog):
  table = ItemTokens.encode(IDS + ["a b c d e f g"], encode)
  with caplog.at_level(logging.WARNING):
    assert table.fit_length(4, grow=True) == 8  # 7 tokens + EOS, a multiple of 4
  assert "item 5 ('a b c d e f g') has 7 ID tokens + EOS > id_len=4" in caplog.text


def test_empty_ids_and_mismatched_tables_fail():
  with pytest.raises(ValueError, match=r"item 1 has an empty textual ID \(''\)"):
    ItemTokens.encode(["a", ""], encode)
  with pytest.raises(ValueError, match="2 item IDs but 1 token sequences"):
    ItemTokens([[3]], ids=["a", "b"])
