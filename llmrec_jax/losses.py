"""Token-level losses for sequence models: weighted cross-entropy with z-loss and label smoothing.

Pure functions, as T5X's `losses.py`, plus the normalisation of the official IDGenRec code
(Hugging Face `labels=` with pad ids left in, i.e. a mean over every label position of the
batch, padding included).
"""
from __future__ import annotations

import enum
from typing import Union

import jax
import jax.numpy as jnp


class LossNormalization(str, enum.Enum):
  """How the summed token loss of a batch is turned into the training loss."""
  SUM = "SUM"  # T5X's `loss_normalizing_factor=None`: plain sum over weighted tokens.
  NUM_REAL_TARGET_TOKENS = "NUM_REAL_TARGET_TOKENS"  # mean over tokens with weight > 0.
  # Reproduces the official IDGenRec loss: HF pads labels with 0 (not -100) to the longest
  # target of the batch, so the mean runs over B x T_longest positions, padding included.
  IDGENREC_OFFICIAL = "IDGENREC_OFFICIAL"


NormalizingFactor = Union[None, float, str, LossNormalization]


def parse_normalization(factor: NormalizingFactor) -> Union[float, LossNormalization]:
  """None -> SUM; a number -> divide by it; a name -> that mode. Unknown names fail loudly."""
  if factor is None:
    return LossNormalization.SUM
  if isinstance(factor, (int, float)) and not isinstance(factor, bool):
    if factor <= 0:
      raise ValueError(f"loss_normalizing_factor must be > 0, got {factor}")
    return float(factor)
  try:
    return LossNormalization(str(factor.value if isinstance(factor, enum.Enum) else factor).upper())
  except ValueError:
    names = ", ".join(m.value for m in LossNormalization)
    raise ValueError(f"unknown loss_normalizing_factor {factor!r}; use a number, None or one of {names}") from None


def cross_entropy_with_logits(logits_BxTxV: jax.Array, soft_targets_BxTxV: jax.Array,
                              z_loss: float) -> tuple[jax.Array, jax.Array]:
  """Per-token cross-entropy against (possibly smoothed) target distributions, plus z-loss.

  loss = -sum_v q_v log softmax(x)_v + z_loss * logsumexp(x)^2.
  Returns (loss_BxT, z_loss_BxT); the first already includes the second.
  """
  log_z_BxT = jax.nn.logsumexp(logits_BxTxV, axis=-1)
  log_softmax_BxTxV = logits_BxTxV - log_z_BxT[..., None]
  loss_BxT = -jnp.sum(soft_targets_BxTxV * log_softmax_BxTxV, axis=-1)
  z_BxT = z_loss * jnp.square(log_z_BxT)
  return loss_BxT + z_BxT, z_BxT


def weighted_cross_entropy(
    logits_BxTxV: jax.Array,
    targets_BxT: jax.Array,
    weights_BxT: jax.Array | None = None,
    *,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    loss_normalizing_factor: NormalizingFactor = LossNormalization.NUM_REAL_TARGET_TOKENS,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Weighted token cross-entropy, normalised as `loss_normalizing_factor` says.

  Args:
    logits_BxTxV: float logits (computed in float32 here).
    targets_BxT: int target ids; 0 is padding.
    weights_BxT: per-token weights (seqio `decoder_loss_weights`); defaults to targets > 0.
    label_smoothing: T5X's: confidence 1 - ls, the rest spread over the other V - 1 ids, with
      the entropy of that distribution subtracted so a perfect model scores 0.
    z_loss: coefficient of the log-partition penalty.
    loss_normalizing_factor: see `LossNormalization`, a number, or None (sum).
  Returns:
    (loss, z_loss, total_weight): scalars; z_loss is normalised like the loss.
  """
  mode = parse_normalization(loss_normalizing_factor)
  logits_BxTxV = logits_BxTxV.astype(jnp.float32)
  vocab_size = logits_BxTxV.shape[-1]
  if weights_BxT is None:
    weights_BxT = (targets_BxT > 0).astype(jnp.float32)
  weights_BxT = weights_BxT.astype(jnp.float32)
  confidence = 1.0 - label_smoothing
  low_confidence = label_smoothing / (vocab_size - 1)
  normalizing_constant = -(confidence * jnp.log(confidence) +
                           (vocab_size - 1) * low_confidence * jnp.log(low_confidence + 1e-20))
  soft_BxTxV = (low_confidence +
                (confidence - low_confidence) * jax.nn.one_hot(targets_BxT, vocab_size, dtype=jnp.float32))
  loss_BxT, z_BxT = cross_entropy_with_logits(logits_BxTxV, soft_BxTxV, z_loss)
  loss_BxT = loss_BxT - normalizing_constant

  if mode is LossNormalization.IDGENREC_OFFICIAL:
    # Every position up to the longest real target of the batch counts, padding included.
    real_BxT = targets_BxT > 0
    t_idx_T = jnp.arange(targets_BxT.shape[1])
    last_B = jnp.max(jnp.where(real_BxT, t_idx_T[None, :], -1), axis=1)
    longest = jnp.max(last_B) + 1
    weights_BxT = jnp.broadcast_to((t_idx_T < longest)[None, :], targets_BxT.shape).astype(jnp.float32)
    denom = jnp.sum(weights_BxT)
  elif mode is LossNormalization.NUM_REAL_TARGET_TOKENS:
    denom = jnp.sum(weights_BxT)
  elif mode is LossNormalization.SUM:
    denom = jnp.float32(1.0)
  else:
    denom = jnp.float32(mode)
  denom = jnp.maximum(denom, 1e-8)
  total_weight = jnp.sum(weights_BxT)
  return (jnp.sum(loss_BxT * weights_BxT) / denom, jnp.sum(z_BxT * weights_BxT) / denom, total_weight)
