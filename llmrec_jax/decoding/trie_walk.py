"""Device side of the item trie: its arrays (`TrieArrays`, a pytree) and the jit-friendly walks.

`ItemTrie` (trie.py) builds these arrays on the host; the functions here take them as a `jit`
argument: `trie_step` (node, token) -> child, `allowed_mask` (allowed next tokens of a batch of
nodes), `excluded_tokens` (per-user exclusion at the leaves) and `items_from_sequences`. See
trie.py's docstring for the layout (CSR children, dense root row, bit-packed wide nodes).
"""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

ROOT = 0
DEAD = -1


@flax.struct.dataclass
class TrieArrays:
  """Device form of an `ItemTrie`; a pytree, so it can be a `jit` argument.

  M = number of nodes (root, internal nodes and leaves).
  """
  root_child_V: jax.Array  # int32 [V]: child of the root via each token, DEAD if none.
  child_offsets_M1: jax.Array  # int32 [M + 1]: children of u are ids [off[u], off[u+1]).
  node_token_M: jax.Array  # int32 [M]: token on the edge into each node (root: -1).
  leaf_item_M: jax.Array  # int32 [M]: item index at leaves, -1 elsewhere.
  leaf_count_M: jax.Array  # int32 [M]: number of items in each node's subtree.
  item_path_NxC1: jax.Array  # int32 [N, C + 1]: node of each item's length-d prefix, -1 past
  #                            its leaf (column 0 = ROOT).
  wide_nodes_H: jax.Array  # int32 [H] sorted ids of wide non-root nodes (H >= 1: padded
  #                          with int32 max when there are none)
  wide_bits_HxW: jax.Array  # uint32 [H, ceil(V / 32)]: bit t of row h = token t is a child
  token_ids_U: jax.Array  # int32 [U] sorted tokens occurring in some item (EOS included); in
  #                         the compact form, the token of each column.
  vocab_size: int = flax.struct.field(pytree_node=False, default=0)
  eos_id: int = flax.struct.field(pytree_node=False, default=1)
  gather_width: int = flax.struct.field(pytree_node=False, default=1)  # max narrow fan-out
  search_steps: int = flax.struct.field(pytree_node=False, default=1)  # log2(max fan-out+1)
  has_wide: bool = flax.struct.field(pytree_node=False, default=False)
  max_len: int = flax.struct.field(pytree_node=False, default=0)  # longest item incl. EOS
  # The same trie over columns (`ItemTrie.compact()`: token token_ids_U[j] is column j), for
  # decoders whose logits cover only `token_ids_U`; it shares the node-indexed arrays. None in
  # the compact form itself.
  compact: "TrieArrays | None" = None


# -------------------------------------------------------------------- device walks
def trie_step(trie: TrieArrays, node_X: jax.Array, token_X: jax.Array) -> jax.Array:
  """Child of each node via each token; DEAD where there is none (or the node is DEAD).

  Args:
    trie: device arrays.
    node_X: int32 nodes, any shape (e.g. [BK]).
    token_X: int32 tokens, same shape.
  Returns:
    int32 child nodes, same shape.
  """
  v = trie.vocab_size
  tok_ok = (token_X >= 0) & (token_X < v)
  safe_tok = jnp.where(tok_ok, token_X, 0)
  from_root = trie.root_child_V[safe_tok]
  safe_node = jnp.maximum(node_X, 0)
  lo = trie.child_offsets_M1[safe_node]
  hi = trie.child_offsets_M1[safe_node + 1]
  # Lower-bound binary search for the token in node_token[lo:hi] (sorted); a child range
  # has at most max_fanout entries, so search_steps = ceil(log2(max_fanout + 1)) suffice.
  last = trie.node_token_M.shape[0] - 1

  def body(_, lo_hi):
    lo, hi = lo_hi
    mid = lo + (hi - lo) // 2
    active = lo < hi
    less = trie.node_token_M[jnp.minimum(mid, last)] < token_X
    return jnp.where(active & less, mid + 1, lo), jnp.where(active & ~less, mid, hi)

  pos, _ = jax.lax.fori_loop(0, trie.search_steps, body, (lo, hi), unroll=True)
  end = trie.child_offsets_M1[safe_node + 1]
  found = (pos < end) & (trie.node_token_M[jnp.minimum(pos, last)] == token_X)
  child = jnp.where(found, pos, DEAD)
  child = jnp.where(node_X == ROOT, from_root, child)
  return jnp.where((node_X >= 0) & tok_ok, child, DEAD).astype(jnp.int32)


def allowed_mask(trie: TrieArrays, node_X: jax.Array, vocab_size: int | None = None,
                 excluded_XxE: jax.Array | None = None) -> jax.Array:
  """Which next tokens keep each beam inside the trie.

  Cost O(X * gather_width) gathers, one [X, V] scatter, and for wide nodes one bit-row
  gather + unpack ([X, V] elementwise); none of it grows with the number of items.

  Args:
    trie: device arrays.
    node_X: int32 [X] current nodes (ROOT at the start, DEAD for dead beams).
    vocab_size: V of the returned mask (>= the trie's V; defaults to it).
    excluded_XxE: optional int32 [X, E] item indices to forbid, padded with -1: every token
      whose subtree holds only excluded items is masked out (a per-row trie of the other items).
  Returns:
    bool [X, V].
  """
  v = trie.vocab_size if vocab_size is None else vocab_size
  if v < trie.vocab_size:
    raise ValueError(f"mask vocab {v} is smaller than the trie vocab {trie.vocab_size}")
  x = node_X.shape[0]
  f = trie.gather_width
  safe_node = jnp.maximum(node_X, 0)
  lo_X = trie.child_offsets_M1[safe_node]
  n_X = trie.child_offsets_M1[safe_node + 1] - lo_X
  j_F = jnp.arange(f, dtype=jnp.int32)
  idx_XxF = jnp.minimum(lo_X[:, None] + j_F[None, :], trie.node_token_M.shape[0] - 1)
  tok_XxF = trie.node_token_M[idx_XxF]
  valid_XxF = (j_F[None, :] < n_X[:, None]) & (node_X[:, None] > ROOT)
  rows_XxF = jnp.broadcast_to(jnp.arange(x, dtype=jnp.int32)[:, None], (x, f))
  # Empty slots point past the last column and are dropped by the scatter.
  cols_XxF = jnp.where(valid_XxF, tok_XxF, v)
  mask_XxV = jnp.zeros((x, v), jnp.bool_).at[rows_XxF, cols_XxF].set(True, mode="drop")
  if trie.has_wide:
    h = trie.wide_nodes_H.shape[0]
    pos_X = jnp.minimum(jnp.searchsorted(trie.wide_nodes_H, node_X), h - 1)
    is_wide_X = trie.wide_nodes_H[pos_X] == node_X
    words_XxW = trie.wide_bits_HxW[pos_X]
    shift_32 = jnp.arange(32, dtype=jnp.uint32)
    bits = (words_XxW[:, :, None] >> shift_32[None, None, :]) & jnp.uint32(1)
    dense_XxV = bits.reshape(x, -1)[:, :trie.vocab_size].astype(jnp.bool_)
    if v > trie.vocab_size:
      dense_XxV = jnp.pad(dense_XxV, ((0, 0), (0, v - trie.vocab_size)))
    mask_XxV = jnp.where(is_wide_X[:, None], dense_XxV, mask_XxV)
  root_V = trie.root_child_V >= 0
  if v > trie.vocab_size:
    root_V = jnp.pad(root_V, (0, v - trie.vocab_size))
  mask_XxV = jnp.where((node_X == ROOT)[:, None], root_V[None, :], mask_XxV)
  if excluded_XxE is not None:
    tok_XxE = excluded_tokens(trie, node_X, excluded_XxE)
    rows_XxE = jnp.broadcast_to(jnp.arange(x, dtype=jnp.int32)[:, None], tok_XxE.shape)
    mask_XxV = mask_XxV.at[rows_XxE, jnp.where(tok_XxE >= 0, tok_XxE, v)].set(False, mode="drop")
  return mask_XxV


def excluded_tokens(trie: TrieArrays, node_X: jax.Array, excluded_XxE: jax.Array) -> jax.Array:
  """Next tokens to forbid because every item below them is excluded (-1 = nothing).

  Equals building, per row, the trie of the non-excluded items. Cost O(X * E * (C + E)).

  Args:
    trie: device arrays.
    node_X: int32 [X] current nodes.
    excluded_XxE: int32 [X, E] item indices (-1 = padding; duplicates allowed).
  Returns:
    int32 [X, E]: for excluded item e, the token leaving node_X towards it when that child's
    whole subtree is excluded, else -1.
  """
  e_n = excluded_XxE.shape[1]
  # Drop padding and repeats so that counting excluded items per child is exact.
  earlier_ExE = jnp.arange(e_n)[:, None] > jnp.arange(e_n)[None, :]
  repeat_XxE = ((excluded_XxE[:, :, None] == excluded_XxE[:, None, :]) & earlier_ExE[None]).any(-1)
  ok_XxE = (excluded_XxE >= 0) & ~repeat_XxE
  path_XxExC1 = trie.item_path_NxC1[jnp.maximum(excluded_XxE, 0)]
  # The excluded item passes through node_X at some depth d; its child is path[d + 1].
  here = (path_XxExC1[..., :-1] == node_X[:, None, None]) & (node_X >= 0)[:, None, None]
  child_XxE = jnp.max(jnp.where(here, path_XxExC1[..., 1:], DEAD), axis=-1)
  child_XxE = jnp.where(ok_XxE, child_XxE, DEAD)
  same_XxExE = (child_XxE[:, :, None] == child_XxE[:, None, :]) & (child_XxE[:, :, None] >= 0)
  count_XxE = same_XxExE.sum(axis=-1)
  safe = jnp.maximum(child_XxE, 0)
  full = (child_XxE >= 0) & (count_XxE >= trie.leaf_count_M[safe])
  return jnp.where(full, trie.node_token_M[safe], -1).astype(jnp.int32)


def items_from_sequences(trie: TrieArrays, seqs_XxL: jax.Array) -> jax.Array:
  """Device version of `ItemTrie.items_from_sequences`: item per sequence, -1 if none.

  Args:
    trie: device arrays.
    seqs_XxL: int32 [..., L] token sequences (EOS-terminated; anything after EOS ignored).
  Returns:
    int32 [...].
  """
  lead = seqs_XxL.shape[:-1]
  flat = seqs_XxL.reshape(-1, seqs_XxL.shape[-1]).astype(jnp.int32)

  def body(carry, tok_X):
    node, item, done = carry
    node = jnp.where(done, node, trie_step(trie, node, tok_X))
    just = ~done & (tok_X == trie.eos_id)
    item = jnp.where(just & (node >= 0), trie.leaf_item_M[jnp.maximum(node, 0)], item)
    return (node, item, done | just | (node < 0)), None

  n = flat.shape[0]
  init = (jnp.zeros(n, jnp.int32), jnp.full(n, -1, jnp.int32), jnp.zeros(n, jnp.bool_))
  (_, item, _), _ = jax.lax.scan(body, init, flat.T)
  return item.reshape(lead)
