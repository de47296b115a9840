"""Runs a classic baseline with full-ranking leave-one-out evaluation.

  python -m llmrec_jax.baselines.run --model sasrec --loss ce --data_dir ../shared/data/amazon2014_beauty --json
  python -m llmrec_jax.baselines.run --model popularity --data_dir synthetic

Measured on Beauty (2 CPU cores shared with ~4 other jobs, 2026-12-02; /tmp/bl2/*.json):
  --loss ce --learning_rate 2e-3 --eval_every 2 --time_budget_min 30: test HR@10 .0741 NDCG@10 .0352
    (best epoch 22 at 1492 s); with --learning_rate 3e-3 --schedule cosine --epochs 24 --eval_every 4:
    HR@10 .0719 NDCG@10 .0350 in 1148 s. `--report_exclude_seen` (S3-Rec protocol): HR@10 .0838 / .0825.

`--data_dir synthetic` uses `llmrec_jax.data.synthetic.make_synthetic(seed=--seed)`. Prints validation
and test HR@5/10 and NDCG@5/10 and the wall time (one JSON object with `--json`).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

import jax

from llmrec_jax.baselines import popularity
from llmrec_jax.baselines import sasrec
from llmrec_jax.baselines import sasrec_train
from llmrec_jax.data import sources
from llmrec_jax.data import synthetic
from llmrec_jax.data.splits import leave_one_out

SYNTHETIC = "synthetic"


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--model", required=True, choices=("popularity", "sasrec"))
  p.add_argument("--data_dir", required=True, help=f"dataset folder, or '{SYNTHETIC}'")
  p.add_argument("--loss", default="ce", choices=[l.value for l in sasrec_train.Loss])
  p.add_argument("--json", action="store_true", help="print one JSON object")
  p.add_argument("--epochs", type=int, default=200)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--time_budget_min", type=float, default=None, help="stop training after M minutes, then test")
  p.add_argument("--batch_size", type=int, default=128)
  p.add_argument("--learning_rate", type=float, default=1e-3)
  p.add_argument("--schedule", default="constant", choices=[x.value for x in sasrec_train.Schedule],
                 help="cosine: decay to 0 over --epochs (set --epochs to what the time budget allows)")
  p.add_argument("--hidden", type=int, default=64)
  p.add_argument("--num_blocks", type=int, default=2)
  p.add_argument("--num_heads", type=int, default=1)
  p.add_argument("--max_len", type=int, default=50)
  p.add_argument("--dropout", type=float, default=0.5)
  p.add_argument("--eval_every", type=int, default=5)
  p.add_argument("--patience", type=int, default=5)
  p.add_argument("--exclude_seen", action="store_true", help="popularity: never recommend seen items")
  p.add_argument("--no_progress", action="store_true", help="hide the tqdm bar")
  p.add_argument("--track_test", action="store_true",
                 help="sasrec: also rank the test split at every validation improvement (logged in history)")
  p.add_argument("--gather_granule_div", type=int, default=16,
                 help="sasrec CE: logits at non-padding positions only, count rounded to B*T/this; 0 = off")
  p.add_argument("--report_exclude_seen", action="store_true",
                 help="sasrec: also report metrics with known items excluded (diagnostic, S3-Rec protocol)")
  p.add_argument("--model_dir", default=None,
                 help="sasrec: write the validation curve to MODEL_DIR/metrics.jsonl (epoch as step, "
                      "wall-clock minutes, valid/hit@10, ...), for `python -m llmrec_jax.report`")
  p.add_argument("--compile_cache_dir", default=None,
                 help="XLA persistent compilation cache (a rerun then skips the ~10 train-step compiles)")
  return p.parse_args(argv)


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


def main(argv=None) -> dict:
  args = parse_args(argv)
  logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
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


if __name__ == "__main__":
  main()
