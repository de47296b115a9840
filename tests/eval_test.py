"""`llmrec_jax.eval` restores a finished run and reproduces its training-time metrics."""
import json

import pytest

from llmrec_jax import alternating, evaluation
from llmrec_jax import eval as eval_lib
from llmrec_jax import train as train_lib
from llmrec_jax.data import synthetic


def test_eval_from_another_directory_reproduces_the_runs_own_metrics(tmp_path, monkeypatch):
  """Trained with a relative DATA_DIR from one directory, evaluated from another."""
  decode = evaluation.DecodeOptions(num_beams=4, ks=(1, 4))
  synthetic.write_p5(synthetic.make_synthetic(num_users=24, num_items=24, seed=0), tmp_path / "data")
  (tmp_path / "elsewhere").mkdir()
  monkeypatch.chdir(tmp_path)
  train_lib.train(
      model_dir=str(tmp_path), data_dir="data", initial_ids="sequential", dataset_vocab_size=120,
      input_len=96, target_len=8, text_len=16, id_len=8,
      eval_batch_size=8, max_eval_examples=16,
      schedule=alternating.Schedule(rounds=1, rec_epochs=0.5, id_epochs=0.0, rec_batch_size=8, sample_num=1,
                                    max_his=4),
      decode=decode)
  with open(tmp_path / "results.json", encoding="utf-8") as f:
    best = json.load(f)["best"]
  monkeypatch.chdir(tmp_path / "elsewhere")
  # A different batch size (other padding and batch cuts) must not change any metric.
  out = eval_lib.evaluate(model_dir=str(tmp_path), max_eval_examples=16, batch_size=5, decode=decode)
  assert out["test"]["hit@4"] + out["valid"]["hit@4"] > 0  # something to compare
  for split in ("valid", "test"):
    assert out[split] == pytest.approx(best[split], abs=1e-6), split
