"""Scalar metrics to TensorBoard and to `metrics.jsonl`, host 0 only (a facade over clu).

`create_metric_writer(model_dir)` returns a standard `clu.metric_writers` `MetricWriter`, so it
plugs into clu periodic actions and T5X-style code. Each `write_scalars(step, scalars)` call
becomes one TensorBoard point per scalar and one JSON line `{"step": step, **scalars}` in
`model_dir/metrics.jsonl`. Put a `round` scalar in the dict to mark alternating-training rounds
(`llmrec_jax.report` draws the boundaries). Non-zero hosts get a writer that drops everything.

Note: importing this module imports TensorFlow (clu's TensorBoard writer); `report.py` does not.
"""
from __future__ import annotations

import json
import numbers
import os
from typing import Any, Mapping, Optional

from clu.metric_writers import interface
from clu.metric_writers import logging_writer
from clu.metric_writers import multi_writer
from clu.metric_writers import summary_writer
import jax
import numpy as np

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
    self._file = open(path, "a", buffering=1, encoding="utf-8")  # pylint: disable=consider-using-with

  def _drop_old_records_from(self, step: int) -> None:
    self._file.close()
    kept = [line for line in _read_lines(self.path)
            if line not in self._old_lines or json.loads(line).get("step", -1) < step]
    tmp = f"{self.path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
      f.write("".join(line + "\n" for line in kept))
    os.replace(tmp, self.path)
    self._file = open(self.path, "a", buffering=1, encoding="utf-8")  # pylint: disable=consider-using-with

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    if "step" in scalars:
      raise ValueError("'step' is reserved in metrics.jsonl; pass it as the step argument")
    if self._old_lines:
      self._drop_old_records_from(int(step))
      self._old_lines = set()
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


def create_metric_writer(log_dir: str, *, tensorboard: bool = True, log_to_stdout: bool = True,
                         collection: Optional[str] = None) -> interface.MetricWriter:
  """The metric writer of one run: `metrics.jsonl` + TensorBoard (+ absl logging), host 0 only.

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
    writers.append(summary_writer.SummaryWriter(os.path.join(log_dir, collection or "")))
  if log_to_stdout:
    writers.append(logging_writer.LoggingWriter(collection=collection))
  return multi_writer.MultiWriter(writers)
