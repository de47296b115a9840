"""SASRec training data, batching and a tiny end-to-end run on the synthetic dataset."""
import functools
import json

from absl import flags
import jax
import numpy as np
import pytest

from llmrec_jax import baselines as run
from llmrec_jax.data.records import RecData
from llmrec_jax.data.splits import leave_one_out
from llmrec_jax.data.synthetic import make_synthetic
from llmrec_jax.systems import popularity
from llmrec_jax.systems.sasrec import model as sasrec
from llmrec_jax.systems.sasrec import train as sasrec_train


def _data():
  rng = np.random.default_rng(0)
  lens = [3, 4, 5, 9, 14]
  seqs = tuple(rng.integers(0, 20, size=n).astype(np.int32) for n in lens)
  return RecData("tiny", tuple(f"u{i}" for i in range(5)), tuple(f"i{i}" for i in range(20)),
                 tuple({} for _ in range(20)), seqs)


def test_training_rows_are_shifted_train_prefixes():
  data, L = _data(), 6
  inputs, targets = sasrec_train.training_rows(data, L)
  kept = [s for s in data.sequences if s.size - 2 >= 2]  # the 3-item user has 1 training item: skipped
  assert inputs.shape == targets.shape == (len(kept), L)
  for seq, x, y in zip(kept, inputs, targets):
    row = seq[:-2][-(L + 1):] + 1
    n = row.size - 1
    np.testing.assert_array_equal(x, np.concatenate([np.zeros(L - n), row[:-1]]))
    np.testing.assert_array_equal(y, np.concatenate([np.zeros(L - n), row[1:]]))


def test_epoch_batches_cover_every_row_once_within_its_bucket():
  rng = np.random.default_rng(1)
  lengths = rng.integers(1, 11, size=57)
  buckets = (2, 4, 10)
  batches = sasrec_train.epoch_batches(lengths, 8, buckets, rng)
  assert len(batches) == sasrec_train.steps_per_epoch(lengths, 8, buckets)
  seen = np.concatenate([rows for _, rows in batches])
  real = seen[seen < 57]
  assert sorted(real.tolist()) == list(range(57))
  assert set(seen[seen >= 57].tolist()) <= {57}  # filler = the all-padding row
  for T, rows in batches:
    assert rows.shape == (8,) and T in buckets
    r = rows[rows < 57]
    assert np.all(lengths[r] <= T)
    smaller = [b for b in buckets if b < T]
    assert not smaller or np.all(lengths[r] > max(smaller))  # smallest bucket that fits


def test_train_step_with_gathered_positions_equals_full_logits():
  L, B, T = 8, 4, 5
  model = sasrec.SASRec(sasrec.SASRecConfig(num_items=20, hidden=16, max_len=L, dropout=0.3))
  rng = np.random.default_rng(2)
  inputs = rng.integers(1, 21, size=(B, T)).astype(np.int32)
  inputs[np.arange(T)[None, :] < (T - rng.integers(1, T + 1, size=B))[:, None]] = 0
  targets = np.where(inputs > 0, rng.integers(1, 21, size=(B, T)), 0).astype(np.int32)
  grads = []
  for positions in (None, sasrec.valid_positions(targets, 3)):
    params = sasrec_train.init_params(model, seed=0)
    loss_fn = jax.jit(jax.value_and_grad(functools.partial(
        sasrec_train.loss_on_batch, apply_fn=model.apply, loss=sasrec_train.Loss.CE, num_items=20)))
    # dropout on, same rng: same masks
    grads.append(loss_fn(params, inputs_BxT=inputs, targets_BxT=targets, rng=jax.random.key(1),
                         positions=positions))
  (v0, g0), (v1, g1) = grads
  np.testing.assert_allclose(float(v1), float(v0), rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6), g0, g1)


@pytest.fixture(scope="module")
def synthetic():
  return make_synthetic(num_users=300, num_items=200, seed=0)


@pytest.mark.parametrize("loss", list(sasrec_train.Loss))
def test_short_sasrec_run_beats_popularity(synthetic, loss):
  model_config = sasrec.SASRecConfig(num_items=synthetic.num_items, hidden=32, max_len=20, dropout=0.2)
  train_config = sasrec_train.TrainConfig(loss=loss, learning_rate=5e-3, batch_size=64, epochs=6,
                                          eval_every=3, patience=2, buckets=(), eval_batch_size=300,
                                          show_progress=False, report_exclude_seen=True,
                                          gather_granule_div=2)  # <= 2 gathered shapes to compile
  out = sasrec_train.train_and_evaluate(synthetic, model_config, train_config)
  pop = popularity.evaluate_popularity(synthetic, leave_one_out(synthetic, max_his=1))
  assert out["best_epoch"] in (3, 6)
  assert out["test"]["ndcg@10"] > pop["test"]["ndcg@10"] + 0.1, (out["test"], pop["test"])
  assert out["test"]["hit@10"] > pop["test"]["hit@10"]
  # removing known items can only lift a target that is not itself a known item
  if not any(seq[-1] in seq[:-1] for seq in synthetic.sequences):
    assert out["test_exclude_seen"]["hit@10"] >= out["test"]["hit@10"]
  assert set(out["valid_exclude_seen"]) == set(out["valid"])


def test_cli_popularity_json(capsys):
  result = run.main(["--model", "popularity", "--data_dir", "synthetic", "--json"])
  printed = json.loads(capsys.readouterr().out)
  assert printed["valid"] == result["valid"] and printed["test"] == result["test"]
  assert set(printed["test"]) == {"hit@5", "ndcg@5", "hit@10", "ndcg@10"}
  assert printed["wall_seconds"] >= 0


def test_train_config_rejects_bad_options():
  with pytest.raises(ValueError, match="schedule"):
    sasrec_train.TrainConfig(schedule="cosine")  # a str, not a Schedule
  with pytest.raises(ValueError, match="gather_granule_div"):
    sasrec_train.TrainConfig(gather_granule_div=-1)
  with pytest.raises(flags.IllegalFlagValueError, match="schedule"):
    run.parse_args(["--model", "sasrec", "--data_dir", "synthetic", "--schedule", "cosin"])
  with pytest.raises(flags.IllegalFlagValueError, match="data_dir"):
    run.parse_args(["--model", "sasrec"])
