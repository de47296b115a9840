"""Bootstrap an ID generator without pretrained weights: train a random-init T5 on text -> keywords.

The official IDGenRec generator starts from a t5-small fine-tuned for article tag generation. We
have no such weights offline, so we teach a small T5 the same job directly: input = the item's
plain text, target = a short salient ID (TF-IDF title keywords, `keywords.keyword_ids`, or the
reference IDs a dataset ships). The trained generator then goes through the usual diverse-beam
assignment (`assign.assign_ids`).

A tiny model trained on one fixed pair per item memorises brand/category phrases and writes IDs of
the wrong item, so every step draws fresh views of its items (`augment.py`: word dropout with the
target restricted to the words left, contiguous copy targets). Optionally a held-out slice of the
items measures whether the model copies (teacher-forced token accuracy on unseen items).
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import time
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from llmrec_jax import model_sizes, models, network
from llmrec_jax.data.batching import shift_right
from llmrec_jax.indexing import keywords, text_tokens
from llmrec_jax.systems.idgenrec import augment
from llmrec_jax.training import loop as training_loop, optimizers, trainer as trainer_lib
from llmrec_jax.training.train_state import TrainState

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class BootstrapConfig:
  """Training of the generator from random init.

  Attributes:
    model_size: a `model_sizes.names()` name (a file of gin_configs/models/).
    steps: optimizer steps.
    batch_size: examples per step.
    learning_rate: AdamW peak rate (linear warmup, then linear decay to 0).
    warmup_steps: warmup length (clamped to `steps`).
    max_input_tokens: S, item text truncated on the right (EOS kept).
    max_target_tokens: T, target ID tokens incl. EOS.
    dropout_rate: network dropout while training.
    seed: init, data-order and augmentation seed.
    word_dropout: per-chunk drop probability of the input view (`augment.augment`); 0 with
      copy_rate 0 trains on the fixed pairs.
    copy_rate: share of examples whose target is a contiguous run of title words.
    max_copy_words: longest copy target, in words.
    splice_rate: share of examples that are spliced titles (`augment.splice`; needs the titles
      and TF-IDF keyword targets).
    holdout_fraction: items left out of training to measure copying (0 = train on all).
    eval_every: steps between held-out evaluations (with holdout_fraction > 0).
  """
  model_size: str = "t5_tiny"
  steps: int = 2000
  batch_size: int = 64
  learning_rate: float = 2e-3
  warmup_steps: int = 100
  max_input_tokens: int = 64
  max_target_tokens: int = 10  # = level 0's 10 new tokens (HF max_length 11), EOS included
  dropout_rate: float = 0.0
  seed: int = 0
  word_dropout: float = 0.15
  copy_rate: float = 0.3
  max_copy_words: int = 4
  splice_rate: float = 0.3
  holdout_fraction: float = 0.0
  eval_every: int = 250

  def __post_init__(self):
    if self.model_size not in model_sizes.names():
      raise ValueError(f"BootstrapConfig.model_size {self.model_size!r} not in {model_sizes.names()}")
    for name in ("steps", "batch_size", "max_input_tokens", "max_target_tokens"):
      if getattr(self, name) < 1:
        raise ValueError(f"BootstrapConfig.{name} must be >= 1, got {getattr(self, name)}")
    if self.max_input_tokens < 2 or self.max_target_tokens < 2:
      raise ValueError("BootstrapConfig: token lengths must be >= 2 (room for EOS)")
    if not self.learning_rate > 0 or self.warmup_steps < 0:
      raise ValueError(f"BootstrapConfig: need learning_rate > 0 and warmup_steps >= 0: {self}")
    if not (0 <= self.word_dropout < 1 and 0 <= self.copy_rate <= 1 and 0 <= self.splice_rate <= 1
            and 0 <= self.holdout_fraction < 1):
      raise ValueError(f"BootstrapConfig: need word_dropout, holdout_fraction in [0, 1) and copy_rate, "
                       f"splice_rate in [0, 1]: {self}")
    if self.max_copy_words < 1 or self.eval_every < 1:
      raise ValueError(f"BootstrapConfig: need max_copy_words >= 1 and eval_every >= 1: {self}")

  @property
  def augmented(self) -> bool:
    return self.word_dropout > 0 or self.copy_rate > 0 or self.splice_rate > 0


def make_examples(texts: Sequence[str], targets: Sequence[str], tokenizer: text_tokens.Tokenizer,
                  max_input_tokens: int, max_target_tokens: int, *, trim: bool = True
                  ) -> dict[str, np.ndarray]:
  """Seqio `EncDecFeatureConverter`-layout arrays for (text, target) pairs with a non-empty target.

  Returns:
    encoder_input_tokens [N, S], decoder_target_tokens / decoder_input_tokens /
    decoder_loss_weights [N, T] (N = pairs whose target is non-empty). Targets longer than T - 1
    tokens lose trailing words (`fit_words`); inputs are right-truncated (EOS kept). With `trim`,
    all-padding columns are cut (to a multiple of 8); else S, T are the given maxima.
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
  if trim:
    inputs_NxS = inputs_NxS[:, :_used_length(inputs_NxS)]
    targets_NxT = targets_NxT[:, :_used_length(targets_NxT)]
  return {
      "encoder_input_tokens": inputs_NxS,
      "decoder_target_tokens": targets_NxT,
      "decoder_input_tokens": shift_right(targets_NxT),
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


def split_holdout(num_items: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(train, held-out) item indices, sorted: round(fraction * num_items) items held out at random
  (none when fraction is 0; at least one item always trains)."""
  held = min(num_items - 1, int(round(fraction * num_items))) if fraction > 0 else 0
  order = np.random.default_rng(seed + 1).permutation(num_items)
  return np.sort(order[held:]), np.sort(order[:held])


def view_examples(idx: np.ndarray, texts: Sequence[str], targets: Sequence[str], title_chunks: Sequence[int],
                  tokenizer: text_tokens.Tokenizer, cfg: BootstrapConfig, rng: np.random.Generator,
                  titles: Optional[Sequence[str]] = None, partners: Optional[np.ndarray] = None
                  ) -> dict[str, np.ndarray]:
  """Fixed-shape ([len(idx), S] / [len(idx), T]) examples of fresh `augment.augment` views of items `idx`
  (each must have a non-empty target); with `titles`, a `cfg.splice_rate` share are first spliced
  with the title of a random item of `partners` (default: all) (`augment.splice`)."""
  splice_rate = cfg.splice_rate if titles is not None else 0.0
  df = _title_df(tuple(titles)) if splice_rate > 0 else None
  partners = np.arange(len(titles)) if partners is None and titles is not None else partners
  views = []
  for i in idx:
    text, target, chunks = texts[i], targets[i], title_chunks[i]
    if rng.random() < splice_rate:
      other = titles[int(partners[rng.integers(len(partners))])]
      spliced = augment.splice(text, chunks, other, df, len(titles), rng)
      if spliced[1]:
        text, target, chunks = spliced
    views.append(augment.augment(text, target, chunks, rng, word_dropout=cfg.word_dropout,
                                 copy_rate=cfg.copy_rate, max_copy_words=cfg.max_copy_words))
  return make_examples([v[0] for v in views], [v[1] for v in views], tokenizer, cfg.max_input_tokens,
                       cfg.max_target_tokens, trim=False)


@functools.lru_cache(maxsize=2)
def _title_df(titles: tuple[str, ...]):
  return keywords.document_frequencies(titles)


def train_generator(texts: Sequence[str], targets: Sequence[str], tokenizer: text_tokens.Tokenizer,
                    vocab_size: int, cfg: BootstrapConfig = BootstrapConfig(), *, progress: bool = True,
                    init_params: Any = None, titles: Optional[Sequence[str]] = None
                    ) -> tuple[network.T5Config, Any, dict[str, Any]]:
  """Trains a random-init T5 to map each text to its target (fresh augmented views every step).

  Args:
    texts: generator inputs (item plain texts, title first).
    targets: wanted IDs (items with an empty target are skipped); best cased as in the text
      (`keywords.keyword_ids(..., keep_case=True)`).
    tokenizer: encodes both.
    vocab_size: V of the network (>= the tokenizer's ids; 32128 for the T5 vocab).
    cfg: sizes, schedule, augmentation and held-out evaluation.
    progress: tqdm bar with rate, ETA and the running loss.
    init_params: continue from these params (same size and vocab) instead of random init.
    titles: item titles, to draw copy targets from the title part of each text and to splice
      titles (`cfg.splice_rate`, for TF-IDF keyword targets only); without them copy targets come
      from the whole text and nothing is spliced.
  Returns:
    (network config with dropout 0 for inference, params, {"loss_first", "loss_last",
    "examples", "steps", "seconds"} plus "heldout": [{"step", "heldout_accuracy",
    "train_accuracy"}] (teacher-forced token accuracy of unaugmented pairs) with holdout_fraction > 0).
  """
  t0 = time.time()
  if len(texts) != len(targets) or (titles is not None and len(titles) != len(texts)):
    raise ValueError(f"train_generator: {len(texts)} texts, {len(targets)} targets, "
                     f"{None if titles is None else len(titles)} titles")
  usable = np.array([i for i, t in enumerate(targets) if t.strip()], np.int64)
  if not usable.size:
    raise ValueError("train_generator: every target is empty")
  train_rel, held_rel = split_holdout(usable.size, cfg.holdout_fraction, cfg.seed)
  train_idx, held_idx = usable[train_rel], usable[held_rel]
  rng = np.random.default_rng(cfg.seed)
  next_batch = _example_source(train_idx, texts, targets, titles, tokenizer, cfg, rng)
  net_cfg = model_sizes.t5_config(cfg.model_size, vocab_size=vocab_size, dropout_rate=cfg.dropout_rate)
  model = models.EncoderDecoderModel(network.Transformer(net_cfg))
  rows = _batches(train_idx.size, cfg.batch_size, rng)
  first = next_batch(next(rows))
  params = _initial_params(model, {k: v.shape for k, v in first.items()}, cfg, init_params, vocab_size)
  schedule = optimizers.linear_warmup_decay(cfg.learning_rate, min(cfg.warmup_steps, cfg.steps), cfg.steps)
  tx = optimizers.adamw(schedule)
  train = trainer_lib.Trainer(model.loss_fn, tx, dropout_seed=cfg.seed)
  state = TrainState.create(params, tx)
  evals = _heldout_sets(held_idx, train_idx, texts, targets, tokenizer, cfg)
  losses, heldout = [], []

  def held_out_accuracy(state, step):
    if evals and (step % cfg.eval_every == 0 or step == cfg.steps):
      heldout.append({"step": step, **{f"{name}_accuracy": float(train.evaluate(state.params, ex)["accuracy"])
                                       for name, ex in evals.items()}})
      log.info("bootstrap eval: %s", heldout[-1])

  def batches():
    yield first
    while True:
      yield next_batch(next(rows))

  loop = training_loop.StepLoop(
      train.train, desc="bootstrap generator", progress=progress,
      log_at=lambda step, total: step % 50 == 1 or step == total,   # host syncs every 50 steps
      on_log=lambda step, m: losses.append(m["loss"]), after_step=held_out_accuracy)
  state = loop.run(state, batches(), total=cfg.steps).state
  stats = {"loss_first": losses[0], "loss_last": losses[-1], "examples": int(train_idx.size), "steps": cfg.steps,
           "seconds": time.time() - t0}
  if heldout:
    stats["heldout"] = heldout
  log.info("bootstrap: %s", stats)
  return dataclasses.replace(net_cfg, dropout_rate=0.0), jax.device_get(state.params), stats


def _example_source(train_idx: np.ndarray, texts, targets, titles, tokenizer, cfg: BootstrapConfig,
                    rng: np.random.Generator):
  """rows -> a batch of examples of the training items `train_idx[rows]`: fresh augmented views
  (drawn from `rng`) when `cfg.augmented`, else the same fixed pairs every epoch."""
  if cfg.augmented:
    title_chunks = [augment.title_chunk_count(t, titles[i] if titles is not None else "")
                    for i, t in enumerate(texts)]
    return lambda idx: view_examples(train_idx[idx], texts, targets, title_chunks, tokenizer, cfg, rng, titles,
                                     train_idx)
  fixed = make_examples([texts[i] for i in train_idx], [targets[i] for i in train_idx], tokenizer,
                        cfg.max_input_tokens, cfg.max_target_tokens)
  return lambda idx: {k: v[idx] for k, v in fixed.items()}


def _initial_params(model: models.EncoderDecoderModel, shapes: dict[str, tuple[int, ...]], cfg: BootstrapConfig,
                    init_params: Any, vocab_size: int) -> Any:
  """Random-init parameters for batches of `shapes`, or `init_params` when given (checked to be
  of the same structure and shapes)."""
  params = model.get_initial_variables(jax.random.PRNGKey(cfg.seed), shapes)["params"]
  if init_params is None:
    return params
  if jax.tree_util.tree_structure(init_params) != jax.tree_util.tree_structure(params) or any(
      np.shape(a) != np.shape(b) for a, b in zip(jax.tree_util.tree_leaves(init_params),
                                                  jax.tree_util.tree_leaves(params))):
    raise ValueError(f"init_params do not match a {cfg.model_size} generator with vocab_size {vocab_size}")
  return jax.tree_util.tree_map(jnp.asarray, init_params)


def _heldout_sets(held_idx: np.ndarray, train_idx: np.ndarray, texts, targets, tokenizer,
                  cfg: BootstrapConfig) -> dict[str, dict[str, np.ndarray]]:
  """Unaugmented examples of the held-out items and of as many training items (no held-out: {})."""
  if not held_idx.size:
    return {}
  seen = np.random.default_rng(cfg.seed + 2).choice(train_idx, size=min(held_idx.size, train_idx.size),
                                                    replace=False)
  return {name: make_examples([texts[i] for i in idx], [targets[i] for i in idx], tokenizer,
                              cfg.max_input_tokens, cfg.max_target_tokens, trim=False)
          for name, idx in (("heldout", held_idx), ("train", seen))}
