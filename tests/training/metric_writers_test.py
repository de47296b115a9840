"""metrics.jsonl + TensorBoard writer: one JSON line per write, TB events readable, host 0 only."""
import glob
import json
import os

import jax
import numpy as np
import pytest

from llmrec_jax.training import metric_writers


def _events(path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  # already loaded by clu
  return list(tf.compat.v1.train.summary_iterator(path))


def _tensor(tensor_proto):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return float(tf.make_ndarray(tensor_proto))


def _tb_points(folder):
  """{(tag, step): [value, ...]} over every TensorBoard event file in `folder`."""
  out = {}
  for path in glob.glob(os.path.join(folder, "events.out.tfevents*")):
    for event in _events(path):
      for v in event.summary.value:
        out.setdefault((v.tag, event.step), []).append(_tensor(v.tensor))
  return out


def _tb_scalars(folder):
  """{(tag, step): value} read back from the TensorBoard event files in `folder`."""
  return {k: v[-1] for k, v in _tb_points(folder).items()}


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


def test_a_resumed_run_continues_tensorboard_without_overlap(tmp_path):
  """Killed after step 9, resumed from a checkpoint at step 5: every tag has one point per step
  0..12 over the folder's events files, the resumed run's from step 5 on."""
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top

  def log(steps, scale):
    writer = metric_writers.create_metric_writer(str(tmp_path), log_to_stdout=False)
    for step in steps:
      writer.write_scalars(step, {"loss": scale * step, "accuracy": scale + step})
    writer.close()
  log(range(10), 1.0)        # the killed run
  log(range(5, 13), 10.0)    # the resumed run
  files = glob.glob(str(tmp_path / "events.out.tfevents.*"))
  assert len(files) == 2 and len(os.listdir(tmp_path)) == 3  # + metrics.jsonl; no temporary file
  want = {step: 1.0 if step < 5 else 10.0 for step in range(13)}
  points = _tb_points(str(tmp_path))
  for tag, value in (("loss", lambda s, k: k * s), ("accuracy", lambda s, k: k + s)):
    assert sorted(s for t, s in points if t == tag) == list(range(13))
    for step, scale in want.items():
      assert points[(tag, step)] == [pytest.approx(value(step, scale))], (tag, step)
  # TensorBoard's own reader of the run folder sees the same single history.
  acc = event_accumulator.EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
  acc.Reload()
  loss = [(e.step, _tensor(e.tensor_proto)) for e in acc.Tensors("loss")]
  assert [s for s, _ in loss] == list(range(13))
  assert [v for _, v in loss] == pytest.approx([want[s] * s for s in range(13)])


def test_tensorboard_resume_keeps_the_file_header_and_reads_cut_files(tmp_path):
  """A resume at step 0 (no checkpoint yet) drops every point of the killed run but keeps its
  events file readable (file_version header kept), and a record cut short by the kill goes."""
  writer = metric_writers.create_metric_writer(str(tmp_path), log_to_stdout=False)
  for step in range(3):
    writer.write_scalars(step, {"loss": 1.0})
  writer.close()
  (old,) = glob.glob(str(tmp_path / "events.out.tfevents.*"))
  with open(old, "ab") as f:
    f.write(b"\x40\x00\x00")  # a kill in the middle of a record header
  writer = metric_writers.create_metric_writer(str(tmp_path), log_to_stdout=False)
  writer.write_scalars(0, {"loss": 2.0})
  writer.close()
  assert [e.file_version for e in _events(old)] == ["brain.Event:2"]
  assert _tb_points(str(tmp_path)) == {("loss", 0): [2.0]}


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
