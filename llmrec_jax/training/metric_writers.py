"""Scalar metrics to TensorBoard and to `metrics.jsonl`, host 0 only (a facade over clu).

`create_metric_writer(model_dir)` returns a standard `clu.metric_writers` `MetricWriter`, so it
plugs into clu periodic actions and T5X-style code. Each `write_scalars(step, scalars)` call
becomes one TensorBoard point per scalar and one JSON line `{"step": step, **scalars}` in
`model_dir/metrics.jsonl`. Put a `round` scalar in the dict to mark alternating-training rounds
(`llmrec_jax.report` draws the boundaries). Non-zero hosts get a writer that drops everything.

A resumed run logs again from the step of its checkpoint. Both files keep one history: the first
write after a model dir is (re)opened, at step S, drops what the killed run had logged at steps
>= S (`_ResumePoint`), from `metrics.jsonl` and from the TensorBoard events files of the folder.
The resumed run's events go to a new events file in the same folder, which TensorBoard shows as
the same run.

Note: importing this module imports TensorFlow (clu's TensorBoard writer); `report.py` does not.
"""
from __future__ import annotations

import glob
import json
import numbers
import os
import struct
import tempfile
from typing import Any, Callable, Mapping, Optional

from clu.metric_writers import interface
from clu.metric_writers import logging_writer
from clu.metric_writers import multi_writer
from clu.metric_writers import summary_writer
import jax
import numpy as np
from tensorboard.compat.proto import event_pb2

METRICS_FILE = "metrics.jsonl"


def _json_scalar(name: str, value: Any) -> int | float:
  """A Python int (integral types) or float; anything that is not one number fails loudly."""
  arr = np.asarray(value)
  if arr.size != 1:
    raise ValueError(f"metric {name!r} is not a scalar: shape {arr.shape}")
  item = arr.reshape(()).item()
  if isinstance(item, bool) or not isinstance(item, numbers.Real):
    raise ValueError(f"metric {name!r} is not a real number: {value!r}")
  return int(item) if isinstance(item, numbers.Integral) else float(item)


class _ResumePoint:
  """Calls `drop(step)` once, at a writer's first write, with that write's step.

  A resumed run logs again from the step of its checkpoint, so the first step a writer writes
  after a model dir is (re)opened is where the run resumed; what the writer found on disk at a
  step >= it was logged by the killed run after that checkpoint and is to be dropped. A fresh
  run's first write finds nothing to drop.
  """

  def __init__(self, drop: Callable[[int], None]):
    self._drop: Optional[Callable[[int], None]] = drop

  def reached(self, step: int) -> None:
    if self._drop is not None:
      drop, self._drop = self._drop, None
      drop(int(step))


def _replace_file(path: str, data: bytes) -> None:
  """Writes `path` through a temporary file, so a kill leaves the old or the new content. The
  temporary name does not contain `path`'s: TensorBoard reads any file named like 'tfevents'."""
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".replacing-")
  with os.fdopen(fd, "wb") as f:
    f.write(data)
  os.replace(tmp, path)


class JsonlWriter(interface.MetricWriter):
  """Appends one JSON object per `write_scalars` call to a file (restarts keep the history).

  Names get `prefix` (e.g. 'eval/'), except `round`. A resumed run logs again from the step of
  its checkpoint: the first record this writer writes, at step S, drops the records that were in
  the file when it was opened and have a step >= S (they belong to the run that was killed after
  that checkpoint), so the file keeps one history without repeated steps. Records other writers
  appended since this one was opened are kept.

  Only scalars are recorded; images, texts, histograms, etc. are ignored. NaN/inf are written as
  JSON's `NaN`/`Infinity` extensions (Python's json reads them back).
  """

  def __init__(self, path: str, prefix: str = ""):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    self.path = path
    self._prefix = prefix
    # Line-buffered: each record is one write(), so writers of several collections can append
    # to the same file without interleaving partial lines.
    self._old_lines = set(_read_lines(path))  # what a resumed run may have to drop
    self._resume = _ResumePoint(self._drop_old_records_from)
    self._file = open(path, "a", buffering=1, encoding="utf-8")  # pylint: disable=consider-using-with

  def _drop_old_records_from(self, step: int) -> None:
    if not self._old_lines:
      return
    self._file.close()
    kept = [line for line in _read_lines(self.path)
            if line not in self._old_lines or json.loads(line).get("step", -1) < step]
    _replace_file(self.path, "".join(line + "\n" for line in kept).encode("utf-8"))
    self._old_lines = set()
    self._file = open(self.path, "a", buffering=1, encoding="utf-8")  # pylint: disable=consider-using-with

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    if "step" in scalars:
      raise ValueError("'step' is reserved in metrics.jsonl; pass it as the step argument")
    self._resume.reached(step)
    record = {"step": int(step)}
    for k, v in sorted(scalars.items()):
      record[k if k == "round" else self._prefix + k] = _json_scalar(k, v)
    self._file.write(json.dumps(record) + "\n")

  def write_summaries(self, step, values, metadata=None) -> None:
    scalars = {k: v for k, v in values.items() if np.asarray(v).size == 1}
    if scalars:
      self.write_scalars(step, scalars)

  def write_images(self, step, images) -> None:
    pass

  def write_videos(self, step, videos) -> None:
    pass

  def write_audios(self, step, audios, *, sample_rate) -> None:
    pass

  def write_texts(self, step, texts) -> None:
    pass

  def write_histograms(self, step, arrays, num_buckets=None) -> None:
    pass

  def write_pointcloud(self, step, point_clouds, *, point_colors=None, configs=None) -> None:
    pass

  def write_hparams(self, hparams) -> None:
    pass

  def flush(self) -> None:
    self._file.flush()

  def close(self) -> None:
    if not self._file.closed:
      self._file.close()


def _read_lines(path: str) -> list[str]:
  if not os.path.isfile(path):
    return []
  with open(path, encoding="utf-8") as f:
    return [line.rstrip("\n") for line in f if line.strip()]


class TensorBoardWriter(summary_writer.SummaryWriter):
  """clu's TensorBoard writer (a new events file in `logdir`), resume-aware like `JsonlWriter`.

  The first write, at step S, rewrites the events files that were in `logdir` when this writer
  was opened without their summary events at steps >= S (the killed run's points after its
  checkpoint), so each tag keeps one point per step across the files of the folder. Events
  without a summary (the file version header, graphs, session logs) are kept, and so is every
  file created after this writer was opened. `write_hparams` has no step and does not count as
  the first write.
  """

  def __init__(self, logdir: str):
    # Listed before clu creates this writer's own events file.
    self._old_files = sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*")))
    self._resume = _ResumePoint(self._drop_old_events_from)
    super().__init__(logdir)

  def _drop_old_events_from(self, step: int) -> None:
    for path in self._old_files:
      _drop_events_from(path, step)

  def write_summaries(self, step, values, metadata=None) -> None:
    self._resume.reached(step)
    super().write_summaries(step, values, metadata)

  def write_scalars(self, step, scalars) -> None:
    self._resume.reached(step)
    super().write_scalars(step, scalars)

  def write_images(self, step, images) -> None:
    self._resume.reached(step)
    super().write_images(step, images)

  def write_audios(self, step, audios, *, sample_rate) -> None:
    self._resume.reached(step)
    super().write_audios(step, audios, sample_rate=sample_rate)

  def write_texts(self, step, texts) -> None:
    self._resume.reached(step)
    super().write_texts(step, texts)

  def write_histograms(self, step, arrays, num_buckets=None) -> None:
    self._resume.reached(step)
    super().write_histograms(step, arrays, num_buckets)


def _tfrecords(data: bytes) -> list[bytes]:
  """The records of a TFRecord file, each whole (8-byte length, 4-byte length CRC, payload,
  4-byte payload CRC), so they can be written back unchanged. A last record cut short (a kill
  during a write) is left out: no reader can use it."""
  records, pos = [], 0
  while pos + 12 <= len(data):
    (length,) = struct.unpack_from("<Q", data, pos)
    end = pos + 12 + length + 4
    if end > len(data):
      break
    records.append(data[pos:end])
    pos = end
  return records


def _drop_events_from(path: str, step: int) -> None:
  """Rewrites the events file `path` without its summary events at steps >= `step` (a no-op when
  it has none, or when the file is gone)."""
  if not os.path.isfile(path):
    return
  with open(path, "rb") as f:
    data = f.read()
  records = _tfrecords(data)
  kept = []
  for record in records:
    event = event_pb2.Event.FromString(record[12:-4])
    if not event.HasField("summary") or event.step < step:
      kept.append(record)
  if len(kept) < len(records) or sum(map(len, records)) < len(data):
    _replace_file(path, b"".join(kept))


def create_metric_writer(log_dir: str, *, tensorboard: bool = True, log_to_stdout: bool = True,
                         collection: Optional[str] = None) -> interface.MetricWriter:
  """The metric writer of one run: `metrics.jsonl` + TensorBoard (+ absl logging), host 0 only.

  On a resumed run, its first write at step S drops the killed run's points at steps >= S from
  both files (see the module docstring).

  Args:
    log_dir: the model dir (or a sub-folder per collection, see below).
    tensorboard: also write TensorBoard event files to `log_dir` (or `log_dir/collection`).
    log_to_stdout: also log every scalar with absl logging.
    collection: e.g. 'train' / 'eval': TensorBoard events go to `log_dir/collection`, and the JSON
      keys get a `collection/` prefix so one `metrics.jsonl` holds every collection.
  Returns:
    A clu `MetricWriter`; call `flush()` periodically and `close()` at the end.
  """
  if jax.process_index() != 0:
    return multi_writer.MultiWriter([])  # other hosts write nothing
  prefix = f"{collection}/" if collection else ""
  writers: list[interface.MetricWriter] = [JsonlWriter(os.path.join(log_dir, METRICS_FILE), prefix)]
  if tensorboard:
    writers.append(TensorBoardWriter(os.path.join(log_dir, collection or "")))
  if log_to_stdout:
    writers.append(logging_writer.LoggingWriter(collection=collection))
  return multi_writer.MultiWriter(writers)


def record_logger(model_dir: str):
  """(writer, log_fn) of a training run: each record {step, [phase], scalars...} goes to
  TensorBoard and metrics.jsonl in `model_dir` (not to stdout)."""
  writer = create_metric_writer(model_dir, log_to_stdout=False)

  def log_fn(record):
    scalars = {k: v for k, v in record.items() if k not in ("step", "phase")}
    writer.write_scalars(record["step"], scalars)
    writer.flush()
  return writer, log_fn
