"""Train-step throughput: our jitted Flax T5 step vs Hugging Face PyTorch T5 on the same CPU.

  python bench/train_step.py [--sizes t5_tiny,t5_small] [--steps 5] [--batch 32]
                             [--inputs 256] [--targets 16] [--no_hf]

Prints one JSON object: tokens/s (batch x (inputs + targets) per second) for each size, ours
and HF's (AdamW, float32, dropout on, both given the machine's cores), and ours/HF.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def _batch(rng, b, s, t, vocab):
  from llmrec_jax.data import batching
  enc = rng.integers(2, vocab, size=(b, s)).astype(np.int32)
  tgt = rng.integers(2, vocab, size=(b, t)).astype(np.int32)
  tgt[:, -1] = 1
  return {"encoder_input_tokens": enc, "decoder_target_tokens": tgt,
          "decoder_input_tokens": batching.shift_right(tgt),
          "decoder_loss_weights": np.ones((b, t), np.float32)}


def bench_ours(size, batch, steps):
  import jax
  from llmrec_jax import model_sizes, models, network
  from llmrec_jax.training import optimizers, trainer
  from llmrec_jax.training.train_state import TrainState
  cfg = model_sizes.t5_config(size, dropout_rate=0.1)
  model = models.EncoderDecoderModel(network.Transformer(cfg))
  shapes = {k: v.shape for k, v in batch.items()}
  params = model.get_initial_variables(jax.random.PRNGKey(0), shapes)["params"]
  tx = optimizers.adamw(1e-3)
  t = trainer.Trainer(model.loss_fn, tx)
  state = TrainState.create(params, tx)
  batch = jax.device_put(batch)
  t0 = time.perf_counter()
  state, m = t.train(state, batch)
  jax.block_until_ready(m)
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  for _ in range(steps):
    state, m = t.train(state, batch)
  jax.block_until_ready(m)
  return (time.perf_counter() - t0) / steps, compile_s


def bench_hf(size, batch, steps):
  import torch
  import transformers
  from llmrec_jax import model_sizes
  from llmrec_jax.checkpoints import hf_t5
  cfg = transformers.T5Config(**hf_t5.config_to_hf(model_sizes.t5_config(size, dropout_rate=0.1)))
  torch.manual_seed(0)
  model = transformers.T5ForConditionalGeneration(cfg).train()
  opt = torch.optim.AdamW(model.parameters(), lr=1e-3, eps=1e-6, weight_decay=0.01)
  enc = torch.from_numpy(batch["encoder_input_tokens"]).long()
  labels = torch.from_numpy(batch["decoder_target_tokens"]).long()

  def step():
    loss = model(input_ids=enc, attention_mask=enc > 0, labels=labels).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad()
  step()
  t0 = time.perf_counter()
  for _ in range(steps):
    step()
  return (time.perf_counter() - t0) / steps


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--sizes", default="t5_tiny,t5_small")
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--inputs", type=int, default=256)
  p.add_argument("--targets", type=int, default=16)
  p.add_argument("--no_hf", action="store_true")
  a = p.parse_args()
  batch = _batch(np.random.default_rng(0), a.batch, a.inputs, a.targets, 32128)
  tokens = a.batch * (a.inputs + a.targets)
  out = {"bench": "train_step", "batch": a.batch, "inputs": a.inputs, "targets": a.targets,
         "cpu_count": os.cpu_count(), "machine": platform.machine(), "results": {}}
  for size in a.sizes.split(","):
    ours_s, compile_s = bench_ours(size, batch, a.steps)
    r = {"ours_step_s": round(ours_s, 4), "ours_tokens_per_s": round(tokens / ours_s, 1),
         "ours_compile_s": round(compile_s, 2)}
    if not a.no_hf:
      import torch
      torch.set_num_threads(os.cpu_count() or 1)
      hf_s = bench_hf(size, batch, a.steps)
      r.update(hf_step_s=round(hf_s, 4), hf_tokens_per_s=round(tokens / hf_s, 1),
               speedup=round(hf_s / ours_s, 3))
    out["results"][size] = r
  print(json.dumps(out, indent=1))


if __name__ == "__main__":
  main()
