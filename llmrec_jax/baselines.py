"""Runs a classic baseline with full-ranking leave-one-out evaluation.

  python -m llmrec_jax.baselines --model sasrec --loss ce --data_dir ../shared/data/amazon2014_beauty --json
  python -m llmrec_jax.baselines --model popularity --data_dir synthetic

Measured on Beauty (2 CPU cores shared with ~4 other jobs, 2026-12-02; /tmp/bl2/*.json):
  --loss ce --learning_rate 2e-3 --eval_every 2 --time_budget_min 30: test HR@10 .0741 NDCG@10 .0352
    (best epoch 22 at 1492 s); with --learning_rate 3e-3 --schedule cosine --epochs 24 --eval_every 4:
    HR@10 .0719 NDCG@10 .0350 in 1148 s. `--report_exclude_seen` (S3-Rec protocol): HR@10 .0838 / .0825.

`--data_dir synthetic` uses `llmrec_jax.data.synthetic.make_synthetic(seed=--seed)`. Prints validation
and test HR@5/10 and NDCG@5/10 and the wall time (one JSON object with `--json`).
"""
from __future__ import annotations

import json
import os
import time
import types
from typing import Sequence

from absl import flags
import jax

from llmrec_jax import cli_flags
from llmrec_jax.data import sources
from llmrec_jax.data import synthetic
from llmrec_jax.data.splits import leave_one_out
from llmrec_jax.systems import popularity
from llmrec_jax.systems.sasrec import model as sasrec
from llmrec_jax.systems.sasrec import train as sasrec_train

SYNTHETIC = "synthetic"


def define_flags(flag_values: flags.FlagValues) -> list[flags.FlagHolder]:
  fv = flag_values
  holders = [
      flags.DEFINE_enum("model", None, ["popularity", "sasrec"], "Baseline to run (required).", flag_values=fv),
      flags.DEFINE_string("data_dir", None, f"Dataset folder, or '{SYNTHETIC}' (required).", flag_values=fv),
      flags.DEFINE_enum("loss", "ce", [l.value for l in sasrec_train.Loss], "sasrec: training loss.",
                        flag_values=fv),
      flags.DEFINE_bool("json", False, "Print one JSON object.", flag_values=fv),
      flags.DEFINE_integer("epochs", 200, "sasrec: training epochs (at most).", flag_values=fv),
      flags.DEFINE_integer("seed", 0, "Seed of the synthetic data and of training.", flag_values=fv),
      flags.DEFINE_float("time_budget_min", None, "Stop training after M minutes, then test.", flag_values=fv),
      flags.DEFINE_integer("batch_size", 128, "sasrec: sequences per step.", flag_values=fv),
      flags.DEFINE_float("learning_rate", 1e-3, "sasrec: peak learning rate.", flag_values=fv),
      flags.DEFINE_enum("schedule", "constant", [x.value for x in sasrec_train.Schedule],
                        "cosine: decay to 0 over --epochs (set --epochs to what the time budget allows).",
                        flag_values=fv),
      flags.DEFINE_integer("hidden", 64, "sasrec: model width.", flag_values=fv),
      flags.DEFINE_integer("num_blocks", 2, "sasrec: transformer blocks.", flag_values=fv),
      flags.DEFINE_integer("num_heads", 1, "sasrec: attention heads.", flag_values=fv),
      flags.DEFINE_integer("max_len", 50, "sasrec: history items per sequence.", flag_values=fv),
      flags.DEFINE_float("dropout", 0.5, "sasrec: dropout rate.", flag_values=fv),
      flags.DEFINE_integer("eval_every", 5, "sasrec: epochs between validations.", flag_values=fv),
      flags.DEFINE_integer("patience", 5, "sasrec: validations without improvement before stopping.",
                           flag_values=fv),
      flags.DEFINE_bool("exclude_seen", False, "popularity: never recommend seen items.", flag_values=fv),
      flags.DEFINE_bool("no_progress", False, "Hide the tqdm bar.", flag_values=fv),
      flags.DEFINE_bool("track_test", False, "sasrec: also rank the test split at every validation "
                        "improvement (logged in history).", flag_values=fv),
      flags.DEFINE_integer("gather_granule_div", 16, "sasrec CE: logits at non-padding positions only, "
                           "count rounded to B*T/this; 0 = off.", flag_values=fv),
      flags.DEFINE_bool("report_exclude_seen", False, "sasrec: also report metrics with known items "
                        "excluded (diagnostic, S3-Rec protocol).", flag_values=fv),
      flags.DEFINE_string("model_dir", None, "sasrec: write the validation curve to MODEL_DIR/metrics.jsonl "
                          "(epoch as step, wall-clock minutes, valid/hit@10, ...), for `python -m "
                          "llmrec_jax.report`.", flag_values=fv),
      flags.DEFINE_string("compile_cache_dir", None, "XLA persistent compilation cache (a rerun then "
                          "skips the ~10 train-step compiles).", flag_values=fv)]
  flags.mark_flags_as_required(["model", "data_dir"], flag_values=fv)
  return holders


def parse_args(argv: Sequence[str]) -> types.SimpleNamespace:
  """The flags of `argv` (without the program name); absl's `flags.Error` for a bad one."""
  return cli_flags.parse(define_flags, argv)[0]


def load(data_dir: str, seed: int):
  if data_dir == SYNTHETIC:
    return synthetic.make_synthetic(seed=seed)
  return sources.load_dataset(data_dir)


def write_curve(model_dir: str, history: list[dict]) -> str:
  """metrics.jsonl of a SASRec run, in the names the other trainers use (`report` reads it);
  `step` is the epoch here (SASRec's history does not keep optimizer steps)."""
  os.makedirs(model_dir, exist_ok=True)
  path = os.path.join(model_dir, "metrics.jsonl")
  with open(path, "w", encoding="utf-8") as f:
    for h in history:
      record = {"step": int(h["epoch"]), "epoch": int(h["epoch"]), "minutes": h["seconds"] / 60,
                "loss": h["loss"]}
      record.update({f"valid/{k[len('valid_'):]}": v for k, v in h.items() if k.startswith("valid_")})
      f.write(json.dumps(record) + "\n")
  return path


def run(args: types.SimpleNamespace) -> dict:
  """Trains (SASRec) and evaluates the baseline of the flags `args`; prints and returns the result."""
  if args.compile_cache_dir:
    # each length bucket compiles its own train step; the cache makes repeated runs skip that
    jax.config.update("jax_compilation_cache_dir", args.compile_cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  t0 = time.monotonic()
  data = load(args.data_dir, args.seed)
  result = {"model": args.model, "dataset": data.name, "num_users": data.num_users, "num_items": data.num_items}
  if args.model == "popularity":
    result.update(popularity.evaluate_popularity(data, leave_one_out(data, max_his=1),
                                                 exclude_seen=args.exclude_seen))
    result["exclude_seen"] = args.exclude_seen
  else:
    model_config = sasrec.SASRecConfig(num_items=data.num_items, hidden=args.hidden, num_blocks=args.num_blocks,
                                       num_heads=args.num_heads, max_len=args.max_len, dropout=args.dropout)
    train_config = sasrec_train.TrainConfig(
        loss=sasrec_train.Loss(args.loss), learning_rate=args.learning_rate,
        schedule=sasrec_train.Schedule(args.schedule), batch_size=args.batch_size,
        epochs=args.epochs, eval_every=args.eval_every, patience=args.patience, seed=args.seed,
        time_budget_min=args.time_budget_min, show_progress=not args.no_progress, track_test=args.track_test,
        gather_granule_div=args.gather_granule_div, report_exclude_seen=args.report_exclude_seen)
    out = sasrec_train.train_and_evaluate(data, model_config, train_config)
    result.update(loss=args.loss, config={**vars(args)}, **out)
    if args.model_dir:
      write_curve(args.model_dir, out["history"])
  result["wall_seconds"] = round(time.monotonic() - t0, 1)
  if args.json:
    print(json.dumps(result))
  else:
    for split in ("valid", "test"):
      print(f"{split:5s} " + "  ".join(f"{k} {v:.4f}" for k, v in result[split].items()))
    print(f"wall time {result['wall_seconds']:.1f} s")
  return result


def main(argv: Sequence[str]) -> dict:
  """The CLI from Python: `main(['--model', 'popularity', '--data_dir', 'synthetic'])`."""
  return run(parse_args(argv))


if __name__ == "__main__":
  cli_flags.run_main(define_flags, lambda args, _: run(args))
