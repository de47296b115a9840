"""Whole-sequence training of the decoder-only recommender on streams of textual item IDs.

`StreamTrainer` trains a `DecoderOnlyModel` on every user's training stream
(`data.item_streams`), one epoch after another (a new order each epoch, from the seed),
validates on a fixed random sample of users after every `eval_every_epochs` epochs (one record
per point in `metrics.jsonl`: validation HR/NDCG, per-item NLL, `minutes` of wall clock since the
trainer was built, evaluation included, and `train_minutes` in train steps), keeps the
parameters that were best on validation, and tests them on every user. Evaluation decodes the
top K items under the item trie after each user's history (full ranking, leave-one-out).

State, epoch and best parameters are checkpointed at each validation point in T5X's layout
(`recommender/`, `best/`), so a killed run resumes where it stopped and ends with the same
results as an uninterrupted one: the batches of an epoch depend only on (seed, epoch).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np
import optax
import tqdm

from llmrec_jax import decoder_model, evaluation, optimizers, trainer as trainer_lib
from llmrec_jax.checkpoints import orbax_t5x
from llmrec_jax.data import item_streams
from llmrec_jax.metrics import ranking
from llmrec_jax.train_state import TrainState

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class StreamSchedule:
  """Budget and optimiser of whole-sequence training.

  Attributes:
    epochs: passes over every user's training stream.
    learning_rate, warmup_steps, weight_decay: AdamW; linear warmup, then linear decay to 0
      at the last step when `decay` else constant.
    tokens_per_batch: rows x padded length of each batch (length-bucketed).
    max_items: most recent training items per stream and per evaluation prompt.
    bucket_multiple: stream lengths are padded to a multiple of this.
    eval_every_epochs: validation cadence (and checkpoint cadence).
    valid_users: validation sample size (fixed by the seed; None = every user).
    test_users: test sample size (None = every user, the protocol).
    eval_batch_size: users per decoding batch.
    num_beams: K of the trie-constrained beam search (>= the largest metric cut-off, 10).
    select_on: validation metric that picks the parameters to test.
    trie_softmax: train and decode with the item trie's distribution
      (`DecoderOnlyModel(trie_softmax=True)`); False: the full-vocabulary softmax.
    seed: init, batch order, dropout and user samples.
  """
  epochs: int = 10
  learning_rate: float = 1e-3
  warmup_steps: int = 100
  weight_decay: float = 0.0
  decay: bool = False
  tokens_per_batch: int = 4096
  max_items: int = 20
  bucket_multiple: int = 16
  eval_every_epochs: int = 1
  valid_users: Optional[int] = 2000
  test_users: Optional[int] = None
  eval_batch_size: int = 256
  num_beams: int = 10
  select_on: str = "ndcg@10"
  trie_softmax: bool = True
  seed: int = 0

  def __post_init__(self):
    if self.epochs < 1 or self.eval_every_epochs < 1 or self.tokens_per_batch < 1:
      raise ValueError(f"StreamSchedule: epochs, eval_every_epochs and tokens_per_batch must be "
                       f">= 1, got {self.epochs}, {self.eval_every_epochs}, {self.tokens_per_batch}")
    if self.num_beams < 10:
      raise ValueError(f"StreamSchedule.num_beams must be >= 10 (HR@10), got {self.num_beams}")
    if self.select_on not in ("hit@5", "hit@10", "ndcg@5", "ndcg@10"):
      raise ValueError(f"StreamSchedule.select_on={self.select_on!r}: use hit@5|10 or ndcg@5|10")


def sample_users(num_users: int, size: Optional[int], seed: int) -> np.ndarray:
  """Sorted user indices: all, or a fixed random sample of `size`."""
  if size is None or size >= num_users:
    return np.arange(num_users)
  return np.sort(np.random.default_rng(seed).choice(num_users, size, replace=False))


def decode_topk(topk_fn: Callable[..., Any], params: Any, trie_arrays: Any,
                histories: Sequence[np.ndarray], item_tokens: Sequence[Sequence[int]], *,
                eos_id: int, batch_size: int, desc: str = "decode") -> np.ndarray:
  """Top-K items [U, K] of each history (users ordered by prompt length inside, so each batch
  is cut to its own longest prompt; the result is in the input order)."""
  order = np.argsort(item_streams.prompt_lengths(histories, item_tokens), kind="stable")
  tops = np.zeros((len(histories), 0), np.int32)
  out = []
  for start in tqdm.trange(0, len(order), batch_size, desc=desc, leave=False):
    rows = order[start:start + batch_size]
    prompt, valid = item_streams.prompt_batch([histories[r] for r in rows], item_tokens,
                                              eos_id=eos_id, multiple=32)
    pad = batch_size - len(rows)
    if pad:  # fixed batch shape; pad rows hold one valid start token
      prompt = np.pad(prompt, ((0, pad), (0, 0)))
      valid = np.pad(valid, ((0, pad), (0, 0)))
      valid[len(rows):, -1] = True
    items, _ = topk_fn(params, prompt, valid, trie_arrays)
    out.append(np.asarray(items)[:len(rows)])
  if out:
    tops = np.zeros((len(histories), out[0].shape[1]), np.int32)
    tops[order] = np.concatenate(out)
  return tops


class StreamTrainer:
  """Trains, validates, checkpoints and tests one decoder-only recommender (see module doc)."""

  def __init__(self, model: decoder_model.DecoderOnlyModel, params: Any,
               sequences: Sequence[np.ndarray], item_tokens: Sequence[Sequence[int]],
               schedule: StreamSchedule, *, vocab_size: int, model_dir: Optional[str] = None,
               log_fn: Optional[Callable[[dict], None]] = None):
    self.model, self.schedule = model, schedule
    self.sequences, self.vocab_size = list(sequences), vocab_size
    self.eos_id = model.eos_id
    self.set_item_tokens(item_tokens)
    self.steps_per_epoch = sum(1 for _ in self._batches(0))
    total = schedule.epochs * self.steps_per_epoch
    warmup = min(schedule.warmup_steps, total)
    lr = (optimizers.linear_warmup_decay(schedule.learning_rate, warmup, total) if schedule.decay
          else optax.join_schedules([optax.linear_schedule(0.0, schedule.learning_rate,
                                                           max(warmup, 1)),
                                     optax.constant_schedule(schedule.learning_rate)], [warmup]))
    tx = optimizers.adamw(lr, weight_decay=schedule.weight_decay)
    self.trainer = trainer_lib.Trainer(model.loss_fn, tx, dropout_seed=schedule.seed)
    self.state = TrainState.create(params, tx)
    self.best_params, self.best, self.epoch, self.curve = params, None, 0, []
    self.best_item_tokens = self.item_tokens
    self.extra: dict[str, Any] = {}  # the owner's JSON state, checkpointed with the recommender
    self.model_dir, self.log_fn = model_dir, log_fn or (lambda record: None)
    self._ckpt = None
    if model_dir:
      self._ckpt = {name: orbax_t5x.CheckpointManager(os.path.join(model_dir, name), keep=1)
                    for name in ("recommender", "best")}
    self._train_seconds = 0.0  # in train steps
    self._wall_seconds = 0.0  # of earlier sessions of this run (restored)
    self._wall_start = time.time()

  def set_item_tokens(self, item_tokens: Sequence[Sequence[int]]) -> None:
    """(Re)builds the trie, the training streams and the search for these item IDs (tokens)."""
    s = self.schedule
    self.item_tokens = [list(t) for t in item_tokens]
    self.trie = evaluation.build_item_trie(self.item_tokens, eos_id=self.eos_id,
                                           vocab_size=self.vocab_size)
    self.streams = item_streams.train_streams(self.sequences, self.item_tokens,
                                              max_items=s.max_items, eos_id=self.eos_id)
    self.choices = self.node_streams = None
    if self.model.trie_softmax:
      nodes, branching = self.trie.choice_nodes()
      self.choices = item_streams.TrieChoices(nodes, branching, self.trie.token_ids, self.eos_id)
      self.node_streams = self.choices.streams(self.sequences, s.max_items)
    self.topk_fn = decoder_model.make_topk_fn(self.model, num_beams=s.num_beams,
                                              max_decode_len=self.trie.max_len)

  def _batches(self, epoch: int):
    s = self.schedule
    return item_streams.epoch_batches(self.streams, tokens_per_batch=s.tokens_per_batch,
                                      seed=s.seed, epoch=epoch, multiple=s.bucket_multiple,
                                      choices=self.choices, node_streams=self.node_streams)

  def _aux(self) -> tuple:
    return (self.trie.arrays,) if self.model.trie_softmax else ()

  # -------------------------------------------------------------------- evaluation
  def evaluate(self, split: str, users: np.ndarray, params: Any = None,
               item_tokens: Optional[Sequence[Sequence[int]]] = None) -> dict[str, float]:
    """HR/NDCG@5,10 of `users` on 'valid' or 'test' (full ranking over every item), with the
    current parameters and IDs, or the given ones (default params: the best validated)."""
    hist, targets = item_streams.held_out_histories([self.sequences[u] for u in users], split,
                                                    self.schedule.max_items)
    trie, topk_fn, tokens = self.trie, self.topk_fn, self.item_tokens
    if item_tokens is not None and [list(t) for t in item_tokens] != self.item_tokens:
      tokens = [list(t) for t in item_tokens]
      trie = evaluation.build_item_trie(tokens, eos_id=self.eos_id, vocab_size=self.vocab_size)
      topk_fn = decoder_model.make_topk_fn(self.model, num_beams=self.schedule.num_beams,
                                           max_decode_len=trie.max_len)
    topk = decode_topk(topk_fn, self.best_params if params is None else params,
                       trie.arrays, hist, tokens, eos_id=self.eos_id,
                       batch_size=self.schedule.eval_batch_size, desc=split)
    metrics = ranking.ranking_metrics(ranking.ranks_from_topk(topk, targets), (5, 10))
    return dict(metrics, users=len(users))

  # -------------------------------------------------------------------- checkpoints
  def save(self) -> None:
    if not self._ckpt:
      return
    meta = {"epoch": self.epoch, "best": self.best, "curve": self.curve,
            "train_seconds": self._train_seconds, "wall_seconds": self._wall(),
            "item_tokens": self.item_tokens, "extra": self.extra}
    # Checkpoint number: all optimizer updates so far, the owner's too (an ID phase's).
    step = int(self.state.step) + int(self.extra.get("other_steps", 0))
    self._ckpt["recommender"].save(step, orbax_t5x.to_t5x_tree(self.state), meta)
    self._ckpt["best"].save(step, {"params": self.best_params},
                            {"best": self.best, "item_tokens": self.best_item_tokens})

  def maybe_restore(self) -> bool:
    """Restores the latest checkpoint of `model_dir`, if any. Returns whether it did."""
    if not self._ckpt or self._ckpt["recommender"].latest_step() is None:
      return False
    tree, meta = self._ckpt["recommender"].restore(orbax_t5x.to_t5x_tree(self.state))
    self.state = orbax_t5x.from_t5x_tree(tree)
    best, best_meta = self._ckpt["best"].restore({"params": self.best_params})
    self.best_params, self.best_item_tokens = best["params"], best_meta["item_tokens"]
    self.epoch, self.best, self.curve = meta["epoch"], meta["best"], list(meta["curve"])
    self.extra = dict(meta["extra"])
    if meta["item_tokens"] != self.item_tokens:
      self.set_item_tokens(meta["item_tokens"])
    self._train_seconds, self._wall_seconds = meta["train_seconds"], meta["wall_seconds"]
    self._wall_start = time.time()
    log.info("restored epoch %d (step %d)", self.epoch, int(self.state.step))
    return True

  def _wall(self) -> float:
    """Seconds of this run so far (compilation, training and validation), across resumes."""
    return self._wall_seconds + time.time() - self._wall_start

  # -------------------------------------------------------------------- training
  def train_epoch(self) -> dict[str, float]:
    """One pass over every stream; returns the epoch's mean loss and per-item NLL."""
    sums = np.zeros(3)
    start = time.time()
    for batch in tqdm.tqdm(self._batches(self.epoch), total=self.steps_per_epoch,
                           desc=f"epoch {self.epoch}", leave=False):
      self.state, m = self.trainer.train(self.state, batch, *self._aux())
      sums += [float(m["loss"]), float(m["item_nll"]) * float(m["num_items"]), float(m["num_items"])]
    self._train_seconds += time.time() - start
    self.epoch += 1
    return {"loss": sums[0] / self.steps_per_epoch, "item_nll": sums[1] / max(sums[2], 1.0)}

  def validate(self, train_metrics: dict[str, float]) -> dict[str, Any]:
    s = self.schedule
    valid = self.evaluate("valid", sample_users(len(self.sequences), s.valid_users, s.seed),
                          params=self.state.params)
    record = {"epoch": self.epoch, "step": int(self.state.step), "minutes": self._wall() / 60,
              "train_minutes": self._train_seconds / 60, **train_metrics,
              **{f"valid/{k}": v for k, v in valid.items()}}
    if self.best is None or valid[s.select_on] > self.best[f"valid/{s.select_on}"]:
      self.best = record
      # A host copy: the next train step donates (reuses) the state's buffers.
      self.best_params = jax.tree_util.tree_map(lambda x: np.array(x, copy=True), self.state.params)
      self.best_item_tokens = self.item_tokens
    self.curve.append(record)
    self.log_fn(record)
    return record

  def train_until(self, epoch: int, stop_after_epoch: Optional[int] = None) -> bool:
    """Trains up to `epoch` (validating and checkpointing on the schedule's cadence and at
    `epoch`). Returns False when `stop_after_epoch` stopped it first, as a kill would."""
    s = self.schedule
    while self.epoch < epoch:
      if stop_after_epoch is not None and self.epoch >= stop_after_epoch:
        return False
      train_metrics = self.train_epoch()
      if self.epoch % s.eval_every_epochs == 0 or self.epoch in (epoch, s.epochs):
        self.validate(train_metrics)
        self.save()
    return True

  def test(self) -> dict[str, Any]:
    """Tests the parameters (and IDs) best on validation; the run's summary."""
    s = self.schedule
    test = self.evaluate("test", sample_users(len(self.sequences), s.test_users, s.seed + 1),
                         item_tokens=self.best_item_tokens)
    return {"best": self.best, "test": test, "curve": self.curve,
            "steps_per_epoch": self.steps_per_epoch}

  def run(self, stop_after_epoch: Optional[int] = None) -> Optional[dict[str, Any]]:
    """Trains the remaining epochs, then tests (None when `stop_after_epoch` stopped it)."""
    if not self.train_until(self.schedule.epochs, stop_after_epoch):
      return None
    return self.test()
