"""metrics.jsonl + TensorBoard writer: one JSON line per write, TB events readable, host 0 only."""
import glob
import json
import os

import jax
import numpy as np
import pytest

from llmrec_jax import metric_writers


def _tb_scalars(folder):
  """{(tag, step): value} read back from the TensorBoard event files in `folder`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  # already loaded by clu
  out = {}
  for path in glob.glob(os.path.join(folder, "events.out.tfevents*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for v in event.summary.value:
        out[(v.tag, event.step)] = float(tf.make_ndarray(v.tensor))
  return out


def test_jsonl_and_tensorboard(tmp_path):
  writer = metric_writers.create_metric_writer(str(tmp_path), log_to_stdout=False)
  written = []
  for step in range(1, 5):
    scalars = {"loss": np.float32(1.0 / step), "accuracy": jax.numpy.asarray(0.1 * step),
               "round": step // 3}
    writer.write_scalars(step, scalars)
    written.append((step, scalars))
  writer.flush()
  writer.close()
  lines = (tmp_path / metric_writers.METRICS_FILE).read_text().splitlines()
  assert len(lines) == 4
  for line, (step, scalars) in zip(lines, written):
    record = json.loads(line)
    assert record["step"] == step and isinstance(record["round"], int)
    assert set(record) == {"step", "loss", "accuracy", "round"}
    for k, v in scalars.items():
      assert record[k] == pytest.approx(float(v), rel=1e-6)
  tb = _tb_scalars(str(tmp_path))
  for step, scalars in written:
    assert tb[("loss", step)] == pytest.approx(float(scalars["loss"]), rel=1e-6)


def test_collections_share_one_file_and_append(tmp_path):
  train = metric_writers.create_metric_writer(str(tmp_path), collection="train",
                                              tensorboard=False, log_to_stdout=False)
  evals = metric_writers.create_metric_writer(str(tmp_path), collection="eval",
                                              tensorboard=False, log_to_stdout=False)
  train.write_scalars(10, {"loss": 2.0, "round": 1})
  evals.write_scalars(10, {"recall@5": 0.5})
  train.close()
  evals.close()
  again = metric_writers.create_metric_writer(str(tmp_path), tensorboard=False, log_to_stdout=False)
  again.write_scalars(11, {"loss": 1.0})
  again.close()
  records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert records == [{"step": 10, "train/loss": 2.0, "round": 1},
                     {"step": 10, "eval/recall@5": 0.5},
                     {"step": 11, "loss": 1.0}]


def test_a_resumed_run_leaves_one_record_per_step(tmp_path):
  """Killed at step 30 after a checkpoint at step 20, resumed from 20: the file ends as if the run
  had never stopped (the killed run's records after its checkpoint are replaced)."""
  def log(writer, steps):
    for step in steps:
      writer.write_scalars(step, {"loss": float(step)})
    writer.close()
  mk = lambda: metric_writers.create_metric_writer(str(tmp_path), tensorboard=False, log_to_stdout=False)
  log(mk(), [10, 20, 30])           # the killed run
  log(mk(), [30, 40])               # resumed from the checkpoint at 20; logs 30 again
  records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == [10, 20, 30, 40]
  log(mk(), [])                     # a writer that writes nothing changes nothing
  assert [json.loads(l)["step"] for l in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [10, 20, 30, 40]


def test_bad_scalars_fail_loudly(tmp_path):
  w = metric_writers.JsonlWriter(str(tmp_path / "m.jsonl"))
  with pytest.raises(ValueError, match="vec"):
    w.write_scalars(0, {"vec": np.zeros(3)})
  with pytest.raises(ValueError, match="reserved"):
    w.write_scalars(0, {"step": 1})
  w.close()


def test_other_hosts_write_nothing(tmp_path, monkeypatch):
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  w = metric_writers.create_metric_writer(str(tmp_path / "run"))
  w.write_scalars(0, {"loss": 1.0})
  w.close()
  assert not (tmp_path / "run").exists()
