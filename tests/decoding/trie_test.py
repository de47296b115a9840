"""ItemTrie vs a python dict trie: steps, masks, leaves, exclusion, errors, int64-safe keys."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llmrec_jax.decoding import trie as trie_lib

EOS = 1


def _dict_trie(items):
  root = {}
  for i, s in enumerate(items):
    node = root
    for t in s:
      node = node.setdefault(t, {})
    node["item"] = i
  return root


def _prefixes(items):
  """Every proper prefix (including the empty one) of every item, deduplicated."""
  return sorted({tuple(s[:d]) for s in items for d in range(len(s))})


@pytest.fixture(scope="module")
def jitted():
  step = jax.jit(trie_lib.trie_step)
  mask = jax.jit(trie_lib.allowed_mask, static_argnums=2)
  return step, mask


def _walk(step, arrays, prefixes):
  width = max(len(p) for p in prefixes)
  node = jnp.zeros(len(prefixes), jnp.int32)
  for d in range(width):
    tok = jnp.asarray([p[d] if d < len(p) else 0 for p in prefixes], jnp.int32)
    keep = jnp.asarray([d < len(p) for p in prefixes])
    node = jnp.where(keep, step(arrays, node, tok), node)
  return node


@pytest.mark.parametrize("seed,dense_fanout", [(0, 128), (1, 2), (2, 1), (3, 4)])
def test_step_and_mask_match_dict_trie(helpers, jitted, seed, dense_fanout):
  # Small dense_fanout makes many nodes "wide" (bit-row masks), 128 makes none wide.
  step, mask = jitted
  rng = np.random.default_rng(seed)
  vocab = int(rng.integers(4, 40))
  items = helpers["random_catalogue"](rng, int(rng.integers(1, 80)), vocab=vocab, max_len=6)
  trie = trie_lib.ItemTrie.from_sequences(items, eos_id=EOS, vocab_size=vocab,
                                          dense_fanout=dense_fanout)
  assert (len(trie.wide_nodes) > 0) == (trie.max_fanout > dense_fanout)
  d = _dict_trie(items)
  prefixes = _prefixes(items)
  node = _walk(step, trie.arrays, prefixes)
  assert (np.asarray(node) >= 0).all()
  assert len(set(np.asarray(node).tolist())) == len(prefixes)  # one node per prefix
  got = np.asarray(mask(trie.arrays, node, vocab + 3))
  for p, row in zip(prefixes, got):
    n = d
    for t in p:
      n = n[t]
    want = np.zeros(vocab + 3, bool)
    want[[t for t in n if t != "item"]] = True
    np.testing.assert_array_equal(row, want, err_msg=str(p))
  # Host walk agrees with the device walk; unknown tokens go to DEAD, DEAD stays DEAD.
  tok = rng.integers(0, vocab, size=len(prefixes))
  dev = np.asarray(step(trie.arrays, node, jnp.asarray(tok, jnp.int32)))
  np.testing.assert_array_equal(dev, trie.step_np(np.asarray(node), tok))
  for p, t, child in zip(prefixes, tok, dev):
    n = d
    for x in p:
      n = n[x]
    assert (child >= 0) == (int(t) in n)
  dead = jnp.full(3, trie_lib.DEAD, jnp.int32)
  assert (np.asarray(step(trie.arrays, dead, jnp.asarray([0, 1, 2], jnp.int32))) == -1).all()
  assert not np.asarray(mask(trie.arrays, dead, vocab)).any()
  assert trie.gather_width <= max(1, min(dense_fanout, trie.max_fanout))
  assert trie.num_items == len(items)


def test_sequences_to_items_host_and_device(helpers):
  rng = np.random.default_rng(5)
  items = helpers["random_catalogue"](rng, 60, vocab=9, max_len=5)
  trie = trie_lib.ItemTrie.from_sequences(items, eos_id=EOS, vocab_size=9)
  width = trie.max_len + 2
  padded = helpers["pad"](items, width)
  np.testing.assert_array_equal(trie.items_from_sequences(padded), np.arange(len(items)))
  dev = jax.jit(trie_lib.items_from_sequences)(trie.arrays, jnp.asarray(padded))
  np.testing.assert_array_equal(np.asarray(dev), np.arange(len(items)))
  known = {tuple(s) for s in items}
  junk = [list(rng.integers(2, 9, size=rng.integers(1, 5))) + [EOS] for _ in range(50)]
  junk += [s[:-1] for s in items[:10]]  # a prefix without its EOS is no item
  want = [items.index(list(s)) if tuple(s) in known else -1 for s in junk]
  jp = helpers["pad"]([list(map(int, s)) for s in junk], width)
  np.testing.assert_array_equal(trie.items_from_sequences(jp), want)
  dev = trie_lib.items_from_sequences(trie.arrays, jnp.asarray(jp))
  np.testing.assert_array_equal(np.asarray(dev), want)


def test_padded_array_input_equals_list_input(helpers):
  rng = np.random.default_rng(6)
  items = helpers["random_catalogue"](rng, 30, vocab=8, max_len=4)
  a = trie_lib.ItemTrie.from_sequences(items, vocab_size=8)
  b = trie_lib.ItemTrie.from_sequences(helpers["pad"](items, 7), vocab_size=8)
  for name in ("root_child", "child_offsets", "node_token", "leaf_item", "leaf_count"):
    np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
  width = a.item_path.shape[1]  # the padded input is wider: its extra path columns are empty
  np.testing.assert_array_equal(a.item_path, b.item_path[:, :width])
  assert (b.item_path[:, width:] == trie_lib.DEAD).all()


def _items_under(node):
  out = {node["item"]} if "item" in node else set()
  for t, child in node.items():
    if t != "item":
      out |= _items_under(child)
  return out


@pytest.mark.parametrize("dense_fanout", [128, 2])
def test_exclusion_equals_per_row_trie_of_the_other_items(helpers, jitted, dense_fanout):
  _, mask = jitted
  rng = np.random.default_rng(8)
  items = helpers["random_catalogue"](rng, 40, vocab=6, max_len=4)
  trie = trie_lib.ItemTrie.from_sequences(items, vocab_size=6, dense_fanout=dense_fanout)
  d = _dict_trie(items)
  prefixes = _prefixes(items)
  node = _walk(jax.jit(trie_lib.trie_step), trie.arrays, prefixes)
  # Rows exclude a random subtree's items (so whole subtrees get pruned), random extra items,
  # repeats and -1 padding.
  excluded = np.full((len(prefixes), 12), -1, np.int32)
  for r, p in enumerate(prefixes):
    n = d
    for t in p[:int(rng.integers(0, len(p) + 1))]:
      n = n[t]
    under = sorted(_items_under(n))
    pick = list(rng.choice(under, size=min(len(under), int(rng.integers(0, 8))), replace=False))
    pick += list(rng.integers(-1, len(items), size=2))
    pick += pick[:1]
    excluded[r, :len(pick)] = pick[:12]
  got = np.asarray(mask(trie.arrays, node, 6, jnp.asarray(excluded)))
  for p, row, ex in zip(prefixes, got, excluded):
    n = d
    for t in p:
      n = n[t]
    banned = set(ex.tolist()) - {-1}
    want = np.zeros(6, bool)
    for t, child in n.items():
      if t != "item" and _items_under(child) - banned:
        want[t] = True
    np.testing.assert_array_equal(row, want, err_msg=f"{p} excluded={sorted(banned)}")


def test_index_math_is_int64_safe_past_2_31():
  # node * V > 2**31 for most nodes: 40k two-token items over a 70k vocab.
  v, n = 70_000, 40_000
  rng = np.random.default_rng(9)
  first = rng.choice(np.arange(2, v), size=n, replace=True)
  second = rng.choice(np.arange(2, v), size=n, replace=True)
  pairs = np.unique(np.stack([first, second], 1), axis=0)
  seqs = np.concatenate([pairs, np.full((len(pairs), 1), EOS)], axis=1).astype(np.int32)
  trie = trie_lib.ItemTrie.from_sequences(seqs, vocab_size=v)
  assert trie.num_nodes * v > 2**31
  np.testing.assert_array_equal(trie.items_from_sequences(seqs), np.arange(len(seqs)))
  probe = seqs[-64:]
  dev = trie_lib.items_from_sequences(trie.arrays, jnp.asarray(probe))
  np.testing.assert_array_equal(np.asarray(dev), np.arange(len(seqs) - 64, len(seqs)))
  # Wrong last token before EOS: not an item (host key collisions would show up here).
  bad = probe.copy()
  bad[:, 1] = (bad[:, 1] + 1) % v
  host = trie.items_from_sequences(bad)
  known = {tuple(r) for r in seqs.tolist()}
  want = [int(np.flatnonzero((seqs == r).all(1))[0]) if tuple(r) in known else -1
          for r in bad.tolist()]
  np.testing.assert_array_equal(host, want)


@pytest.mark.parametrize("seqs,match", [
    ([[2, 3, 1], [4, 1], [2, 3, 1]], "items 0 and 2 have the same sequence"),
    ([[2, 3, 1], [4, 5]], "item 1 does not end with EOS"),
    ([[2, 3, 1], []], "item 1 is an empty sequence"),
    ([[1], [2, 1]], r"item 0 is empty \(only EOS\)"),
    ([[2, 1, 3, 1]], "item 0 has EOS"),
    ([], "no sequences"),
    ([[2, 9, 1]], r"token outside \[0, 5\)"),
])
def test_bad_catalogues_fail_loudly(seqs, match):
  with pytest.raises(ValueError, match=match):
    trie_lib.ItemTrie.from_sequences(seqs, vocab_size=5, source="ids.txt")
  with pytest.raises(ValueError, match="ids.txt"):
    trie_lib.ItemTrie.from_sequences(seqs, vocab_size=5, source="ids.txt")


def test_padded_rows_must_be_clean():
  with pytest.raises(ValueError, match="item 1 has tokens other than pad"):
    trie_lib.ItemTrie.from_sequences(np.array([[2, 1, 0], [3, 1, 4]]))
  with pytest.raises(ValueError, match="item 0 has no EOS"):
    trie_lib.ItemTrie.from_sequences(np.array([[2, 3, 0], [3, 1, 0]]))


def test_trie_arrays_are_a_pytree_and_jit_argument():
  trie = trie_lib.ItemTrie.from_sequences([[2, 3, 1], [2, 4, 1], [5, 1]], vocab_size=6)
  leaves, treedef = jax.tree_util.tree_flatten(trie.arrays)
  # 9 arrays of the full trie + 9 of its compact view (4 of them shared buffers).
  assert len(leaves) == 18 and all(isinstance(x, jax.Array) for x in leaves)
  again = jax.tree_util.tree_unflatten(treedef, leaves)
  assert again.gather_width == trie.max_fanout == 2 and again.vocab_size == 6
  out = jax.jit(lambda t, n, k: trie_lib.trie_step(t, n, k))(
      trie.arrays, jnp.asarray([0, 0, 0]), jnp.asarray([2, 5, 3]))
  assert (np.asarray(out) >= 0).tolist() == [True, True, False]
  np.testing.assert_array_equal(trie.token_ids, [1, 2, 3, 4, 5])


def test_arrays_first_built_inside_jit_are_concrete_and_transfer_guard_safe():
  trie = trie_lib.ItemTrie.from_sequences([[2, 3, 1], [2, 4, 1], [5, 1]], vocab_size=6)
  node = jax.device_put(np.zeros(2, np.int32))
  tok = jax.device_put(np.array([2, 5], np.int32))
  with jax.transfer_guard("disallow"):
    out = jax.jit(lambda n, t: trie_lib.trie_step(trie.arrays, n, t))(node, tok)
  assert not any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(trie.arrays))
  np.testing.assert_array_equal(np.asarray(out), trie.step_np(np.zeros(2), np.array([2, 5])))


@pytest.mark.parametrize("dense_fanout", [128, 1])
def test_arrays_compact_view_equals_compact_trie(helpers, dense_fanout):
  """`arrays.compact` is `ItemTrie.compact().arrays` (field by field), sharing the node-indexed
  buffers, and its masks are the full masks' columns at token_ids_U."""
  items = helpers["random_catalogue"](np.random.default_rng(4), 30, vocab=9, max_len=4)
  trie = trie_lib.ItemTrie.from_sequences(items, vocab_size=15, dense_fanout=dense_fanout)
  got, want = trie.arrays.compact, trie.compact().arrays
  assert got.compact is None and want.compact is not None
  for name in ("vocab_size", "eos_id", "gather_width", "search_steps", "has_wide", "max_len"):
    assert getattr(got, name) == getattr(want, name), name
  for name in ("root_child_V", "child_offsets_M1", "node_token_M", "leaf_item_M", "leaf_count_M",
               "item_path_NxC1", "wide_nodes_H", "wide_bits_HxW"):
    np.testing.assert_array_equal(np.asarray(getattr(got, name)), np.asarray(getattr(want, name)))
  np.testing.assert_array_equal(np.asarray(got.token_ids_U), trie.token_ids)  # column -> token
  assert got.item_path_NxC1 is trie.arrays.item_path_NxC1
  nodes = jnp.arange(-1, trie.num_nodes, dtype=jnp.int32)
  full = np.asarray(trie_lib.allowed_mask(trie.arrays, nodes))
  cols = np.asarray(trie_lib.allowed_mask(got, nodes, got.vocab_size + 1))
  np.testing.assert_array_equal(cols[:, :-1], full[:, trie.token_ids])
  assert not cols[:, -1].any()  # a column past the trie's (the rest column) is never allowed
