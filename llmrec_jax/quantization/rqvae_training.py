"""Training an RQ-VAE on item content embeddings through the shared `Trainer` and `StepLoop`.

- Batches: each epoch a fresh permutation of the N items (seeded by (seed, epoch)) cut into
  N // B full batches (the last N mod B items of a permutation sit that epoch out; one batch
  shape, one compilation). With N < batch_size every batch is all N items.
- Optimizer: AdamW (lr 1e-3, weight decay 1e-4 on the MLP kernels only), as LC-Rec trains its
  RQ-VAE (TIGER reports Adagrad with lr 0.4).
- K-means init: before the first step, codebook l is the k-means (`kmeans.residual_kmeans`) of
  the first batch's level-l residuals under the initial encoder.
- Dead-code restarts: the train step also counts how often each code is picked; every
  `restart_every_steps` steps (between steps, on the host) a code picked by no item of that
  window is replaced by a random residual of the window's last batch at its level (residuals
  recomputed level by level after the restarts of the levels above), and the counts restart.
  After the last window's restarts, further rounds restart the codes that no item picks (counted
  over all N items, level by level after the restarts of the levels above) until none is left
  (at most `FINAL_RESTART_ROUNDS`): each restarted code is some item's residual, hence that item's
  nearest code, so training normally ends with every code used when N >= K.
- Inputs are used as given (float32); nothing is standardised.
"""
from __future__ import annotations

import dataclasses
import enum
import logging
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from llmrec_jax.quantization import kmeans, rqvae
from llmrec_jax.training import loop as training_loop, trainer as trainer_lib
from llmrec_jax.training.train_state import TrainState

log = logging.getLogger(__name__)


class RestartSampling(enum.Enum):
  """Which residual a dead code restarts at (`restart_dead_codes`)."""
  UNIFORM = "uniform"  # a uniformly random residual of the batch
  DISTANCE = "distance"  # drawn ~ squared distance to the nearest live code (k-means++ continued)


@dataclasses.dataclass(frozen=True)
class RQVAETrainConfig:
  """Optimisation, initialisation and restart settings."""
  epochs: int = 100
  batch_size: int = 1024  # items per step (all N when N is smaller)
  learning_rate: float = 1e-3  # AdamW
  weight_decay: float = 1e-4  # AdamW, on the encoder and decoder kernels only
  seed: int = 0  # parameters, k-means, batch order and restarts
  kmeans_init: bool = True
  kmeans_iters: int = 50  # Lloyd iterations per level at most
  kmeans_inits: int = 3  # k-means runs per level; the lowest-inertia one is kept
  dead_code_restart: bool = True
  restart_every_steps: int = 100  # the usage window of dead-code restarts
  restart_sampling: RestartSampling = RestartSampling.DISTANCE  # which residual a dead code restarts at
  log_every: int = 100  # steps between `log_fn` calls (and after the last)
  show_progress: bool = True

  def __post_init__(self):
    for name in ("epochs", "batch_size", "restart_every_steps", "log_every"):
      if getattr(self, name) < 1:
        raise ValueError(f"RQVAETrainConfig.{name} must be >= 1, got {getattr(self, name)}")
    if self.kmeans_iters < 0 or self.kmeans_inits < 1:
      raise ValueError(f"RQVAETrainConfig needs kmeans_iters >= 0 and kmeans_inits >= 1, "
                       f"got {self.kmeans_iters}, {self.kmeans_inits}")
    if not isinstance(self.restart_sampling, RestartSampling):
      raise ValueError(f"RQVAETrainConfig.restart_sampling must be a RestartSampling, got {self.restart_sampling!r}")
    if not self.learning_rate > 0:
      raise ValueError(f"RQVAETrainConfig.learning_rate must be > 0, got {self.learning_rate}")
    if not self.weight_decay >= 0:
      raise ValueError(f"RQVAETrainConfig.weight_decay must be >= 0, got {self.weight_decay}")


# ----------------------------------------------------------------------------- pure helpers


def restart_dead_codes(codebook_KxZ: np.ndarray, usage_K: np.ndarray, residuals_BxZ: np.ndarray,
                       rng: np.random.Generator,
                       sampling: RestartSampling = RestartSampling.DISTANCE) -> np.ndarray:
  """A copy of the codebook whose unused codes (usage 0) are replaced by residual rows drawn at
  random; used codes stay.

  UNIFORM: distinct rows (while there are at least as many rows as dead codes), each equally
  likely. DISTANCE: dead codes are refilled one at a time, each with a row drawn with probability
  ~ its squared distance to the nearest live or already refilled code (k-means++ continued; the
  first uniformly when no code is live), so rows that no code represents well go first and a
  row at distance 0 is drawn only when every row is.
  """
  codebook_KxZ = np.array(codebook_KxZ, copy=True)
  residuals_BxZ = np.asarray(residuals_BxZ)
  usage_K = np.asarray(usage_K)
  dead = np.flatnonzero(usage_K == 0)
  b = residuals_BxZ.shape[0]
  if RestartSampling(sampling) is RestartSampling.UNIFORM:
    codebook_KxZ[dead] = residuals_BxZ[rng.choice(b, dead.size, replace=dead.size > b)]
    return codebook_KxZ
  live = np.flatnonzero(usage_K != 0)
  d2_B = np.min(kmeans.squared_distances(residuals_BxZ, codebook_KxZ[live]), axis=1) if live.size else None
  for code in dead:
    total = 0.0 if d2_B is None else d2_B.sum()
    row = int(rng.choice(b, p=d2_B / total)) if total > 0 else int(rng.integers(b))
    codebook_KxZ[code] = residuals_BxZ[row]
    d2_row_B = kmeans.squared_distances_to(residuals_BxZ, residuals_BxZ[row])
    d2_B = d2_row_B if d2_B is None else np.minimum(d2_B, d2_row_B)
  return codebook_KxZ


def code_usage(codes_NxL: jax.Array, codebook_size: int) -> jax.Array:
  """int32 [L, K]: how many items picked each code at each level."""
  onehot_NxLxK = codes_NxL[:, :, None] == jnp.arange(codebook_size, dtype=codes_NxL.dtype)[None, None, :]
  return jnp.sum(onehot_NxLxK, axis=0, dtype=jnp.int32)


def codebook_utilisation(codes_NxL: np.ndarray, codebook_size: int) -> list[float]:
  """Per level, the fraction of the K codes picked by at least one item."""
  return [np.unique(codes_NxL[:, l]).size / codebook_size for l in range(codes_NxL.shape[1])]


def collision_rate(codes_NxL: np.ndarray) -> float:
  """The fraction of items whose full code tuple is also another item's."""
  _, inverse_N, counts = np.unique(codes_NxL, axis=0, return_inverse=True, return_counts=True)
  return float(np.mean(counts[inverse_N.reshape(-1)] > 1))


# ----------------------------------------------------------------------------- host steps


def optimizer(config: RQVAETrainConfig, params: Any) -> optax.GradientTransformation:
  """AdamW decaying only the `kernel` leaves (not biases, not codebooks)."""
  mask = jax.tree_util.tree_map_with_path(lambda path, _: getattr(path[-1], "key", None) == "kernel", params)
  return optax.adamw(config.learning_rate, weight_decay=config.weight_decay, mask=mask)


def kmeans_init(params: Any, x_BxD: np.ndarray, config: RQVAETrainConfig) -> Any:
  """`params` with each codebook set by residual k-means of the batch's latents."""
  codebooks = rqvae.codebooks_of(params)
  latent_BxZ = np.asarray(rqvae.encode_latent(params, x_BxD))
  fitted_LxKxZ = kmeans.residual_kmeans(latent_BxZ, len(codebooks), codebooks[0].shape[0],
                                        num_iters=config.kmeans_iters, seed=config.seed,
                                        num_inits=config.kmeans_inits)
  return rqvae.replace_codebooks(params, list(fitted_LxKxZ))


_nearest_codes = jax.jit(rqvae.nearest_codes)
FINAL_RESTART_ROUNDS = 8  # rounds of the after-training restarts of codes no item picks


def restart_all_levels(params: Any, usage_LxK: Optional[np.ndarray], x_BxD: np.ndarray, rng: np.random.Generator,
                       sampling: RestartSampling) -> tuple[Any, list[int]]:
  """Dead-code restarts level by level on the rows' residuals (level l's residuals under the
  already restarted codebooks 0..l-1).

  Args:
    usage_LxK: how often each code was picked (a window's counts); None: count the rows' own
      picks, level l after the restarts of levels 0..l-1 (a code is then dead when no row picks it).
  Returns:
    (params, number of codes restarted per level).
  """
  residual_BxZ = np.asarray(rqvae.encode_latent(params, x_BxD))
  codebooks, restarted = [], []
  for level, codebook_KxZ in enumerate(rqvae.codebooks_of(params)):
    codebook_KxZ = np.asarray(codebook_KxZ)
    codes_B = np.asarray(_nearest_codes(residual_BxZ, codebook_KxZ))
    usage_K = np.bincount(codes_B, minlength=codebook_KxZ.shape[0]) if usage_LxK is None else usage_LxK[level]
    new_KxZ = restart_dead_codes(codebook_KxZ, usage_K, residual_BxZ, rng, sampling)
    codebooks.append(new_KxZ)
    restarted.append(int(np.sum(usage_K == 0)))
    residual_BxZ = residual_BxZ - new_KxZ[np.asarray(_nearest_codes(residual_BxZ, new_KxZ))]
  return rqvae.replace_codebooks(params, codebooks), restarted


_item_losses = jax.jit(rqvae.item_losses, static_argnames="config")


def evaluate_items(params: Any, x_NxD: np.ndarray, model_config: rqvae.RQVAEConfig,
                   chunk: int) -> tuple[float, float, np.ndarray]:
  """Mean reconstruction and quantization losses over all items, and their codes_NxL; in chunks of
  `chunk` rows (the last padded, so one shape compiles)."""
  n = x_NxD.shape[0]
  recon, quant, codes = [], [], []
  for start in range(0, n, chunk):
    part = x_NxD[start:start + chunk]
    padded = np.concatenate([part, np.repeat(part[-1:], chunk - part.shape[0], axis=0)])
    r_N, q_N, c_NxL = jax.device_get(_item_losses(params, padded, config=model_config))
    recon.append(r_N[:part.shape[0]])
    quant.append(q_N[:part.shape[0]])
    codes.append(c_NxL[:part.shape[0]])
  return float(np.mean(np.concatenate(recon))), float(np.mean(np.concatenate(quant))), np.concatenate(codes)


class _BatchOrder:
  """Rows of each step: epoch e's permutation (seeded by (seed, e)) cut into full batches."""

  def __init__(self, n: int, batch_size: int, seed: int):
    self.n, self.batch_size, self.seed = n, min(batch_size, n), seed
    self.steps_per_epoch = n // self.batch_size
    self._epoch, self._perm = -1, None

  def rows(self, step: int) -> np.ndarray:
    """Row indices of step `step` (1-based)."""
    epoch, i = divmod(step - 1, self.steps_per_epoch)
    if epoch != self._epoch:
      self._epoch, self._perm = epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n)
    return self._perm[i * self.batch_size:(i + 1) * self.batch_size]


# ----------------------------------------------------------------------------- loop


def _step_fn(trainer: trainer_lib.Trainer):
  """The StepLoop step on (state, usage_LxK): one update, the batch's code counts added."""
  def step_fn(carry, batch):
    state, usage_LxK = carry
    state, metrics = trainer.train(state, batch)
    metrics = dict(metrics)
    return (state, usage_LxK + metrics.pop("usage_LxK")), metrics
  return step_fn


def _loss_fn(model_config: rqvae.RQVAEConfig) -> trainer_lib.LossFn:
  def loss_fn(params, batch, rng):
    del rng  # no dropout
    loss, (metrics, codes_BxL) = rqvae.rqvae_loss(params, batch["x"], model_config)
    return loss, dict(metrics, usage_LxK=code_usage(codes_BxL, model_config.codebook_size))
  return loss_fn


def _train_steps(params: Any, x_NxD: np.ndarray, order: _BatchOrder, model_config: rqvae.RQVAEConfig,
                 train_config: RQVAETrainConfig, log_fn) -> tuple[Any, list[int]]:
  """All training steps, in windows of `restart_every_steps` with dead-code restarts after each.

  Returns:
    (params, codes restarted per level).
  """
  tx = optimizer(train_config, params)
  trainer = trainer_lib.Trainer(_loss_fn(model_config), tx, dropout_seed=train_config.seed)
  total = train_config.epochs * order.steps_per_epoch
  window = train_config.restart_every_steps if train_config.dead_code_restart else total
  zeros_LxK = jnp.zeros((model_config.num_levels, model_config.codebook_size), jnp.int32)
  carry = (TrainState.create(params, tx), zeros_LxK)
  rng = np.random.default_rng([train_config.seed, 1])
  restarts = [0] * model_config.num_levels
  for start in range(0, total, window):
    end = min(start + window, total)
    loop = training_loop.StepLoop(_step_fn(trainer), desc="rqvae",
                                  log_at=lambda s, _: s % train_config.log_every == 0 or s == total,
                                  on_log=log_fn, progress=train_config.show_progress)
    batches = ({"x": x_NxD[order.rows(s)]} for s in range(start + 1, end + 1))
    state, usage_LxK = loop.run(carry, batches, start=start, total=end).state
    if train_config.dead_code_restart:
      params, restarted = restart_all_levels(state.params, np.asarray(usage_LxK), x_NxD[order.rows(end)], rng,
                                             train_config.restart_sampling)
      restarts = [a + b for a, b in zip(restarts, restarted)]
      if any(restarted):
        log.info("step %d: restarted %s dead codes per level", end, restarted)
      state = state.replace(params=params)
    carry = (state, zeros_LxK)
  params = carry[0].params
  # The codes no item picks now. A restarted code can take every item of a live one (whose items
  # sat far from it): repeat while a round restarts anything, at most FINAL_RESTART_ROUNDS rounds.
  for _ in range(FINAL_RESTART_ROUNDS if train_config.dead_code_restart else 0):
    params, restarted = restart_all_levels(params, None, x_NxD, rng, train_config.restart_sampling)
    restarts = [a + b for a, b in zip(restarts, restarted)]
    if not any(restarted):
      break
  return params, restarts


def train_rqvae(x_NxD: np.ndarray, model_config: rqvae.RQVAEConfig, train_config: RQVAETrainConfig,
                log_fn: Optional[Callable[[int, dict[str, float]], None]] = None,
                params: Any = None) -> tuple[Any, dict[str, Any]]:
  """Trains an RQ-VAE on the rows of `x_NxD` (see the module doc).

  Args:
    x_NxD: item content embeddings, used as given (cast to float32).
    log_fn: called with (step, host metrics {"loss", "reconstruction", "quantization", "grad_norm"})
      every `log_every` steps and after the last.
    params: initial parameters (default: `rqvae.init_params(model_config, seed)`); k-means init,
      when on, still replaces their codebooks.
  Returns:
    (params, stats) with stats over all N items after training: "reconstruction_loss",
    "quantization_loss", "reconstruction_loss_initial" (before the first step, after k-means
    init), "codebook_utilisation" (per level), "collision_rate", "restarts" (codes restarted in
    all), "restarts_per_level", "steps", "seconds".
  """
  t0 = time.monotonic()
  x_NxD = np.asarray(x_NxD, np.float32)
  if x_NxD.ndim != 2 or x_NxD.shape[1] != model_config.input_dim or x_NxD.shape[0] < 1:
    raise ValueError(f"x must be [N >= 1, {model_config.input_dim}], got shape {x_NxD.shape}")
  order = _BatchOrder(x_NxD.shape[0], train_config.batch_size, train_config.seed)
  if train_config.kmeans_init and order.batch_size < model_config.codebook_size:
    raise ValueError(f"k-means init needs a batch of at least codebook_size={model_config.codebook_size} "
                     f"items, got {order.batch_size}")
  if params is None:
    params = rqvae.init_params(model_config, train_config.seed)
  if train_config.kmeans_init:
    params = kmeans_init(params, x_NxD[order.rows(1)], train_config)
  recon_initial, _, _ = evaluate_items(params, x_NxD, model_config, order.batch_size)
  params, restarts = _train_steps(params, x_NxD, order, model_config, train_config, log_fn)
  recon, quant, codes_NxL = evaluate_items(params, x_NxD, model_config, order.batch_size)
  stats = {"reconstruction_loss": recon, "quantization_loss": quant, "reconstruction_loss_initial": recon_initial,
           "codebook_utilisation": codebook_utilisation(codes_NxL, model_config.codebook_size),
           "collision_rate": collision_rate(codes_NxL), "restarts": sum(restarts), "restarts_per_level": restarts,
           "steps": train_config.epochs * order.steps_per_epoch, "seconds": time.monotonic() - t0}
  return params, stats
