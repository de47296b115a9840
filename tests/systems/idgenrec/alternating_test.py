"""The IDGenRec loop on a tiny synthetic catalogue: phases run, IDs are regenerated, and a run
stopped after a checkpoint and resumed ends exactly as an uninterrupted run."""
import dataclasses
import functools
import json
import logging
import math
import os
import re
import signal

import jax
import numpy as np
import pytest

from llmrec_jax import model_sizes, models, network, partitioning
from llmrec_jax.data import item_text, prompts, splits, synthetic, task_builders
from llmrec_jax.evaluation import generative as evaluation
from llmrec_jax.systems.idgenrec import alternating, phase_batches, prompt_batches
from llmrec_jax.training import optimizers, stopping
from llmrec_jax.training import trainer as trainer_lib


class WordTokenizer:
  """Word-level ids for every word the run can produce (3 + word index)."""

  def __init__(self, texts):
    words = sorted({w for t in texts for w in re.findall(r"\S+", t.lower())})
    self.ids = {w: i + 3 for i, w in enumerate(words)}
    self.vocab_size = ((len(words) + 3 + 7) // 8) * 8

  def encode(self, text):
    return [self.ids.get(w, 2) for w in text.lower().split()]


def _rotate(ids):
  return [" ".join(i.split()[1:] + i.split()[:1]) for i in ids]


@pytest.fixture(scope="module")
def parts():
  data = synthetic.make_synthetic(num_users=24, num_items=16, seed=0, num_topics=4, min_len=5, max_len=8)
  item_tab, user_tab = task_builders.title_id_tables(data)
  item_ids = [item_tab.ids[r] for r in data.item_ids]
  user_ids = [user_tab.ids[r] for r in data.user_ids]
  texts = [item_text.render_item_text(m) for m in data.item_meta]
  templates = prompts.get_template_set("llmrec_default")
  tok = WordTokenizer(texts + item_ids + user_ids + [t.input for t in templates.train] + [";", "."])
  cfg = model_sizes.t5_config("t5_tiny", vocab_size=tok.vocab_size, dropout_rate=0.1,
                              num_encoder_layers=1, num_decoder_layers=1)
  model = models.EncoderDecoderModel(network.Transformer(cfg))
  shapes = {"encoder_input_tokens": (2, 8), "decoder_input_tokens": (2, 4)}
  rec = model.get_initial_variables(jax.random.PRNGKey(0), shapes)["params"]
  gen = model.get_initial_variables(jax.random.PRNGKey(1), shapes)["params"]
  return data, item_ids, user_ids, texts, templates, tok, model, rec, gen


def _context(parts, model_dir=None, partitioner=None, **schedule):
  data, item_ids, user_ids, texts, templates, tok, model, rec, gen = parts
  copy = lambda t: jax.tree_util.tree_map(np.array, t)  # the loop donates its states
  return alternating.Context(
      data=data, splits=splits.leave_one_out(data, max_his=6), item_texts=texts, encode=tok.encode,
      templates=templates, rec_model=model, gen_model=model, rec_params=copy(rec), gen_params=copy(gen),
      item_ids=list(item_ids), user_ids=list(user_ids),
      assigner=lambda gen_params, ids: (_rotate(ids), list(user_ids)),
      schedule=alternating.Schedule(rounds=2, rec_epochs=0.5, id_epochs=0.25, rec_batch_size=8,
                                    id_batch_size=4, sample_num=1, max_his=6, **schedule),
      decode=evaluation.DecodeOptions(num_beams=5, ks=(1, 5)),
      lengths=dict(input_len=96, target_len=10, text_len=24, id_len=10),
      eval_batch_size=8, max_eval_examples=8, model_dir=model_dir, partitioner=partitioner)


@pytest.fixture(scope="module")
def uninterrupted(parts, tmp_path_factory):
  loop = alternating.IdGenRecLoop(_context(parts, str(tmp_path_factory.mktemp("a"))))
  return loop, loop.run()


def test_phases_evaluations_and_regenerated_ids(parts, uninterrupted):
  loop, summary = uninterrupted
  # rec_first ends with a rec phase: no ID phase after it (trailing_id_phase=False).
  assert [(r["round"], r["phase"]) for r in summary["phases"]] == [(0, "rec"), (0, "id"), (1, "rec")]
  assert summary["complete"] and summary["best"]["phase"] == "rec"
  for r in summary["phases"]:
    if r["phase"] == "rec":
      assert set(r["valid"]) == {"hit@1", "ndcg@1", "hit@5", "ndcg@5"}
      assert 0.0 <= r["test"]["hit@1"] <= r["test"]["hit@5"] <= 1.0
      assert r["eval_users"] == {s: min(loop.ctx.max_eval_examples, loop.ctx.splits[s].num_examples)
                                 for s in ("valid", "test")}
  # One ID phase, which rotated every item's ID once.
  assert loop.ctx.item_ids == _rotate(parts[1])
  assert int(loop.rec_state.step) == 2 * loop.rec_steps and int(loop.gen_state.step) == loop.id_steps


def test_stopped_and_resumed_run_equals_uninterrupted(parts, uninterrupted, tmp_path):
  loop_a, summary_a = uninterrupted
  # Stop in the middle of round 0's rec phase, then in the middle of the first ID phase.
  first = alternating.IdGenRecLoop(_context(parts, str(tmp_path), checkpoint_every_steps=2))
  stop1 = first.run(max_optimizer_steps=loop_a.rec_steps // 2 + 1)
  assert not stop1["complete"]
  second = alternating.IdGenRecLoop(_context(parts, str(tmp_path), checkpoint_every_steps=2))
  assert second.maybe_restore()
  stop2 = second.run(max_optimizer_steps=loop_a.rec_steps + 1)
  assert not stop2["complete"] and second.position == 1
  third = alternating.IdGenRecLoop(_context(parts, str(tmp_path), checkpoint_every_steps=2))
  assert third.maybe_restore()
  summary_b = third.run()
  assert summary_b["complete"] and third.ctx.item_ids == loop_a.ctx.item_ids
  for a, b in ((loop_a.rec_state.params, third.rec_state.params), (loop_a.gen_state.params, third.gen_state.params)):
    jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)
  for ra, rb in zip(summary_a["phases"], summary_b["phases"]):
    assert ra == rb


# Orbax leaves an async read of the truncated array unawaited (a warning, not an error).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("how", ["truncated_array", "garbage_metadata"])
def test_bad_newest_checkpoint_resumes_from_the_previous_one_and_ends_the_same(
    parts, uninterrupted, tmp_path, caplog, how, corrupt_checkpoint):
  loop_a, summary_a = uninterrupted
  first = alternating.IdGenRecLoop(_context(parts, str(tmp_path), checkpoint_every_steps=2))
  first.run(max_optimizer_steps=loop_a.rec_steps // 2 + 2)
  steps = first._ckpt["recommender"].all_steps()
  assert len(steps) == 2   # keep_checkpoints=2
  named = corrupt_checkpoint(first._ckpt["recommender"].step_path(steps[-1]), how)
  second = alternating.IdGenRecLoop(_context(parts, str(tmp_path), checkpoint_every_steps=2))
  with caplog.at_level(logging.WARNING):
    assert second.maybe_restore()
  assert named in caplog.text and second._global_step() == steps[0]
  summary_b = second.run()
  for a, b in ((loop_a.rec_state.params, second.rec_state.params), (loop_a.gen_state.params, second.gen_state.params)):
    jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)
  assert summary_a["phases"] == summary_b["phases"]


def test_sigterm_in_a_rec_phase_saves_and_the_resumed_run_ends_the_same(parts, uninterrupted, tmp_path):
  loop_a, summary_a = uninterrupted
  first = alternating.IdGenRecLoop(_context(parts, str(tmp_path)))   # no step cadence
  kill_at = first.rec_steps // 2
  train = first.rec_trainer.train

  def train_and_signal(state, batch, *aux):
    out = train(state, batch, *aux)
    if int(out[0].step) == kill_at:
      os.kill(os.getpid(), signal.SIGTERM)   # arrives as a real signal, mid-phase
    return out
  first.rec_trainer.train = train_and_signal
  with stopping.stop_on_signals() as stop:
    stopped = first.run(stop=stop)
  assert not stopped["complete"] and stopped["stopped_by"] == "SIGTERM"
  assert first._ckpt["recommender"].all_steps() == [kill_at] and first.step_in_phase == kill_at
  second = alternating.IdGenRecLoop(_context(parts, str(tmp_path)))
  assert second.maybe_restore() and second.step_in_phase == kill_at
  summary_b = second.run()
  for a, b in ((loop_a.rec_state.params, second.rec_state.params), (loop_a.gen_state.params, second.gen_state.params)):
    jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)
  assert summary_a["phases"] == summary_b["phases"]


@pytest.mark.parametrize("minutes,saved", [(0.0, [2]), (1e-9, [1, 2])])
def test_checkpoints_by_wall_clock(parts, tmp_path, minutes, saved):
  loop = alternating.IdGenRecLoop(_context(parts, str(tmp_path), checkpoint_every_minutes=minutes))
  loop.run(max_optimizer_steps=2)   # step 2: the stop's own save
  assert loop._ckpt["recommender"].all_steps() == saved


def test_sharded_loop_equals_one_device(parts):
  """Both phases on a 4x2 mesh of the 8 simulated devices give the 1-device params and metrics."""
  def run(partitioner):
    with jax.default_matmul_precision("highest"):
      loop = alternating.IdGenRecLoop(_context(parts, partitioner=partitioner))
      summary = loop.run(max_optimizer_steps=loop.rec_steps + 2)   # the rec phase, its evaluation, 2 ID steps
    return loop, summary
  one, summary_one = run(partitioning.PjitPartitioner(1, devices=jax.devices()[:1]))
  part = partitioning.PjitPartitioner(num_partitions=2)
  assert dict(part.mesh.shape) == {"data": 4, "model": 2}
  sharded, summary_sharded = run(part)
  assert int(sharded.gen_state.step) == 2 and int(sharded.rec_state.step) == sharded.rec_steps
  wo = sharded.rec_state.params["encoder"]["layers_0"]["mlp"]["wo"]["kernel"]
  assert len({s.device for s in wo.addressable_shards}) == 8 and wo.sharding.spec[0] == "model"
  for a, b in ((one.rec_state.params, sharded.rec_state.params), (one.gen_state.params, sharded.gen_state.params)):
    jax.tree_util.tree_map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5), a, b)
  (rec_one,), (rec_sharded,) = summary_one["phases"], summary_sharded["phases"]
  for split in ("valid", "test"):
    assert rec_one[split] == pytest.approx(rec_sharded[split], abs=1e-6)
  assert rec_one["train"]["loss"] == pytest.approx(rec_sharded["train"]["loss"], rel=1e-5)


@pytest.mark.parametrize("num_partitions", [2, 4])   # meshes data 4 x model 2, data 2 x model 4
def test_training_applies_the_activation_sharding_constraints(parts, num_partitions):
  """On 8 simulated devices the rec train step is lowered under the logical axis rules: the
  network's activation constraints appear in what XLA is given, with the 'model' axis on MLP
  activations. The same step jitted without the rules carries none of them."""
  part = partitioning.PjitPartitioner(num_partitions=num_partitions)
  loop = alternating.IdGenRecLoop(_context(parts, partitioner=part))
  batch = phase_batches.build(phase_batches.source(loop.ctx), loop.ctx,
                              phase_batches.rows_at(lambda e: phase_batches.phase_order(loop.ctx, 0, "rec", e), 0, 8),
                              id_batch=False)
  text = loop.rec_trainer.lower_train(loop.rec_state, batch).as_text()
  constraints = re.findall(r"sharding_constraint[^\n]*", text)
  assert len(constraints) >= 6, "activation constraints missing from the train step"
  assert any('"model"' in c for c in constraints) and any('"data"' in c for c in constraints)
  plain = jax.jit(functools.partial(trainer_lib.train_step, loss_fn=loop.ctx.rec_model.loss_fn,
                                    tx=loop.rec_trainer.tx))
  with jax.set_mesh(part.mesh):
    unbound = plain.lower(loop.rec_state, batch, jax.random.PRNGKey(0)).as_text()
  assert "sharding_constraint" not in unbound


def test_batch_not_divisible_by_data_axis_fails_loudly(parts):
  with pytest.raises(ValueError, match="id_batch_size=4 must be a multiple"):
    alternating.IdGenRecLoop(_context(parts, partitioner=partitioning.PjitPartitioner(1)))


@pytest.mark.parametrize("style,trailing,rounds,want", [
    ("rec_first", False, 2, ["rec", "id", "rec"]),
    ("rec_first", True, 2, ["rec", "id", "rec", "id"]),
    ("rec_first", False, 1, ["rec"]),
    ("id_first", False, 2, ["id", "rec", "id", "rec"]),
])
def test_schedule_phases(style, trailing, rounds, want):
  sch = alternating.Schedule(rounds=rounds, alt_style=style, trailing_id_phase=trailing)
  assert [p for _, p in sch.phases()] == want
  assert [r for r, _ in sch.phases()] == [i // 2 for i in range(len(want))]


def test_validation_sample_and_full_test(parts, monkeypatch):
  """`valid_examples` validates on a fixed random sample of users; test still covers every user."""
  seen = {}

  def fake_evaluate(ranker, examples, **kw):
    batches = ranker.batches(examples)
    seen[examples.name] = (examples.targets, np.concatenate([b["decoder_target_tokens"] for b in batches]))
    return {"hit@1": 0.0}
  monkeypatch.setattr(alternating.evaluator, "evaluate_split", fake_evaluate)
  ctx = _context(parts)
  ctx = dataclasses.replace(ctx, max_eval_examples=None, valid_examples=5)
  loop = alternating.IdGenRecLoop(ctx)
  loop.evaluate("valid")
  loop.evaluate("test")
  valid, test = ctx.splits["valid"], ctx.splits["test"]
  v_targets, v_rows = seen["valid"]
  assert len(v_targets) == 5 and len(seen["test"][0]) == test.num_examples
  # Every test user once, shortest history first.
  order = prompt_batches.PromptBatcher.by_history_length(test, np.arange(test.num_examples))
  assert sorted(order.tolist()) == list(range(test.num_examples))
  lengths = [len(test.history[i]) for i in order]
  assert lengths == sorted(lengths)
  np.testing.assert_array_equal(seen["test"][0], test.target[order])
  assert set(v_targets.tolist()) <= set(valid.target.tolist())
  # The batches' first rows are exactly those examples' targets (the rest wraps around).
  want = phase_batches.prompt_batcher(ctx)._targets(v_targets)["decoder_target_tokens"]
  np.testing.assert_array_equal(v_rows[:5], want)
  loop2 = alternating.IdGenRecLoop(ctx)
  loop2.evaluate("valid")
  np.testing.assert_array_equal(seen["valid"][0], v_targets)  # the same sample every time


def test_test_sample(parts, monkeypatch):
  """`test_examples` tests on a fixed random sample (not the first users), distinct from the
  validation sample's draw, the same in every loop."""
  seen = {}

  def fake_evaluate(ranker, examples, **kw):
    seen.setdefault(examples.name, []).append(examples.targets)
    return {"hit@1": 0.0}
  monkeypatch.setattr(alternating.evaluator, "evaluate_split", fake_evaluate)
  ctx = _context(parts)
  test = ctx.splits["test"]
  k = test.num_examples // 2
  ctx = dataclasses.replace(ctx, max_eval_examples=None, valid_examples=None, test_examples=k)
  calls = []
  orig = prompt_batches.PromptBatcher.by_history_length
  monkeypatch.setattr(prompt_batches.PromptBatcher, "by_history_length",
                      staticmethod(lambda split, rows: calls.append(np.sort(rows)) or orig(split, rows)))
  alternating.IdGenRecLoop(ctx).evaluate("test")
  alternating.IdGenRecLoop(ctx).evaluate("test")
  alternating.IdGenRecLoop(ctx).evaluate("valid")
  first, second, valid_rows = calls
  np.testing.assert_array_equal(alternating.IdGenRecLoop(ctx).eval_rows("test"), first)
  assert len(first) == k == len(seen["test"][0]) and len(set(first.tolist())) == k
  np.testing.assert_array_equal(first, second)
  assert not np.array_equal(first, np.arange(k))  # a random sample, not the first k users
  assert len(valid_rows) == ctx.splits["valid"].num_examples  # valid_examples None: every user


def test_every_epoch_of_a_phase_has_its_own_order_from_the_seed(parts):
  ctx = _context(parts)
  n = ctx.splits["train"].num_examples  # sample_num 1
  order = functools.partial(phase_batches.phase_order, ctx, 0, "rec")
  ex, tids = phase_batches.rows_at(order, 0, 3 * n)  # pylint: disable=protected-access
  epochs = [(ex[e * n:(e + 1) * n], tids[e * n:(e + 1) * n]) for e in range(3)]
  for e_ex, _ in epochs:  # each epoch: every example once
    np.testing.assert_array_equal(np.sort(e_ex), np.arange(n))
  assert not np.array_equal(epochs[0][0], epochs[1][0])
  assert not np.array_equal(epochs[1][0], epochs[2][0])
  # Epoch 0 keeps the order of (seed, round, phase); all of it is reproduced by the seed.
  np.testing.assert_array_equal(epochs[0][0], phase_batches.phase_order(ctx, 0, "rec")[0])
  again, _ = phase_batches.rows_at(order, n - 2, 4)  # pylint: disable=protected-access
  np.testing.assert_array_equal(again, ex[n - 2:n + 2])
  other = _context(parts, seed=7)
  ex7, _ = phase_batches.rows_at(functools.partial(phase_batches.phase_order, other, 0, "rec"), n, n)  # pylint: disable=protected-access
  assert not np.array_equal(ex7, epochs[1][0])


def _snapshot(state):
  """Host copies of a TrainState's params, optimizer state and step (the loop donates its states)."""
  return jax.tree_util.tree_map(np.array, (state.params, state.opt_state, state.step))


def _same(a, b) -> bool:
  flat_a, tree_a = jax.tree_util.tree_flatten(a)
  flat_b, tree_b = jax.tree_util.tree_flatten(b)
  return tree_a == tree_b and all(np.array_equal(x, y) for x, y in zip(flat_a, flat_b))


def test_each_phase_of_the_real_loop_leaves_the_other_model_bit_identical(parts):
  """Through `IdGenRecLoop.run` (stopped at each phase's end): a rec phase changes the
  recommender only, an ID phase the generator only (params, optimizer state and step counter,
  bit for bit)."""
  loop = alternating.IdGenRecLoop(_context(parts))
  rec0, gen0 = _snapshot(loop.rec_state), _snapshot(loop.gen_state)
  assert not loop.run(max_optimizer_steps=loop.rec_steps)["complete"]
  rec1, gen1 = _snapshot(loop.rec_state), _snapshot(loop.gen_state)
  assert _same(gen1, gen0), "the rec phase changed the generator"
  assert not _same(rec1[0], rec0[0]) and int(rec1[2]) == loop.rec_steps
  assert not loop.run(max_optimizer_steps=loop.rec_steps + loop.id_steps)["complete"]
  assert loop.position == 2  # stopped after the ID phase (and its new IDs), before round 1
  rec2, gen2 = _snapshot(loop.rec_state), _snapshot(loop.gen_state)
  assert _same(rec2, rec1), "the ID phase changed the recommender (params, optimizer state or step)"
  assert not _same(gen2[0], gen1[0]) and int(gen2[2]) == loop.id_steps


@pytest.mark.parametrize("mask", [None, "ALL_BUT_RELPOS_BIAS"])
def test_schedule_weight_decay_mask_reaches_both_optimizers(parts, mask):
  """One update with zero gradients (Adam's step 0, only the decay moves a leaf) changes exactly
  the leaves the mask decays, in both models' optimizers; the default is NO_NORMS_OR_BIASES."""
  loop = alternating.IdGenRecLoop(_context(parts, **({"weight_decay_mask": mask} if mask else {})))
  want = optimizers.WeightDecayMask(mask or "NO_NORMS_OR_BIASES")
  assert loop.ctx.schedule.weight_decay_mask is want
  for trainer, state in ((loop.rec_trainer, loop.rec_state), (loop.id_trainer, loop.gen_state)):
    params = jax.tree_util.tree_map(np.array, state.params)
    zeros = jax.tree_util.tree_map(np.zeros_like, params)
    updates, _ = trainer.tx.update(zeros, trainer.tx.init(params), params)
    moved = jax.tree_util.tree_map(lambda u: bool(np.any(np.asarray(u) != 0)), updates)
    assert moved == optimizers.decay_mask_of(params, want)


def test_replicas_count_steps_per_replica(parts):
  """replicas=R: each phase's steps are replica 0's, ceil(ceil(rows / R) / batch) per epoch."""
  ctx = _context(parts, replicas=4)
  ctx = dataclasses.replace(ctx, schedule=dataclasses.replace(ctx.schedule, rec_epochs=2.0, id_epochs=1.0))
  loop = alternating.IdGenRecLoop(ctx)
  n = ctx.splits["train"].num_examples * ctx.schedule.sample_num
  per_replica = len(range(0, n, 4))
  assert loop.rec_steps == 2 * math.ceil(per_replica / 8)
  assert loop.id_steps == math.ceil(per_replica / 4)


def test_initial_ids_survive_new_ids_and_a_resume(parts, tmp_path):
  """With id_phase_ids 'initial' the run's first IDs stay in the context through a
  regeneration and come back from the checkpoint, whatever IDs the restarted context holds."""
  data, item_ids, user_ids = parts[:3]
  first = alternating.IdGenRecLoop(_context(parts, str(tmp_path), id_phase_ids="initial"))
  first.regenerate_ids()   # the assigner rotates every item ID
  assert first.ctx.item_ids == _rotate(item_ids) and first.ctx.initial_item_ids == item_ids
  first.save()
  other = _context(parts, str(tmp_path), id_phase_ids="initial")
  other = dataclasses.replace(other, item_ids=_rotate(_rotate(item_ids)), initial_item_ids=None,
                              user_ids=_rotate(user_ids), initial_user_ids=None)
  second = alternating.IdGenRecLoop(other)
  assert second.maybe_restore()
  assert second.ctx.item_ids == _rotate(item_ids) and second.ctx.user_ids == user_ids
  assert second.ctx.initial_item_ids == item_ids and second.ctx.initial_user_ids == user_ids
  # The ID phase's batches are those of the initial IDs.
  rows = phase_batches.rows_at(lambda e: phase_batches.phase_order(second.ctx, 1, "id", e), 0, 4)
  got = phase_batches.build(phase_batches.source(second.ctx, for_id_phase=True), second.ctx, rows,
                            id_batch=True)
  start = _context(parts)
  want = phase_batches.build(phase_batches.source(start, for_id_phase=True), start, rows, id_batch=True)
  for k in want:
    np.testing.assert_array_equal(got[k], want[k], err_msg=k)


@pytest.mark.parametrize("select_best", [True, False])
def test_without_model_selection_no_validation_runs_and_the_last_test_is_reported(
    parts, tmp_path, monkeypatch, select_best):
  """`select_best=False` (the official code) evaluates the test split only and reports the last
  rec phase's test metrics as `best` (what results.json's readers take as the run's metrics)."""
  from llmrec_jax.experiments import runs   # pylint: disable=g-import-not-at-top
  ctx = _context(parts, select_best=select_best)
  loop = alternating.IdGenRecLoop(dataclasses.replace(ctx, schedule=dataclasses.replace(ctx.schedule, rounds=3)))
  calls = []
  valid_scores = iter([0.2, 0.9, 0.1])   # validation prefers round 1

  def evaluate(split):
    calls.append(split)
    return {"ndcg@5": next(valid_scores) if split == "valid" else float(len(calls))}
  monkeypatch.setattr(loop, "evaluate", evaluate)
  monkeypatch.setattr(loop, "rec_phase", lambda rnd, max_optimizer_steps=None: {"loss": 1.0})
  monkeypatch.setattr(loop, "id_phase", lambda rnd, max_optimizer_steps=None: {"loss": 2.0})
  monkeypatch.setattr(loop, "eval_rows", lambda split: np.arange(5))
  summary = loop.run()
  rec = [r for r in summary["phases"] if r["phase"] == "rec"]
  assert len(rec) == 3
  if select_best:
    assert calls == ["valid", "test"] * 3 and summary["best"] is rec[1]
  else:
    assert calls == ["test"] * 3 and summary["best"] is rec[-1]
    assert all("valid" not in r for r in summary["phases"])
    assert rec[-1]["eval_users"] == {"test": 5}
  path = tmp_path / "results.json"
  path.write_text(json.dumps(summary), encoding="utf-8")
  assert runs.load_metrics(path, "generative") == {
      k: v for k, v in summary["best"]["test"].items() if k in runs.METRICS}
