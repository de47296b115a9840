"""Dataset statistics, as a library function and a CLI.

  python -m llmrec_jax.data.stats DATA_DIR [--json] [--max_his 20] [--drop_bad_users]

DATA_DIR is a dataset folder (P5 layout or MovieLens). Prints counts, split sizes, sequence-length
percentiles and metadata coverage, as a table or (--json) one JSON object.
"""
from __future__ import annotations

import json
from typing import Sequence

from absl import app
from absl import flags
import numpy as np

from llmrec_jax import cli_flags
from llmrec_jax.data.records import RecData
from llmrec_jax.data.sources import load_dataset
from llmrec_jax.data.splits import leave_one_out

PERCENTILES = (50, 90, 99)


def _filled(value) -> bool:
  if value is None:
    return False
  if isinstance(value, (str, list, tuple, dict)):
    return bool(value) and (not isinstance(value, str) or bool(value.strip()))
  return True


def metadata_coverage(data: RecData) -> dict[str, float]:
  """Per metadata field, the fraction of items where it is present and non-empty (fields sorted by name)."""
  fields = sorted({f for m in data.item_meta for f in m})
  n = max(data.num_items, 1)
  return {f: sum(_filled(m.get(f)) for m in data.item_meta) / n for f in fields}


def dataset_stats(data: RecData, max_his: int = 20) -> dict:
  """Counts, split sizes, sequence-length percentiles and metadata coverage of `data`."""
  split = leave_one_out(data, max_his=max_his)
  lens = data.lengths
  length = {"min": int(lens.min()), **{f"p{p}": float(np.percentile(lens, p)) for p in PERCENTILES},
            "max": int(lens.max()), "mean": float(lens.mean())} if lens.size else {}
  return {
      "name": data.name,
      "users": data.num_users,
      "items": data.num_items,
      "interactions": data.num_interactions,
      "dropped_users": data.dropped_users,
      "max_his": max_his,
      "examples": {k: v.num_examples for k, v in split.items()},
      "sequence_length": length,
      "metadata_coverage": metadata_coverage(data),
  }


def format_stats(stats: dict) -> str:
  """Human-readable multi-line summary of `dataset_stats`."""
  lines = [f"dataset       {stats['name']}",
           f"users         {stats['users']:,}  (dropped {stats['dropped_users']:,})",
           f"items         {stats['items']:,}",
           f"interactions  {stats['interactions']:,}",
           "examples      " + ", ".join(f"{k} {v:,}" for k, v in stats["examples"].items())
           + f"  (max_his {stats['max_his']})",
           "seq length    " + ", ".join(f"{k} {v:g}" for k, v in stats["sequence_length"].items())]
  cov = stats["metadata_coverage"]
  lines.append("metadata      " + (", ".join(f"{k} {100 * v:.1f}%" for k, v in cov.items()) if cov else "none"))
  return "\n".join(lines)


def define_flags(flag_values: flags.FlagValues) -> list[flags.FlagHolder]:
  fv = flag_values
  return [flags.DEFINE_bool("json", False, "Print one JSON object instead of a table.", flag_values=fv),
          flags.DEFINE_integer("max_his", 20, "History length cap of the splits.", flag_values=fv),
          flags.DEFINE_bool("drop_bad_users", False, "Drop bad users instead of failing.", flag_values=fv)]


def run(args, positional: Sequence[str]) -> int:
  """Prints the statistics of the one DATA_DIR in `positional`."""
  if len(positional) != 1:
    raise app.UsageError(f"give one DATA_DIR (a dataset folder), got {list(positional)}")
  stats = dataset_stats(load_dataset(positional[0], drop_bad_users=args.drop_bad_users), max_his=args.max_his)
  print(json.dumps(stats) if args.json else format_stats(stats))
  return 0


def main(argv: Sequence[str]) -> int:
  """The CLI from Python: `main(['DATA_DIR', '--json'])`."""
  return run(*cli_flags.parse(define_flags, argv, takes_positional=True))


if __name__ == "__main__":
  cli_flags.run_main(define_flags, run, takes_positional=True)
