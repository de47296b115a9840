"""Optax optimizer builders and learning-rate schedules (the trainer owns the optimizer)."""
from __future__ import annotations

import enum
from typing import Optional

import jax
import optax


class WeightDecayMask(str, enum.Enum):
  """Which parameters AdamW decays (weight decay on every leaf the mask keeps)."""
  ALL = "ALL"  # every parameter
  # The official IDGenRec optimizer: transformers.AdamW with the no-decay list ["bias",
  # "LayerNorm.weight"] (a substring match on parameter names), which in T5 matches only the
  # relative-position bias (`relpos_bias/rel_embedding` here): the layer norms ARE decayed.
  ALL_BUT_RELPOS_BIAS = "ALL_BUT_RELPOS_BIAS"
  NO_NORMS_OR_BIASES = "NO_NORMS_OR_BIASES"  # the usual practice: skip RMS-norm scales and relpos biases.


def linear_warmup_decay(learning_rate: float, warmup_steps: int, total_steps: int) -> optax.Schedule:
  """0 -> lr linearly over `warmup_steps`, then linearly to 0 at `total_steps` (HF
  `get_linear_schedule_with_warmup`, as the official IDGenRec code uses)."""
  if total_steps <= 0 or warmup_steps < 0 or warmup_steps > total_steps:
    raise ValueError(f"need 0 <= warmup_steps ({warmup_steps}) <= total_steps ({total_steps}), total > 0")
  return optax.join_schedules(
      [optax.linear_schedule(0.0, learning_rate, max(warmup_steps, 1)),
       optax.linear_schedule(learning_rate, 0.0, max(total_steps - warmup_steps, 1))],
      boundaries=[warmup_steps])


def decay_mask_of(params, mask: WeightDecayMask | str):
  """The pytree of booleans (True: decayed) of `mask` over `params` (names as in our T5 tree)."""
  mask = WeightDecayMask(mask)
  if mask is WeightDecayMask.ALL:
    return jax.tree_util.tree_map(lambda _: True, params)

  def keep(path, _):
    names = [getattr(k, "key", str(k)) for k in path]
    if mask is WeightDecayMask.ALL_BUT_RELPOS_BIAS:  # HF's substring rule: "bias" in the name
      return not any(n == "rel_embedding" or "bias" in n for n in names)
    return not any(n == "scale" or n == "rel_embedding" or n.endswith("bias") for n in names)
  return jax.tree_util.tree_map_with_path(keep, params)


def adamw(learning_rate: float | optax.Schedule = 1e-3, *, b1: float = 0.9, b2: float = 0.999,
          eps: float = 1e-6, weight_decay: float = 0.01, clip_norm: Optional[float] = 1.0,
          decay_mask: WeightDecayMask | str = WeightDecayMask.NO_NORMS_OR_BIASES
          ) -> optax.GradientTransformation:
  """Global-norm clipping then AdamW. The defaults are the official IDGenRec optimizer's
  hyperparameters (betas, eps, weight decay, clip) but not its mask: the official one decays the
  layer norms too (`WeightDecayMask.ALL_BUT_RELPOS_BIAS`)."""
  mask = WeightDecayMask(decay_mask)
  chain = [optax.clip_by_global_norm(clip_norm)] if clip_norm else []
  chain.append(optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
                           mask=lambda p: decay_mask_of(p, mask)))
  return optax.chain(*chain)


def adafactor(learning_rate: float | optax.Schedule = 1e-3, *, decay_rate: float = 0.8,
              clip_norm: Optional[float] = 1.0) -> optax.GradientTransformation:
  """Adafactor (T5X's default for T5) with factored second moments."""
  chain = [optax.clip_by_global_norm(clip_norm)] if clip_norm else []
  chain.append(optax.adafactor(learning_rate, decay_rate=decay_rate, multiply_by_parameter_scale=False))
  return optax.chain(*chain)
