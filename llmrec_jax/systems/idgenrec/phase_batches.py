"""The batches of IDGenRec's phases: which rows, in which order, rendered how.

Rows: `phase_order` draws (example index, template index) per training row of one epoch of a
phase; `rows_at` reads any window of the phase's row stream (epoch after epoch), so a resumed
phase continues with the very batch an uninterrupted one would have built.

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
  return ex[perm], tids.reshape(-1)[perm]


def rows_at(order_of_epoch, start: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Rows [start, start + batch_size) of the phase's row stream: epoch after epoch, each in its
  own order (a batch may span two epochs, as the official sampler's does)."""
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
      grow_lengths=True)


def seqio_source(ctx, split_name: str = "train", *, for_id_phase: bool = False
                 ) -> seqio_batches.SeqioPromptBatches:
  """The registered task's batches over `ctx.splits[split_name]`, its ID tables first set to the
  loop's current IDs (new after an ID phase or a restore)."""
  task = ctx.prompt_tasks["id" if for_id_phase else "rec"]
  source = seqio_batches.SeqioPromptBatches(task, ctx.splits[split_name], item_texts=ctx.item_texts,
                                            text_len=ctx.lengths["text_len"])
  seqio_batches.set_provider_ids(source.prep.provider, ctx.data, ctx.item_ids, ctx.user_ids)
  return source


def source(ctx, *, for_id_phase: bool = False) -> Source:
  """The training prompts' source: the SeqIO tasks when the run registered them."""
  if ctx.prompt_tasks:
    return seqio_source(ctx, for_id_phase=for_id_phase)
  return prompt_batcher(ctx, for_id_phase=for_id_phase)


def build(src: Source, ctx, rows: tuple[np.ndarray, np.ndarray], *, id_batch: bool) -> dict[str, Any]:
  """The batch of `rows` (example, template) of the train split, sharded when the loop is."""
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
    b = fn([ctx.user_ids[u] for u in split.user[ex]], [split.history[i] for i in ex], split.target[ex], tids)
  b.pop("history_items")
  return b if part is None else part.shard_batch(b)


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
