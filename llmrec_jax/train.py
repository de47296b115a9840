"""Train IDGenRec: `python -m llmrec_jax.train --gin_file=idgenrec.gin [--gin.NAME=VALUE ...]`.

Flags as `t5x.train`: --gin_file (repeatable), --gin_bindings, --gin.NAME=VALUE, --gin_search_paths,
--tfds_data_dir, and the multi-host flags. Our gin_configs/ is always on the search path.
Writes to MODEL_DIR: config.gin, run_config.json (`run_record.RunRecord`) and spiece.model,
checkpoints (`checkpoints.layout`: recommender/, generator/), metrics.jsonl, TensorBoard
events, id tables per phase and results.json (per phase + `best`: the phase best on validation,
or the last one with `Schedule.select_best=False`).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import shutil
import signal
import sys
from typing import Any, Optional, Sequence

import jax

from llmrec_jax import model_sizes, models, network
from llmrec_jax import partitioning
from llmrec_jax.checkpoints.checkpoint_config import CheckpointConfig
from llmrec_jax.data import id_tables, mixtures, splits as splits_lib
from llmrec_jax.data.dataset_config import DatasetConfig
from llmrec_jax.evaluation import generative as evaluation
from llmrec_jax.indexing import text_tokens, uniqueness
from llmrec_jax.systems.idgenrec import alternating, id_phase, components as idgenrec
from llmrec_jax.systems.idgenrec import bootstrap, run_record
from llmrec_jax.systems.idgenrec import run_data, setup_cache, stream_id_phase, stream_run, stream_training
from llmrec_jax.systems.semantic_ids import codes as semantic_codes, run as semantic_run
from llmrec_jax.training import stopping, task_training

log = logging.getLogger(__name__)

RUN_VOCAB = run_record.VOCAB_FILE


def train(*, model_dir: str, data_dir: str | Sequence[str] = idgenrec.SYNTHETIC, vocab_path: Optional[str] = None,
          dataset_vocab_size: int = 2000, template_set: str = "llmrec_default",
          rec_size: str = "t5_tiny", gen_size: str = "t5_tiny", dropout_rate: float = 0.1,
          rec_checkpoint: Optional[str] = None, gen_checkpoint: Optional[str] = None,
          initial_ids: str = "bootstrap", bootstrap_steps: int = 300, leaky_user_ids: bool = False,
          loss_normalizing_factor: str = "NUM_REAL_TARGET_TOKENS",
          schedule: alternating.Schedule = alternating.Schedule(),
          id_options: id_phase.IdPhaseOptions = id_phase.IdPhaseOptions(),
          id_assignment: uniqueness.IdAssignment = uniqueness.IdAssignment(),
          decode: evaluation.DecodeOptions = evaluation.DecodeOptions(),
          input_len: int = 256, target_len: int = 16, text_len: int = 64, id_len: int = 16,
          eval_batch_size: int = 32, max_eval_examples: Optional[int] = None,
          valid_examples: Optional[int] = None, test_examples: Optional[int] = None,
          exclude_seen: bool = False, id_batch_size: int = 256, synthetic_users: int = 300,
          synthetic_items: int = 200,
          keep_checkpoints: int = 2, max_optimizer_steps: Optional[int] = None,
          partitioner: Optional[partitioning.PjitPartitioner] = None,
          rec_form: str = "encoder_decoder",
          stream: stream_training.StreamSchedule = stream_training.StreamSchedule(),
          stream_ids: stream_id_phase.StreamIdSchedule = stream_id_phase.StreamIdSchedule(),
          mixing_rate: mixtures.MixingRate = mixtures.MixingRate(),
          semantic_ids: Optional[semantic_codes.SemanticIds] = None,
          train_dataset_cfg: Optional[DatasetConfig] = None, total_steps: Optional[int] = None,
          checkpoint_cfg: Optional[CheckpointConfig] = None,
          on_start=None) -> dict[str, Any]:
  """Runs (or resumes, from MODEL_DIR) IDGenRec and returns the results summary.

  `rec_form`: 'encoder_decoder' (the paper's T5 recommender, one prompt per target, alternating
  with the ID phase per `schedule`) or 'decoder_only' (a causal T5 stack trained on whole
  streams of the users' item IDs: `stream` sets its budget, `stream_ids` its alternation with
  ID phases, which needs the learned IDs, `initial_ids='bootstrap'`).

  `id_assignment` (gin `uniqueness.IdAssignment`) picks how generated IDs are made unique and
  whether generated and title IDs keep case.

  A list of `data_dir`s is a MIXTURE (the foundation setting, `rec_form='decoder_only'`): one
  recommender and one generator over the union of their catalogues (`data.mixtures`), IDs unique
  across it, each epoch's users drawn by `mixing_rate` (SeqIO's examples-proportional rate, with
  temperature and cap), each dataset evaluated over its own catalogue.

  `semantic_ids` (gin `semantic_ids.SemanticIds`, with `initial_ids='semantic'`): the items'
  IDs are RQ-VAE codes of their embeddings (TIGER / LC-Rec; `systems.semantic_ids`), tokens of a
  code vocabulary, and the whole-stream recommender trains on them.

  `partitioner` shards both train steps over its ('data', 'model') mesh (the gin files bind
  `partitioning.PjitPartitioner.num_partitions`, as T5X); None trains on the default device.
  `on_start(model_dir)` runs once the arguments are bound (the CLI writes config.gin there).

  T5X's arguments: with `train_dataset_cfg` (`utils.DatasetConfig`) the run is instead one
  fixed-ID recommender trained `total_steps` steps on that SeqIO Task or Mixture
  (`_train_single_model`). `checkpoint_cfg` (`utils.CheckpointConfig`) sets its checkpoints; in
  IDGenRec runs its `save.keep` and `save.period` set `keep_checkpoints` and
  `schedule.checkpoint_every_steps` (`_idgenrec_checkpoint_settings`)."""
  if train_dataset_cfg is not None:
    return _train_single_model(
        model_dir=model_dir, dataset_cfg=train_dataset_cfg, total_steps=total_steps,
        checkpoint_cfg=checkpoint_cfg, partitioner=partitioner, on_start=on_start,
        options=task_training.TaskTrainOptions(
            model_size=rec_size, dropout_rate=dropout_rate, learning_rate=schedule.rec_lr,
            weight_decay=schedule.weight_decay, clip_norm=schedule.clip_norm,
            decay_mask=schedule.weight_decay_mask, seed=schedule.seed,
            loss_normalizing_factor=loss_normalizing_factor, eval_batch_size=eval_batch_size,
            max_eval_examples=max_eval_examples, decode=decode))
  schedule, keep_checkpoints = _idgenrec_checkpoint_settings(checkpoint_cfg, total_steps, schedule,
                                                             keep_checkpoints, rec_form)
  data_dirs, vocab_path, template_set = run_data.resolve_paths(data_dir, vocab_path, template_set)
  _check_settings(semantic_ids, rec_form, data_dirs, initial_ids, stream_ids)
  data_dir = data_dirs[0] if len(data_dirs) == 1 else data_dirs
  os.makedirs(model_dir, exist_ok=True)
  if on_start is not None:
    on_start(model_dir)
  data, texts, catalogues = run_data.load_data(data_dirs, synthetic_users=synthetic_users,
                                               synthetic_items=synthetic_items, seed=schedule.seed,
                                               initial_ids=initial_ids)
  split = splits_lib.leave_one_out(data, max_his=schedule.max_his)
  stream_form = rec_form == "decoder_only"
  record = functools.partial(  # what `eval` / `infer` rebuild the run from (DATA_DIR absolute)
      run_record.RunRecord, data_dir=run_data.absolute_data_dir(data_dirs[0]), rec_size=rec_size,
      template_set=template_set, input_len=input_len, id_len=id_len,
      max_his=stream.max_items if stream_form else schedule.max_his,
      synthetic_users=synthetic_users, synthetic_items=synthetic_items, seed=schedule.seed,
      truncation=schedule.truncation.value, rec_form=rec_form,
      data_dirs=[run_data.absolute_data_dir(d) for d in data_dirs] if catalogues else [],
      gen_size=gen_size, text_len=text_len, keep_case=id_assignment.keep_case,
      trie_softmax=stream.trie_softmax, stream_seed=stream.seed,
      extractive=id_assignment.extractive, initial_ids=initial_ids)
  if semantic_ids is not None:   # codes of the items' embeddings, then the stream recommender
    writer, log_fn = _metric_logger(model_dir)
    summary = semantic_run.run(semantic_ids, data, data_dir, model_dir, record, log_fn=log_fn,
                               rec_size=rec_size, dropout_rate=dropout_rate, schedule=stream,
                               partitioner=partitioner)
    return _finish(model_dir, summary, writer, data.name, {}, None)
  tokenizer, vocab_size = _tokenizer(model_dir, data, data_dir, vocab_path, dataset_vocab_size,
                                     initial_ids=initial_ids, item_texts=texts,
                                     keep_case=id_assignment.keep_case)
  record(vocab_size=vocab_size).save(model_dir)
  cache_key = _setup_key(data_dir=data_dir, initial_ids=initial_ids, gen_size=gen_size,
                         bootstrap_steps=bootstrap_steps, seed=schedule.seed, text_len=text_len,
                         vocab_size=vocab_size, leaky_user_ids=leaky_user_ids, rec_form=rec_form,
                         gen_checkpoint=gen_checkpoint, id_assignment=id_assignment)
  if gen_checkpoint or not idgenrec.needs_bootstrap(initial_ids, schedule):
    gen_model, gen_params = idgenrec.init_model(gen_size, vocab_size, dropout_rate=dropout_rate,
                                                seed=schedule.seed + 1, checkpoint=gen_checkpoint)
    gen_config, boot = gen_model.module.config, {}
  else:  # no pretrained tag generator here: bootstrap one (or reuse this run's from its cache)
    gen_model, gen_config, gen_params, boot = _bootstrapped_generator(
        data, texts, tokenizer, vocab_size, gen_size=gen_size, steps=bootstrap_steps, seed=schedule.seed,
        data_dir=data_dir, text_len=text_len, dropout_rate=dropout_rate, model_dir=model_dir,
        cache_key=cache_key)
  assigner = _assigner(gen_config, tokenizer, data, texts, leaky_user_ids, id_batch_size, text_len,
                       id_assignment, bootstrap_steps if boot else None
                       ) if idgenrec.needs_generator(initial_ids, schedule) else None  # fixed IDs: none
  item_ids, user_ids = _initial_ids(initial_ids, data, data_dir, assigner, gen_params, tokenizer,
                                    seed=schedule.seed, rec_form=rec_form, model_dir=model_dir,
                                    cache_key=cache_key, keep_case=id_assignment.keep_case)
  writer, log_fn = _metric_logger(model_dir)
  if rec_form == "decoder_only":
    generator = None if stream_ids.rounds == 1 else (
        gen_model, gen_params, assigner.item_ids, text_tokens.encode_texts(texts, tokenizer, text_len))
    mixture = run_data.mixture(model_dir, data, catalogues, mixing_rate, stream.seed)
    summary = stream_run.train_stream(item_ids, data, tokenizer, vocab_size, rec_size=rec_size,
                                      dropout_rate=dropout_rate, schedule=stream, model_dir=model_dir,
                                      log_fn=log_fn, stream_ids=stream_ids, generator=generator,
                                      mixture=mixture, partitioner=partitioner)
    return _finish(model_dir, summary, writer, data.name, boot, assigner)
  rec_model, rec_params = idgenrec.init_model(rec_size, vocab_size, dropout_rate=dropout_rate,
                                              seed=schedule.seed, checkpoint=rec_checkpoint,
                                              loss_normalizing_factor=loss_normalizing_factor)
  templates = idgenrec.load_templates(template_set)
  lengths = dict(input_len=input_len, target_len=target_len, text_len=text_len, id_len=id_len)
  ctx = alternating.Context(
      data=data, splits=split, item_texts=texts, encode=tokenizer.encode, templates=templates,
      rec_model=rec_model, gen_model=gen_model, rec_params=rec_params, gen_params=gen_params,
      item_ids=item_ids, user_ids=user_ids, assigner=assigner, schedule=schedule, id_options=id_options,
      decode=decode, lengths=lengths, eval_batch_size=eval_batch_size, max_eval_examples=max_eval_examples,
      valid_examples=valid_examples, test_examples=test_examples, exclude_seen=exclude_seen,
      model_dir=model_dir, keep_checkpoints=keep_checkpoints, log_fn=log_fn,
      punct_token_ids=idgenrec.punctuation_token_ids(tokenizer), partitioner=partitioner,
      prompt_tasks=_prompt_tasks(model_dir, data, templates, schedule, id_options, lengths, item_ids, user_ids))
  summary = _run_loop(ctx, max_optimizer_steps)
  summary["train_examples"] = split["train"].num_examples
  summary["decode"] = dataclasses.asdict(decode)  # which search (and scoring) made the metrics
  return _finish(model_dir, summary, writer, data.name, boot, assigner)


def _train_single_model(*, model_dir: str, dataset_cfg: DatasetConfig, total_steps: Optional[int],
                        checkpoint_cfg: Optional[CheckpointConfig], partitioner, on_start,
                        options: task_training.TaskTrainOptions) -> dict[str, Any]:
  """T5X's single-model run (`training.task_training`), with config.gin, metrics and results.json
  in MODEL_DIR. Of IDGenRec's arguments it reads `rec_size`, `dropout_rate`, the optimiser of
  `schedule` (`rec_lr` as a constant rate, weight decay, clipping, seed),
  `loss_normalizing_factor`, `decode`, `eval_batch_size` and `max_eval_examples`."""
  if total_steps is None:
    raise ValueError("train_dataset_cfg is given: set total_steps (T5X's TRAIN_STEPS)")
  os.makedirs(model_dir, exist_ok=True)
  if on_start is not None:
    on_start(model_dir)
  writer, log_fn = _metric_logger(model_dir)
  summary = task_training.train_on_task(model_dir=model_dir, dataset_cfg=dataset_cfg,
                                        total_steps=total_steps, checkpoint_cfg=checkpoint_cfg,
                                        partitioner=partitioner, options=options, log_fn=log_fn)
  summary["decode"] = dataclasses.asdict(options.decode)
  return _finish(model_dir, summary, writer, dataset_cfg.name, {}, None)


def _idgenrec_checkpoint_settings(checkpoint_cfg: Optional[CheckpointConfig], total_steps: Optional[int],
                                  schedule: alternating.Schedule, keep_checkpoints: Optional[int],
                                  rec_form: str) -> tuple[alternating.Schedule, Optional[int]]:
  """(schedule, keep_checkpoints) with T5X's `save.period` / `save.keep` in place; what an
  IDGenRec run cannot honour fails naming it."""
  if total_steps is not None:
    raise ValueError("total_steps (T5X's TRAIN_STEPS) sets the single-model run's length and needs "
                     "train_dataset_cfg; an IDGenRec run's length is its Schedule (cap it with "
                     "max_optimizer_steps)")
  if checkpoint_cfg is None:
    return schedule, keep_checkpoints
  if checkpoint_cfg.restore is not None:
    raise ValueError("CheckpointConfig.restore: an IDGenRec run resumes from MODEL_DIR and starts "
                     "from pretrained weights with rec_checkpoint / gen_checkpoint")
  if checkpoint_cfg.save is None:
    raise ValueError("CheckpointConfig.save=None: an IDGenRec run always checkpoints its phase "
                     "ends; give a utils.SaveCheckpointConfig")
  if rec_form != "encoder_decoder":
    raise ValueError("CheckpointConfig maps onto the encoder-decoder schedule; the decoder-only "
                     "form's checkpoints are set by its StreamSchedule")
  save = checkpoint_cfg.save
  return (dataclasses.replace(schedule, checkpoint_every_steps=save.period or 0), save.keep)


def _metric_logger(model_dir: str):
  """`metric_writers.record_logger` (imported when used: it imports TensorFlow)."""
  from llmrec_jax.training import metric_writers  # pylint: disable=g-import-not-at-top
  return metric_writers.record_logger(model_dir)


def _check_settings(semantic_ids, rec_form: str, data_dirs: Sequence[str], initial_ids: str,
                    stream_ids: stream_id_phase.StreamIdSchedule) -> None:
  """Fails before any work on a combination of settings the run cannot honour."""
  if semantic_ids is not None or initial_ids == "semantic":
    semantic_run.check_settings(semantic_ids, rec_form=rec_form, data_dirs=data_dirs,
                                initial_ids=initial_ids, rounds=stream_ids.rounds)
    return
  _check_rec_form(rec_form, stream_ids, initial_ids)
  run_data.check_mixture(data_dirs, rec_form, initial_ids)


def _check_rec_form(rec_form: str, stream_ids: stream_id_phase.StreamIdSchedule,
                    initial_ids: str) -> None:
  if rec_form not in ("encoder_decoder", "decoder_only"):
    raise ValueError(f"rec_form={rec_form!r}: use 'encoder_decoder' or 'decoder_only'")
  if rec_form == "decoder_only" and stream_ids.rounds > 1 and initial_ids != "bootstrap":
    raise ValueError(f"stream_ids.rounds={stream_ids.rounds} alternates with ID phases, which "
                     f"need the generator's IDs: set initial_ids='bootstrap' (got {initial_ids!r})")


def _bootstrapped_generator(data, texts, tokenizer, vocab_size: int, *, gen_size: str, steps: int,
                            seed: int, data_dir: str, text_len: int, dropout_rate: float,
                            model_dir: str, cache_key: dict[str, Any]):
  """(model, bootstrap config, params, stats) of a generator bootstrapped from random init (or
  loaded from MODEL_DIR's `bootstrap/` when this run did it before: `setup_cache`); the model
  trains with `dropout_rate`."""
  def template():  # shapes and dtypes only (nothing is initialised or compiled)
    return jax.eval_shape(lambda: bootstrap.init_generator(vocab_size, bootstrap.BootstrapConfig(
        model_size=gen_size, max_input_tokens=text_len))[1])
  cached = setup_cache.load_bootstrap(model_dir, template, cache_key)
  if cached is not None:
    params, boot = cached
    config = model_sizes.t5_config(gen_size, vocab_size=vocab_size, dropout_rate=0.0)
  else:
    config, params, boot = idgenrec.bootstrap_generator(
        data, texts, tokenizer, vocab_size, size=gen_size, steps=steps, seed=seed,
        data_dir=data_dir, max_input_tokens=text_len)
    setup_cache.save_bootstrap(model_dir, params, boot, cache_key)
  model = models.EncoderDecoderModel(network.Transformer(
      dataclasses.replace(config, dropout_rate=dropout_rate)))
  return model, config, params, boot


def _assigner(gen_config, tokenizer, data, texts, leaky_user_ids: bool, batch_size: int,
              text_len: int, assignment: uniqueness.IdAssignment,
              bootstrap_steps: Optional[int]) -> idgenrec.GeneratorAssigner:
  """The generator's ID assigner: `assignment` sets resolution, case and the group search."""
  return idgenrec.GeneratorAssigner(
      gen_config, tokenizer, data, texts, leaky_user_ids=leaky_user_ids,
      options=idgenrec.GeneratorOptions(batch_size=batch_size, max_input_tokens=text_len,
                                        hf_semantics=assignment.group_search,
                                        extractive=assignment.extractive),
      bootstrap_steps=bootstrap_steps, assignment=assignment)


def _setup_key(*, data_dir: str, id_assignment: uniqueness.IdAssignment, **settings) -> dict[str, Any]:
  """What the bootstrap and the initial IDs depend on: a restart with these settings reuses them
  (`setup_cache`). `id_assignment` enters only when it is not lowercase level-by-level (the
  settings before it existed), so the saved setups of earlier runs keep their key."""
  key = {"data_dir": run_data.absolute_data_dir(data_dir), **settings}
  if id_assignment != uniqueness.IdAssignment(keep_case=False):
    key["id_assignment"] = dataclasses.asdict(id_assignment)
  return key


def _initial_ids(initial_ids: str, data, data_dir: str, assigner, gen_params, tokenizer, *,
                 seed: int, rec_form: str, model_dir: str, cache_key: dict[str, Any],
                 keep_case: bool = False) -> tuple[list[str], list[str]]:
  """(item IDs, user IDs) of round 0; loaded from MODEL_DIR's `initial_ids.json` when this run
  wrote them before (`setup_cache`), with the assigner's stats."""
  cached = setup_cache.load_initial_ids(model_dir, cache_key)
  if cached is not None:
    if assigner is not None:   # as if it had written them: round 0's word check is done
      assigner.stats, assigner.first_items = cached["stats"], cached["stats"].get("first_items", {})
      assigner.check_words = False
    return cached["item_ids"], cached["user_ids"]
  if rec_form == "decoder_only" and initial_ids == "bootstrap":
    # The stream recommender reads item IDs only: no user IDs to generate.
    item_ids, user_ids = assigner.item_ids(gen_params), idgenrec.fixed_user_ids(data)
  else:
    item_ids, user_ids = idgenrec.initial_ids(initial_ids, data, data_dir, assigner=assigner,
                                              gen_params=gen_params, encode=tokenizer.encode,
                                              seed=seed, keep_case=keep_case)
  setup_cache.save_initial_ids(model_dir, item_ids, user_ids, assigner.stats if assigner else {},
                               cache_key)
  return item_ids, user_ids


def _tokenizer(model_dir: str, data, data_dir: str, vocab_path: Optional[str],
               dataset_vocab_size: int, *, initial_ids: str, item_texts: Sequence[str],
               keep_case: bool = False):
  """(tokenizer, vocab size); the model file is copied to MODEL_DIR.

  A dataset vocabulary also learns what the IDs of `initial_ids` are made of: the released
  reference IDs ('reference'), or the lowercase item text that title IDs and the generator's IDs
  are cut from ('title', 'bootstrap'; IDs are normalised to lowercase words, and a vocabulary of
  cased text alone spells 'neosporin' in 7 pieces where it has one for 'Neosporin'). With
  `keep_case` the IDs are cased item text, which the vocabulary learns anyway: no lowercase copy."""
  fixed = [id_tables.load_reference_ids(data_dir)] if initial_ids == "reference" and not vocab_path else []
  cut_from_text = initial_ids in ("title", "bootstrap") and not vocab_path and not keep_case
  lower = [t.lower() for t in item_texts] if cut_from_text else []
  tokenizer, vocab_size, spm_path = idgenrec.load_tokenizer(
      vocab_path, data, dataset_vocab_size=dataset_vocab_size, fixed_ids=fixed, extra_texts=lower)
  shutil.copyfile(spm_path, os.path.join(model_dir, RUN_VOCAB))
  return tokenizer, vocab_size


def _run_loop(ctx: alternating.Context, max_optimizer_steps: Optional[int]) -> dict[str, Any]:
  """Restores MODEL_DIR's newest good checkpoint, if any, and runs the rest of the schedule
  (stopping after a checkpoint on SIGINT / SIGTERM)."""
  loop = alternating.IdGenRecLoop(ctx)
  loop.maybe_restore()
  with stopping.stop_on_signals() as stop:
    return loop.run(max_optimizer_steps=max_optimizer_steps, stop=stop)


def _prompt_tasks(model_dir: str, data, templates, schedule: alternating.Schedule,
                  id_options: id_phase.IdPhaseOptions, lengths: dict[str, int], item_ids, user_ids
                  ) -> dict[str, str]:
  """Registers this run's whole-prompt SeqIO tasks (rec and ID phase) over `data` with the run's
  SentencePiece model; the loop points their ID tables at its current IDs each phase."""
  import seqio  # pylint: disable=g-import-not-at-top
  from llmrec_jax.data import prompt_token_tasks, task_builders  # pylint: disable=g-import-not-at-top
  from llmrec_jax.data.id_tables import IdTable  # pylint: disable=g-import-not-at-top
  provider = task_builders.IdProvider(IdTable("item", 0, dict(zip(data.item_ids, item_ids))),
                                      IdTable("user", 0, dict(zip(data.user_ids, user_ids))))
  free_running = id_options.generator_mode is id_phase.GeneratorMode.FREE_RUNNING_GREEDY
  name = "llmrec_run_" + hashlib.sha1(os.path.abspath(model_dir).encode()).hexdigest()[:12]
  return prompt_token_tasks.register_prompt_token_tasks(
      name, data, seqio.SentencePieceVocabulary(os.path.join(model_dir, RUN_VOCAB)), provider, templates,
      overwrite=True, max_his=schedule.max_his, input_len=lengths["input_len"], id_len=lengths["id_len"],
      target_len=lengths["target_len"], sample_num=schedule.sample_num, seed=schedule.seed,
      free_running_steps=id_options.free_running_steps if free_running else None, grow_lengths=True,
      truncation=schedule.truncation)


def _finish(model_dir: str, summary: dict[str, Any], writer, dataset: str, boot: dict,
            assigner) -> dict[str, Any]:
  """Adds the run's provenance to `summary`, writes results.json, closes the writer."""
  summary.update(dataset=dataset, bootstrap=boot, id_stats=assigner.stats if assigner else {},
                 model_dir=os.path.abspath(model_dir))
  with open(os.path.join(model_dir, "results.json"), "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=1)
  writer.close()
  return summary


def main(argv) -> None:
  del argv
  import gin  # pylint: disable=g-import-not-at-top
  from llmrec_jax import gin_utils  # pylint: disable=g-import-not-at-top
  gin_utils.setup_multihost_from_flags()
  # As t5x.train: wrap before parsing (gin files bind `train_script.train`, with
  # `import __main__ as train_script`); a locked config refuses new configurables.
  configured = gin.configurable(train)
  gin_utils.register_t5x_configs()  # `utils.DatasetConfig`, `utils.SaveCheckpointConfig`, ...
  gin_utils.parse_gin_flags()
  summary = configured(on_start=gin_utils.write_operative_config)
  if summary.get("stopped_by") in ("SIGINT", "SIGTERM"):
    signum = int(getattr(signal, summary["stopped_by"]))
    print(f"stopped by {summary['stopped_by']} at step {summary['stopped_at_step']}: a checkpoint is "
          f"saved in {summary['model_dir']}; run the same command again to resume", file=sys.stderr)
    sys.exit(128 + signum)
  best = summary.get("best") or {}
  print(json.dumps({"best_round": best.get("round"), "valid": best.get("valid"), "test": best.get("test")},
                   indent=1))


if __name__ == "__main__":
  from llmrec_jax import gin_utils as _gin_utils  # pylint: disable=g-import-not-at-top
  _gin_utils.run(main)
