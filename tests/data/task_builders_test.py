"""SeqIO tasks on tiny synthetic data: round trips, counts, ID swaps, ID-phase rows, passthrough, mixtures."""
import numpy as np
import pytest

import seqio

from llmrec_jax.data import task_builders as tb  # noqa: E402
from llmrec_jax.data import vocab as vocab_lib  # noqa: E402
from llmrec_jax.data.id_tables import IdTable  # noqa: E402
from llmrec_jax.data.item_text import render_item_text  # noqa: E402
from llmrec_jax.data.prompts import get_template_set, render_prompt, sample_template_ids  # noqa: E402
from llmrec_jax.data.splits import leave_one_out  # noqa: E402
from llmrec_jax.data.synthetic import make_synthetic  # noqa: E402

LENGTHS = {"inputs": 512, "targets": 64}
SAMPLE_NUM, MAX_HIS, SEED = 3, 6, 7


def _str(x):
  return x.decode() if isinstance(x, bytes) else str(x)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  templates = get_template_set("llmrec_default")
  datasets, providers = [], []
  for seed in (0, 1):
    data = make_synthetic(num_users=7, num_items=30, seed=seed, num_topics=3, min_len=5, max_len=9)
    item, user = tb.title_id_tables(data)
    datasets.append(data)
    providers.append(tb.IdProvider(item=item, user=user))
  texts = [t.input for t in templates.train + templates.unseen] + ["{target}"]
  vocab = vocab_lib.get_vocabulary(
      data=datasets[0], id_tables=[providers[0].item, providers[0].user, providers[1].item, providers[1].user],
      extra_texts=texts + [render_item_text(m) for m in datasets[1].item_meta],
      cache_dir=tmp_path_factory.mktemp("spm"), vocab_size=400)
  names = []
  for k, (data, provider) in enumerate(zip(datasets, providers)):
    names.append(tb.register_idgenrec_tasks(f"test_synth{k}", data, vocab, provider, templates,
                                            sample_num=SAMPLE_NUM, max_his=MAX_HIS, seed=SEED, overwrite=True))
  return dict(templates=templates, datasets=datasets, providers=providers, vocab=vocab, names=names)


def _expected(data, provider, templates, split, kind):
  """The rows built by hand from leave_one_out + render_prompt, in the task's order."""
  loo = leave_one_out(data, MAX_HIS)[tb.SPLITS[split]]
  item_tid = [provider.item[r] for r in data.item_ids]
  user_tid = [provider.user[r] for r in data.user_ids]
  if split == "train":
    tmpl, ids = templates.train, sample_template_ids(loo.num_examples, len(templates.train), SAMPLE_NUM, SEED)
  else:
    tmpl = templates.unseen if kind == "unseen" else templates.train
    ids = np.zeros((loo.num_examples, 1), np.int32)
  rows = []
  for e in range(loo.num_examples):
    hist = loo.history[e].tolist()
    if kind == "id":
      history = [render_item_text(data.item_meta[i]) for i in hist[-(MAX_HIS // 2):]]
    else:
      history = [item_tid[i] for i in hist]
    for t in ids[e]:
      x, y = render_prompt(tmpl[t], user_id=user_tid[loo.user[e]], history=history, target=item_tid[loo.target[e]])
      rows.append((x, y, int(loo.user[e]), int(loo.target[e]), hist))
  return rows


def _task_rows(name, split):
  task = seqio.get_mixture_or_task(name)
  return list(task.get_dataset(LENGTHS, split=split, shuffle=False).as_numpy_iterator())


@pytest.mark.parametrize("kind", ["rec", "unseen", "id"])
@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_round_trip_and_counts(setup, kind, split):
  data, provider, vocab = setup["datasets"][0], setup["providers"][0], setup["vocab"]
  expected = _expected(data, provider, setup["templates"], split, kind)
  rows = _task_rows(setup["names"][0][kind], split)
  loo = leave_one_out(data, MAX_HIS)[tb.SPLITS[split]]
  assert len(rows) == len(expected) == loo.num_examples * (SAMPLE_NUM if split == "train" else 1)
  for row, (x, y, user, target, hist) in zip(rows, expected):
    assert _str(row["inputs_pretokenized"]) == x and _str(row["targets_pretokenized"]) == y
    assert row["inputs"][-1] == vocab.eos_id and row["targets"][-1] == vocab.eos_id
    assert vocab.decode(row["inputs"].tolist()) == x          # tokens decode back to the prompt
    assert vocab.decode(row["targets"].tolist()) == y         # ... and to the target's textual ID
    assert (row["user_index"], row["target_index"]) == (user, target)
    if kind == "id":
      h = row["history_indices"]
      kept = hist[-(MAX_HIS // 2):]
      pad = len(h) - len(kept)
      assert h.shape == (MAX_HIS // 2,) and h[pad:].tolist() == kept and np.all(h[:pad] == -1)
  if kind == "unseen" and split != "train":
    assert setup["templates"].unseen[0].input.split("{")[0] in _str(rows[0]["inputs_pretokenized"])


def test_train_templates_are_sampled_and_seeded(setup):
  rows = _task_rows(setup["names"][0]["rec"], "train")
  ids = np.array([r["template_id"] for r in rows])
  assert len(set(ids.tolist())) > 1                                            # not all template 0
  again = np.array([r["template_id"] for r in _task_rows(setup["names"][0]["rec"], "train")])
  np.testing.assert_array_equal(ids, again)                                    # same seed, same draw


def test_swapping_id_table_changes_next_dataset(setup):
  data, provider = setup["datasets"][0], setup["providers"][0]
  task = seqio.get_mixture_or_task(setup["names"][0]["rec"])
  before_ds = task.get_dataset(LENGTHS, split="test", shuffle=False)
  old_item = provider.item
  new_item = IdTable(kind="item", phase=1, ids={raw: f"{tid} phase one" for raw, tid in old_item.ids.items()})
  try:
    provider.set(item=new_item)
    after = list(task.get_dataset(LENGTHS, split="test", shuffle=False).as_numpy_iterator())
    for row in after:
      assert _str(row["targets_pretokenized"]) == new_item[data.item_ids[row["target_index"]]]
      assert "phase one" in _str(row["inputs_pretokenized"])                   # history IDs too
    before = list(before_ds.as_numpy_iterator())                               # built earlier: unchanged
    assert all(_str(r["targets_pretokenized"]) == old_item[data.item_ids[r["target_index"]]] for r in before)
  finally:
    provider.set(item=old_item)


def test_provider_rejects_wrong_kind_and_duplicate_ids(setup):
  provider = setup["providers"][0]
  with pytest.raises(ValueError, match="item table"):
    provider.set(item=provider.user)
  dup = IdTable(kind="item", phase=1, ids={"a": "same id", "b": "same id"})
  with pytest.raises(ValueError, match="shared"):
    provider.set(item=dup)


@pytest.mark.parametrize("kind", ["rec", "id"])
def test_passthrough_converter_keeps_indices_in_order(setup, kind):
  task = seqio.get_mixture_or_task(setup["names"][0][kind])
  converter = tb.passthrough_converter(kind, num_his=MAX_HIS // 2)
  ds = seqio.get_dataset(task.name, LENGTHS, converter, dataset_split="test", shuffle=False)
  raw = _task_rows(task.name, "test")
  batches = list(ds.batch(4).as_numpy_iterator())   # seqio's own batching drops the remainder
  got = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
  assert got["user_index"].shape == (len(raw),)
  assert got["user_index"].tolist() == [r["user_index"] for r in raw]
  assert got["target_index"].tolist() == [r["target_index"] for r in raw]
  first = raw[0]["inputs"]
  assert got["encoder_input_tokens"][0][:len(first)].tolist() == first.tolist()
  if kind == "id":
    np.testing.assert_array_equal(got["history_indices"], np.stack([r["history_indices"] for r in raw]))


def test_mixture_yields_examples_of_both_datasets(setup):
  names = [n["rec"] for n in setup["names"]]
  tb.register_mixture("test_synth_mix", names, rates=[1.0, 1.0], overwrite=True)
  rows = list(seqio.get_mixture_or_task("test_synth_mix").get_dataset(
      LENGTHS, split="train", shuffle=True, seed=0, num_epochs=1).take(80).as_numpy_iterator())
  inputs = {setup["vocab"].decode(r["inputs"].tolist()) for r in rows}  # round trip shown above
  per_dataset = []
  for data, provider in zip(setup["datasets"], setup["providers"]):
    per_dataset.append({x for x, *_ in _expected(data, provider, setup["templates"], "train", "rec")})
  assert per_dataset[0].isdisjoint(per_dataset[1])
  assert inputs & per_dataset[0] and inputs & per_dataset[1]
  assert inputs <= per_dataset[0] | per_dataset[1]
  assert set(rows[0]) == {"inputs", "targets"}  # Mixtures keep only the output features


def test_seqio_evaluator_top_k_predictions_give_hand_computed_metrics(setup):
  """t5x-style eval: passthrough target_index -> an oracle ranks the target at position b % 10."""
  name, vocab = setup["names"][0]["rec"], setup["vocab"]
  data, provider = setup["datasets"][0], setup["providers"][0]
  all_ids = [provider.item[r] for r in data.item_ids]

  def encode(text, length=64):
    ids = vocab.encode(text)[:length - 1] + [vocab.eos_id]
    return ids + [0] * (length - len(ids))

  def predict_fn(ds):
    out = []
    for idx, ex in ds.as_numpy_iterator():
      target = all_ids[int(ex["target_index"])]
      decoys = [t for t in all_ids if t != target][:9]
      beams = decoys[:idx % 10] + [target] + decoys[idx % 10:]
      out.append((idx, np.array([encode(b) for b in beams], np.int32)))  # [K=10, L], best first
    return out

  evaluator = seqio.Evaluator(name, feature_converter=tb.passthrough_converter(), eval_split="test",
                              sequence_length=LENGTHS)
  metrics, _ = evaluator.evaluate(compute_metrics=True, predict_fn=predict_fn)
  got = metrics.result()[name]
  ranks = np.arange(data.num_users) % 10
  for k in (5, 10):
    assert got[f"hit@{k}"] == pytest.approx(np.mean(ranks < k))
    assert got[f"ndcg@{k}"] == pytest.approx(np.mean(np.where(ranks < k, 1 / np.log2(ranks + 2), 0)))


def test_id_phase_provider_can_stay_on_phase_zero(setup):
  data, provider = setup["datasets"][0], setup["providers"][0]
  live = tb.IdProvider(item=provider.item, user=provider.user)
  frozen = tb.IdProvider(item=provider.item, user=provider.user)   # never set: the official quirk
  names = tb.register_idgenrec_tasks("test_synth_frozen", data, setup["vocab"], live, setup["templates"],
                                     sample_num=1, max_his=MAX_HIS, overwrite=True, id_phase_provider=frozen)
  live.set(item=IdTable(kind="item", phase=1, ids={r: f"new {t}" for r, t in provider.item.ids.items()}))
  rec = {_str(r["targets_pretokenized"]) for r in _task_rows(names["rec"], "test")}
  idp = {_str(r["targets_pretokenized"]) for r in _task_rows(names["id"], "test")}
  assert all(t.startswith("new ") for t in rec)
  assert idp <= set(provider.item.ids.values())
