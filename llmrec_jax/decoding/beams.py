"""Beam bookkeeping shared by `beam_search` (T5X search) and `diverse` (HF group search).

* `DecodingState`: what a search's `tokens_to_logits` callback (`TokensToLogits`) sees (T5X
  field names).
* The decode cache: `expand_cache` adds the beam axis (the K beams of an example adjacent),
  `gather_beams_tree(..., is_cache=True)` reorders beams; both leave alone the leaves named in
  `_CACHE_SKIP` (bookkeeping scalars/biases and the per-example cross-attention memory).
* One step's candidates: `step_log_probs` (full-vocab log_softmax, then masks),
  `select_candidates` (top (beam, token) pairs), `extend_beams`, the `Candidates` struct.
* The constraint hook: the `Constraint` protocol, `combined_mask` (AND with a stateless
  `logits_mask_fn`), `advance_constraint`, and `TrieConstraint` (a per-beam trie walk, optionally
  banning items per example) with `trie_arrays_for` (its checked device arrays).
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Protocol

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from llmrec_jax.decoding import trie as trie_lib

PyTree = Any
NEG_INF = -np.inf
# Left alone by beam expansion and beam gathers: bookkeeping scalars/biases, and the
# cross-attention keys/values projected once per example (`network.attention`), which all beams
# of an example share.
_CACHE_SKIP = ("cache_index", "cached_bias", "position_embedder_index", "projected_key",
               "projected_value")


@flax.struct.dataclass
class DecodingState:
  """What `tokens_to_logits` sees (T5X field names)."""
  cur_index: jax.Array  # int32 scalar: slot of cur_token in `sequences`
  sequences: jax.Array  # int32 [BK, L + 1]: slot 0 is the dummy BOS
  cur_token: jax.Array  # int32 [BK, 1]
  cache: PyTree  # leaves [BK, ...] (batch axis at cache_offset)


# DecodingState -> (logits [BK, V], new cache [BK, ...]): a search's model callback.
TokensToLogits = Callable[[DecodingState], tuple[jax.Array, PyTree]]


class Constraint(Protocol):
  """Per-beam decoding constraint; its state pytree has leading [BK] leaves."""

  def init(self, batch_size: int, num_beams: int) -> PyTree: ...

  def mask(self, state: PyTree, vocab_size: int) -> jax.Array: ...

  def update(self, state: PyTree, token_BK: jax.Array) -> PyTree: ...


# ------------------------------------------------------------------------- cache and beams
def cache_map(fn: Callable[[jax.Array], jax.Array], cache: PyTree) -> PyTree:
  """Applies fn to every cache leaf except scalars and index/bias bookkeeping leaves."""

  def apply(path, x):
    last = path[-1] if path else None
    name = getattr(last, "key", getattr(last, "name", None))
    if name in _CACHE_SKIP or jnp.ndim(x) == 0:
      return x
    return fn(x)

  return jax.tree_util.tree_map_with_path(apply, cache)


def add_beam_dim(x: jax.Array, num_beams: int, offset: int = 0) -> jax.Array:
  """[.., B, ...] -> [.., B, K, ...] by repetition (batch axis at `offset`)."""
  x = jnp.expand_dims(x, offset + 1)
  reps = [1] * x.ndim
  reps[offset + 1] = num_beams
  return jnp.tile(x, reps)


def flatten_beam_dim(x: jax.Array, offset: int = 0) -> jax.Array:
  """[.., B, K, ...] -> [.., B*K, ...]."""
  s = x.shape
  return x.reshape(s[:offset] + (s[offset] * s[offset + 1],) + s[offset + 2:])


def unflatten_beam_dim(x: jax.Array, batch_size: int, offset: int = 0) -> jax.Array:
  """[.., B*K, ...] -> [.., B, K, ...]."""
  s = x.shape
  return x.reshape(s[:offset] + (batch_size, s[offset] // batch_size) + s[offset + 1:])


def gather_beams(x: jax.Array, beam_BxK: jax.Array, offset: int = 0) -> jax.Array:
  """x[.., b, beam_BxK[b, k], ...]: [.., B, K_old, ...] -> [.., B, K_new, ...]."""
  idx = beam_BxK.reshape((1,) * offset + beam_BxK.shape + (1,) * (x.ndim - offset - 2))
  return jnp.take_along_axis(x, idx, axis=offset + 1, mode="clip")


def gather_beams_tree(tree: PyTree, beam_BxK: jax.Array, batch_size: int, offset: int = 0,
                      is_cache: bool = False) -> PyTree:
  """Gathers flat [B*K_old, ...] leaves (batch axis at offset) by beam_BxK -> [B*K, ...].

  With is_cache, leaves `cache_map` skips (scalars, cache_index, ...) are left alone.
  """

  def fn(x):
    return flatten_beam_dim(
        gather_beams(unflatten_beam_dim(x, batch_size, offset), beam_BxK, offset), offset)

  if is_cache:
    return cache_map(fn, tree)
  return jax.tree_util.tree_map(fn, tree)


def select_candidates(logprob_BxKxV: jax.Array, num: int):
  """Top `num` (beam, token) continuations.

  Returns:
    (value_BxN, beam_BxN, token_BxN), best first; K * V must fit int32.
  """
  b, k, v = logprob_BxKxV.shape
  val, flat = jax.lax.top_k(logprob_BxKxV.reshape(b, k * v), num)
  return val, (flat // v).astype(jnp.int32), (flat % v).astype(jnp.int32)


def step_log_probs(logits_BKxV: jax.Array, mask_BKxV: Optional[jax.Array],
                   renormalize: bool = False) -> jax.Array:
  """log_softmax over the full vocab in float32, then -inf where the mask forbids; with
  `renormalize`, the softmax runs over the allowed tokens only."""
  logits_BKxV = logits_BKxV.astype(jnp.float32)
  if renormalize and mask_BKxV is not None:
    logits_BKxV = jnp.where(mask_BKxV, logits_BKxV, -1e30)
  lp = jax.nn.log_softmax(logits_BKxV, axis=-1)
  if mask_BKxV is not None:
    lp = jnp.where(mask_BKxV, lp, NEG_INF)
  return lp


def combined_mask(decoding_state: DecodingState, constraint: Optional[Constraint], cstate,
                  logits_mask_fn, vocab_size: int) -> Optional[jax.Array]:
  """bool [BK, V]: `logits_mask_fn`'s mask AND the constraint's; None when neither is given."""
  mask = None
  if logits_mask_fn is not None:
    mask = logits_mask_fn(decoding_state)
  if constraint is not None:
    cmask = constraint.mask(cstate, vocab_size)
    mask = cmask if mask is None else mask & cmask
  return mask


@flax.struct.dataclass
class Candidates:
  """The top N (beam, token) continuations of one step, best first (N = min(2K, K * V))."""
  value_BxN: jax.Array  # float32 running log-probability after the token
  beam_BxN: jax.Array  # int32 beam each one extends
  column_BxN: jax.Array  # int32 logits column of the token
  token_BxN: jax.Array  # int32 token id (= column without `column_token_ids`)
  seqs_BxNxL1: jax.Array  # int32 the extended sequences
  is_eos_BxN: jax.Array  # bool: ends with EOS (and, in `beam_search`, is finite)


def expand_cache(cache: PyTree, num_beams: int, cache_offset: int) -> PyTree:
  """Each cache leaf that `cache_map` touches, repeated for K beams: [.., B, ...] ->
  [.., B*K, ...] (the K beams of an example adjacent)."""
  return cache_map(
      lambda x: flatten_beam_dim(add_beam_dim(x, num_beams, cache_offset), cache_offset), cache)


def decoding_state(cur_index: jax.Array, seqs_BxKxL1: jax.Array, cache: PyTree) -> DecodingState:
  """The `DecodingState` of beams [B, K, L + 1] flattened to [BK, L + 1] at slot cur_index."""
  b, k, l1 = seqs_BxKxL1.shape
  flat_BKxL1 = seqs_BxKxL1.reshape(b * k, l1)
  return DecodingState(cur_index=cur_index, sequences=flat_BKxL1,
                       cur_token=jax.lax.dynamic_slice_in_dim(flat_BKxL1, cur_index, 1, axis=1),
                       cache=cache)


def extend_beams(seqs_BxKxL1: jax.Array, beam_BxN: jax.Array, token_BxN: jax.Array,
                 cur_index: jax.Array) -> jax.Array:
  """Sequences [B, N, L + 1] of beams beam_BxN with token_BxN written after slot cur_index."""
  seqs_BxNxL1 = gather_beams(seqs_BxKxL1, beam_BxN)
  return jax.lax.dynamic_update_slice_in_dim(seqs_BxNxL1, token_BxN[:, :, None], cur_index + 1,
                                             axis=2)


def advance_constraint(constraint: Optional[Constraint], cstate: PyTree, from_BxK: jax.Array,
                       column_BxK: jax.Array, batch_size: int) -> PyTree:
  """Constraint state [BK, ...] gathered to the surviving beams, then stepped by their tokens."""
  if constraint is None:
    return cstate
  return constraint.update(gather_beams_tree(cstate, from_BxK, batch_size),
                           column_BxK.reshape(-1))


# ------------------------------------------------------------------------- trie hook
@flax.struct.dataclass
class TrieState:
  node_BK: jax.Array  # int32 [BK]
  excluded_BKxE: Optional[jax.Array]  # int32 [BK, E] or None


@flax.struct.dataclass
class TrieConstraint:
  """Keeps every beam on a path of the item trie; optionally bans some items per example.

  Attributes:
    trie: `trie.TrieArrays`.
    excluded_BxE: int32 [B, E] item indices to ban (pad with -1), or None. Subtrees holding
      only banned items are pruned, so this decodes exactly as a per-example trie of the other
      items would (IDGenRec's filtered evaluation).
  """
  trie: trie_lib.TrieArrays
  excluded_BxE: Optional[jax.Array] = None

  def init(self, batch_size: int, num_beams: int) -> TrieState:
    node = jnp.full((batch_size * num_beams,), trie_lib.ROOT, jnp.int32)
    excl = None
    if self.excluded_BxE is not None:
      if self.excluded_BxE.shape[0] != batch_size:
        raise ValueError(f"excluded_BxE has batch {self.excluded_BxE.shape[0]}, "
                         f"inputs have {batch_size}")
      excl = jnp.repeat(self.excluded_BxE.astype(jnp.int32), num_beams, axis=0)
    return TrieState(node, excl)

  def mask(self, state: TrieState, vocab_size: int) -> jax.Array:
    return trie_lib.allowed_mask(self.trie, state.node_BK, vocab_size, state.excluded_BKxE)

  def update(self, state: TrieState, token_BK: jax.Array) -> TrieState:
    return state.replace(node_BK=trie_lib.trie_step(self.trie, state.node_BK, token_BK))


def trie_arrays_for(trie, eos_id: int, column_token_ids=None,
                    max_decode_len: Optional[int] = None) -> trie_lib.TrieArrays:
  """Device arrays of `trie`, checked against the decoder's EOS (a column id when compact) and
  length (an item longer than max_decode_len could never be decoded: a silent recall loss)."""
  arrays = trie.arrays if isinstance(trie, trie_lib.ItemTrie) else trie
  if column_token_ids is None and arrays.eos_id != eos_id:
    raise ValueError(f"trie was built with eos_id={arrays.eos_id}, decoding uses {eos_id}")
  if max_decode_len is not None and max_decode_len < arrays.max_len:
    raise ValueError(f"max_decode_len={max_decode_len} but the longest item has {arrays.max_len} "
                     "tokens (EOS included); raise the target length")
  return arrays
