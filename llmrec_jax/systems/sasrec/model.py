"""SASRec (Kang & McAuley, ICDM 2018) in flax.linen, plus its two training losses.

Token convention used everywhere in the baselines: token 0 is padding and item index i
(0-based, as in `RecData`) is token i + 1. Sequences are LEFT-padded, so the most recent
item sits at the last position. Scores are always returned over the N real items in
item-index order (the padding row of the embedding table is never scored).

Positions are absolute slots of a `max_len` window, numbered so that the last slot is
`max_len - 1`. A shorter array of length T is treated as the last T slots of that window,
which makes a length-T batch compute exactly what the same batch padded to `max_len`
computes (padding keys are masked), so training can bucket sequences by length.
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

PAD = 0
_NEG_INF = -1e9  # finite, so a query whose keys are all masked still gets a defined softmax


@dataclasses.dataclass(frozen=True)
class SASRecConfig:
  """Model sizes. Defaults are the usual Amazon-Beauty settings."""
  num_items: int  # N real items; the embedding table has N + 1 rows (row 0 = padding).
  hidden: int = 64  # D
  num_blocks: int = 2
  num_heads: int = 1  # H
  max_len: int = 50  # longest input window
  dropout: float = 0.5

  def __post_init__(self):
    if self.num_items < 1:
      raise ValueError(f"SASRecConfig.num_items must be >= 1, got {self.num_items}")
    if self.hidden < 1 or self.num_blocks < 1 or self.max_len < 1:
      raise ValueError(f"SASRecConfig sizes must be positive: {self}")
    if self.num_heads < 1 or self.hidden % self.num_heads:
      raise ValueError(f"SASRecConfig.hidden={self.hidden} is not divisible by num_heads={self.num_heads}")
    if not 0.0 <= self.dropout < 1.0:
      raise ValueError(f"SASRecConfig.dropout must be in [0, 1), got {self.dropout}")


def attention_mask(valid_BxT: jax.Array) -> jax.Array:
  """Causal mask that also hides padding keys; every query may always see itself.

  Args:
    valid_BxT: bool, True at real items.
  Returns:
    mask_Bx1xTxT: bool, [b, 0, query, key].
  """
  T = valid_BxT.shape[1]
  causal_TxT = jnp.tril(jnp.ones((T, T), dtype=bool))
  eye_TxT = jnp.eye(T, dtype=bool)
  mask_BxTxT = causal_TxT[None, :, :] & (valid_BxT[:, None, :] | eye_TxT[None, :, :])
  return mask_BxTxT[:, None, :, :]


class CausalSelfAttention(nn.Module):
  """Multi-head dot-product self-attention with an explicit boolean mask."""
  hidden: int
  num_heads: int
  dropout: float

  @nn.compact
  def __call__(self, q_BxTxD, kv_BxTxD, mask_Bx1xTxT, *, deterministic: bool):
    B, T, D = q_BxTxD.shape
    H = self.num_heads
    init = nn.initializers.xavier_normal()
    q_BxTxHxK = nn.Dense(D, kernel_init=init, name="query")(q_BxTxD).reshape(B, T, H, D // H)
    k_BxTxHxK = nn.Dense(D, kernel_init=init, name="key")(kv_BxTxD).reshape(B, T, H, D // H)
    v_BxTxHxK = nn.Dense(D, kernel_init=init, name="value")(kv_BxTxD).reshape(B, T, H, D // H)
    logits_BxHxTxT = jnp.einsum("bqhk,bthk->bhqt", q_BxTxHxK, k_BxTxHxK) / jnp.sqrt(D // H).astype(q_BxTxD.dtype)
    logits_BxHxTxT = jnp.where(mask_Bx1xTxT, logits_BxHxTxT, _NEG_INF)
    probs_BxHxTxT = jax.nn.softmax(logits_BxHxTxT, axis=-1)
    probs_BxHxTxT = nn.Dropout(self.dropout)(probs_BxHxTxT, deterministic=deterministic)
    out_BxTxHxK = jnp.einsum("bhqt,bthk->bqhk", probs_BxHxTxT, v_BxTxHxK)
    return nn.Dense(D, kernel_init=init, name="out")(out_BxTxHxK.reshape(B, T, D))


class SASRecBlock(nn.Module):
  """Pre-LN block as in the reference code: x = LN(x) + Attn(LN(x), x); x = x + FFN(LN(x))."""
  hidden: int
  num_heads: int
  dropout: float

  @nn.compact
  def __call__(self, x_BxTxD, mask_Bx1xTxT, valid_BxTx1, *, deterministic: bool):
    q_BxTxD = nn.LayerNorm(epsilon=1e-8, name="attn_ln")(x_BxTxD)
    x_BxTxD = q_BxTxD + CausalSelfAttention(self.hidden, self.num_heads, self.dropout, name="attn")(
        q_BxTxD, x_BxTxD, mask_Bx1xTxT, deterministic=deterministic)
    h_BxTxD = nn.LayerNorm(epsilon=1e-8, name="ffn_ln")(x_BxTxD)
    init = nn.initializers.xavier_normal()
    y_BxTxD = nn.relu(nn.Dense(self.hidden, kernel_init=init, name="ffn_in")(h_BxTxD))
    y_BxTxD = nn.Dropout(self.dropout)(y_BxTxD, deterministic=deterministic)
    y_BxTxD = nn.Dense(self.hidden, kernel_init=init, name="ffn_out")(y_BxTxD)
    y_BxTxD = nn.Dropout(self.dropout)(y_BxTxD, deterministic=deterministic)
    return (h_BxTxD + y_BxTxD) * valid_BxTx1


class SASRec(nn.Module):
  """Self-attentive sequential recommender; item embeddings are shared with the output layer."""
  config: SASRecConfig

  def setup(self):
    c = self.config
    init = nn.initializers.xavier_normal()
    self.item_embed = nn.Embed(c.num_items + 1, c.hidden, embedding_init=init)
    self.pos_embed = nn.Embed(c.max_len, c.hidden, embedding_init=init)
    self.emb_dropout = nn.Dropout(c.dropout)
    self.blocks = [SASRecBlock(c.hidden, c.num_heads, c.dropout, name=f"block_{i}") for i in range(c.num_blocks)]
    self.final_ln = nn.LayerNorm(epsilon=1e-8)

  def __call__(self, tokens_BxT: jax.Array, *, deterministic: bool = True) -> jax.Array:
    """Hidden state after every position.

    Args:
      tokens_BxT: int32 item tokens (0 = padding, item i = i + 1), left-padded, T <= max_len.
      deterministic: False enables dropout (needs a 'dropout' rng).
    Returns:
      hidden_BxTxD: float32; hidden_BxTxD[:, t] depends on tokens_BxT[:, :t + 1] only.
    """
    c = self.config
    B, T = tokens_BxT.shape
    if T > c.max_len:
      raise ValueError(f"sequence length {T} exceeds SASRecConfig.max_len={c.max_len}")
    valid_BxT = tokens_BxT != PAD
    valid_BxTx1 = valid_BxT[:, :, None].astype(jnp.float32)
    pos_T = jnp.arange(c.max_len - T, c.max_len)
    x_BxTxD = self.item_embed(tokens_BxT) * jnp.sqrt(float(c.hidden))
    x_BxTxD = x_BxTxD + self.pos_embed(pos_T)[None, :, :]
    x_BxTxD = self.emb_dropout(x_BxTxD, deterministic=deterministic) * valid_BxTx1
    mask_Bx1xTxT = attention_mask(valid_BxT)
    for block in self.blocks:
      x_BxTxD = block(x_BxTxD, mask_Bx1xTxT, valid_BxTx1, deterministic=deterministic)
    return self.final_ln(x_BxTxD)

  def item_table(self) -> jax.Array:
    """Embeddings of the N real items, item-index order: [N, D] (padding row dropped)."""
    return self.item_embed.embedding[1:]

  def score_last(self, tokens_BxT: jax.Array) -> jax.Array:
    """Next-item scores over all N items from the last position (deterministic).

    Args:
      tokens_BxT: left-padded input tokens.
    Returns:
      scores_BxN: float32, column i = item index i.
    """
    hidden_BxD = self(tokens_BxT, deterministic=True)[:, -1, :]
    return hidden_BxD @ self.item_table().T


# ----------------------------------------------------------------------------- losses


def ce_loss(hidden_BxTxD: jax.Array, items_NxD: jax.Array, targets_BxT: jax.Array) -> jax.Array:
  """Full-softmax cross-entropy over all N items, averaged over non-padding positions.

  Computes logits at every position, padding included; `ce_loss_at` skips padding.

  Args:
    hidden_BxTxD: model output.
    items_NxD: real-item embedding table (padding row excluded, so it never competes).
    targets_BxT: int32 next-item tokens (0 = padding position, ignored).
  Returns:
    scalar loss.
  """
  B, T, D = hidden_BxTxD.shape
  return ce_loss_at(hidden_BxTxD.reshape(B * T, D), items_NxD, targets_BxT.reshape(B * T))


def ce_loss_at(hidden_PxD: jax.Array, items_NxD: jax.Array, targets_P: jax.Array) -> jax.Array:
  """`ce_loss` on P gathered positions (see `valid_positions`): logits are only [P, N].

  Args:
    hidden_PxD: model output at the gathered positions.
    items_NxD: real-item embedding table.
    targets_P: int32 next-item tokens (0 = filler position, ignored).
  Returns:
    scalar: mean over non-filler positions of logsumexp(logits) - logit[target].
  """
  logits_PxN = hidden_PxD @ items_NxD.T
  logz_P = jax.nn.logsumexp(logits_PxN, axis=-1)
  idx_Px1 = jnp.maximum(targets_P - 1, 0)[:, None]
  target_logit_P = jnp.take_along_axis(logits_PxN, idx_Px1, axis=-1)[:, 0]
  valid_P = (targets_P != PAD).astype(jnp.float32)
  return jnp.sum((logz_P - target_logit_P) * valid_P) / jnp.maximum(jnp.sum(valid_P), 1.0)


def valid_positions(targets_BxT: np.ndarray, granule: int) -> tuple[np.ndarray, np.ndarray]:
  """Host-side flat indices of the non-padding targets, padded to a multiple of `granule`.

  Args:
    targets_BxT: int32 next-item tokens (0 = padding).
    granule: the count P is rounded up to a multiple of this (>= 1), so a jitted step sees few
      distinct P; the filler entries point at position 0 and carry target 0 (ignored by the loss).
  Returns:
    flat_P: int32 indices into the row-major [B * T] positions.
    targets_P: int32 targets at those positions (0 for filler).
  """
  if granule < 1:
    raise ValueError(f"valid_positions: granule must be >= 1, got {granule}")
  flat_targets = np.asarray(targets_BxT).reshape(-1)
  flat = np.flatnonzero(flat_targets != PAD).astype(np.int32)
  P = max(granule, -(-flat.size // granule) * granule)
  flat_P = np.zeros((P,), np.int32)
  flat_P[:flat.size] = flat
  targets_P = np.zeros((P,), np.int32)
  targets_P[:flat.size] = flat_targets[flat]
  return flat_P, targets_P


def bce_loss(hidden_BxTxD: jax.Array, items_NxD: jax.Array, targets_BxT: jax.Array,
             negatives_BxT: jax.Array) -> jax.Array:
  """Binary cross-entropy with one negative per position (the loss of the SASRec paper).

  Args:
    hidden_BxTxD: model output.
    items_NxD: real-item embedding table.
    targets_BxT: int32 positive tokens (0 = padding position, ignored).
    negatives_BxT: int32 negative tokens (1..N), see `sample_negatives`.
  Returns:
    scalar: mean over valid positions of -log s(h.e+) - log(1 - s(h.e-)).
  """
  pos_BxTxD = items_NxD[jnp.maximum(targets_BxT - 1, 0)]
  neg_BxTxD = items_NxD[jnp.maximum(negatives_BxT - 1, 0)]
  pos_BxT = jnp.sum(hidden_BxTxD * pos_BxTxD, axis=-1)
  neg_BxT = jnp.sum(hidden_BxTxD * neg_BxTxD, axis=-1)
  per_pos_BxT = -jax.nn.log_sigmoid(pos_BxT) - jax.nn.log_sigmoid(-neg_BxT)
  valid_BxT = (targets_BxT != PAD).astype(jnp.float32)
  return jnp.sum(per_pos_BxT * valid_BxT) / jnp.maximum(jnp.sum(valid_BxT), 1.0)


def sample_negatives(rng: jax.Array, positives_BxP: jax.Array, num_items: int, T: int) -> jax.Array:
  """Uniform negative tokens that avoid every positive of their row, exactly (no rejection loop).

  Draws u uniformly from [0, N - m) where m is the number of distinct positives, then maps u
  to the u-th item (in index order) that is not a positive: with the distinct positive indices
  sorted as s_0 < s_1 < ..., that item is u + #{j : s_j - j <= u}.

  Args:
    rng: PRNG key.
    positives_BxP: int32 tokens to avoid (0 = padding, ignored; duplicates allowed).
    num_items: N.
    T: number of negatives per row.
  Returns:
    negatives_BxT: int32 tokens in 1..N, never in the row's positives (a row whose positives
      cover every item gets token N, which then cannot be helped).
  """
  B, P = positives_BxP.shape
  big = jnp.int32(num_items + P + 1)  # sorts after every real index and never counts below
  idx_BxP = jnp.where(positives_BxP != PAD, positives_BxP - 1, big)
  sorted_BxP = jnp.sort(idx_BxP, axis=1)
  dup_BxP = jnp.concatenate([jnp.zeros((B, 1), bool), sorted_BxP[:, 1:] == sorted_BxP[:, :-1]], axis=1)
  uniq_BxP = jnp.sort(jnp.where(dup_BxP, big, sorted_BxP), axis=1)
  m_B = jnp.sum(uniq_BxP < num_items, axis=1)
  shifted_BxP = uniq_BxP - jnp.arange(P, dtype=jnp.int32)[None, :]  # s_j - j, non-decreasing
  maxval_Bx1 = jnp.maximum(num_items - m_B, 1)[:, None]
  u_BxT = jax.random.randint(rng, (B, T), 0, maxval_Bx1, dtype=jnp.int32)
  count_BxT = jnp.sum(shifted_BxP[:, None, :] <= u_BxT[:, :, None], axis=-1).astype(jnp.int32)
  return jnp.minimum(u_BxT + count_BxT + 1, num_items)
