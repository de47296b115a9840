"""The loop's prompt sources: through the run's SeqIO tasks the phase and evaluation batches equal
the piece-by-piece ones on the default templates, and each phase picks up the loop's current IDs
(regenerated or restored) without being told."""
import dataclasses

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
