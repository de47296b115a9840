"""Prefix trie over item token sequences, built on the host, walked under `jit`.

Every item is one token sequence ending with EOS (e.g. its textual ID run through the
SentencePiece vocab). The trie is stored in a form whose size is O(nodes), never O(nodes x V):

* nodes are numbered breadth-first, and inside one depth in lexicographic order of their
  prefixes. Hence the children of every node are a *contiguous, token-sorted* id range, and
  the ranges of consecutive nodes follow each other: a CSR layout needs only
  `child_offsets[M + 1]` plus the token on the edge into each node, `node_token[M]`;
* the root gets a dense `[V]` child table, and every other node with more than
  `dense_fanout` children (a "wide" node, e.g. the common first words of textual IDs) a
  bit-packed `[V / 32]` row. Rows cost V / 8 bytes and at most (nodes / dense_fanout) nodes can
  be wide, so this stays O(nodes) (<= V / (8 * dense_fanout) bytes per node) while the mask of a
  narrow node gathers at most `dense_fanout` children: mask time does not grow with the
  catalogue's largest fan-out;
* the node reached through an EOS edge is a leaf that names its item (`leaf_item`);
* per-user exclusion (IDGenRec's "filtered" evaluation builds a trie per user without the
  seen items) needs each item's root-to-leaf node path (`item_path`, N x (C + 1), the size of
  the input) and each node's number of items below it (`leaf_count`): a child is masked when
  every item below it is excluded, which is exactly the per-user trie's mask.

Walking is pure and vectorised: `trie_step` binary-searches a node's child range (no
`node * V` products anywhere, so int32 node ids are safe up to 2**31 - 2 nodes; host-side
keys that do need `node * V` are computed in int64), and `allowed_mask` scatters at most
`gather_width` children per narrow beam. Node id `DEAD = -1` is the sink for invalid
steps.

Build cost (numpy, vectorised): one lexicographic sort plus O(N x C) passes.

Pass `ItemTrie.arrays` to jitted functions as an argument: a trie closed over by a jitted
function becomes an XLA constant (measured: a 120 MB closed-over array costs ~12 s of compile
and a 240 MB HLO; as an argument, nothing).
"""
from __future__ import annotations

import jax
import numpy as np

# The device side lives in trie_walk.py; its names are part of this module's interface.
from llmrec_jax.decoding.trie_walk import (DEAD, ROOT, TrieArrays, allowed_mask,  # noqa: F401
                                          excluded_tokens, items_from_sequences, trie_step)


class ItemTrie:
  """Host-side holder of a built trie (numpy arrays) and its device arrays.

  Attributes:
    num_items, num_nodes, vocab_size, eos_id, max_fanout (over non-root nodes): sizes.
    dense_fanout: nodes with more children than this get a bit-packed dense row.
    token_ids: sorted int32 array of every token that occurs in some item (incl. EOS); a
      model may restrict its output projection to these.
    arrays: `TrieArrays` on the default device (created lazily, then cached).
  """

  def __init__(self, *, root_child, child_offsets, node_token, leaf_item, item_path,
               vocab_size: int, eos_id: int, num_items: int, max_len: int,
               dense_fanout: int = 128):
    self.root_child = root_child
    self.child_offsets = child_offsets
    self.node_token = node_token
    self.leaf_item = leaf_item
    self.item_path = item_path
    valid = item_path[item_path >= 0]
    self.leaf_count = np.bincount(valid, minlength=node_token.shape[0]).astype(np.int32)
    self.vocab_size = int(vocab_size)
    self.eos_id = int(eos_id)
    self.num_items = int(num_items)
    self.max_len = int(max_len)  # longest item, EOS included
    self.num_nodes = int(node_token.shape[0])
    fanout = np.diff(child_offsets)
    self.max_fanout = int(max(1, fanout[1:].max(initial=0)))
    self.dense_fanout = int(dense_fanout)
    if self.dense_fanout < 1:
      raise ValueError(f"dense_fanout must be >= 1, got {dense_fanout}")
    wide = fanout > self.dense_fanout
    wide[ROOT] = False
    self.wide_nodes = np.flatnonzero(wide).astype(np.int32)
    narrow = fanout[1:][~wide[1:]]
    self.gather_width = int(max(1, narrow.max(initial=0)))
    words = (self.vocab_size + 31) // 32
    self.wide_bits = np.zeros((max(1, len(self.wide_nodes)), words), np.uint32)
    if len(self.wide_nodes):
      n_h = fanout[self.wide_nodes]
      row = np.repeat(np.arange(len(self.wide_nodes)), n_h)
      child = (np.repeat(child_offsets[self.wide_nodes].astype(np.int64) - np.cumsum(n_h) + n_h,
                         n_h) + np.arange(int(n_h.sum())))
      tok = node_token[child].astype(np.int64)
      np.bitwise_or.at(self.wide_bits, (row, tok // 32),
                       np.left_shift(np.uint32(1), (tok % 32).astype(np.uint32)))
    self.token_ids = np.unique(node_token[1:]).astype(np.int32)
    self._arrays = None
    self._keys = None  # host step keys, built on first use

  # ---------------------------------------------------------------- build
  @classmethod
  def from_sequences(cls, seqs, *, eos_id: int = 1, vocab_size: int | None = None,
                     pad_id: int = 0, source: str = "<sequences>",
                     dense_fanout: int = 128) -> "ItemTrie":
    """Builds the trie; item i is `seqs[i]`.

    Args:
      seqs: a list of 1-D int sequences, each ending with `eos_id` and containing no other
        EOS; or an int array [N, C] whose rows end at their first EOS, followed only by
        `pad_id`.
      eos_id: end-of-sequence token.
      vocab_size: V; defaults to max token + 1. Every token must be in [0, V).
      pad_id: padding after EOS in the 2-D form.
      source: a name used in error messages (e.g. the ID file the sequences came from).
      dense_fanout: non-root nodes with more children get a dense bit row (see module doc).
    Returns:
      the built `ItemTrie`.
    Raises:
      ValueError: empty input, an empty sequence or one holding only EOS, a missing or inner
        EOS, a token outside [0, V), or two items with the same sequence (since EOS ends every
        sequence and occurs nowhere else, one item can be a prefix of another only by being
        its duplicate).
    """
    tokens_NxC, len_N = _to_padded(seqs, eos_id=eos_id, pad_id=pad_id, source=source)
    vocab_size = _checked_vocab_size(tokens_NxC, len_N, vocab_size, source)
    order_N, sorted_NxC, len_sorted_N, lcp_N = _sorted_rows(tokens_NxC, len_N, source)
    node_NxC, parent_M, node_token = _number_nodes(sorted_NxC, len_sorted_N, lcp_N, source)
    m = parent_M.shape[0]
    child_offsets = _child_offsets(parent_M)
    leaf_item, item_path = _leaves_and_paths(node_NxC, order_N, len_sorted_N, m)
    root_child = np.full(vocab_size, DEAD, np.int32)
    first = np.arange(1, child_offsets[1])
    root_child[node_token[first]] = first
    return cls(root_child=root_child, child_offsets=child_offsets, node_token=node_token,
               leaf_item=leaf_item, item_path=item_path, vocab_size=vocab_size,
               eos_id=eos_id, num_items=tokens_NxC.shape[0], max_len=tokens_NxC.shape[1],
               dense_fanout=dense_fanout)

  def compact(self) -> "ItemTrie":
    """The same trie over column ids: token t becomes its index in `self.token_ids`.

    For decoders whose logits cover only `token_ids` (`column_token_ids=trie.token_ids`).
    """
    ids = self.token_ids
    col = np.searchsorted(ids, self.node_token[1:]).astype(np.int32)
    eos_col = int(np.searchsorted(ids, self.eos_id))
    return ItemTrie(root_child=self.root_child[ids], child_offsets=self.child_offsets,
                    node_token=np.concatenate([[-1], col]).astype(np.int32),
                    leaf_item=self.leaf_item, item_path=self.item_path, vocab_size=len(ids),
                    eos_id=eos_col, num_items=self.num_items, max_len=self.max_len,
                    dense_fanout=self.dense_fanout)

  def choice_nodes(self) -> tuple[list[np.ndarray], np.ndarray]:
    """(per item, the node before each of its tokens (EOS included) [n_i]; bool [M]: nodes
    with two or more children, where the trie's distribution has a choice)."""
    fanout_M = np.diff(self.child_offsets)
    fanout_M[0] = int((self.root_child >= 0).sum())
    lengths_N = (self.item_path >= 0).sum(axis=1) - 1
    return [row[:n] for row, n in zip(self.item_path, lengths_N)], fanout_M > 1

  # ---------------------------------------------------------------- device
  @property
  def arrays(self) -> TrieArrays:
    if self._arrays is None:
      steps = max(1, int(np.ceil(np.log2(self.max_fanout + 1))))
      host = dict(
          root_child_V=self.root_child, child_offsets_M1=self.child_offsets,
          node_token_M=self.node_token, leaf_item_M=self.leaf_item,
          leaf_count_M=self.leaf_count, item_path_NxC1=self.item_path,
          wide_nodes_H=self.wide_nodes if len(self.wide_nodes) else
          np.array([np.iinfo(np.int32).max], np.int32),
          wide_bits_HxW=self.wide_bits)
      compact = self.compact()
      host["token_ids_U"] = self.token_ids
      compact_host = dict(root_child_V=compact.root_child, node_token_M=compact.node_token,
                          wide_bits_HxW=compact.wide_bits)
      # Explicit device_put (fine under jax_transfer_guard="disallow"), and concrete even when
      # first asked for inside a jit trace (the cached arrays must not be tracers).
      with jax.ensure_compile_time_eval():
        device, compact_device = jax.device_put((host, compact_host))
      static = dict(gather_width=self.gather_width, search_steps=steps,
                    has_wide=bool(len(self.wide_nodes)), max_len=self.max_len)
      compact_arrays = TrieArrays(**{**device, **compact_device}, vocab_size=compact.vocab_size,
                                  eos_id=compact.eos_id, **static)
      self._arrays = TrieArrays(**device, vocab_size=self.vocab_size, eos_id=self.eos_id,
                                compact=compact_arrays, **static)
    return self._arrays

  @property
  def nbytes(self) -> int:
    """Bytes of the full-vocab arrays (the device `compact` view adds a root table over U,
    node tokens as columns and narrower bit rows; it shares the other arrays)."""
    return sum(int(a.nbytes) for a in (self.root_child, self.child_offsets, self.node_token,
                                       self.leaf_item, self.leaf_count, self.item_path,
                                       self.wide_nodes, self.wide_bits, self.token_ids))

  # ---------------------------------------------------------------- host walks
  def step_np(self, node_X: np.ndarray, token_X: np.ndarray) -> np.ndarray:
    """Numpy `trie_step`: child of each node via each token, DEAD if none."""
    node_X = np.asarray(node_X, np.int64)
    token_X = np.asarray(token_X, np.int64)
    v = self.vocab_size
    # Children are sorted by (parent, token), so one global int64 key array is sorted.
    if self._keys is None:
      parent = np.repeat(np.arange(self.num_nodes, dtype=np.int64), np.diff(self.child_offsets))
      self._keys = parent * v + self.node_token[1:].astype(np.int64)
    ok = (node_X >= 0) & (token_X >= 0) & (token_X < v)
    key = np.where(ok, node_X, 0) * v + np.where(ok, token_X, 0)
    pos = np.searchsorted(self._keys, key)
    pos_c = np.minimum(pos, len(self._keys) - 1)
    found = ok & (pos < len(self._keys)) & (self._keys[pos_c] == key)
    return np.where(found, pos_c + 1, DEAD).astype(np.int32)

  def items_from_sequences(self, seqs_XxL: np.ndarray) -> np.ndarray:
    """Item index of each decoded sequence (tokens, EOS, then anything), -1 if none.

    Args:
      seqs_XxL: int array [..., L] (e.g. [B, K, L] beam-search output).
    Returns:
      int32 array [...].
    """
    seqs = np.asarray(seqs_XxL)
    flat = seqs.reshape(-1, seqs.shape[-1])
    node = np.zeros(flat.shape[0], np.int32)
    item = np.full(flat.shape[0], -1, np.int32)
    done = np.zeros(flat.shape[0], bool)
    for t in range(flat.shape[1]):
      node = np.where(done, node, self.step_np(node, flat[:, t]))
      just = ~done & (flat[:, t] == self.eos_id)
      item = np.where(just & (node >= 0), self.leaf_item[np.maximum(node, 0)], item)
      done |= just | (node < 0)
    return item.reshape(seqs.shape[:-1])

  def __repr__(self):
    return (f"ItemTrie(items={self.num_items}, nodes={self.num_nodes}, V={self.vocab_size}, "
            f"max_fanout={self.max_fanout}, wide_nodes={len(self.wide_nodes)}, "
            f"max_len={self.max_len}, bytes={self.nbytes})")


# ---------------------------------------------------------------- build helpers
def _checked_vocab_size(tokens_NxC: np.ndarray, len_N: np.ndarray, vocab_size: int | None,
                        source: str) -> int:
  """V (default max token + 1), after checking every token of tokens_NxC [N, C] is in [0, V)."""
  vmax = int(tokens_NxC.max())
  if vocab_size is None:
    vocab_size = vmax + 1
  if int(tokens_NxC.min()) < 0 or vmax >= vocab_size:
    bad = int(np.argmax((tokens_NxC < 0).any(1) | (tokens_NxC >= vocab_size).any(1)))
    raise ValueError(f"{source}: item {bad}: token outside [0, {vocab_size}): "
                     f"{tokens_NxC[bad, :len_N[bad]].tolist()}")
  return vocab_size


def _sorted_rows(tokens_NxC: np.ndarray, len_N: np.ndarray, source: str):
  """Items in lexicographic order, with positions past each item's end set to -1 (so a shorter
  row sorts first and never matches); raises on two items with the same sequence.

  Returns:
    (order_N: item of each sorted row, sorted_NxC, len_sorted_N, lcp_N: length of the common
    prefix of sorted rows i-1 and i, 0 for row 0).
  """
  n, c = tokens_NxC.shape
  pos_C = np.arange(c, dtype=np.int32)
  keyed_NxC = np.where(pos_C[None, :] < len_N[:, None], tokens_NxC, -1)
  order_N = np.lexsort(keyed_NxC.T[::-1])
  sorted_NxC = keyed_NxC[order_N]
  len_sorted_N = len_N[order_N]
  differ = sorted_NxC[1:] != sorted_NxC[:-1]
  any_differ = differ.any(axis=1)
  if not any_differ.all():
    i = int(np.argmin(any_differ))
    a, b = sorted(int(x) for x in order_N[i:i + 2])
    raise ValueError(f"{source}: items {a} and {b} have the same sequence "
                     f"{tokens_NxC[a, :len_N[a]].tolist()}")
  lcp_N = np.zeros(n, np.int32)
  lcp_N[1:] = np.argmax(differ, axis=1)
  return order_N, sorted_NxC, len_sorted_N, lcp_N


def _number_nodes(sorted_NxC: np.ndarray, len_sorted_N: np.ndarray, lcp_N: np.ndarray,
                  source: str):
  """Breadth-first node ids. Depth d >= 1 holds prefixes of length d; row i opens a new node at
  depth d iff its length-d prefix differs from row i-1's (lcp < d) and the row is long enough.

  Returns:
    (node_NxC: node of each sorted row's length-(d+1) prefix, DEAD past its end;
    parent_M int64 (root: DEAD), node_token_M int32 (root: -1)), M = number of nodes.
  """
  n, c = sorted_NxC.shape
  node_NxC = np.full((n, c), DEAD, np.int32)
  parents, tokens_out = [np.array([DEAD], np.int64)], [np.array([-1], np.int32)]
  next_id = 1
  for d in range(1, c + 1):
    alive = len_sorted_N >= d
    new = alive & (lcp_N < d)
    count = int(new.sum())
    ids = next_id - 1 + np.cumsum(new, dtype=np.int64)
    node_NxC[:, d - 1] = np.where(alive, ids, DEAD)
    parent = node_NxC[new, d - 2] if d > 1 else np.full(count, ROOT, np.int32)
    parents.append(parent.astype(np.int64))
    tokens_out.append(sorted_NxC[new, d - 1].astype(np.int32))
    next_id += count
  if next_id >= np.iinfo(np.int32).max:
    raise ValueError(f"{source}: {next_id} trie nodes do not fit int32 node ids")
  return node_NxC, np.concatenate(parents), np.concatenate(tokens_out)


def _child_offsets(parent_M: np.ndarray) -> np.ndarray:
  """int32 [M + 1] CSR offsets: the children of u are ids [off[u], off[u+1]). BFS numbering
  makes parent_M non-decreasing, so each node's children form one range."""
  m = parent_M.shape[0]
  child_offsets = np.searchsorted(parent_M[1:], np.arange(m + 1), side="left") + 1
  child_offsets = child_offsets.astype(np.int32)
  child_offsets[0] = 1
  return child_offsets


def _leaves_and_paths(node_NxC: np.ndarray, order_N: np.ndarray, len_sorted_N: np.ndarray,
                      num_nodes: int):
  """(leaf_item_M int32: item of each leaf, -1 elsewhere; item_path_NxC1 int32: each item's
  root-to-leaf nodes, ROOT first, DEAD past its leaf), from the sorted rows' nodes."""
  n, c = node_NxC.shape
  leaf_sorted_N = node_NxC[np.arange(n), len_sorted_N - 1]
  leaf_item = np.full(num_nodes, -1, np.int32)
  leaf_item[leaf_sorted_N] = order_N
  item_path = np.full((n, c + 1), DEAD, np.int32)
  item_path[:, 0] = ROOT
  item_path[order_N, 1:] = node_NxC
  return leaf_item, item_path


def _to_padded(seqs, *, eos_id: int, pad_id: int, source: str):
  """-> (tokens_NxC int32, len_N int32) with len counting EOS; validates EOS placement."""
  if isinstance(seqs, np.ndarray) and seqs.ndim == 2:
    tokens = seqs.astype(np.int32, copy=False)
    if tokens.shape[0] == 0:
      raise ValueError(f"{source}: no sequences")
    is_eos = tokens == eos_id
    has = is_eos.any(axis=1)
    if not has.all():
      raise ValueError(f"{source}: item {int(np.argmin(has))} has no EOS ({eos_id})")
    len_N = (np.argmax(is_eos, axis=1) + 1).astype(np.int32)
    after = np.arange(tokens.shape[1])[None, :] >= len_N[:, None]
    bad = (after & (tokens != pad_id)).any(axis=1)
    if bad.any():
      raise ValueError(f"{source}: item {int(np.argmax(bad))} has tokens other than pad "
                       f"({pad_id}) after its EOS")
  else:
    seqs = [np.asarray(s, np.int64).reshape(-1) for s in seqs]
    if not seqs:
      raise ValueError(f"{source}: no sequences")
    len_N = np.fromiter((len(s) for s in seqs), np.int32, len(seqs))
    if (len_N == 0).any():
      raise ValueError(f"{source}: item {int(np.argmin(len_N))} is an empty sequence")
    flat = np.concatenate(seqs)
    ends = np.cumsum(len_N) - 1
    if not (flat[ends] == eos_id).all():
      i = int(np.argmin(flat[ends] == eos_id))
      raise ValueError(f"{source}: item {i} does not end with EOS ({eos_id}): {seqs[i].tolist()}")
    if int((flat == eos_id).sum()) != len(seqs):
      owner = np.repeat(np.arange(len(seqs)), len_N)
      inner = (flat == eos_id) & ~np.isin(np.arange(len(flat)), ends)
      i = int(owner[np.argmax(inner)])
      raise ValueError(f"{source}: item {i} has EOS ({eos_id}) before its end: {seqs[i].tolist()}")
    c = int(len_N.max())
    tokens = np.full((len(seqs), c), pad_id, np.int32)
    col = np.arange(len(flat)) - np.repeat(np.cumsum(len_N) - len_N, len_N)
    tokens[np.repeat(np.arange(len(seqs)), len_N), col] = flat
  if (len_N < 2).any():
    raise ValueError(f"{source}: item {int(np.argmin(len_N >= 2))} is empty (only EOS)")
  return tokens, len_N
