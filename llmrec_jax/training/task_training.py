"""Single-model (fixed-ID) training on a SeqIO Task or Mixture: T5X's `train` for one T5
encoder-decoder recommender.

`train_on_task` reads the `inputs` / `targets` of `DatasetConfig`'s Task or Mixture (seeded,
repeated, `batching.encdec_batches` or seqio's packing converter), trains `total_steps` optimizer
steps through the shared `trainer.Trainer` and `loop.StepLoop`, and saves T5X-layout checkpoints
(`MODEL_DIR/checkpoint_<step>`, `orbax_t5x.CheckpointManager`) as `SaveCheckpointConfig` says
(`period`, `keep`, and always the last step). Where it starts, in T5X's order: MODEL_DIR's newest
readable checkpoint (a resumed run replays its data stream to that step, so with a fixed
`DatasetConfig.seed` it equals an uninterrupted one), else `RestoreCheckpointConfig`'s, else
from scratch. `total_steps` counts from step 0 of the restored state, as T5X's `TRAIN_STEPS`.

The item IDs are the task's own and never change (no ID generator). After training, every task
of the run (each task of a Mixture) with an `item_catalogues` entry is ranked on its held-out
split (`evaluation.task_ranking`: trie-constrained top-K, HR@k / NDCG@k); tasks without one are
listed as not evaluated.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Callable, Iterator, Optional

import jax
import numpy as np

from llmrec_jax import model_sizes, models, network
from llmrec_jax.checkpoints import fail_safe, orbax_t5x
from llmrec_jax.checkpoints.checkpoint_config import CheckpointConfig, RestoreCheckpointConfig
from llmrec_jax.data import batching
from llmrec_jax.data.dataset_config import DatasetConfig
from llmrec_jax.evaluation import generative, task_ranking
from llmrec_jax.training import loop as training_loop
from llmrec_jax.training import optimizers, stopping, trainer
from llmrec_jax.training.train_state import TrainState

log = logging.getLogger(__name__)

FEATURES = ("inputs", "targets")


@dataclasses.dataclass(frozen=True)
class TaskTrainOptions:
  """What T5X's dataset and checkpoint configs leave to the model and trainer.

  Attributes:
    model_size: a `model_sizes` name, e.g. 't5_tiny'; the vocabulary is the task's.
    dropout_rate: the network's dropout while training.
    learning_rate: AdamW's constant learning rate (T5X finetune's 'constant' schedule).
    weight_decay, clip_norm, decay_mask: see `optimizers.adamw`.
    seed: parameter initialisation and dropout.
    loss_normalizing_factor: see `models.EncoderDecoderModel`.
    log_every: steps between logged training metrics.
    eval_split: the held-out split ranked after training.
    eval_batch_size: prompts per decoding batch.
    max_eval_examples: rank the first N examples of each task (None: all).
    decode: the constrained search of the ranking.
  """
  model_size: str = "t5_tiny"
  dropout_rate: float = 0.1
  learning_rate: float = 1e-3
  weight_decay: float = 0.01
  clip_norm: Optional[float] = 1.0
  decay_mask: optimizers.WeightDecayMask | str = optimizers.WeightDecayMask.NO_NORMS_OR_BIASES
  seed: int = 0
  loss_normalizing_factor: str = "NUM_REAL_TARGET_TOKENS"
  log_every: int = 50
  eval_split: str = "test"
  eval_batch_size: int = 32
  max_eval_examples: Optional[int] = None
  decode: generative.DecodeOptions = generative.DecodeOptions()


def check_lengths(cfg: DatasetConfig) -> dict[str, int]:
  """{'inputs': S, 'targets': T}: an encoder-decoder reads exactly these two features."""
  lengths = dict(cfg.task_feature_lengths)
  if set(lengths) != set(FEATURES):
    raise ValueError(f"DatasetConfig.task_feature_lengths must give exactly {list(FEATURES)} for "
                     f"the encoder-decoder recommender, got {sorted(lengths)}")
  return lengths


def build_model(provider, options: TaskTrainOptions) -> models.EncoderDecoderModel:
  """T5 of `options.model_size` over the task's vocabulary (inputs and targets must share it)."""
  vocab = provider.output_features["targets"].vocabulary
  if provider.output_features["inputs"].vocabulary != vocab:
    raise ValueError(f"{provider.name}: inputs and targets use different vocabularies; the T5 "
                     "recommender shares one embedding")
  config = model_sizes.t5_config(options.model_size, vocab_size=vocab.vocab_size,
                                 dropout_rate=options.dropout_rate)
  return models.EncoderDecoderModel(network.Transformer(config), input_vocabulary=vocab,
                                    output_vocabulary=vocab,
                                    loss_normalizing_factor=options.loss_normalizing_factor)


def train_batches(cfg: DatasetConfig, provider, *, start: int = 0,
                  partitioner=None) -> Iterator[dict[str, Any]]:
  """The batches of steps `start + 1, ...` (the stream is repeated and seeded: the first `start`
  batches are skipped, as a resumed run must); sharded over the partitioner's 'data' axis, each
  host reading its slice of the global `batch_size`."""
  import seqio  # pylint: disable=g-import-not-at-top
  lengths = check_lengths(cfg)
  batch_size, shard_info = cfg.batch_size, None
  if partitioner is not None:
    layout = partitioner.get_data_layout(cfg.batch_size)
    batch_size = layout.per_host_batch_size
    if layout.num_shards > 1:
      shard_info = seqio.ShardInfo(index=layout.shard_id, num_shards=layout.num_shards)
  if start and cfg.shuffle and cfg.seed is None:
    log.warning("DatasetConfig.seed is None: the resumed run reads a new shuffle, not the rest "
                "of the stopped run's")
  ds = provider.get_dataset(sequence_length=lengths, split=cfg.split, use_cached=cfg.use_cached,
                            shuffle=cfg.shuffle, seed=cfg.seed, shard_info=shard_info,
                            num_epochs=None)
  if cfg.pack:
    ds = seqio.EncDecFeatureConverter(pack=True)(ds, lengths).batch(batch_size, drop_remainder=True)
  else:
    ds = batching.encdec_batches(ds, lengths, batch_size)
  for batch in ds.skip(start).as_numpy_iterator():
    yield batch if partitioner is None else partitioner.shard_batch(batch)


def init_state(model: models.EncoderDecoderModel, tx, lengths: dict[str, int], seed: int,
               partitioner=None) -> tuple[TrainState, Any]:
  """(fresh train state, its shardings or None), placed as the partitioner shards it."""
  shapes = {"encoder_input_tokens": (1, lengths["inputs"]),
            "decoder_input_tokens": (1, lengths["targets"])}
  variables = model.get_initial_variables(jax.random.PRNGKey(seed), shapes)
  state = TrainState.create(variables["params"], tx)
  if partitioner is None:
    return state, None
  shardings = partitioner.state_shardings(state, variables["params_axes"])
  return jax.device_put(state, shardings), shardings


def _checkpoint_to_restore(cfg: RestoreCheckpointConfig) -> Optional[tuple[str, int]]:
  """(checkpoint root, step) that `cfg` names (mode 'latest': the newest step under its path),
  or None when it names none (`path=[]`)."""
  path = cfg.check_for_training()
  if path is None:
    return None
  path = os.path.abspath(path)
  if cfg.mode == "specific":
    root, name = os.path.split(path.rstrip("/"))
    prefix = orbax_t5x.STEP_PREFIX + "_"
    if not name.startswith(prefix) or not name[len(prefix):].isdigit() or not os.path.isdir(path):
      raise FileNotFoundError(f"RestoreCheckpointConfig(mode='specific') needs a "
                              f"{prefix}<step> folder; {path} is not one")
    return root, int(name[len(prefix):])
  step = orbax_t5x.latest_step(path)
  if step is None:
    raise FileNotFoundError(f"RestoreCheckpointConfig(mode='latest'): no "
                            f"{orbax_t5x.STEP_PREFIX}_<step> folder in {path}")
  return path, step


def restore_state(state: TrainState, manager: Optional[orbax_t5x.CheckpointManager],
                  restore_cfg: Optional[RestoreCheckpointConfig]) -> tuple[TrainState, str]:
  """(state to start from, where it came from): MODEL_DIR's newest good checkpoint, else
  `restore_cfg`'s (whole state, or with `strict=False` the params only), else `state`."""
  if manager is not None:
    found = fail_safe.restore_newest_good({"model": (manager, orbax_t5x.to_t5x_tree(state))})
    if found is not None:
      step, restored = found
      return orbax_t5x.from_t5x_tree(restored["model"][0]), manager.step_path(step)
  named = None if restore_cfg is None else _checkpoint_to_restore(restore_cfg)
  if named is None:
    return state, "scratch"
  root, step = named
  source = orbax_t5x.CheckpointManager(root)
  try:
    if restore_cfg.strict:
      tree, _ = source.restore(orbax_t5x.to_t5x_tree(state), step)
      return orbax_t5x.from_t5x_tree(tree), source.step_path(step)
    return (state.replace(params=_restore_params(source.step_path(step), state.params)),
            source.step_path(step))
  finally:
    source.close()


def _restore_params(path: str, params: Any) -> Any:
  """The params saved in the step folder `path`, placed as `params` are; shapes must match."""
  saved = orbax_t5x.restore_params(path)
  want = jax.tree_util.tree_structure(params)
  if jax.tree_util.tree_structure(saved) != want:
    raise orbax_t5x.CheckpointMismatchError(f"{path}: its params tree differs from the model's")

  def place(saved_leaf, leaf):
    if tuple(np.shape(saved_leaf)) != tuple(leaf.shape):
      raise orbax_t5x.CheckpointMismatchError(
          f"{path}: a parameter is {np.shape(saved_leaf)} in the checkpoint but {leaf.shape} here")
    return jax.device_put(np.asarray(saved_leaf, leaf.dtype), leaf.sharding)
  return jax.tree_util.tree_map(place, saved, params)


def _evaluate(provider, model, params, lengths, options: TaskTrainOptions) -> tuple[dict, list]:
  """({task: metrics} of the tasks with a catalogue, [tasks without one])."""
  import seqio  # pylint: disable=g-import-not-at-top
  tasks = provider.tasks if isinstance(provider, seqio.Mixture) else [provider]
  topk_fn = generative.make_topk_fn(model, options.decode)
  results, skipped = {}, []
  for task in tasks:
    metrics = task_ranking.rank_task(
        model, params, task, sequence_length=lengths, split=options.eval_split,
        batch_size=options.eval_batch_size, max_examples=options.max_eval_examples,
        decode=options.decode, topk_fn=topk_fn)
    if metrics is None:
      skipped.append(task.name)
    else:
      results[task.name] = metrics
  return results, skipped


def train_on_task(*, model_dir: Optional[str], dataset_cfg: DatasetConfig, total_steps: int,
                  checkpoint_cfg: Optional[CheckpointConfig] = None, partitioner=None,
                  options: TaskTrainOptions = TaskTrainOptions(),
                  log_fn: Callable[[dict[str, Any]], None] = lambda record: None) -> dict[str, Any]:
  """Trains (or resumes) to `total_steps`, ranks the tasks with catalogues; returns the summary
  (`complete: False` with `stopped_by` when SIGINT / SIGTERM stopped it after a checkpoint)."""
  if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 0:
    raise ValueError(f"total_steps (TRAIN_STEPS) must be an int >= 0, got {total_steps!r}")
  checkpoint_cfg = checkpoint_cfg or CheckpointConfig()
  if checkpoint_cfg.restore is not None:
    checkpoint_cfg.restore.check_for_training()  # before any work: mode 'all', several paths
  provider = dataset_cfg.get_provider()
  lengths = check_lengths(dataset_cfg)
  model = build_model(provider, options)
  tx = optimizers.adamw(options.learning_rate, weight_decay=options.weight_decay,
                        clip_norm=options.clip_norm, decay_mask=options.decay_mask)
  state, shardings = init_state(model, tx, lengths, options.seed, partitioner)
  save_cfg = checkpoint_cfg.save
  manager = None
  if model_dir and save_cfg is not None:
    manager = orbax_t5x.CheckpointManager(model_dir, keep=save_cfg.keep,
                                          model_config=model.module.config)
  state, restored_from = restore_state(state, manager, checkpoint_cfg.restore)
  start = int(state.step)
  sharded = {} if partitioner is None else dict(
      in_shardings=(shardings, partitioner.batch_sharding, partitioner.replicated),
      out_shardings=(shardings, partitioner.replicated), partitioner=partitioner)
  step_fn = trainer.Trainer(model.loss_fn, tx, dropout_seed=options.seed, **sharded).train
  meta = {"mixture_or_task_name": dataset_cfg.name, "task_feature_lengths": lengths}

  def save(st, step, kept):
    del kept
    manager.save(step, orbax_t5x.to_t5x_tree(st), meta)

  with stopping.stop_on_signals() as stop:
    end = training_loop.StepLoop(
        step_fn, desc=f"train {dataset_cfg.name}", log_at=training_loop.every(options.log_every),
        on_log=lambda n, m: log_fn({"step": n, **{f"train/{k}": v for k, v in m.items()}}),
        save=save if manager else None, stop=stop,
        cadence=stopping.CheckpointCadence(save_cfg.period or 0) if save_cfg else None,
    ).run(state, train_batches(dataset_cfg, provider, start=start, partitioner=partitioner),
          total=total_steps, start=start)
  summary = {"mode": "single_model", "mixture_or_task_name": dataset_cfg.name,
             "task_feature_lengths": lengths, "restored_from": restored_from, "start_step": start,
             "steps": end.step, "total_steps": total_steps, "train": end.last}
  if end.stopped:
    return {**summary, "complete": False, "stopped_by": stop.name, "stopped_at_step": end.step,
            "best": None}
  if manager is not None and manager.latest_step() != end.step:
    save(end.state, end.step, [])
  test, skipped = _evaluate(provider, model, end.state.params, lengths, options)
  if skipped:
    log.warning("no item catalogue for %s: trained only, not evaluated", ", ".join(skipped))
  return {**summary, "complete": True, "test": test, "not_evaluated": skipped,
          "best": {"round": None, "valid": None, "test": test}}
