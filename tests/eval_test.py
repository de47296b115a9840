"""`llmrec_jax.eval` restores a finished run and reproduces its training-time metrics, from any
working directory and with its dataset moved."""
import json
import os
import shutil

import pytest

from llmrec_jax import eval as eval_lib
from llmrec_jax import train as train_lib
from llmrec_jax.data import synthetic
from llmrec_jax.evaluation import generative as evaluation
from llmrec_jax.systems.idgenrec import alternating

DECODE = evaluation.DecodeOptions(num_beams=4, ks=(1, 4))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  """(ROOT, best metrics) of a tiny run trained in ROOT/run from ROOT with the relative DATA_DIR 'data'."""
  root = tmp_path_factory.mktemp("tiny_run")
  synthetic.write_p5(synthetic.make_synthetic(num_users=24, num_items=24, seed=0), root / "data")
  with pytest.MonkeyPatch.context() as mp:
    mp.chdir(root)
    train_lib.train(
        model_dir=str(root / "run"), data_dir="data", initial_ids="sequential", dataset_vocab_size=120,
        input_len=96, target_len=8, text_len=16, id_len=8,
        eval_batch_size=8, max_eval_examples=16,
        schedule=alternating.Schedule(rounds=1, rec_epochs=0.5, id_epochs=0.0, rec_batch_size=8,
                                      sample_num=1, max_his=4),
        decode=DECODE)
  with open(root / "run" / "results.json", encoding="utf-8") as f:
    best = json.load(f)["best"]
  return root, best


def _moved_run(tiny_run, dest):
  """The run and its dataset copied to `dest` (another machine): run_config.json's DATA_DIR is
  a path that does not exist there."""
  root, _ = tiny_run
  shutil.copytree(root / "run", dest / "run")
  shutil.copytree(root / "data", dest / "data")
  cfg_path = dest / "run" / "run_config.json"
  run = json.loads(cfg_path.read_text(encoding="utf-8"))
  assert run["data_dir"] == str(root / "data")  # recorded absolute
  cfg_path.write_text(json.dumps({**run, "data_dir": str(dest / "gone" / "data")}), encoding="utf-8")
  return dest / "run", dest / "data"


def test_eval_from_another_directory_reproduces_the_runs_own_metrics(tiny_run, tmp_path, monkeypatch):
  """Trained with a relative DATA_DIR from one directory, evaluated from another."""
  root, best = tiny_run
  monkeypatch.chdir(tmp_path)
  # A different batch size (other padding and batch cuts) must not change any metric.
  out = eval_lib.evaluate(model_dir=str(root / "run"), max_eval_examples=16, batch_size=5, decode=DECODE)
  assert out["test"]["hit@4"] + out["valid"]["hit@4"] > 0  # something to compare
  for split in ("valid", "test"):
    assert out[split] == pytest.approx(best[split], abs=1e-6), split


def test_relative_model_dir_gives_the_same_metrics_from_any_directory(tiny_run, tmp_path, monkeypatch):
  root, best = tiny_run
  monkeypatch.chdir(root)
  here = eval_lib.evaluate(model_dir="run", max_eval_examples=16, batch_size=8, decode=DECODE)
  (tmp_path / "elsewhere").mkdir()
  monkeypatch.chdir(tmp_path / "elsewhere")
  relative = os.path.relpath(root / "run", tmp_path / "elsewhere")
  assert relative.startswith("..")
  there = eval_lib.evaluate(model_dir=relative, max_eval_examples=16, batch_size=8, decode=DECODE)
  assert here["model_dir"] == there["model_dir"] == str(root / "run")
  for split in ("valid", "test"):
    assert there[split] == here[split], split
    assert there[split] == pytest.approx(best[split], abs=1e-6), split


def test_moved_dataset_fails_naming_the_flag_and_data_dir_restores_the_metrics(tiny_run, tmp_path):
  _, best = tiny_run
  model_dir, data_dir = _moved_run(tiny_run, tmp_path)
  with pytest.raises(FileNotFoundError) as e:
    eval_lib.evaluate(model_dir=str(model_dir), max_eval_examples=16, decode=DECODE)
  message = str(e.value)
  assert str(model_dir / "run_config.json") in message
  assert str(tmp_path / "gone" / "data") in message
  assert "--gin.evaluate.data_dir=" in message
  out = eval_lib.evaluate(model_dir=str(model_dir), data_dir=str(data_dir), max_eval_examples=16,
                          batch_size=8, decode=DECODE)
  for split in ("valid", "test"):
    assert out[split] == pytest.approx(best[split], abs=1e-6), split


def test_data_dir_of_another_dataset_fails_naming_both(tiny_run, tmp_path):
  root, _ = tiny_run
  other = tmp_path / "other"
  other.mkdir()
  (other / "user_sequence.txt").write_text("u1 a b c\nu2 b c d\n", encoding="utf-8")
  (other / "items.jsonl").write_text(
      "".join(json.dumps({"item_id": i, "title": f"item {i}"}) + "\n" for i in "abcd"), encoding="utf-8")
  with pytest.raises(ValueError) as e:
    eval_lib.evaluate(model_dir=str(root / "run"), data_dir=str(other), decode=DECODE)
  message = str(e.value)
  assert f"dataset {other} has 4 items" in message
  assert str(root / "run" / "recommender") in message and "has 24 in its ID table" in message


def test_checkpoint_holds_the_network_that_restore_rebuilds(tiny_run):
  """The recommender's T5Config is saved with its checkpoint, and `restore` builds exactly it
  (dropout off), beside the typed run record."""
  import dataclasses
  from llmrec_jax import model_sizes
  from llmrec_jax.systems.idgenrec import inference
  from llmrec_jax.checkpoints import layout, orbax_t5x
  from llmrec_jax.systems.idgenrec.run_record import RunRecord
  root, _ = tiny_run
  record = RunRecord.load(str(root / "run"))
  ckpt_root = layout.recommender_root(str(root / "run"))
  saved = orbax_t5x.saved_model_config(orbax_t5x.step_dir(ckpt_root, orbax_t5x.latest_step(ckpt_root)))
  assert saved == model_sizes.t5_config(record.rec_size, vocab_size=record.vocab_size, dropout_rate=0.1)
  restored = inference.restore(str(root / "run"))
  assert restored.run == record and restored.model.module.config == dataclasses.replace(saved, dropout_rate=0.0)
