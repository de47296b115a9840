"""The runs directory of the results table: layout, collection, and the command of every run.

Layout under RUNS_DIR (one folder per dataset key):

  RUNS_DIR/<dataset>/<model>/results.json   generative runs: the MODEL_DIR of `llmrec_jax.train`;
                                             the table reads `best.test` (selected on validation)
  RUNS_DIR/<dataset>/<model>.json           baselines: the `--json` line of `llmrec_jax.baselines`;
                                             the table reads `test`
  RUNS_DIR/<dataset>/<model>.run.json       written by `run_one`: command, wall seconds, UTC end time
  RUNS_DIR/<dataset>/<model>.log            stdout + stderr of a run started by `run_one`

Dataset keys are `DATASETS` (beauty, toys, sports, yelp), model keys `MODELS`. No JAX here.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import pathlib
import shlex
import subprocess
import sys
import time
from typing import Any, Optional

from llmrec_jax.experiments.published import METRICS

# Fixed-budget settings for the generative runs (on top of the ablation gin; must come last).
CPU_BUDGET_GIN = "runs/cpu_budget.gin"
BASE_GIN = "idgenrec.gin"  # before the ablation file of a generative run


@dataclasses.dataclass(frozen=True)
class Dataset:
  folder: str        # under the data root (../shared/data)
  has_titles: bool   # item titles (or Yelp names): the 'title' ID scheme is meaningless without


DATASETS = {
    "beauty": Dataset("amazon2014_beauty", True),
    "toys": Dataset("amazon2014_toys", True),
    "sports": Dataset("amazon2014_sports", False),  # ships no items.jsonl
    "yelp": Dataset("yelp", True),
}


@dataclasses.dataclass(frozen=True)
class Model:
  kind: str                      # "baseline" or "generative"
  args: tuple[str, ...] = ()     # baseline: CLI args after --model; generative: the ablation gin file
  label: str = ""                # row label in the table
  needs_titles: bool = False


MODELS = {
    "popularity": Model("baseline", ("popularity",), "Popularity (ours)"),
    "sasrec_ce": Model("baseline", ("sasrec", "--loss", "ce"), "SASRec, CE loss (ours)"),
    # BCE learns slowly (one sampled negative): its best Beauty epoch was ~200, past the CLI's
    # defaults (200 epochs, patience 5); the time budget still caps it.
    "sasrec_bce": Model("baseline", ("sasrec", "--loss", "bce", "--epochs", "400", "--patience", "10"),
                        "SASRec, BCE loss (ours)"),
    "ids_random": Model("generative", ("ablations/ids_random.gin",), "T5 + random IDs (ours)"),
    "ids_sequential": Model("generative", ("ablations/ids_sequential.gin",), "T5 + sequential IDs (ours)"),
    "ids_title": Model("generative", ("ablations/ids_title.gin",), "T5 + title IDs (ours)", needs_titles=True),
    "ids_reference": Model("generative", ("ablations/ids_reference.gin",), "T5 + reference IDs (ours)"),
    "ids_learned": Model("generative", ("ablations/ids_learned.gin",), "IDGenRec learned IDs (ours)"),
    # Semantic IDs (RQ-VAE codes): TIGER's extra level or LC-Rec's uniform mapping, of GloVe text
    # vectors or a SASRec's item table.
    "sid_tiger_glove": Model("generative", ("semantic_ids/tiger.gin",),
                             "Semantic IDs, TIGER-style, GloVe (ours)", needs_titles=True),
    "sid_lcrec_glove": Model("generative", ("semantic_ids/lcrec.gin",),
                             "Semantic IDs, LC-Rec-style, GloVe (ours)", needs_titles=True),
    "sid_tiger_sasrec": Model("generative", ("semantic_ids/tiger_sasrec.gin",),
                              "Semantic IDs, TIGER-style, SASRec embeddings (ours)"),
    "sid_lcrec_sasrec": Model("generative", ("semantic_ids/lcrec_sasrec.gin",),
                              "Semantic IDs, LC-Rec-style, SASRec embeddings (ours)"),
}


def parse_keys(text: str, known: dict[str, Any], what: str) -> list[str]:
  """Comma-separated keys, each checked against `known` (a typo fails loudly)."""
  keys = [k.strip() for k in text.split(",") if k.strip()]
  bad = [k for k in keys if k not in known]
  if bad or not keys:
    raise ValueError(f"unknown {what} {bad or text!r}; choose from {', '.join(known)}")
  return keys


def result_path(runs_dir: str | os.PathLike, dataset: str, model: str) -> pathlib.Path:
  base = pathlib.Path(runs_dir) / dataset
  if MODELS[model].kind == "generative":
    return base / model / "results.json"
  return base / f"{model}.json"


def provenance_path(runs_dir: str | os.PathLike, dataset: str, model: str) -> pathlib.Path:
  return pathlib.Path(runs_dir) / dataset / f"{model}.run.json"


def load_metrics(path: str | os.PathLike, kind: str) -> dict[str, float]:
  """Test metrics of one finished run: `best.test` (generative) or `test` (baseline).

  Raises:
    ValueError naming the file when it is not JSON or lacks the metrics.
  """
  try:
    with open(path, encoding="utf-8") as f:
      doc = json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
  test = ((doc.get("best") or {}).get("test") if kind == "generative" else doc.get("test")) \
      if isinstance(doc, dict) else None
  if not isinstance(test, dict):
    where = "best.test" if kind == "generative" else "test"
    raise ValueError(f"{path}: no '{where}' metrics (an unfinished run?)")
  return {m: float(test[m]) for m in METRICS if m in test}


def test_users(path: str | os.PathLike, kind: str) -> Optional[int]:
  """How many users a finished run's test metrics cover, when its file says (generative:
  `best.eval_users.test`, written since test sampling existed; baseline: `num_users`)."""
  with open(path, encoding="utf-8") as f:
    doc = json.load(f)
  n = ((doc.get("best") or {}).get("eval_users") or {}).get("test") if kind == "generative" \
      else doc.get("num_users")
  return None if n is None else int(n)


def collect(runs_dir: str | os.PathLike, datasets: list[str], models: list[str]
            ) -> dict[tuple[str, str], dict[str, Any]]:
  """{(dataset, model): {"metrics": {...}, "path", "provenance", "test_users"}} for every run
  present (`test_users` None when the file does not say)."""
  out = {}
  for ds in datasets:
    for model in models:
      path = result_path(runs_dir, ds, model)
      if not path.is_file():
        continue
      prov_path = provenance_path(runs_dir, ds, model)
      prov = json.loads(prov_path.read_text(encoding="utf-8")) if prov_path.is_file() else {}
      prov.setdefault("finished_utc", _utc(path.stat().st_mtime))
      kind = MODELS[model].kind
      out[(ds, model)] = {"metrics": load_metrics(path, kind), "path": str(path), "provenance": prov,
                          "test_users": test_users(path, kind)}
  return out


def command(dataset: str, model: str, *, runs_dir: str | os.PathLike, data_root: str | os.PathLike,
            run_gin: tuple[str, ...] = (CPU_BUDGET_GIN,), vocab_path: Optional[str] = None,
            sasrec_minutes: float = 20.0) -> list[str]:
  """argv (starting with this Python) that produces `result_path(runs_dir, dataset, model)`
  (a baseline's stdout is that file). `vocab_path` overrides the gin files' VOCAB_PATH."""
  spec = MODELS[model]
  data_dir = str(pathlib.Path(data_root) / DATASETS[dataset].folder)
  if spec.kind == "baseline":
    argv = [sys.executable, "-m", "llmrec_jax.baselines", "--model", *spec.args, "--data_dir", data_dir,
            "--json", "--no_progress"]
    if spec.args[0] == "sasrec":
      argv += ["--time_budget_min", f"{sasrec_minutes:g}"]
    return argv
  model_dir = pathlib.Path(runs_dir) / dataset / model
  # The ablation file sets only the scheme: it goes after the base file.
  return [sys.executable, "-m", "llmrec_jax.train", f"--gin_file={BASE_GIN}", f"--gin_file={spec.args[0]}",
          *[f"--gin_file={g}" for g in run_gin],
          f"--gin.MODEL_DIR='{model_dir}'", f"--gin.DATA_DIR='{data_dir}'",
          *([f"--gin.VOCAB_PATH='{vocab_path}'"] if vocab_path else [])]


def display_command(argv: list[str]) -> str:
  """A shell line for `argv`, writing gin string bindings as the README does (--gin.X="'v'")."""
  out = []
  for arg in argv:
    if shlex.quote(arg) != arg and not any(c in arg for c in '"$`\\!'):
      out.append(f'"{arg}"' if "=" not in arg else f'{arg.split("=", 1)[0]}="{arg.split("=", 1)[1]}"')
    else:
      out.append(shlex.quote(arg))
  return " ".join(out)


def skip_reason(dataset: str, model: str) -> Optional[str]:
  if MODELS[model].needs_titles and not DATASETS[dataset].has_titles:
    return f"{model} needs item titles; {dataset} has none"
  return None


def run_one(dataset: str, model: str, argv: list[str], *, runs_dir: str | os.PathLike) -> bool:
  """Runs `argv` (stdout + stderr to `<model>.log`; a baseline's last stdout line becomes its
  JSON), then writes the provenance file. Returns whether the result file now exists."""
  base = pathlib.Path(runs_dir) / dataset
  base.mkdir(parents=True, exist_ok=True)
  start = time.time()
  with open(base / f"{model}.log", "w", encoding="utf-8") as log:
    log.write(display_command(argv) + "\n")
    log.flush()
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=log, text=True, check=False)
    log.write(proc.stdout)
  if proc.returncode == 0 and MODELS[model].kind == "baseline":
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if lines:
      result_path(runs_dir, dataset, model).write_text(lines[-1] + "\n", encoding="utf-8")
  done = proc.returncode == 0 and result_path(runs_dir, dataset, model).is_file()
  provenance_path(runs_dir, dataset, model).write_text(json.dumps({
      "command": display_command(argv), "wall_seconds": round(time.time() - start, 1),
      "finished_utc": _utc(time.time()), "returncode": proc.returncode}, indent=1) + "\n", encoding="utf-8")
  return done


def _utc(timestamp: float) -> str:
  return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
