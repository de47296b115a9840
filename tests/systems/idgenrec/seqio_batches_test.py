"""Batches from the registered whole-prompt SeqIO tasks equal PromptBatcher's, array by array, on
templates that put spaces around the history; elsewhere the slots still sit on the ID tokens."""
import numpy as np
import pytest

from llmrec_jax.data import item_text, prompt_token_tasks, splits  # noqa: E402
from llmrec_jax.data import task_builders as tb  # noqa: E402
from llmrec_jax.data.prompts import Template, TemplateSet  # noqa: E402
from llmrec_jax.systems.idgenrec import prompt_batches, seqio_batches  # noqa: E402
from llmrec_jax.tasks import synthetic  # noqa: E402

NAME, MAX_HIS, B = "llmrec_synthetic", 20, 64


@pytest.fixture(scope="module")
def parts():
  data = synthetic.DATA[NAME]
  split = splits.leave_one_out(data, MAX_HIS)["train"]
  texts = [item_text.render_item_text(m) for m in data.item_meta]
  rng = np.random.default_rng(0)
  rows = [(rng.permutation(split.num_examples)[:B], rng.integers(0, 10, B)) for _ in range(3)]
  return data, split, texts, rows


def _reference(parts, provider, kind, templates=synthetic.TEMPLATES.train, **kw):
  """PromptBatcher on the provider's current IDs (the loop's `_batcher` settings)."""
  data, _, texts, _ = parts
  spec = prompt_token_tasks.PromptTokenSpec(templates=synthetic.TEMPLATES)  # the task defaults
  return prompt_batches.PromptBatcher(
      synthetic.VOCAB.tokenizer.encode, texts, provider.item.for_ids(data.item_ids), templates,
      num_history=MAX_HIS if kind == "rec" else MAX_HIS // 2, text_len=64, id_len=spec.id_len,
      input_len=spec.input_len, target_len=spec.target_len, grow_lengths=True, **kw)


def _reference_batch(parts, provider, batcher, kind, ex, tids):
  data, split, _, _ = parts
  users = provider.user.for_ids([data.user_ids[u] for u in split.user[ex]])
  fn = batcher.rec_batch if kind == "rec" else batcher.build
  return fn(users, [split.history[i] for i in ex], split.target[ex], tids)


def _assert_equal(got, want):
  assert list(got) == list(want)
  for k in want:
    assert got[k].dtype == want[k].dtype, k
    np.testing.assert_array_equal(got[k], want[k], err_msg=k)


@pytest.mark.parametrize("kind", ["rec", "id"])
def test_batches_equal_prompt_batcher_before_and_after_new_ids(parts, kind):
  data, split, texts, rows = parts
  provider = synthetic.PROVIDERS[NAME]
  ours = seqio_batches.SeqioPromptBatches(f"{NAME}_{kind}_tokens", split, item_texts=texts, text_len=64)
  build = ours.rec_batch if kind == "rec" else ours.build
  old_items, old_users = provider.item, provider.user
  rotate = lambda t: " ".join(t.split()[1:] + t.split()[:1])
  try:
    for phase in range(2):
      if phase:  # the IDs change between phases
        seqio_batches.set_provider_ids(provider, data, [rotate(t) for t in old_items.for_ids(data.item_ids)],
                                       old_users.for_ids(data.user_ids), phase=1)
      reference = _reference(parts, provider, kind)
      for ex, tids in rows:
        _assert_equal(build(ex, tids), _reference_batch(parts, provider, reference, kind, ex, tids))
      # 20 title IDs overflow input_len=256: the rec phase exercises truncation (10 fit)
      assert (reference.truncated_histories > 0) == (kind == "rec")
  finally:
    provider.set(item=old_items, user=old_users)
  assert ours.prep.misaligned == 0


def test_free_running_id_batches_equal_prompt_batcher(parts):
  data, split, texts, rows = parts
  provider = tb.IdProvider(synthetic.PROVIDERS[NAME].item, synthetic.PROVIDERS[NAME].user)
  names = prompt_token_tasks.register_prompt_token_tasks(
      "test_seqio_batches_free", data, synthetic.VOCAB, provider, synthetic.TEMPLATES, overwrite=True,
      grow_lengths=True, free_running_steps=5)
  ours = seqio_batches.SeqioPromptBatches(names["id"], split, item_texts=texts, text_len=64)
  reference = _reference(parts, provider, "id", free_running_steps=5)
  for ex, tids in rows[:2]:
    _assert_equal(ours.build(ex, tids), _reference_batch(parts, provider, reference, "id", ex, tids))


def test_glued_punctuation_moves_tokens_but_slots_stay_on_the_id_tokens(parts):
  data, split, texts, rows = parts
  glued = TemplateSet("glued", (Template("user {user_id} bought {history}, predict the next item .",
                                         "{target}"),))
  provider = tb.IdProvider(synthetic.PROVIDERS[NAME].item, synthetic.PROVIDERS[NAME].user)
  names = prompt_token_tasks.register_prompt_token_tasks(
      "test_seqio_batches_glued", data, synthetic.VOCAB, provider, glued, overwrite=True, grow_lengths=True,
      max_his=MAX_HIS, input_len=1024)
  ex, _ = rows[0]
  tids = np.zeros(B, np.int64)
  ours = seqio_batches.SeqioPromptBatches(names["id"], split, item_texts=texts, text_len=64)
  got = ours.build(ex, tids)
  reference = _reference(parts, provider, "id", templates=glued.train)
  reference.input_len = 1024
  want = _reference_batch(parts, provider, reference, "id", ex, tids)
  # "▁," tokenized alone, "," glued to the last ID in the whole prompt: one token fewer per row
  np.testing.assert_array_equal((got["encoder_input_tokens"] > 0).sum(1),
                                (want["encoder_input_tokens"] > 0).sum(1) - 1)
  np.testing.assert_array_equal(got["history_items"], want["history_items"])
  assert ours.prep.misaligned == 0
  # every ID token of every kept item sits at its slot h * C + t, and nothing else is slotted
  h_len = got["history_items"].shape[1]
  c = got["item_id_targets"].shape[1]
  for b in range(B):
    slot_S, tok_S = got["soft_slot"][b], got["encoder_input_tokens"][b]
    for h, item in enumerate(got["history_items"][b]):
      n = (got["item_id_targets"][b * h_len + h] > 1).sum() if item >= 0 else 0
      at = [int(np.flatnonzero(slot_S == h * c + t)[0]) for t in range(n)]
      assert at == list(range(at[0], at[0] + n)) if n else not at  # contiguous
      np.testing.assert_array_equal(tok_S[at], got["item_id_targets"][b * h_len + h][:n])
    assert (slot_S >= 0).sum() == (got["item_id_targets"].reshape(B, h_len, c)[b] > 1).sum()


@pytest.mark.parametrize("kind,free_running_steps", [("rec", None), ("id", None), ("id", 5)])
def test_right_truncated_batches_equal_prompt_batcher_and_slot_only_kept_items(parts, kind,
                                                                              free_running_steps):
  """With truncation 'right' (input_len cuts the prompts inside the history) both sources give
  the same arrays, and every soft slot names a kept item (`history_items`), each kept item's
  slots starting at t = 0."""
  data, split, texts, rows = parts
  provider = tb.IdProvider(synthetic.PROVIDERS[NAME].item, synthetic.PROVIDERS[NAME].user)
  names = prompt_token_tasks.register_prompt_token_tasks(
      "test_seqio_batches_right", data, synthetic.VOCAB, provider, synthetic.TEMPLATES, overwrite=True,
      grow_lengths=True, max_his=MAX_HIS, input_len=96, truncation="right",
      free_running_steps=free_running_steps)
  ours = seqio_batches.SeqioPromptBatches(names[kind], split, item_texts=texts, text_len=64)
  reference = _reference(parts, provider, kind, free_running_steps=free_running_steps,
                         truncation="right")
  reference.input_len = 96
  for ex, tids in rows[:2]:
    got = (ours.rec_batch if kind == "rec" else ours.build)(ex, tids)
    _assert_equal(got, _reference_batch(parts, provider, reference, kind, ex, tids))
    assert got["encoder_input_tokens"].shape[1] == 96
    if kind == "id":
      c, hist_BxH = free_running_steps or got["item_id_targets"].shape[1], got["history_items"]
      slot_BxS = got["soft_slot"]
      for b in range(B):
        items = {s // c for s in slot_BxS[b] if s >= 0}
        assert items == set(np.flatnonzero(hist_BxH[b] >= 0).tolist())
        assert all(s % c == 0 for s in slot_BxS[b] if s >= 0 and s - 1 not in slot_BxS[b])
  assert reference.truncated_histories > 0
