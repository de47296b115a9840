"""Trie-constrained top-K decoding throughput: our jitted searches vs HF PyTorch `generate`.

  python bench/decoding.py [--sizes t5_tiny] [--items 12000] [--batch 16] [--beams 10]
                           [--inputs 128] [--reps 3] [--no_hf]

Same random-init T5 architecture on both sides (weights differ: only time is compared), a
synthetic catalogue of `items` IDs (2-8 Zipf-distributed tokens over the 32128 vocab, + EOS).
Ours: `EncoderDecoderModel.predict_batch_with_aux` (KV cache) with
`beam_search.constrained_beam_search` (T5X search rules, HF length normalisation) and
`diverse.hf_beam_search` (HF search rules), the trie passed as a jit argument. HF:
`generate(num_beams=K, num_return_sequences=K, prefix_allowed_tokens_fn=<dict trie>)`, the
IDGenRec evaluation path. Prints one JSON object: examples/s per method and our compile times.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import time

import numpy as np


def catalogue(n: int, vocab: int, seed: int = 0) -> list[list[int]]:
  rng = np.random.default_rng(seed)
  perm = rng.permutation(np.arange(2, vocab))
  seen = set()
  while len(seen) < n:
    length = int(rng.integers(2, 9))
    ranks = np.minimum(rng.zipf(1.1, size=length), vocab - 2)
    seen.add(tuple(int(t) for t in perm[ranks - 1]) + (1,))
  return [list(s) for s in seen]


def bench_ours(size, items, enc_BxS, beams, reps):
  import jax
  import jax.numpy as jnp
  from llmrec_jax import model_sizes, models, network
  from llmrec_jax.decoding import beam_search, diverse, trie as trie_lib
  trie = trie_lib.ItemTrie.from_sequences(items, vocab_size=32128)
  cfg = model_sizes.t5_config(size)
  module = network.Transformer(cfg)
  b = enc_BxS.shape[0]
  batch = {"encoder_input_tokens": jnp.asarray(enc_BxS),
           "decoder_input_tokens": jnp.zeros((b, trie.max_len), jnp.int32)}
  params = models.EncoderDecoderModel(module).get_initial_variables(
      jax.random.PRNGKey(0), {k: v.shape for k, v in batch.items()})["params"]
  fns = {"ours_t5x_rules": functools.partial(beam_search.constrained_beam_search,
                                             length_normalization="hf"),
         "ours_hf_rules": diverse.hf_beam_search}
  out = {}
  for name, decode_fn in fns.items():
    m = models.EncoderDecoderModel(module, decode_fn=decode_fn)
    topk = jax.jit(lambda p, x, t, m=m: m.predict_batch_with_aux(
        p, x, return_all_decodes=True, num_decodes=beams, decoder_params={"trie": t}))
    t0 = time.perf_counter()
    decodes, _ = topk(params, batch, trie.arrays)
    jax.block_until_ready(decodes)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(reps):
      decodes, _ = topk(params, batch, trie.arrays)
    jax.block_until_ready(decodes)
    sec = (time.perf_counter() - t0) / reps
    valid = float((trie.items_from_sequences(np.asarray(decodes)) >= 0).mean())
    out[name] = {"examples_per_s": round(b / sec, 2), "compile_s": round(compile_s, 2),
                 "valid_item_fraction": valid}
  return out, trie.max_len


def bench_hf(size, items, enc_BxS, beams, reps, max_new):
  import torch
  import transformers
  from llmrec_jax import model_sizes
  from llmrec_jax.checkpoints import hf_t5
  cfg = transformers.T5Config(**hf_t5.config_to_hf(model_sizes.t5_config(size, dropout_rate=0.0)))
  torch.manual_seed(0)
  model = transformers.T5ForConditionalGeneration(cfg).eval()
  table = {}
  for seq in items:
    for d in range(len(seq)):
      table.setdefault(tuple(seq[:d]), set()).add(seq[d])
  table = {k: sorted(v) for k, v in table.items()}

  def allowed(_, ids):  # IDGenRec's Trie.get: children of the decoded prefix
    return table.get(tuple(ids.tolist()[1:]), [0])

  enc = torch.from_numpy(enc_BxS).long()

  def run():
    with torch.no_grad():
      return model.generate(input_ids=enc, attention_mask=enc > 0, num_beams=beams,
                            num_return_sequences=beams, max_new_tokens=max_new,
                            prefix_allowed_tokens_fn=allowed, do_sample=False)
  run()
  t0 = time.perf_counter()
  for _ in range(reps):
    run()
  sec = (time.perf_counter() - t0) / reps
  return {"examples_per_s": round(enc_BxS.shape[0] / sec, 2)}


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--sizes", default="t5_tiny")
  p.add_argument("--items", type=int, default=12000)
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--beams", type=int, default=10)
  p.add_argument("--inputs", type=int, default=128)
  p.add_argument("--reps", type=int, default=3)
  p.add_argument("--no_hf", action="store_true")
  a = p.parse_args()
  items = catalogue(a.items, 32128)
  enc = np.random.default_rng(1).integers(2, 32128, size=(a.batch, a.inputs)).astype(np.int32)
  out = {"bench": "decoding", "items": a.items, "batch": a.batch, "beams": a.beams,
         "inputs": a.inputs, "cpu_count": os.cpu_count(), "machine": platform.machine(),
         "results": {}}
  for size in a.sizes.split(","):
    r, max_len = bench_ours(size, items, enc, a.beams, a.reps)
    r["max_decode_len"] = max_len
    if not a.no_hf:
      import torch
      torch.set_num_threads(os.cpu_count() or 1)
      r["hf_torch"] = bench_hf(size, items, enc, a.beams, a.reps, max_len)
      for k in ("ours_t5x_rules", "ours_hf_rules"):
        r[k]["speedup_vs_hf"] = round(r[k]["examples_per_s"] / r["hf_torch"]["examples_per_s"], 2)
    out["results"][size] = r
  print(json.dumps(out, indent=1))


if __name__ == "__main__":
  main()
