"""The IDGenRec schedule: rounds of (ID phase, rec phase) in jit-compiled loops, with
evaluation, model selection on validation (`Schedule.select_best`) and exact resume.

ID phase: the recommender is frozen; the generator learns through soft IDs (`id_phase.py`);
then every item and user gets a new unique ID from the trained generator (`IdAssigner`).
Rec phase: the generator is frozen; the recommender is trained with teacher forcing on prompts
rendered with the current IDs, then evaluated with trie-constrained top-K decoding.

Everything a phase does is a function of (config, round, phase, step), so a run restored from a
checkpoint continues exactly as the uninterrupted run would have.
"""
from __future__ import annotations

import dataclasses
import enum
import functools
import logging
from typing import Any, Callable, Optional, Protocol, Sequence

import jax
import numpy as np

from llmrec_jax import models, partitioning
from llmrec_jax.checkpoints import fail_safe, layout, orbax_t5x
from llmrec_jax.data import prompt_tokens, prompts
from llmrec_jax.data.records import RecData
from llmrec_jax.data.splits import LooSplit
from llmrec_jax.evaluation import evaluator, generative as evaluation
from llmrec_jax.systems.idgenrec import id_phase, phase_batches, prompt_batches
from llmrec_jax.training import loop as training_loop, optimizers, stopping, trainer
from llmrec_jax.training.train_state import TrainState

log = logging.getLogger(__name__)


class IdPhaseIds(str, enum.Enum):
  """Which IDs the ID phase's prompts (user IDs, history IDs, targets) are rendered with."""
  CURRENT = "current"  # ours: the loop's current IDs (regenerated after every ID phase)
  # The official code: its ID-phase loader is built once from the phase-0 IDs and never rebuilt,
  # so every ID phase reads the IDs the run started with (`Context.initial_item_ids`).
  INITIAL = "initial"


class AltStyle(str, enum.Enum):
  ID_FIRST = "id_first"  # official: the first ID phase runs before any rec training
  REC_FIRST = "rec_first"  # ours: train the recommender on the initial IDs first


@dataclasses.dataclass(frozen=True)
class Schedule:
  """How long each phase runs and how it is optimised (see gin_configs/idgenrec.gin).

  `replicas=R` emulates replica 0 of the official run's R unsynchronised data-parallel replicas:
  both phases train on rows [0::R] of every epoch's order (`phase_batches`), so epochs, step
  counts and learning-rate schedules are per replica, as the official ones. The evaluations are
  replica 0's on all users, not the official mean of R replicas on R disjoint test shards.
  """
  rounds: int = 2
  alt_style: AltStyle = AltStyle.REC_FIRST
  rec_epochs: float = 1.0
  id_epochs: float = 1.0
  rec_batch_size: int = 64
  id_batch_size: int = 12
  rec_lr: float = 1e-3
  id_lr: float = 1e-4
  warmup_prop: float = 0.05
  weight_decay: float = 0.01
  clip_norm: float = 1.0
  sample_num: int = 3
  max_his: int = 20
  regenerate_ids: bool = True
  # AdamW's weight-decay mask for both models (optimizers.WeightDecayMask); the official
  # optimizer's is ALL_BUT_RELPOS_BIAS.
  weight_decay_mask: optimizers.WeightDecayMask = optimizers.WeightDecayMask.NO_NORMS_OR_BIASES
  replicas: int = 1  # the official run's data-parallel replicas (4), emulated as above
  id_phase_ids: IdPhaseIds = IdPhaseIds.CURRENT
  # True: validate after every rec phase and report the test metrics of the best phase on
  # validation (`summarize`); False (the official code): no validation, report the last test.
  select_best: bool = True
  # How a prompt longer than `input_len` is cut: 'drop_oldest' drops whole history items, oldest
  # first; 'right' keeps the first input_len - 1 tokens and EOS (the official HF collator's
  # `truncation=True`).
  truncation: prompt_tokens.Truncation = prompt_tokens.Truncation.DROP_OLDEST
  # rec_first only: also run an ID phase (and regenerate IDs) after the last rec phase. Off by
  # default: no recommender is trained or evaluated on the IDs it makes, so it costs time only.
  trailing_id_phase: bool = False
  checkpoint_every_steps: int = 0  # 0: only at phase ends (and by time, below)
  checkpoint_every_minutes: float = 10.0  # also save inside a phase this often (0: never by time)
  seed: int = 2023

  def __post_init__(self):
    object.__setattr__(self, "alt_style", AltStyle(self.alt_style))
    object.__setattr__(self, "weight_decay_mask", optimizers.WeightDecayMask(self.weight_decay_mask))
    object.__setattr__(self, "id_phase_ids", IdPhaseIds(self.id_phase_ids))
    object.__setattr__(self, "truncation", prompt_tokens.Truncation(self.truncation))
    if (self.rounds < 1 or self.rec_epochs < 0 or self.id_epochs < 0 or self.max_his < 2
        or self.replicas < 1):
      raise ValueError(f"Schedule: need rounds >= 1, epochs >= 0, max_his >= 2, replicas >= 1: {self}")

  def phases(self) -> list[tuple[int, str]]:
    order = ("id", "rec") if self.alt_style is AltStyle.ID_FIRST else ("rec", "id")
    out = []
    for r in range(self.rounds):
      out += [(r, p) for p in order if (self.id_epochs if p == "id" else self.rec_epochs) > 0]
    if (self.alt_style is AltStyle.REC_FIRST and not self.trailing_id_phase and len(out) > 1
        and out[-1][1] == "id"):
      out.pop()
    return out


class IdAssigner(Protocol):
  def __call__(self, gen_params: Any, item_ids: Sequence[str]) -> tuple[list[str], list[str]]:
    """New unique (item IDs per item index, user IDs per user index) from the generator."""


@dataclasses.dataclass(frozen=True)
class Context:
  """What the loop needs; built by `llmrec_jax.train` (or a test). Frozen: new IDs (an ID phase,
  a restore) make a new context (`with_ids`), so a context never changes under its holder."""
  data: RecData
  splits: dict[str, LooSplit]
  item_texts: list[str]
  encode: Callable[[str], list[int]]
  templates: prompts.TemplateSet
  rec_model: models.EncoderDecoderModel
  gen_model: models.EncoderDecoderModel
  rec_params: Any
  gen_params: Any
  item_ids: list[str]
  user_ids: list[str]
  assigner: Optional[IdAssigner]
  schedule: Schedule = Schedule()
  id_options: id_phase.IdPhaseOptions = id_phase.IdPhaseOptions()
  decode: evaluation.DecodeOptions = evaluation.DecodeOptions()
  lengths: dict[str, int] = dataclasses.field(default_factory=lambda: dict(
      input_len=256, target_len=16, text_len=64, id_len=16))
  eval_batch_size: int = 32
  max_eval_examples: Optional[int] = None
  # Validate on a fixed random sample of this many users (None: all, up to `max_eval_examples`).
  # Model selection then costs a fraction of a full pass.
  valid_examples: Optional[int] = None
  # Test on a fixed random sample of this many users (None: every user, the paper's protocol);
  # for CPU-budget tables, where a full test pass costs more than the training.
  test_examples: Optional[int] = None
  exclude_seen: bool = False
  model_dir: Optional[str] = None
  keep_checkpoints: int = 2
  log_fn: Callable[[dict[str, Any]], None] = lambda record: None
  punct_token_ids: Optional[np.ndarray] = None
  # Shards both train steps over a ('data', 'model') mesh (None: plain jit on the default device).
  partitioner: Optional[partitioning.PjitPartitioner] = None
  # The registered whole-prompt SeqIO tasks {"rec": name, "id": name} that render every prompt
  # (`data/prompt_token_tasks.py`); None: `PromptBatcher` renders them (`phase_batches`).
  prompt_tasks: Optional[dict[str, str]] = None
  # The IDs the run started with (None: `item_ids` / `user_ids` as given), kept through new IDs
  # (`with_ids`) and checkpoints: the ID phase reads them with `Schedule.id_phase_ids='initial'`.
  initial_item_ids: Optional[list[str]] = None
  initial_user_ids: Optional[list[str]] = None

  def __post_init__(self):
    if self.initial_item_ids is None:
      object.__setattr__(self, "initial_item_ids", list(self.item_ids))
    if self.initial_user_ids is None:
      object.__setattr__(self, "initial_user_ids", list(self.user_ids))

  def with_ids(self, item_ids: Sequence[str], user_ids: Sequence[str]) -> "Context":
    """This context with new current IDs (the initial ones stay)."""
    return dataclasses.replace(self, item_ids=list(item_ids), user_ids=list(user_ids))


def params_axes(model: models.EncoderDecoderModel) -> Any:
  """The model's `params_axes` collection (T5X logical axis names), without initialising weights."""
  shapes = {"encoder_input_tokens": (1, 8), "decoder_input_tokens": (1, 4)}
  return jax.eval_shape(lambda: model.get_initial_variables(jax.random.PRNGKey(0), shapes))["params_axes"]


def _check_batch_sizes(ctx: Context) -> None:
  data = ctx.partitioner.mesh.shape["data"]
  for name in ("rec_batch_size", "id_batch_size"):
    if getattr(ctx.schedule, name) % data:
      raise ValueError(f"Schedule.{name}={getattr(ctx.schedule, name)} must be a multiple of the mesh's "
                       f"'data' axis ({data}); change it or num_partitions")


class IdGenRecLoop:
  """Holds the optimizers, jitted steps and checkpoints of one IDGenRec run."""

  def __init__(self, ctx: Context):
    self.ctx = ctx
    sch = ctx.schedule
    n = ctx.splits["train"].num_examples * sch.sample_num
    # Per replica (`Schedule.replicas`), as are the learning-rate schedules built from them.
    self.rec_steps = phase_batches.phase_steps(n, sch.rec_epochs, sch.rec_batch_size, sch.replicas)
    self.id_steps = phase_batches.phase_steps(n, sch.id_epochs, sch.id_batch_size, sch.replicas)
    # Schedules span all rounds, as the official code (one scheduler per model for the whole run).
    rec_tx = optimizers.adamw(optimizers.linear_warmup_decay(
        sch.rec_lr, int(sch.warmup_prop * self.rec_steps * sch.rounds), self.rec_steps * sch.rounds),
        weight_decay=sch.weight_decay, clip_norm=sch.clip_norm, decay_mask=sch.weight_decay_mask)
    id_tx = optimizers.adamw(optimizers.linear_warmup_decay(
        sch.id_lr, int(sch.warmup_prop * self.id_steps * sch.rounds), self.id_steps * sch.rounds),
        weight_decay=sch.weight_decay, clip_norm=sch.clip_norm, decay_mask=sch.weight_decay_mask)
    self.rec_state = TrainState.create(ctx.rec_params, rec_tx)
    self.gen_state = TrainState.create(ctx.gen_params, id_tx)
    rec_sh = id_sh = {}
    part = ctx.partitioner
    if part is not None:
      _check_batch_sizes(ctx)
      rec_state_sh = part.state_shardings(self.rec_state, params_axes(ctx.rec_model))
      gen_state_sh = part.state_shardings(self.gen_state, params_axes(ctx.gen_model))
      self.rec_state = jax.device_put(self.rec_state, rec_state_sh)
      self.gen_state = jax.device_put(self.gen_state, gen_state_sh)
      # The batch sharding is a pytree prefix: every array of a batch is split on its first axis.
      # Jitted through the partitioner: the logical axis rules bind the activation constraints.
      rec_sh = dict(in_shardings=(rec_state_sh, part.batch_sharding, part.replicated),
                    out_shardings=(rec_state_sh, part.replicated), partitioner=part)
      id_sh = dict(in_shardings=(gen_state_sh, part.batch_sharding, part.replicated, rec_state_sh.params),
                   out_shardings=(gen_state_sh, part.replicated), partitioner=part)
    self.rec_trainer = trainer.Trainer(ctx.rec_model.loss_fn, rec_tx, dropout_seed=sch.seed, **rec_sh)
    # The frozen recommender's params are a jit argument of the ID step (not a constant).
    self.id_trainer = trainer.Trainer(functools.partial(
        id_phase.id_phase_loss, gen_model=ctx.gen_model, rec_model=ctx.rec_model,
        options=ctx.id_options, punct_token_ids=ctx.punct_token_ids), id_tx, dropout_seed=sch.seed + 1,
        **id_sh)
    self.topk_fn = evaluation.make_topk_fn(ctx.rec_model, ctx.decode)
    self.position = 0  # index into schedule.phases()
    self.step_in_phase = 0
    self.results: list[dict[str, Any]] = []
    self.stop = stopping.StopRequest()
    self._ckpt = None
    if ctx.model_dir:
      # Each saves its network's T5Config with it: loaders rebuild the model from the checkpoint.
      self._ckpt = {name: orbax_t5x.CheckpointManager(
          layout.root(ctx.model_dir, name), keep=ctx.keep_checkpoints, model_config=model.module.config)
                    for name, model in ((layout.RECOMMENDER, ctx.rec_model), (layout.GENERATOR, ctx.gen_model))}

  # ------------------------------------------------------------------ checkpoints
  def _global_step(self) -> int:
    return int(self.rec_state.step) + int(self.gen_state.step)

  def save(self) -> None:
    if not self._ckpt:
      return
    step = self._global_step()
    meta = {"position": self.position, "step_in_phase": self.step_in_phase, "results": self.results,
            "item_ids": self.ctx.item_ids, "user_ids": self.ctx.user_ids}
    if self.ctx.schedule.id_phase_ids is IdPhaseIds.INITIAL:  # what the ID phases read
      meta.update(initial_item_ids=self.ctx.initial_item_ids, initial_user_ids=self.ctx.initial_user_ids)
    self._ckpt["recommender"].save(step, orbax_t5x.to_t5x_tree(self.rec_state), meta)
    self._ckpt["generator"].save(step, orbax_t5x.to_t5x_tree(self.gen_state), {"step": step})

  def maybe_restore(self) -> bool:
    """Restores the newest checkpoint of `model_dir` that reads back whole (an unreadable one is
    set aside with a warning: `fail_safe`), if any. Returns whether it did."""
    if not self._ckpt:
      return False
    found = fail_safe.restore_newest_good({
        "recommender": (self._ckpt["recommender"], orbax_t5x.to_t5x_tree(self.rec_state)),
        "generator": (self._ckpt["generator"], orbax_t5x.to_t5x_tree(self.gen_state))})
    if found is None:
      return False
    step, restored = found
    (rec, meta), (gen, _) = restored["recommender"], restored["generator"]
    self.rec_state, self.gen_state = orbax_t5x.from_t5x_tree(rec), orbax_t5x.from_t5x_tree(gen)
    self.position, self.step_in_phase = meta["position"], meta["step_in_phase"]
    self.results = list(meta["results"])
    self.ctx = self.ctx.with_ids(meta["item_ids"], meta["user_ids"])
    if "initial_item_ids" in meta:  # the IDs the run started with (`IdPhaseIds.INITIAL`)
      self.ctx = dataclasses.replace(self.ctx, initial_item_ids=list(meta["initial_item_ids"]),
                                     initial_user_ids=list(meta["initial_user_ids"]))
    log.info("restored checkpoint %d: phase %d, step %d", step, self.position, self.step_in_phase)
    return True

  # ------------------------------------------------------------------ phases
  def _run_phase(self, rnd: int, phase: str, total: int, step_fn, batch_size: int,
                 max_optimizer_steps: Optional[int] = None) -> dict[str, float]:
    """Steps `step_in_phase` .. `total` of a phase through the shared `training.loop.StepLoop`:
    saves on the cadence (steps, minutes); saves and raises `_Preempted` once
    `max_optimizer_steps` are done or a stop is requested (SIGINT / SIGTERM, `self.stop`)
    before the phase's last step (its end is saved by `run`). `step_fn(state, batch)` trains
    the phase's model; the state of the other model stays as it is."""
    is_rec = phase == "rec"
    src = phase_batches.source(self.ctx, for_id_phase=not is_rec)
    order = functools.lru_cache(maxsize=2)(functools.partial(phase_batches.phase_order, self.ctx, rnd, phase))
    sch = self.ctx.schedule
    first_global = self._global_step() - self.step_in_phase

    def batches():
      for n in range(self.step_in_phase, total):
        rows = phase_batches.batch_rows(order, n, batch_size, sch.replicas)
        yield phase_batches.build(src, self.ctx, rows, id_batch=not is_rec)

    def keep(state, n):
      if is_rec:
        self.rec_state = state
      else:
        self.gen_state = state
      self.step_in_phase = n

    def save(state, n, kept):
      del kept
      keep(state, n)
      self.save()

    def on_log(n, scalars):
      self.ctx.log_fn({"round": rnd, "phase": phase, "step": first_global + n,
                       **{f"{phase}/{k}": v for k, v in scalars.items()}})

    loop = training_loop.StepLoop(
        step_fn, desc=f"round {rnd} {phase} phase", on_log=on_log, save=save,
        cadence=stopping.CheckpointCadence(sch.checkpoint_every_steps, sch.checkpoint_every_minutes),
        stop=self.stop, must_stop=lambda n: (max_optimizer_steps is not None and
                                             first_global + n >= max_optimizer_steps))
    end = loop.run(self.rec_state if is_rec else self.gen_state, batches(), total=total,
                   start=self.step_in_phase)
    keep(end.state, end.step)
    if end.stopped:
      raise _Preempted()
    return end.last

  def _must_stop(self, max_optimizer_steps: Optional[int]) -> bool:
    return (self.stop.requested or
            (max_optimizer_steps is not None and self._global_step() >= max_optimizer_steps))

  def rec_phase(self, rnd: int, max_optimizer_steps: Optional[int] = None) -> dict[str, float]:
    return self._run_phase(rnd, "rec", self.rec_steps, self.rec_trainer.train,
                           self.ctx.schedule.rec_batch_size, max_optimizer_steps)

  def id_phase(self, rnd: int, max_optimizer_steps: Optional[int] = None) -> dict[str, float]:
    def step(state, batch):   # the frozen recommender's params are a jit argument
      return self.id_trainer.train(state, batch, self.rec_state.params)
    return self._run_phase(rnd, "id", self.id_steps, step, self.ctx.schedule.id_batch_size,
                           max_optimizer_steps)

  def regenerate_ids(self) -> None:
    if self.ctx.assigner is None or not self.ctx.schedule.regenerate_ids:
      return
    items, users = self.ctx.assigner(self.gen_state.params, self.ctx.item_ids)
    changed = sum(a != b for a, b in zip(items, self.ctx.item_ids))
    log.info("regenerated IDs: %d of %d item IDs changed", changed, len(items))
    self.ctx = self.ctx.with_ids(items, users)

  # ------------------------------------------------------------------ evaluation
  def eval_rows(self, split_name: str) -> np.ndarray:
    """Example indices of `split_name` that `evaluate` covers, ascending."""
    ctx = self.ctx
    split = ctx.splits[split_name]
    n = split.num_examples if ctx.max_eval_examples is None else min(ctx.max_eval_examples, split.num_examples)
    sample = {"valid": ctx.valid_examples, "test": ctx.test_examples}.get(split_name)
    if sample is not None and sample < n:  # the same users every time (and in every run)
      rng = np.random.default_rng([ctx.schedule.seed, 7 if split_name == "valid" else 11])
      return np.sort(rng.choice(n, sample, replace=False))
    return np.arange(n)

  def evaluate(self, split_name: str) -> dict[str, float]:
    """HR@k / NDCG@k of the current recommender and IDs on `eval_rows(split_name)`, batched
    shortest history first (the metrics are means in that order)."""
    ctx = self.ctx
    split = ctx.splits[split_name]
    item_tokens, batches = phase_batches.eval_source(ctx, split_name)
    ranker = evaluation.PromptRanker(self.topk_fn, self.rec_state.params,
                                     item_tokens.trie(ctx.rec_model.module.config.vocab_size), batches,
                                     ctx.eval_batch_size)
    rows = prompt_batches.PromptBatcher.by_history_length(split, self.eval_rows(split_name))
    return evaluator.evaluate_split(ranker, evaluator.HeldOut(split_name, split, rows), ks=ctx.decode.ks)

  # ------------------------------------------------------------------ the run
  def run(self, max_optimizer_steps: Optional[int] = None,
          stop: Optional[stopping.StopRequest] = None) -> dict[str, Any]:
    """Runs (or continues) the schedule. Stops, after saving a checkpoint, once
    `max_optimizer_steps` optimizer steps of both models are done or when `stop` is requested
    (SIGINT / SIGTERM, see `training.stopping`); a later `run()` on a restored loop continues
    exactly where this one stopped. The summary then has `complete` False."""
    self.stop = stop or stopping.StopRequest()
    phases = self.ctx.schedule.phases()
    while self.position < len(phases):
      rnd, phase = phases[self.position]
      try:
        if phase == "rec":
          train_metrics = self.rec_phase(rnd, max_optimizer_steps)
        else:
          train_metrics = self.id_phase(rnd, max_optimizer_steps)
      except _Preempted:
        return self._stopped()
      if phase == "id":
        self.regenerate_ids()
      record = {"round": rnd, "phase": phase, "step": self._global_step(), "train": train_metrics}
      if phase == "rec":
        evaluated = ("valid", "test") if self.ctx.schedule.select_best else ("test",)
        for s in evaluated:
          record[s] = self.evaluate(s)
        record["eval_users"] = {s: len(self.eval_rows(s)) for s in evaluated}
      self.results.append(record)
      self.ctx.log_fn({"round": rnd, "phase": phase, "step": self._global_step(),
                       **{f"{s}/{k}": v for s in ("valid", "test") for k, v in record.get(s, {}).items()}})
      self.position += 1
      self.step_in_phase = 0
      self.save()
      if self.position < len(phases) and self._must_stop(max_optimizer_steps):
        return self._stopped()
    return summarize(self.results, select_best=self.ctx.schedule.select_best)

  def _stopped(self) -> dict[str, Any]:
    summary = summarize(self.results, stopped_at_step=self._global_step(),
                        select_best=self.ctx.schedule.select_best)
    summary["stopped_by"] = self.stop.name or "max_optimizer_steps"
    return summary


class _Preempted(Exception):
  """Raised inside a phase when `max_optimizer_steps` is reached (a checkpoint was saved)."""


def summarize(results: list[dict[str, Any]], select_on: Optional[str] = None,
              stopped_at_step: Optional[int] = None, select_best: bool = True) -> dict[str, Any]:
  """Per-phase results plus, as `best`, the phase with the best validation `select_on` (default:
  NDCG at the largest k); without `select_best` (no validation, as the official code) the last
  phase with test metrics."""
  if select_best:
    evaluated = [r for r in results if "valid" in r]
    if select_on is None and evaluated:
      select_on = max((k for k in evaluated[0]["valid"] if k.startswith("ndcg@")), key=lambda k: int(k[5:]))
    best = max(evaluated, key=lambda r: r["valid"][select_on]) if evaluated else None
    selected_on = f"valid {select_on}"
  else:
    tested = [r for r in results if "test" in r]
    best, selected_on = (tested[-1] if tested else None), "last test (no model selection)"
  return {"phases": results, "best": best, "selected_on": selected_on,
          "complete": stopped_at_step is None, "stopped_at_step": stopped_at_step}
