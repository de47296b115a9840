"""The batches of IDGenRec's phases: which rows, in which order, rendered how.

Rows: `phase_order` draws (example index, template index) per training row of one epoch of a
phase; `batch_rows` gives the rows of any step of the phase, so a resumed phase continues with
the very batch an uninterrupted one would have built. With `Schedule.replicas` 1 the phase reads
one row stream, epoch after epoch (`rows_at`); with R > 1 (replica 0 of the official run's R
data-parallel replicas) each epoch is rows [0::R] of the epoch's order in ceil(rows / batch)
batches, the last one wrapping around to the epoch's start (the official sampler).

IDs: the prompts read the loop's current IDs, but the ID phase reads the run's initial IDs with
`Schedule.id_phase_ids='initial'` (the official ID-phase loader is never rebuilt): `phase_ids`.

Rendering: with `Context.prompt_tasks` (what `llmrec_jax.train` registers: the whole-prompt SeqIO
tasks of `data/prompt_token_tasks.py`) every prompt comes from the task's preprocessor, rendered
from the current ID tables and tokenized whole once; its ID-phase soft slots sit on those same
tokens (`seqio_batches.SeqioPromptBatches`). Without tasks (a tokenizer that is not SentencePiece,
as some tests use) `prompt_batches.PromptBatcher` renders them piece by piece; on templates with
spaces around the history (`llmrec_default`) both give the same arrays
(tests/systems/idgenrec/seqio_batches_test.py).
"""
from __future__ import annotations

import functools
import math
from typing import Any, Optional, Sequence

import jax
import numpy as np

from llmrec_jax.data import prompts
from llmrec_jax.systems.idgenrec import id_phase, prompt_batches, seqio_batches

Source = Any  # prompt_batches.PromptBatcher | seqio_batches.SeqioPromptBatches


def phase_order(ctx, rnd: int, phase: str, epoch: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """(example index, template index) per training row of one epoch of a phase, shuffled per
  (seed, round, phase) and drawn anew for every later epoch (seed, round, phase, epoch)."""
  split = ctx.splits["train"]
  e, s = split.num_examples, ctx.schedule.sample_num
  tids = prompts.sample_template_ids(e, len(ctx.templates.train), s, ctx.schedule.seed + 1000 * rnd)
  ex = np.repeat(np.arange(e), s)
  key = [ctx.schedule.seed, rnd, phase == "id"] + ([epoch] if epoch else [])
  perm = np.random.default_rng(key).permutation(e * s)
  r = ctx.schedule.replicas
  if r > 1:  # replica 0's share of the epoch
    perm = perm[::r]
  return ex[perm], tids.reshape(-1)[perm]


def phase_steps(num_rows: int, epochs: float, batch_size: int, replicas: int = 1) -> int:
  """Optimizer steps of `epochs` over an epoch of `num_rows` rows (all replicas' rows): one row
  stream, ceil(num_rows * epochs / batch_size), with one replica; with R replicas
  ceil(ceil(num_rows / R) / batch_size) batches per epoch (replica 0's), times `epochs`."""
  if replicas == 1:
    return max(1, math.ceil(num_rows * epochs / batch_size))
  return max(1, math.ceil(math.ceil(-(-num_rows // replicas) / batch_size) * epochs))


def batch_rows(order_of_epoch, step: int, batch_size: int, replicas: int = 1
               ) -> tuple[np.ndarray, np.ndarray]:
  """(example, template) rows of batch `step` of a phase whose epochs are `order_of_epoch(e)`
  (module docstring: one stream with one replica, else per-epoch batches that wrap around)."""
  if replicas == 1:
    return rows_at(order_of_epoch, step * batch_size, batch_size)
  n = len(order_of_epoch(0)[0])
  epoch, j = divmod(step, -(-n // batch_size))
  ex, tids = order_of_epoch(epoch)
  pos = (j * batch_size + np.arange(batch_size)) % n
  return ex[pos].astype(np.int64), tids[pos].astype(np.int64)


def rows_at(order_of_epoch, start: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Rows [start, start + batch_size) of the phase's row stream: epoch after epoch, each in its
  own order (a batch may span two epochs)."""
  n = len(order_of_epoch(0)[0])
  pos = start + np.arange(batch_size)
  ex, tids = np.empty(batch_size, np.int64), np.empty(batch_size, np.int64)
  for epoch in np.unique(pos // n):
    here = pos // n == epoch
    order = order_of_epoch(int(epoch))
    ex[here], tids[here] = order[0][pos[here] % n], order[1][pos[here] % n]
  return ex, tids


def _free_running(ctx, for_id_phase: bool) -> bool:
  return for_id_phase and ctx.id_options.generator_mode is id_phase.GeneratorMode.FREE_RUNNING_GREEDY


def prompt_batcher(ctx, *, for_id_phase: bool = False) -> prompt_batches.PromptBatcher:
  """The piece-by-piece renderer over the current IDs. Rec-phase prompts hold `max_his` items;
  ID-phase prompts `max_his // 2` (the official split)."""
  lengths = ctx.lengths
  return prompt_batches.PromptBatcher(
      ctx.encode, ctx.item_texts, ctx.item_ids, ctx.templates.train,
      num_history=ctx.schedule.max_his // 2 if for_id_phase else ctx.schedule.max_his,
      text_len=lengths["text_len"], id_len=lengths["id_len"], input_len=lengths["input_len"],
      target_len=lengths["target_len"],
      free_running_steps=ctx.id_options.free_running_steps if _free_running(ctx, for_id_phase) else None,
      # IDs may outgrow id_len / target_len: generated ones (the escalation lengthens IDs that
      # collide) and title IDs (up to 29 T5 tokens on Beauty); both lengths then grow (logged).
      grow_lengths=True, truncation=ctx.schedule.truncation)


def seqio_source(ctx, split_name: str = "train", *, for_id_phase: bool = False
                 ) -> seqio_batches.SeqioPromptBatches:
  """The registered task's batches over `ctx.splits[split_name]`, its ID tables first set to the
  loop's current IDs (new after an ID phase or a restore)."""
  task = ctx.prompt_tasks["id" if for_id_phase else "rec"]
  source = seqio_batches.SeqioPromptBatches(task, ctx.splits[split_name], item_texts=ctx.item_texts,
                                            text_len=ctx.lengths["text_len"])
  if source.prep.spec.truncation != ctx.schedule.truncation:
    raise ValueError(f"task {task!r} truncates {source.prep.spec.truncation.value!r}, the schedule "
                     f"{ctx.schedule.truncation.value!r}: register it with the schedule's truncation")
  seqio_batches.set_provider_ids(source.prep.provider, ctx.data, ctx.item_ids, ctx.user_ids)
  return source


def _reads_initial_ids(ctx, for_id_phase: bool) -> bool:
  return for_id_phase and ctx.schedule.id_phase_ids == "initial"


def phase_ids(ctx, *, for_id_phase: bool = False):
  """`ctx` with the IDs a phase's prompts read: the initial ones in an ID phase with
  `Schedule.id_phase_ids='initial'`, else the current ones (`ctx` itself)."""
  if _reads_initial_ids(ctx, for_id_phase):
    return ctx.with_ids(ctx.initial_item_ids, ctx.initial_user_ids)
  return ctx


def source(ctx, *, for_id_phase: bool = False) -> Source:
  """The training prompts' source, on the phase's IDs (`phase_ids`): the SeqIO tasks when the run
  registered them."""
  ctx = phase_ids(ctx, for_id_phase=for_id_phase)
  if ctx.prompt_tasks:
    return seqio_source(ctx, for_id_phase=for_id_phase)
  return prompt_batcher(ctx, for_id_phase=for_id_phase)


def build(src: Source, ctx, rows: tuple[np.ndarray, np.ndarray], *, id_batch: bool) -> dict[str, Any]:
  """The batch of `rows` (example, template) of the train split, sharded when the loop is (user
  IDs as `source`'s: `phase_ids`)."""
  split = ctx.splits["train"]
  ex, tids = rows
  part = ctx.partitioner
  if part is not None and jax.process_count() > 1:
    # Multi-host: every host renders only its slice of the global batch.
    layout = part.get_data_layout(len(ex))
    per_host = layout.per_host_batch_size
    ex, tids = (a[layout.shard_id * per_host:(layout.shard_id + 1) * per_host] for a in (ex, tids))
  fn = src.build if id_batch else src.rec_batch
  if isinstance(src, seqio_batches.SeqioPromptBatches):
    b = fn(ex, tids)
  else:
    user_ids = phase_ids(ctx, for_id_phase=id_batch).user_ids
    b = fn([user_ids[u] for u in split.user[ex]], [split.history[i] for i in ex], split.target[ex], tids)
  if not (id_batch and _needs_history_items(ctx)):
    b.pop("history_items")
  return b if part is None else part.shard_batch(b)


def _needs_history_items(ctx) -> bool:
  """The HF426 free-running ID phase stops at the step the batch's last official row finished:
  it reads which history rows the prompts hold (`id_phase.official_rows`)."""
  return (_free_running(ctx, True)
          and ctx.id_options.free_running_rules is id_phase.FreeRunningRules.HF426)


def eval_source(ctx, split_name: str):
  """(item-token table, batches(examples) -> evaluation batches) of the current IDs on a split:
  template 0, fixed-size batches, `excluded_items` with `ctx.exclude_seen`."""
  exclude_of = ctx.data.sequences if ctx.exclude_seen else None
  if not ctx.prompt_tasks:
    batcher = prompt_batcher(ctx)
    return batcher.item_tokens, functools.partial(batcher.held_out_batches, user_ids=ctx.user_ids,
                                                  batch_size=ctx.eval_batch_size, exclude_seen_of=exclude_of)
  src = seqio_source(ctx, split_name)
  return (src.prep.snapshot().item_tokens,
          functools.partial(_seqio_eval_batches, src, batch_size=ctx.eval_batch_size, exclude_seen_of=exclude_of))


def _seqio_eval_batches(src: seqio_batches.SeqioPromptBatches, examples, *, batch_size: int,
                        exclude_seen_of: Optional[Sequence[np.ndarray]]):
  """As `PromptBatcher.held_out_batches`, through the task: the rows of an `evaluator.HeldOut`
  in order, the last batch wrapping around."""
  rows = np.asarray(examples.rows)
  for start in range(0, len(rows), batch_size):
    idx = rows[np.arange(start, start + batch_size) % len(rows)]
    b = src.rec_batch(idx, np.zeros(batch_size, np.int32))
    b.pop("history_items")
    if exclude_seen_of is not None:
      b["excluded_items"] = prompt_batches.seen_items(exclude_seen_of, examples.split.user[idx],
                                                      split=examples.name)
    yield b
