"""Results table: our runs beside the published numbers, as markdown.

  python -m llmrec_jax.experiments.table --datasets beauty,toys,yelp,sports --out results.md \
      [--runs_dir runs] [--run] [--models popularity,sasrec_ce,ids_title,...] \
      [--data_root ../shared/data] [--vocab_path ../shared/vocab/t5_spiece.model] [--dry_run]

Collects every (dataset, model) result found under `--runs_dir` (layout: `experiments/runs.py`);
with `--run`, first runs the missing ones one after another (generative runs with
`--gin_file=idgenrec.gin --gin_file=ablations/ids_<scheme>.gin --gin_file=runs/cpu_budget.gin`, SASRec with a time
budget), then writes the table: one row per model, HR@5 NDCG@5 HR@10 NDCG@10 (test split,
full ranking) per dataset, then the README's published rows marked "(quoted)"; "-" where there
is no number. A footer gives each run's command, wall time and date.
"""
from __future__ import annotations

import argparse
import datetime
import logging
import os
import pathlib
import subprocess
import sys
from typing import Any, Optional, Sequence

from llmrec_jax.experiments import published, runs

log = logging.getLogger(__name__)

COLUMNS = ("HR@5", "NDCG@5", "HR@10", "NDCG@10")  # = published.METRICS, as printed
MISSING = "-"
QUOTED = " (quoted)"


def format_row(label: str, datasets: Sequence[str], values: dict[str, dict[str, float]]) -> str:
  """One markdown row: `label`, then the 4 metrics of each dataset (`MISSING` where absent)."""
  cells = [label]
  for ds in datasets:
    metrics = values.get(ds, {})
    cells += [f"{metrics[m]:.4f}" if m in metrics else MISSING for m in published.METRICS]
  return "| " + " | ".join(cells) + " |"


def render(datasets: Sequence[str], models: Sequence[str], results: dict[tuple[str, str], dict[str, Any]],
           quoted: published.Published, *, notes: Sequence[str] = (), footer: Sequence[str] = ()) -> str:
  """The markdown document: header, our rows (in `models` order), quoted rows, notes, footer."""
  header = ["model"] + [f"{ds} {c}" for ds in datasets for c in COLUMNS]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for model in models:
    values = {ds: results[(ds, model)]["metrics"] for ds in datasets if (ds, model) in results}
    lines.append(format_row(runs.MODELS[model].label or model, datasets, values))
  for label, values in quoted.items():
    lines.append(format_row(label + QUOTED, datasets, values))
  doc = ["# Results (test split, full ranking, leave-one-out)", "", *lines, ""]
  if notes:
    doc += ["Notes:", *[f"- {n}" for n in notes], ""]
  if footer:
    doc += ["Provenance:", *[f"- {f}" for f in footer], ""]
  return "\n".join(doc)


def provenance_lines(results: dict[tuple[str, str], dict[str, Any]], argv: Sequence[str],
                     readme: str) -> list[str]:
  now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  out = [f"table: `{runs.display_command(['python', '-m', 'llmrec_jax.experiments.table', *argv])}` ({now}, "
         f"code at {_git_head()})",
         f"quoted rows: copied from {readme} (published or recalled numbers, not rerun here)"]
  for (ds, model), r in sorted(results.items()):
    p = r["provenance"]
    wall = f"{p['wall_seconds'] / 60:.1f} min" if "wall_seconds" in p else "wall time unknown"
    cmd = f"`{p['command']}`" if "command" in p else "command unknown (collected, not run by this tool)"
    users = f", test on {r['test_users']:,} users" if r.get("test_users") is not None else ""
    out.append(f"{ds} / {model}: {cmd}, {wall}, finished {p['finished_utc']}{users} ({r['path']})")
  return out


def _git_head() -> str:
  try:
    return subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                          check=True, timeout=10).stdout.strip() or "unknown commit"
  except (OSError, subprocess.SubprocessError):
    return "unknown commit"


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog="python -m llmrec_jax.experiments.table", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--datasets", default=",".join(runs.DATASETS), help="comma-separated: " + ", ".join(runs.DATASETS))
  p.add_argument("--models", default=",".join(runs.MODELS), help="comma-separated: " + ", ".join(runs.MODELS))
  p.add_argument("--out", required=True, help="markdown file to write")
  p.add_argument("--runs_dir", default="runs", help="where results are collected (and written with --run)")
  p.add_argument("--run", action="store_true", help="run the missing (dataset, model) pairs first")
  p.add_argument("--dry_run", action="store_true", help="with --run: print the commands, run nothing")
  p.add_argument("--data_root", default="../shared/data", help="folder holding the dataset folders")
  p.add_argument("--readme", default=None, help="README with the published numbers (default: DATA_ROOT/README.md)")
  p.add_argument("--vocab_path", default="../shared/vocab/t5_spiece.model",
                 help="SentencePiece model for the generative runs ('' keeps the gin files' VOCAB_PATH)")
  p.add_argument("--run_gin", default=runs.CPU_BUDGET_GIN,
                 help="comma-separated gin files after the ablation file ('' for the paper-scale idgenrec.gin)")
  p.add_argument("--sasrec_minutes", type=float, default=20.0, help="SASRec time budget per run")
  return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> str:
  argv = list(sys.argv[1:] if argv is None else argv)
  args = parse_args(argv)
  logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
  datasets = runs.parse_keys(args.datasets, runs.DATASETS, "dataset")
  models = runs.parse_keys(args.models, runs.MODELS, "model")
  readme = args.readme or os.path.join(args.data_root, "README.md")
  quoted = published.parse_published(readme)  # fails before any long run when the README changed
  notes = [runs.skip_reason(ds, m) for ds in datasets for m in models if runs.skip_reason(ds, m)]

  def write_table() -> str:  # after every run too, so a long --run shows partial results
    results = runs.collect(args.runs_dir, datasets, models)
    doc = render(datasets, models, results, quoted, notes=notes, footer=provenance_lines(results, argv, readme))
    pathlib.Path(args.out).write_text(doc, encoding="utf-8")
    return doc

  if args.run:
    run_gin = tuple(g for g in args.run_gin.split(",") if g)
    have = runs.collect(args.runs_dir, datasets, models)
    for ds in datasets:
      for model in models:
        if (ds, model) in have or runs.skip_reason(ds, model):
          continue
        cmd = runs.command(ds, model, runs_dir=os.path.abspath(args.runs_dir),
                           data_root=os.path.abspath(args.data_root), run_gin=run_gin,
                           vocab_path=os.path.abspath(args.vocab_path) if args.vocab_path else None,
                           sasrec_minutes=args.sasrec_minutes)
        log.info("%s %s: %s", ds, model, runs.display_command(cmd))
        if args.dry_run:
          print(runs.display_command(cmd))
          continue
        if not runs.run_one(ds, model, cmd, runs_dir=args.runs_dir):
          notes.append(f"{ds} / {model} failed: see {pathlib.Path(args.runs_dir) / ds / (model + '.log')}")
        write_table()
  doc = write_table()
  print(args.out)
  return doc

if __name__ == "__main__":
  main()
