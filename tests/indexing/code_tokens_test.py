"""The code vocabulary: one token range per level, text forms that round-trip, stable user hashes."""
import numpy as np
import pytest

from llmrec_jax.decoding import trie as trie_lib
from llmrec_jax.indexing import code_tokens
from llmrec_jax.indexing.item_tokens import ItemTokens


def test_ranges_are_disjoint_and_cover_the_vocabulary():
  vocab = code_tokens.CodeVocabulary([4, 3, 5], user_tokens=2)
  tokens = [vocab.code_token(l, c) for l, k in enumerate(vocab.level_sizes) for c in range(k)]
  assert len(set(tokens)) == len(tokens) == 12
  assert min(tokens) == code_tokens.FIRST_CODE_ID
  users = {vocab.user_token(f"U{i}") for i in range(50)}
  assert users <= {15, 16} and max(tokens) == 14
  assert vocab.vocab_size == 3 + 12 + 2


def test_item_tokens_equal_per_code_lookup_and_round_trip_through_text():
  vocab = code_tokens.CodeVocabulary([8, 8, 8, 3])
  codes_NxL = np.random.default_rng(0).integers(0, [8, 8, 8, 3], size=(30, 4))
  tokens = vocab.item_tokens(codes_NxL)
  for codes, toks in zip(codes_NxL, tokens):
    assert toks == [vocab.code_token(l, c) for l, c in enumerate(codes)]
    text = vocab.id_text(codes)
    assert vocab.encode(text) == toks
    assert vocab.decode(toks + [code_tokens.EOS_ID, 5]) == text
  # the same code value at two levels is two tokens
  assert vocab.code_token(0, 2) != vocab.code_token(1, 2)


def test_trie_over_codes_returns_only_real_items():
  vocab = code_tokens.CodeVocabulary([4, 4, 2])
  rng = np.random.default_rng(1)
  codes_NxL = np.unique(rng.integers(0, [4, 4, 2], size=(20, 3)), axis=0)
  table = ItemTokens(vocab.item_tokens(codes_NxL), eos_id=vocab.eos_id)
  trie = table.trie(vocab.vocab_size)
  real = {tuple(t) for t in table.as_lists()}
  # Every full path of the trie (a walk of allowed tokens down to EOS) is a real item's ID.
  paths = _paths(trie, table)
  assert {p for p in paths} == real


def _paths(trie, table):
  """Every token sequence the trie allows, down to EOS (each step tries the whole vocabulary)."""
  out, frontier = set(), [((), trie_lib.ROOT)]
  vocab_V = np.arange(trie.vocab_size)
  while frontier:
    prefix, node = frontier.pop()
    child_V = trie.step_np(np.full_like(vocab_V, node), vocab_V)
    for tok in np.flatnonzero(child_V != trie_lib.DEAD):
      if tok == table.eos_id:
        out.add(prefix)
      else:
        frontier.append((prefix + (int(tok),), int(child_V[tok])))
  return out


@pytest.mark.parametrize("text, message", [
    ("<a_1><b_9>", "outside level 1"),
    ("<a_1>junk", "is not a code token"),
    ("<d_0>", "level 'd'"),
    ("<u_0>", "user token 0"),
])
def test_bad_text_forms_fail_naming_the_problem(text, message):
  vocab = code_tokens.CodeVocabulary([4, 4, 2])
  with pytest.raises(ValueError, match=message):
    vocab.encode(text)


def test_user_hash_is_stable_across_processes():
  # FNV-1a reference values (32-bit offset basis for the empty string; "a" from the spec).
  assert code_tokens.stable_hash("") == 2166136261
  assert code_tokens.stable_hash("a") == 0xE40C292C
