"""Bootstrap an ID generator without pretrained weights: train a random-init T5 on text -> keywords.

The official IDGenRec generator starts from a t5-small fine-tuned for article tag generation. We
have no such weights offline, so we teach a small T5 the same job directly: input = the item's
plain text, target = a short salient ID (TF-IDF title keywords, `keywords.keyword_ids`, or the
reference IDs a dataset ships). The trained generator then goes through the usual diverse-beam
assignment (`assign.assign_ids`).
"""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from llmrec_jax import model_sizes, models, network, optimizers, toy_tasks
from llmrec_jax import trainer as trainer_lib
from llmrec_jax.indexing import text_tokens
from llmrec_jax.train_state import TrainState

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class BootstrapConfig:
  """Training of the generator from random init.

  Attributes:
    model_size: a `model_sizes.SIZES` name.
    steps: optimizer steps.
    batch_size: examples per step.
    learning_rate: AdamW peak rate (linear warmup, then linear decay to 0).
    warmup_steps: warmup length (clamped to `steps`).
    max_input_tokens: S, item text truncated on the right (EOS kept).
    max_target_tokens: T, target ID tokens incl. EOS.
    dropout_rate: network dropout while training.
    seed: init and data-order seed.
  """
  model_size: str = "t5_tiny"
  steps: int = 2000
  batch_size: int = 64
  learning_rate: float = 2e-3
  warmup_steps: int = 50
  max_input_tokens: int = 64
  max_target_tokens: int = 10  # = level 0's 10 new tokens (HF max_length 11), EOS included
  dropout_rate: float = 0.0
  seed: int = 0

  def __post_init__(self):
    if self.model_size not in model_sizes.SIZES:
      raise ValueError(f"BootstrapConfig.model_size {self.model_size!r} not in {sorted(model_sizes.SIZES)}")
    for name in ("steps", "batch_size", "max_input_tokens", "max_target_tokens"):
      if getattr(self, name) < 1:
        raise ValueError(f"BootstrapConfig.{name} must be >= 1, got {getattr(self, name)}")
    if self.max_input_tokens < 2 or self.max_target_tokens < 2:
      raise ValueError("BootstrapConfig: token lengths must be >= 2 (room for EOS)")
    if not self.learning_rate > 0 or self.warmup_steps < 0:
      raise ValueError(f"BootstrapConfig: need learning_rate > 0 and warmup_steps >= 0: {self}")


def make_examples(texts: Sequence[str], targets: Sequence[str], tokenizer: text_tokens.Tokenizer,
                  max_input_tokens: int, max_target_tokens: int) -> dict[str, np.ndarray]:
  """Seqio `EncDecFeatureConverter`-layout arrays for (text, target) pairs with a non-empty target.

  Returns:
    encoder_input_tokens [N, S], decoder_target_tokens / decoder_input_tokens /
    decoder_loss_weights [N, T] (N = pairs whose target is non-empty). Targets longer than T - 1
    tokens lose trailing words (`fit_words`); inputs are right-truncated (EOS kept).
  """
  if len(texts) != len(targets):
    raise ValueError(f"make_examples: {len(texts)} texts for {len(targets)} targets")
  keep = [i for i, t in enumerate(targets) if t.strip()]
  if not keep:
    raise ValueError("make_examples: every target is empty")
  inputs_NxS = text_tokens.encode_texts([texts[i] for i in keep], tokenizer, max_input_tokens)
  fitted = [fit_words(targets[i], tokenizer, max_target_tokens - 1) for i in keep]
  targets_NxT = text_tokens.encode_texts(fitted, tokenizer, max_target_tokens)
  # Trim all-padding columns (to a multiple of 8) so short catalogues train on short shapes.
  inputs_NxS = inputs_NxS[:, :_used_length(inputs_NxS)]
  targets_NxT = targets_NxT[:, :_used_length(targets_NxT)]
  return {
      "encoder_input_tokens": inputs_NxS,
      "decoder_target_tokens": targets_NxT,
      "decoder_input_tokens": toy_tasks.shift_right(targets_NxT),
      "decoder_loss_weights": (targets_NxT > 0).astype(np.float32),
  }


def _used_length(tokens_NxL: np.ndarray) -> int:
  used = int((tokens_NxL > 0).any(axis=0).nonzero()[0].max()) + 1 if tokens_NxL.size else 1
  return min(tokens_NxL.shape[1], -(-used // 8) * 8)


def fit_words(target: str, tokenizer: text_tokens.Tokenizer, max_tokens: int) -> str:
  """`target` without its trailing words until it is at most `max_tokens` tokens (>= 1 word kept),
  so a too-long target is cut between words (only a single word longer than `max_tokens` on its own
  is later cut inside, by `encode_texts`)."""
  words = target.split()
  while len(words) > 1 and len(tokenizer.encode(" ".join(words))) > max_tokens:
    words.pop()
  return " ".join(words)


def _batches(num_examples: int, batch_size: int, rng: np.random.Generator):
  """Endless index batches: a fresh permutation per epoch, wrapping across epoch ends."""
  order = np.zeros((0,), np.int64)
  while True:
    while order.size < batch_size:
      order = np.concatenate([order, rng.permutation(num_examples)])
    yield order[:batch_size]
    order = order[batch_size:]


def init_generator(vocab_size: int, cfg: BootstrapConfig = BootstrapConfig()
                   ) -> tuple[network.T5Config, Any]:
  """A random-init generator (config with dropout 0, host params); no training."""
  net_cfg = model_sizes.t5_config(cfg.model_size, vocab_size=vocab_size, dropout_rate=0.0)
  model = models.EncoderDecoderModel(network.Transformer(net_cfg))
  shapes = {"encoder_input_tokens": (1, cfg.max_input_tokens), "decoder_input_tokens": (1, cfg.max_target_tokens)}
  return net_cfg, jax.device_get(model.get_initial_variables(jax.random.PRNGKey(cfg.seed), shapes)["params"])


def train_generator(texts: Sequence[str], targets: Sequence[str], tokenizer: text_tokens.Tokenizer,
                    vocab_size: int, cfg: BootstrapConfig = BootstrapConfig(), *, progress: bool = True,
                    init_params: Any = None) -> tuple[network.T5Config, Any, dict[str, Any]]:
  """Trains a random-init T5 to map each text to its target.

  Args:
    texts: generator inputs (item plain texts).
    targets: wanted IDs (pairs with an empty target are skipped).
    tokenizer: encodes both.
    vocab_size: V of the network (>= the tokenizer's ids; 32128 for the T5 vocab).
    cfg: sizes and schedule.
    progress: tqdm bar with rate, ETA and the running loss.
    init_params: continue from these params (same size and vocab) instead of random init.
  Returns:
    (network config with dropout 0 for inference, params, {"loss_first", "loss_last",
    "examples", "steps", "seconds"}).
  """
  t0 = time.time()
  examples = make_examples(texts, targets, tokenizer, cfg.max_input_tokens, cfg.max_target_tokens)
  num = examples["encoder_input_tokens"].shape[0]
  net_cfg = model_sizes.t5_config(cfg.model_size, vocab_size=vocab_size, dropout_rate=cfg.dropout_rate)
  model = models.EncoderDecoderModel(network.Transformer(net_cfg))
  shapes = {k: (cfg.batch_size,) + v.shape[1:] for k, v in examples.items()}
  params = model.get_initial_variables(jax.random.PRNGKey(cfg.seed), shapes)["params"]
  if init_params is not None:
    if jax.tree_util.tree_structure(init_params) != jax.tree_util.tree_structure(params) or any(
        np.shape(a) != np.shape(b) for a, b in zip(jax.tree_util.tree_leaves(init_params),
                                                    jax.tree_util.tree_leaves(params))):
      raise ValueError(f"init_params do not match a {cfg.model_size} generator with vocab_size {vocab_size}")
    params = jax.tree_util.tree_map(jnp.asarray, init_params)
  schedule = optimizers.linear_warmup_decay(cfg.learning_rate, min(cfg.warmup_steps, cfg.steps), cfg.steps)
  tx = optimizers.adamw(schedule)
  train = trainer_lib.Trainer(model.loss_fn, tx, dropout_seed=cfg.seed)
  state = TrainState.create(params, tx)
  batches = _batches(num, cfg.batch_size, np.random.default_rng(cfg.seed))
  losses = []
  steps = range(cfg.steps)
  if progress:
    import tqdm  # pylint: disable=g-import-not-at-top
    steps = tqdm.tqdm(steps, desc="bootstrap generator", unit="step", mininterval=2.0)
  for step in steps:
    idx = next(batches)
    state, metrics = train.train(state, {k: v[idx] for k, v in examples.items()})
    if step == 0 or step == cfg.steps - 1 or step % 50 == 0:
      losses.append(float(metrics["loss"]))   # host sync only every 50 steps
      if progress:
        steps.set_postfix(loss=f"{losses[-1]:.3f}")
  stats = {"loss_first": losses[0], "loss_last": losses[-1], "examples": int(num), "steps": cfg.steps,
           "seconds": time.time() - t0}
  log.info("bootstrap: %s", stats)
  return dataclasses.replace(net_cfg, dropout_rate=0.0), jax.device_get(state.params), stats
