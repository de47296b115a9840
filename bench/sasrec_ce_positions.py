"""Logit positions one SASRec-CE epoch computes: unbucketed, bucketed, gathered, real (prints JSON).

  .venv/bin/python bench/sasrec_ce_positions.py ../shared/data/amazon2014_beauty
Counts are deterministic (no timing): unbucketed = U * max_len, bucketed = what `epoch_batches` feeds,
gathered = after `sasrec.valid_positions` with granule B*T/div, real = non-padding targets.
"""
import json
import sys

import numpy as np

from llmrec_jax.systems.sasrec import model as sasrec, train as sasrec_train
from llmrec_jax.data import sources

data = sources.load_dataset(sys.argv[1])
L, B = 50, 128
cfg = sasrec_train.TrainConfig()
buckets = tuple(sorted({b for b in cfg.buckets if b < L} | {L}))
inp, tgt = sasrec_train.training_rows(data, L)
lengths = (tgt != 0).sum(1)
tgt = np.concatenate([tgt, np.zeros((1, L), np.int32)])
out = {"dataset": data.name, "unbucketed": int(lengths.size * L), "real": int(lengths.sum())}
for div in (1, 4, 8, 16):
  shapes, total = set(), 0
  for T, rows in sasrec_train.epoch_batches(lengths, B, buckets, np.random.default_rng(0)):
    flat, _ = sasrec.valid_positions(tgt[rows, L - T:], max(1, B * T // div))
    shapes.add((T, flat.size))
    total += flat.size
  out["bucketed" if div == 1 else f"gathered_div{div}"] = {"positions": total, "compiled_shapes": len(shapes)}
print(json.dumps(out))
