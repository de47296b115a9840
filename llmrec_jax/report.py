"""Plot runs from their `metrics.jsonl`: `python -m llmrec_jax.report RUN_DIR [RUN_DIR ...]`.

One run: a PNG (default `RUN_DIR/metrics.png`) with one panel per metric against the step.
When records carry a `round` field (alternating training), dashed vertical lines mark the steps
where a new round starts (the step of the previous round's last record, see `round_boundaries`).
Several runs: learning curves on shared axes (default `curves.png` in the current directory):
each `--metrics` name (default validation HR@10 and NDCG@10) against each `--x` key (default
wall-clock `minutes` and `epoch`; `step` is the optimizer step), one line per run, labelled by
its folder name. Needs only matplotlib (Agg, no
display), not TensorFlow.

  python -m llmrec_jax.report RUN_DIR [RUN_DIR ...] [--out PNG] [--metrics valid/hit@10,...]
      [--x minutes,epoch]

A RUN_DIR may also be the metrics.jsonl file itself.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Optional, Sequence

from absl import app
from absl import flags
import numpy as np

from llmrec_jax import cli_flags

METRICS_FILE = "metrics.jsonl"  # = metric_writers.METRICS_FILE (not imported: it pulls in TF)
RESERVED = ("step", "round")


def load_metrics(path: str) -> list[dict[str, Any]]:
  """Records of a metrics.jsonl file, in file order; blank lines are skipped.

  Raises:
    ValueError naming `path:line` for a line that is not a JSON object with an integer `step`
    and numeric values.
  """
  records = []
  with open(path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
      if not isinstance(record, dict) or not isinstance(record.get("step"), int):
        raise ValueError(f"{path}:{lineno}: expected a JSON object with an integer 'step'")
      bad = [k for k, v in record.items() if isinstance(v, bool) or not isinstance(v, (int, float))]
      if bad:
        raise ValueError(f"{path}:{lineno}: non-numeric values for {bad}")
      records.append(record)
  return records


def metric_series(records: Sequence[dict[str, Any]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{metric name: (steps_N, values_N)} sorted by step, for every key but `step`/`round`."""
  points: dict[str, list[tuple[int, float]]] = {}
  for r in records:
    for k, v in r.items():
      if k not in RESERVED:
        points.setdefault(k, []).append((r["step"], float(v)))
  out = {}
  for name in sorted(points):
    pts = sorted(points[name], key=lambda p: p[0])
    out[name] = (np.array([p[0] for p in pts]), np.array([p[1] for p in pts]))
  return out


def round_boundaries(records: Sequence[dict[str, Any]]) -> list[tuple[int, int]]:
  """[(step, round)] for each round after the first: the step of the last record of the round
  before it (records ordered by step, then round), which is where the new round starts.

  A record's step counts the optimizer steps done. The alternating loop logs its train metrics
  every 50 steps of a phase and at the phase's last step, then a phase-end record at that same
  step; so the previous round's last record sits at its exact end step, while the new round's
  first record may come up to 50 steps after the round started.
  """
  rounds = sorted((r["step"], r["round"]) for r in records if "round" in r)
  return [(rounds[i - 1][0], rnd) for i, (_, rnd) in enumerate(rounds)
          if i and rnd != rounds[i - 1][1]]


def plot_metrics(records: Sequence[dict[str, Any]], out_path: str, title: Optional[str] = None,
                 ncols: int = 3) -> str:
  """Writes a PNG with one panel per metric (x = step); returns `out_path`."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top  # Agg, no pyplot state
  series = metric_series(records)
  if not series:
    raise ValueError("no metrics to plot (only 'step'/'round' fields)")
  bounds = round_boundaries(records)
  ncols = max(1, min(ncols, len(series)))
  nrows = math.ceil(len(series) / ncols)
  fig = Figure(figsize=(4.5 * ncols, 3.2 * nrows), layout="constrained")
  axes = fig.subplots(nrows, ncols, squeeze=False)
  for ax, (name, (steps, values)) in zip(axes.flat, series.items()):
    ax.plot(steps, values, marker="." if len(steps) < 50 else None, linewidth=1.2)
    for step, rnd in bounds:
      ax.axvline(step, color="gray", linestyle="--", linewidth=0.8)
      ax.annotate(f"r{rnd}", (step, 1.0), xycoords=("data", "axes fraction"), fontsize=7,
                  color="gray", va="top", ha="left")
    ax.set_title(name, fontsize=10)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
  for ax in list(axes.flat)[len(series):]:
    ax.set_visible(False)
  if title:
    fig.suptitle(title)
  os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
  fig.savefig(out_path, format="png", dpi=80)
  return out_path


def plot_curves(runs: dict[str, Sequence[dict[str, Any]]], metrics: Sequence[str], out_path: str,
                xs: Sequence[str] = ("minutes", "step")) -> str:
  """Writes a PNG of `metrics` (rows) against each of `xs` (columns), one line per run; records
  without the metric or the x key are skipped. Returns `out_path`."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  fig = Figure(figsize=(5.0 * len(xs), 3.4 * len(metrics)), layout="constrained")
  axes = fig.subplots(len(metrics), len(xs), squeeze=False)
  plotted = 0
  for row, metric in enumerate(metrics):
    for col, x in enumerate(xs):
      ax = axes[row, col]
      for label, records in runs.items():
        pts = sorted((float(r[x]), float(r[metric])) for r in records if x in r and metric in r)
        if pts:
          ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", linewidth=1.2, label=label)
          plotted += 1
      ax.set_xlabel("wall-clock minutes" if x == "minutes" else x)
      ax.set_title(metric, fontsize=10)
      ax.grid(alpha=0.3)
      if row == 0 and col == 0:
        ax.legend(fontsize=7)
  if not plotted:
    raise ValueError(f"no run has any of {list(metrics)} against {list(xs)}")
  os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
  fig.savefig(out_path, format="png", dpi=80)
  return out_path


def _metrics_path(path: str) -> str:
  if os.path.isdir(path):
    path = os.path.join(path, METRICS_FILE)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path} not found")
  return path


def define_flags(flag_values: flags.FlagValues) -> list[flags.FlagHolder]:
  fv = flag_values
  return [
      flags.DEFINE_string("out", None, "PNG to write (default: RUN_DIR/metrics.png for one run, "
                          "curves.png for several).", flag_values=fv),
      flags.DEFINE_string("metrics", "valid/hit@10,valid/ndcg@10",
                          "Comma-separated metric names for the multi-run curves.", flag_values=fv),
      flags.DEFINE_string("x", "minutes,epoch", "Comma-separated x keys for the multi-run curves "
                          "(minutes, epoch, step).", flag_values=fv)]


def run(args, model_dirs: Sequence[str]) -> str:
  """Plots the runs `model_dirs` (folders holding metrics.jsonl, or the files); returns the PNG."""
  if not model_dirs:
    raise app.UsageError(f"give one or more RUN_DIRs (folders holding {METRICS_FILE})")
  paths = [_metrics_path(p) for p in model_dirs]
  run_name = lambda p: os.path.basename(os.path.dirname(os.path.abspath(p)))  # noqa: E731
  if len(paths) == 1:
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(paths[0])), "metrics.png")
    plot_metrics(load_metrics(paths[0]), out, title=run_name(paths[0]))
  else:
    out = args.out or "curves.png"
    plot_curves({run_name(p): load_metrics(p) for p in paths}, args.metrics.split(","), out,
                xs=args.x.split(","))
  print(out)
  return out


def main(argv: Sequence[str]) -> str:
  """The CLI from Python: `main(['RUN_DIR', '--out', 'm.png'])`; returns the PNG written."""
  return run(*cli_flags.parse(define_flags, argv, takes_positional=True))


if __name__ == "__main__":
  cli_flags.run_main(define_flags, run, takes_positional=True)
