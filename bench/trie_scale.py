"""Item-trie scale: host build time, memory, and per-step device mask/step time vs catalogue size.

  python bench/trie_scale.py [--sizes 10000,100000,1000000] [--vocab 32128] [--dist zipf]
                             [--beams 1024] [--reps 20]

Synthetic catalogues: N distinct IDs of 3-12 tokens (uniform length) + EOS, tokens in
[2, vocab) drawn uniformly or Zipf-like (s=1.1, like words in textual IDs; skewed tokens make
large fan-outs). Prints one JSON object with, per size: build_s (numpy build from a padded
[N, 13] array), build_peak_rss_mib (process peak RSS after the build, includes the input),
build_alloc_peak_mib (peak bytes allocated by the build itself, via tracemalloc), nodes,
device_bytes, max_fanout, wide_nodes (nodes with > dense_fanout=128 children, masked from a
bit row), gather_width (largest fan-out gathered per narrow node), and the median time of one
jitted `allowed_mask` ([beams, V] bool) and one `trie_step` for `beams` beams sitting on random
trie nodes (plus the min over reps, less sensitive to a shared machine); mask_excl50 adds 50
excluded items per beam.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
import tracemalloc

import numpy as np


def synthetic_ids(n: int, vocab: int, dist: str, seed: int = 0) -> np.ndarray:
  """[n, 13] int32 rows: 3-12 tokens, EOS (1), pad 0; rows distinct."""
  rng = np.random.default_rng(seed)
  out = np.zeros((0, 13), np.int32)
  while out.shape[0] < n:
    m = int((n - out.shape[0]) * 1.1) + 16
    length = rng.integers(3, 13, size=m)
    if dist == "zipf":
      ranks = np.minimum(rng.zipf(1.1, size=(m, 12)), vocab - 2)
      perm = rng.permutation(np.arange(2, vocab))
      tok = perm[ranks - 1]
    else:
      tok = rng.integers(2, vocab, size=(m, 12))
    rows = np.zeros((m, 13), np.int32)
    pos = np.arange(13)[None, :]
    rows[:, :12] = np.where(pos[:, :12] < length[:, None], tok, 0)
    rows[np.arange(m), length] = 1
    out = np.unique(np.concatenate([out, rows]), axis=0)
  return out[np.random.default_rng(seed + 1).permutation(out.shape[0])[:n]]


def bench_size(n: int, vocab: int, dist: str, beams: int, reps: int) -> dict:
  import jax
  import jax.numpy as jnp
  from llmrec_jax.decoding import trie as trie_lib

  ids = synthetic_ids(n, vocab, dist)
  t0 = time.perf_counter()
  trie = trie_lib.ItemTrie.from_sequences(ids, eos_id=1, vocab_size=vocab)
  build_s = time.perf_counter() - t0
  # Second build under tracemalloc (numpy reports its buffers): peak bytes the build allocates.
  tracemalloc.start()
  trie_lib.ItemTrie.from_sequences(ids, eos_id=1, vocab_size=vocab)
  build_peak_mib = tracemalloc.get_traced_memory()[1] / 2**20
  tracemalloc.stop()
  rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  arrays = trie.arrays
  dev_bytes = sum(int(x.nbytes) for x in jax.tree_util.tree_leaves(arrays))
  # Beams on random internal nodes: walk random items for a random number of tokens.
  rng = np.random.default_rng(0)
  rows = ids[rng.integers(0, n, size=beams)]
  lens = (rows != 0).sum(axis=1)
  depth = rng.integers(0, lens)  # 0 = root, < len = before EOS
  node = np.zeros(beams, np.int32)
  for d in range(int(depth.max())):
    node = np.where(d < depth, trie.step_np(node, rows[:, d]), node)
  tok = rows[np.arange(beams), depth].astype(np.int32)
  node_d, tok_d = jnp.asarray(node), jnp.asarray(tok)
  mask_fn = jax.jit(lambda t, x: trie_lib.allowed_mask(t, x, vocab))
  step_fn = jax.jit(trie_lib.trie_step)

  def timed(fn, *args):
    fn(*args).block_until_ready()
    times = []
    for _ in range(reps):
      t = time.perf_counter()
      fn(*args).block_until_ready()
      times.append(time.perf_counter() - t)
    return float(np.median(times)), float(np.min(times))

  mask_s, mask_min = timed(mask_fn, arrays, node_d)
  # Per-user exclusion (50 seen items per beam, subtree pruning included).
  excl_d = jnp.asarray(rng.integers(0, n, size=(beams, 50)), jnp.int32)
  excl_fn = jax.jit(lambda t, x, e: trie_lib.allowed_mask(t, x, vocab, e))
  excl_s, excl_min = timed(excl_fn, arrays, node_d, excl_d)
  step_s, step_min = timed(step_fn, arrays, node_d, tok_d)
  ok = bool(np.asarray(mask_fn(arrays, node_d))[np.arange(beams), tok].all())
  child = np.asarray(step_fn(arrays, node_d, tok_d))
  ok &= bool((child == trie.step_np(node, tok)).all() and (child >= 0).all())
  return {"items": n, "build_s": round(build_s, 3), "build_peak_rss_mib": round(rss_mib, 1),
          "build_alloc_peak_mib": round(build_peak_mib, 1),
          "nodes": trie.num_nodes, "device_bytes": dev_bytes, "max_fanout": trie.max_fanout,
          "wide_nodes": int(len(trie.wide_nodes)), "gather_width": trie.gather_width,
          "mask_ms": round(mask_s * 1e3, 3), "mask_min_ms": round(mask_min * 1e3, 3),
          "mask_excl50_ms": round(excl_s * 1e3, 3), "mask_excl50_min_ms": round(excl_min * 1e3, 3),
          "step_ms": round(step_s * 1e3, 3), "step_min_ms": round(step_min * 1e3, 3),
          "walk_checks_pass": ok}


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--sizes", default="10000,100000,1000000")
  p.add_argument("--vocab", type=int, default=32128)
  p.add_argument("--dist", choices=("zipf", "uniform"), default="zipf")
  p.add_argument("--beams", type=int, default=1024, help="B*K beams per mask call")
  p.add_argument("--reps", type=int, default=20)
  args = p.parse_args()
  import jax
  results = [bench_size(int(n), args.vocab, args.dist, args.beams, args.reps)
             for n in args.sizes.split(",")]
  print(json.dumps({"bench": "trie_scale", "vocab": args.vocab, "dist": args.dist,
                    "beams": args.beams, "backend": jax.default_backend(),
                    "device": str(jax.devices()[0].device_kind), "cpus": os.cpu_count(),
                    "python": platform.python_version(), "results": results}, indent=1))


if __name__ == "__main__":
  main()
