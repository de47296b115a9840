"""The loop's prompt sources: through the run's SeqIO tasks the phase and evaluation batches equal
the piece-by-piece ones on the default templates, and each phase picks up the loop's current IDs
(regenerated or restored) without being told."""
import dataclasses
import math

import numpy as np
import pytest

from llmrec_jax.data import item_text, prompt_token_tasks, splits
from llmrec_jax.data import task_builders as tb
from llmrec_jax.evaluation import evaluator
from llmrec_jax.systems.idgenrec import alternating, id_phase, phase_batches, seqio_batches
from llmrec_jax.tasks import synthetic

NAME = "llmrec_synthetic"
LENGTHS = dict(input_len=160, target_len=16, text_len=32, id_len=16)


@pytest.fixture(scope="module")
def ctx():
  data = synthetic.DATA[NAME]
  sch = alternating.Schedule(max_his=10, sample_num=2, seed=3)
  provider = tb.IdProvider(synthetic.PROVIDERS[NAME].item, synthetic.PROVIDERS[NAME].user)
  tasks = prompt_token_tasks.register_prompt_token_tasks(
      "test_phase_batches", data, synthetic.VOCAB, provider, synthetic.TEMPLATES, overwrite=True,
      max_his=sch.max_his, sample_num=sch.sample_num, seed=sch.seed, grow_lengths=True,
      **{k: v for k, v in LENGTHS.items() if k != "text_len"})
  return alternating.Context(
      data=data, splits=splits.leave_one_out(data, max_his=sch.max_his),
      item_texts=[item_text.render_item_text(m) for m in data.item_meta],
      encode=synthetic.VOCAB.tokenizer.encode, templates=synthetic.TEMPLATES, rec_model=None, gen_model=None,
      rec_params=None, gen_params=None, item_ids=synthetic.PROVIDERS[NAME].item.for_ids(data.item_ids),
      user_ids=synthetic.PROVIDERS[NAME].user.for_ids(data.user_ids), assigner=None, schedule=sch,
      id_options=id_phase.IdPhaseOptions(), lengths=LENGTHS, eval_batch_size=16, exclude_seen=True,
      prompt_tasks=tasks)


def _equal(a, b):
  assert list(a) == list(b)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("for_id_phase", [False, True])
def test_task_batches_equal_piece_by_piece_ones_and_follow_new_ids(ctx, for_id_phase):
  plain = dataclasses.replace(ctx, prompt_tasks=None)
  order = lambda e: phase_batches.phase_order(ctx, 1, "id" if for_id_phase else "rec", e)
  n = len(order(0)[0])
  rotate = lambda t: " ".join(t.split()[1:] + t.split()[:1])
  for ids in (ctx.item_ids, [rotate(t) for t in ctx.item_ids]):   # e.g. after an ID phase
    c, p = dataclasses.replace(ctx, item_ids=ids), dataclasses.replace(plain, item_ids=ids)
    src = phase_batches.source(c, for_id_phase=for_id_phase)
    assert isinstance(src, seqio_batches.SeqioPromptBatches)
    reference = phase_batches.source(p, for_id_phase=for_id_phase)
    for start in (0, n - 5):   # the second batch spans two epochs
      rows = phase_batches.rows_at(order, start, 12)
      _equal(phase_batches.build(src, c, rows, id_batch=for_id_phase),
             phase_batches.build(reference, p, rows, id_batch=for_id_phase))


def test_evaluation_batches_and_item_tokens_equal_through_the_tasks(ctx):
  split = ctx.splits["valid"]
  examples = evaluator.HeldOut("valid", split, np.arange(37))
  tokens, batches = phase_batches.eval_source(ctx, "valid")
  ref_tokens, ref_batches = phase_batches.eval_source(dataclasses.replace(ctx, prompt_tasks=None), "valid")
  assert [tokens.tokens(i) for i in range(ctx.data.num_items)] == \
      [ref_tokens.tokens(i) for i in range(ctx.data.num_items)]
  got, want = list(batches(examples)), list(ref_batches(examples))
  assert len(got) == len(want) == 3 and "excluded_items" in got[0]
  for a, b in zip(got, want):
    _equal(a, b)


def test_unchanged_ids_keep_the_tasks_encoded_ids(ctx):
  """Every phase and evaluation re-points the task at the loop's IDs; when they did not change,
  the provider (and the snapshot of encoded IDs it versions) stays as it is."""
  provider = phase_batches.seqio_source(ctx).prep.provider
  version = provider.version
  phase_batches.seqio_source(ctx, "valid")
  phase_batches.seqio_source(ctx, for_id_phase=True)
  assert provider.version == version
  rotated = [" ".join(t.split()[1:] + t.split()[:1]) for t in ctx.item_ids]
  phase_batches.seqio_source(dataclasses.replace(ctx, item_ids=rotated))
  assert provider.version == version + 1 and provider.item.for_ids(ctx.data.item_ids) == rotated


def _official_sampler(epoch_orders, rank: int, replicas: int, batch_size: int):
  """Brute force of the official `DistMultiDataTaskSampler` (one task): per epoch the rank's rows
  [rank::R] of the epoch's order, ceil(ceil(n / R) / batch) batches, the iterator restarting
  at the epoch's first row when it runs out."""
  batches = []
  for order in epoch_orders:
    mine = order[rank::replicas]
    per_epoch = math.ceil(math.ceil(len(order) / replicas) / batch_size)
    it = iter(mine)
    for _ in range(per_epoch):
      batch = []
      for _ in range(batch_size):
        try:
          batch.append(next(it))
        except StopIteration:
          it = iter(mine)
          batch.append(next(it))
      batches.append(batch)
  return batches


@pytest.mark.parametrize("replicas,batch_size", [(4, 12), (3, 64), (4, 7)])
def test_replicas_train_replica_0_on_every_rth_row_as_the_official_sampler(ctx, replicas, batch_size):
  one = dataclasses.replace(ctx, schedule=dataclasses.replace(ctx.schedule, replicas=1))
  many = dataclasses.replace(ctx, schedule=dataclasses.replace(ctx.schedule, replicas=replicas))
  full = [phase_batches.phase_order(one, 0, "rec", e) for e in range(3)]
  for e in range(3):   # replica 0's epoch: every R-th row of the one-replica epoch order
    ex, tids = phase_batches.phase_order(many, 0, "rec", e)
    np.testing.assert_array_equal(ex, full[e][0][::replicas])
    np.testing.assert_array_equal(tids, full[e][1][::replicas])
  n = len(full[0][0])
  order = lambda e: phase_batches.phase_order(many, 0, "rec", e)
  want = _official_sampler([list(zip(*f)) for f in full], 0, replicas, batch_size)
  per_epoch = len(want) // 3
  assert phase_batches.phase_steps(n, 3, batch_size, replicas) == len(want)
  assert phase_batches.phase_steps(n, 1.0, batch_size, replicas) == per_epoch
  assert phase_batches.phase_steps(n, 0.5, batch_size, replicas) == -(-per_epoch // 2)
  for step, batch in enumerate(want):
    ex, tids = phase_batches.batch_rows(order, step, batch_size, replicas)
    assert list(zip(ex.tolist(), tids.tolist())) == [tuple(map(int, r)) for r in batch], step
  # one replica: one row stream (ceil(n * epochs / batch) steps), unchanged
  assert phase_batches.phase_steps(n, 3, batch_size) == -(-3 * n // batch_size)
  ex1, _ = phase_batches.batch_rows(lambda e: phase_batches.phase_order(one, 0, "rec", e), 1, batch_size)
  np.testing.assert_array_equal(ex1, full[0][0][batch_size:2 * batch_size])


@pytest.mark.parametrize("tasks", [True, False])
def test_id_phase_reads_the_initial_ids_when_asked(ctx, tasks):
  """After new IDs, with id_phase_ids 'initial' the ID-phase batches equal those of the run's
  initial IDs (rec batches follow the new ones); with 'current' both follow the new IDs."""
  base = ctx if tasks else dataclasses.replace(ctx, prompt_tasks=None)
  rotate = lambda t: " ".join(t.split()[1:] + t.split()[:1])
  new_items, new_users = [rotate(t) for t in base.item_ids], [rotate(t) for t in base.user_ids]
  rows = phase_batches.rows_at(lambda e: phase_batches.phase_order(base, 0, "id", e), 5, 8)

  def batch(c, id_batch):
    return phase_batches.build(phase_batches.source(c, for_id_phase=id_batch), c, rows, id_batch=id_batch)
  fresh = dataclasses.replace(base, item_ids=new_items, user_ids=new_users, initial_item_ids=None,
                              initial_user_ids=None)   # a run that started with the new IDs
  assert not np.array_equal(batch(base, True)["decoder_target_tokens"],
                            batch(fresh, True)["decoder_target_tokens"])
  for mode in ("initial", "current"):
    c = dataclasses.replace(base, schedule=dataclasses.replace(base.schedule, id_phase_ids=mode))
    after = c.with_ids(new_items, new_users)   # e.g. an ID phase's regeneration
    assert after.initial_item_ids == base.item_ids and after.initial_user_ids == base.user_ids
    _equal(batch(after, True), batch(base if mode == "initial" else fresh, True))
    _equal(batch(after, False), batch(fresh, False))


@pytest.mark.parametrize("rules", ["FIXED_STEPS", "HF426"])
def test_hf426_id_batches_carry_the_history_items_the_stop_step_reads(ctx, rules):
  """The HF426 free-running loss reads `history_items` (which rows the official collator holds):
  its ID batches keep them, every other batch drops them."""
  c = dataclasses.replace(ctx, prompt_tasks=None, id_options=id_phase.IdPhaseOptions(
      generator_mode="FREE_RUNNING_GREEDY", free_running_rules=rules))
  rows = phase_batches.rows_at(lambda e: phase_batches.phase_order(c, 1, "id", e), 0, 8)
  b = phase_batches.build(phase_batches.source(c, for_id_phase=True), c, rows, id_batch=True)
  assert ("history_items" in b) == (rules == "HF426")
  assert "history_items" not in phase_batches.build(phase_batches.source(c), c, rows, id_batch=False)
  if rules == "HF426":
    split = c.splits["train"]
    for r, ex in enumerate(rows[0]):
      kept = [int(i) for i in b["history_items"][r] if i >= 0]
      assert kept and kept == [int(i) for i in split.history[ex]][-len(kept):], r
