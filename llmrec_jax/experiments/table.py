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

import datetime
import logging
import os
import pathlib
import subprocess
import sys
from typing import Any, Sequence

from absl import flags

from llmrec_jax import cli_flags
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


def define_flags(flag_values: flags.FlagValues) -> list[flags.FlagHolder]:
  fv = flag_values
  holders = [
      flags.DEFINE_string("datasets", ",".join(runs.DATASETS), "Comma-separated: " + ", ".join(runs.DATASETS)
                          + ".", flag_values=fv),
      flags.DEFINE_string("models", ",".join(runs.MODELS), "Comma-separated: " + ", ".join(runs.MODELS) + ".",
                          flag_values=fv),
      flags.DEFINE_string("out", None, "Markdown file to write (required).", flag_values=fv),
      flags.DEFINE_string("runs_dir", "runs", "Where results are collected (and written with --run).",
                          flag_values=fv),
      flags.DEFINE_bool("run", False, "Run the missing (dataset, model) pairs first.", flag_values=fv),
      flags.DEFINE_bool("dry_run", False, "With --run: print the commands, run nothing.", flag_values=fv),
      flags.DEFINE_string("data_root", "../shared/data", "Folder holding the dataset folders.", flag_values=fv),
      flags.DEFINE_string("readme", None, "README with the published numbers (default: DATA_ROOT/README.md).",
                          flag_values=fv),
      flags.DEFINE_string("vocab_path", "../shared/vocab/t5_spiece.model", "SentencePiece model for the "
                          "generative runs ('' keeps the gin files' VOCAB_PATH).", flag_values=fv),
      flags.DEFINE_string("run_gin", runs.CPU_BUDGET_GIN, "Comma-separated gin files after the ablation file "
                          "('' for the paper-scale idgenrec.gin).", flag_values=fv),
      flags.DEFINE_float("sasrec_minutes", 20.0, "SASRec time budget per run.", flag_values=fv)]
  flags.mark_flag_as_required("out", flag_values=fv)
  return holders


def run(args, argv: Sequence[str]) -> str:
  """Collects (and with --run, first runs) the results, writes the table to --out and returns it;
  `argv` (the command's arguments) goes into the provenance footer."""
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


def main(argv: Sequence[str]) -> str:
  """The CLI from Python: `main(['--datasets', 'beauty', '--out', 'results.md'])`."""
  args, _ = cli_flags.parse(define_flags, argv)
  return run(args, list(argv))


if __name__ == "__main__":
  cli_flags.run_main(define_flags, lambda args, _: run(args, sys.argv[1:]))
