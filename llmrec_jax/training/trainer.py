"""Pure train/eval steps and a thin `Trainer` that jits them.

`train_step` accumulates gradients over microbatches with `lax.scan`, then applies the optax
update. The model only supplies `loss_fn(params, batch, dropout_rng) -> (loss, metrics)`.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import optax

from llmrec_jax.training.train_state import TrainState

LossFn = Callable[[Any, Mapping[str, jax.Array], Any], tuple[jax.Array, dict[str, jax.Array]]]


def _split_microbatches(batch: Mapping[str, jax.Array], n: int) -> dict[str, jax.Array]:
  def split(x):
    if x.shape[0] % n:
      raise ValueError(f"batch size {x.shape[0]} is not divisible by num_microbatches={n}")
    return x.reshape((n, x.shape[0] // n) + x.shape[1:])
  return {k: split(v) for k, v in batch.items()}


def compute_grads(params: Any, batch: Mapping[str, jax.Array], dropout_rng: jax.Array, *aux: Any,
                  loss_fn: LossFn, num_microbatches: int = 1) -> tuple[Any, dict[str, jax.Array]]:
  """Gradients of the mean microbatch loss w.r.t. `params` (not `aux`, e.g. a frozen model's
  params passed as jit arguments rather than baked-in constants), and metrics averaged over
  microbatches."""
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  if num_microbatches <= 1:
    (_, metrics), grads = grad_fn(params, batch, dropout_rng, *aux)
    return grads, metrics
  micro = _split_microbatches(batch, num_microbatches)
  rngs = jax.random.split(dropout_rng, num_microbatches)

  def body(acc, xs):
    mb, rng = xs
    (_, m), g = grad_fn(params, mb, rng, *aux)
    return jax.tree_util.tree_map(jnp.add, acc, (g, m)), None

  zeros_g = jax.tree_util.tree_map(jnp.zeros_like, params)
  zeros_m = jax.eval_shape(lambda: grad_fn(params, jax.tree_util.tree_map(lambda x: x[0], micro), rngs[0],
                                           *aux)[0][1])
  zeros_m = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), zeros_m)
  (g_sum, m_sum), _ = jax.lax.scan(body, (zeros_g, zeros_m), (micro, rngs))
  scale = 1.0 / num_microbatches
  return jax.tree_util.tree_map(lambda g: g * scale, g_sum), jax.tree_util.tree_map(lambda m: m * scale, m_sum)


def train_step(state: TrainState, batch: Mapping[str, jax.Array], dropout_rng: jax.Array, *aux: Any,
               loss_fn: LossFn, tx: optax.GradientTransformation,
               num_microbatches: int = 1) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer update; `aux` is passed to `loss_fn` after the rng. Pure: jit it (the
  `Trainer` does, donating the state)."""
  rng = jax.random.fold_in(dropout_rng, state.step)
  grads, metrics = compute_grads(state.params, batch, rng, *aux, loss_fn=loss_fn,
                                 num_microbatches=num_microbatches)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = dict(metrics, grad_norm=optax.tree.norm(grads))
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


def eval_step(params: Any, batch: Mapping[str, jax.Array], *, loss_fn: LossFn) -> dict[str, jax.Array]:
  """Teacher-forced loss and metrics without dropout."""
  _, metrics = loss_fn(params, batch, None)
  return metrics


class Trainer:
  """Holds the jitted steps. The state is donated: never reuse a state passed to `train`."""

  def __init__(self, loss_fn: LossFn, tx: optax.GradientTransformation, *, num_microbatches: int = 1,
               dropout_seed: int = 0, in_shardings=None, out_shardings=None, partitioner=None):
    """With `partitioner` (a `partitioning.PjitPartitioner`) and shardings, the train step is
    jitted through `partitioner.partition`: it runs under the logical axis rules and the mesh,
    so the network's activation sharding constraints act (without it they are no-ops)."""
    self.tx = tx
    self._dropout_rng = jax.random.PRNGKey(dropout_seed)
    step = functools.partial(train_step, loss_fn=loss_fn, tx=tx, num_microbatches=num_microbatches)
    # Donating the state lets XLA update params and moments in place (halves peak memory).
    if partitioner is not None:
      self._train = partitioner.partition(step, in_shardings, out_shardings, donate_argnums=(0,))
    elif in_shardings is not None:
      self._train = jax.jit(step, donate_argnums=(0,), in_shardings=in_shardings,
                            out_shardings=out_shardings)
    else:
      self._train = jax.jit(step, donate_argnums=(0,))
    self._eval = jax.jit(functools.partial(eval_step, loss_fn=loss_fn))

  def train(self, state: TrainState, batch: Mapping[str, jax.Array],
            *aux: Any) -> tuple[TrainState, dict[str, jax.Array]]:
    return self._train(state, batch, self._dropout_rng, *aux)

  def lower_train(self, state: TrainState, batch: Mapping[str, jax.Array], *aux: Any):
    """The lowered train step (`jax.stages.Lowered`) for these arguments, as `train` compiles it."""
    return self._train.lower(state, batch, self._dropout_rng, *aux)

  def evaluate(self, params: Any, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    return self._eval(params, batch)
