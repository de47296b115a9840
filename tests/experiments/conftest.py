"""Writers of hand-made run results in the layout of `llmrec_jax.experiments.runs`."""
import json
import types

import pytest


def metrics(base):
  return {"hit@5": base, "ndcg@5": base / 2, "hit@10": 2 * base, "ndcg@10": base}


def write_generative(runs_dir, dataset, model, test, complete=True):
  path = runs_dir / dataset / model / "results.json"
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps({"phases": [], "best": {"round": 0, "valid": metrics(0.5), "test": test},
                              "complete": complete}), encoding="utf-8")
  return path


def write_baseline(runs_dir, dataset, model, test):
  path = runs_dir / dataset / f"{model}.json"
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps({"model": model, "valid": metrics(0.9), "test": test, "wall_seconds": 3.0}),
                  encoding="utf-8")
  return path


@pytest.fixture
def fake_runs():
  """metrics(base) -> a metrics dict; write_generative / write_baseline(runs_dir, dataset, model, test)."""
  return types.SimpleNamespace(metrics=metrics, write_generative=write_generative, write_baseline=write_baseline)
