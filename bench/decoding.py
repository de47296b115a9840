"""Trie-constrained top-K decoding throughput: our jitted search vs HF PyTorch `generate`.

  python bench/decoding.py --catalogue beauty_reference [--sizes t5_tiny,t5_small]
      [--batches 1,32,256] [--users 256] [--hf_users 200] [--hf_users_256 256]
      [--full_users 22363] [--modes full,subset_exact,subset,unconstrained] [--no_hf]
  python bench/decoding.py --catalogue synthetic [--items 12000] [--inputs 128] ...

Catalogues: `beauty_reference` = the 12,101 IDGenRec reference textual IDs of Amazon Beauty
(`../shared/data/amazon2014_beauty`), tokenized with the T5 SentencePiece vocab, prompts = the
real leave-one-out test prompts (official template 0, last 10 history items as reference IDs);
`synthetic` = Zipf token sequences with random prompts of `--inputs` tokens.

Both sides run the same random-init weights (ours exported with `save_hf_t5`, loaded by HF) on
the same prompts. Ours: `evaluation.make_topk_fn` (trie as a jit argument, T5X search rules,
HF length normalisation, 10 beams) in each `--modes` output mode (`models.OutputVocab`:
'full' logits over all V; 'subset_exact' full-vocab-exact scores with mask/softmax/top-k over
the trie's U tokens; 'subset' logits of the U tokens only, renormalised: approximate), plus
'unconstrained' (same search without the trie, full vocab) for the mask overhead. HF:
`generate(num_beams=K, num_return_sequences=K, prefix_allowed_tokens_fn=<prefix dict>)`, the
IDGenRec evaluation path, HF's prompts cut to their batch's longest row. Ours cuts each batch to
its longest row rounded up to 32, as evaluation does (one compile per (mode, batch, length);
compiles are not timed). Both sides decode the same users in the same batches.
`--full_users`: ours over that many test users in the best mode at the largest batch, users
ordered by prompt length as evaluation orders them (users/s measured, not extrapolated); HF's
full-test-set time is extrapolated from its batch-1 sample.
Prints one JSON object; ratios are measured in one process, back to back.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
BEAUTY = ROOT.parent / "shared" / "data" / "amazon2014_beauty"
SPIECE = ROOT.parent / "shared" / "vocab" / "t5_spiece.model"
PROMPTS = ROOT.parent / "shared" / "data" / "idgenrec_prompts.txt"
VOCAB = 32128


def synthetic(n_items: int, n_users: int, inputs: int, seed: int = 0):
  """(item token lists + EOS, prompts [n_users, inputs])."""
  rng = np.random.default_rng(seed)
  perm = rng.permutation(np.arange(2, VOCAB))
  seen = set()
  while len(seen) < n_items:
    ranks = np.minimum(rng.zipf(1.1, size=int(rng.integers(2, 9))), VOCAB - 2)
    seen.add(tuple(int(t) for t in perm[ranks - 1]) + (1,))
  enc = np.random.default_rng(1).integers(2, VOCAB, size=(n_users, inputs)).astype(np.int32)
  return [list(s) for s in seen], enc


def beauty_reference(n_users: int):
  """(item token lists + EOS, real test prompts [n_users, S]) of Amazon Beauty."""
  from llmrec_jax.systems.idgenrec import prompt_batches
  from llmrec_jax.data import id_tables, prompts, sources, splits
  from llmrec_jax.indexing import text_tokens
  data = sources.load_p5(BEAUTY)
  table = id_tables.load_reference_ids(BEAUTY)
  # One reference ID is empty (see load_reference_ids' warning): that item gets its ASIN.
  ids = [table[r] or r.lower() for r in data.item_ids]
  sp = text_tokens.load_sentencepiece(SPIECE)
  templates = (prompts.load_idgenrec_prompts(PROMPTS) if PROMPTS.exists()
               else prompts.get_template_set("llmrec_default"))
  batcher = prompt_batches.PromptBatcher(sp.encode, None, ids, templates.train, num_history=10,
                                         input_len=256, length_bucket=32)
  test = splits.leave_one_out(data, max_his=20)["test"]
  n = min(n_users, test.num_examples)
  enc = next(batcher.eval_batches(test, data.user_ids, num_examples=n, batch_size=n))
  items = [batcher.item_id_tokens(i) + [1] for i in range(len(ids))]
  return items, enc["encoder_input_tokens"]


def _batches(enc_NxS: np.ndarray, batch: int, users: int, *, bucket: int = 32,
             by_length: bool = False):
  """Consecutive [batch, S_b] slices covering `users` rows (wrapping around the sample), each cut
  to its own longest prompt rounded up to `bucket` (`PromptBatcher.length_bucket`, as evaluation
  does: a few compiled shapes, not one padded length). `by_length` first orders the rows by
  prompt length, as `PromptBatcher.by_history_length` orders evaluation users."""
  n = -(-users // batch) * batch
  idx = np.arange(n) % enc_NxS.shape[0]
  if by_length:
    idx = idx[np.argsort((enc_NxS[idx] > 0).sum(1), kind="stable")]
  out = []
  for i in range(0, n, batch):
    rows = enc_NxS[idx[i:i + batch]]
    longest = max(1, int((rows > 0).sum(1).max()))
    out.append(rows[:, :min(rows.shape[1], -(-longest // bucket) * bucket)])
  return out


def _warm_up(fn, params, trie, batches) -> float:
  """Compiles and runs `fn` once per distinct batch shape; returns the seconds (not timed)."""
  import jax
  t0 = time.perf_counter()
  for shape in sorted({b.shape for b in batches}):
    jax.block_until_ready(fn(params, next(b for b in batches if b.shape == shape), trie.arrays))
  return time.perf_counter() - t0


def make_ours(module, mode: str, beams: int, max_len: int):
  """jit(params, enc_BxS, trie_arrays) -> items_BxK (best first) for one mode."""
  import jax
  import jax.numpy as jnp
  from llmrec_jax.evaluation import generative as evaluation
  from llmrec_jax import models
  from llmrec_jax.decoding import beam_search
  model = models.EncoderDecoderModel(module)
  if mode == "unconstrained":
    m = models.EncoderDecoderModel(module, decode_fn=lambda **kw: beam_search.beam_search(
        length_normalization="hf", **kw))

    def run(params, enc, trie_arrays):
      del trie_arrays
      batch = {"encoder_input_tokens": enc,
               "decoder_input_tokens": jnp.zeros((enc.shape[0], max_len), jnp.int32)}
      return m.predict_batch_with_aux(params, batch, return_all_decodes=True, num_decodes=beams,
                                      decoder_params={"alpha": 0.0})[1]["scores"]
    return jax.jit(run)
  topk = evaluation.make_topk_fn(model, evaluation.DecodeOptions(
      num_beams=beams, ks=(min(beams, 10),), output_vocab=mode))

  def run(params, enc, trie_arrays):
    batch = {"encoder_input_tokens": enc,
             "decoder_input_tokens": jnp.zeros((enc.shape[0], max_len), jnp.int32)}
    return topk(params, batch, trie_arrays)[0]
  return run


def time_ours(fn, params, trie, batches):
  """(users/s, warm-up seconds (compiles, untimed), items of every batch)."""
  import jax
  warm = _warm_up(fn, params, trie, batches)
  outs = []
  t0 = time.perf_counter()
  for enc in batches:
    outs.append(fn(params, enc, trie.arrays))
  outs = [np.asarray(o) for o in jax.block_until_ready(outs)]
  sec = time.perf_counter() - t0
  return sum(len(b) for b in batches) / sec, warm, np.concatenate(outs)


def mask_overhead(module, params, trie, batches, beams: int, modes):
  """Per decode step seconds of each constrained mode vs the unconstrained full-vocab search.

  Searches stop at different steps (a trie ends beams early), so whole-decode times are not
  comparable: here each search step is counted (a host callback in `beams.step_log_probs`,
  patched in for these runs only) and the time divided by the count.
  """
  import jax
  from llmrec_jax.decoding import beams as beams_lib  # `beams` is the beam count here
  orig = beams_lib.step_log_probs
  count = [0]

  def counted(logits_BKxV, mask_BKxV, renormalize=False):
    jax.debug.callback(lambda _: count.__setitem__(0, count[0] + 1), logits_BKxV[0, 0])
    return orig(logits_BKxV, mask_BKxV, renormalize)

  out = {}
  beams_lib.step_log_probs = counted
  try:
    for m in ["unconstrained"] + [m for m in modes if m != "unconstrained"]:
      fn = make_ours(module, m, beams, trie.max_len)
      _warm_up(fn, params, trie, batches)
      count[0] = 0
      t0 = time.perf_counter()
      for enc in batches:  # one at a time: the count must cover exactly the timed calls
        jax.block_until_ready(fn(params, enc, trie.arrays))
      sec = time.perf_counter() - t0
      out[m] = {"steps_per_batch": round(count[0] / len(batches), 2),
                "ms_per_step": round(1e3 * sec / max(count[0], 1), 3)}
  finally:
    beams_lib.step_log_probs = orig
  base = out["unconstrained"]["ms_per_step"]
  for m in out:
    out[m]["overhead_vs_unconstrained"] = round(out[m]["ms_per_step"] / base - 1.0, 3)
  return out


def make_hf(cfg, params, items, beams: int, max_len: int):
  import torch
  import transformers
  from llmrec_jax.checkpoints import hf_t5
  with tempfile.TemporaryDirectory() as d:
    hf_t5.save_hf_t5(d, cfg, params)
    model = transformers.T5ForConditionalGeneration.from_pretrained(d).eval()
  table = {}
  for seq in items:
    for depth in range(len(seq)):
      table.setdefault(tuple(seq[:depth]), set()).add(seq[depth])
  table = {k: sorted(v) for k, v in table.items()}

  def allowed(_, ids):  # IDGenRec's Trie.get: children of the decoded prefix
    return table.get(tuple(ids.tolist()[1:]), [0])

  def run(enc_BxS):
    enc_BxS = enc_BxS[:, :max(1, int((enc_BxS > 0).sum(1).max()))]
    x = torch.from_numpy(enc_BxS).long()
    with torch.no_grad():
      out = model.generate(input_ids=x, attention_mask=x > 0, num_beams=beams,
                           num_return_sequences=beams, max_new_tokens=max_len,
                           prefix_allowed_tokens_fn=allowed, do_sample=False)
    return out[:, 1:].numpy().reshape(enc_BxS.shape[0], beams, -1)
  return run


def time_hf(run, batches, trie):
  run(batches[0][:1])  # warm-up
  t0 = time.perf_counter()
  seqs = [run(enc) for enc in batches]
  sec = time.perf_counter() - t0
  items = np.concatenate([trie.items_from_sequences(s) for s in seqs])
  return sum(len(b) for b in batches) / sec, items


def overlap(a_NxK: np.ndarray, b_NxK: np.ndarray) -> float:
  """Mean |top-K of a  &  top-K of b| / K over rows."""
  return float(np.mean([len(set(x) & set(y)) / a_NxK.shape[1] for x, y in zip(a_NxK, b_NxK)]))


def bench_size(size, items, enc, a):
  import jax
  from llmrec_jax import model_sizes, models, network
  from llmrec_jax.decoding import trie as trie_lib
  trie = trie_lib.ItemTrie.from_sequences(items, vocab_size=VOCAB)
  cfg = model_sizes.t5_config(size, dropout_rate=0.0)
  module = network.Transformer(cfg)
  params = models.EncoderDecoderModel(module).get_initial_variables(
      jax.random.PRNGKey(0), {"encoder_input_tokens": (1, enc.shape[1]),
                              "decoder_input_tokens": (1, trie.max_len)})["params"]
  modes = a.modes.split(",")
  fns = {m: make_ours(module, m, a.beams, trie.max_len) for m in {*modes, a.full_mode}}
  hf = None if a.no_hf else make_hf(cfg, params, items, a.beams, trie.max_len)
  out = {"max_decode_len": trie.max_len, "trie_tokens_U": int(len(trie.token_ids))}
  for b in [int(x) for x in a.batches.split(",")]:
    r = {}
    tops = {}
    for m in modes:
      ups, warm, top = time_ours(fns[m], params, trie, _batches(enc, b, max(a.users, b)))
      r[m] = {"users_per_s": round(ups, 2), "warm_up_s": round(warm, 1)}
      if m != "unconstrained":
        r[m]["valid_item_fraction"] = float((top >= 0).mean())
        tops[m] = top
    if "unconstrained" in r:
      base = r["unconstrained"]["users_per_s"]
      for m in tops:
        r[m]["time_vs_unconstrained"] = round(base / r[m]["users_per_s"], 3)
    if hf is not None:
      hf_users = a.hf_users_256 if b >= 256 else a.hf_users
      ups, hf_top = time_hf(hf, _batches(enc, b, max(hf_users, b)), trie)
      r["hf_torch"] = {"users_per_s": round(ups, 3), "users_timed": max(hf_users, b)}
      for m in tops:
        r[m]["speedup_vs_hf"] = round(r[m]["users_per_s"] / ups, 2)
        r[m]["top10_overlap_with_hf"] = round(overlap(tops[m][:len(hf_top)], hf_top), 3)
    out[f"batch_{b}"] = r
    print(json.dumps({size: {f"batch_{b}": r}}), flush=True)
  if a.overhead_batch:
    b = a.overhead_batch
    out[f"mask_overhead_batch_{b}"] = mask_overhead(
        module, params, trie, _batches(enc, b, max(a.overhead_users, b)), a.beams,
        [m for m in modes if m != "unconstrained"])
    print(json.dumps({size: {"mask_overhead": out[f"mask_overhead_batch_{b}"]}}), flush=True)
  if a.full_users:
    best = a.full_mode
    b = max(int(x) for x in a.batches.split(","))
    n = min(a.full_users, enc.shape[0])
    ups, _, top = time_ours(fns[best], params, trie, _batches(enc, b, n, by_length=True))
    full = {"mode": best, "batch": b, "users": n, "users_per_s": round(ups, 2),
            "seconds": round(n / ups, 1), "valid_item_fraction": float((top >= 0).mean())}
    hf1 = out.get("batch_1", {}).get("hf_torch")
    if hf1:
      full["hf_batch_1_seconds_extrapolated"] = round(n / hf1["users_per_s"], 1)
      full["speedup_vs_hf_batch_1"] = round(ups / hf1["users_per_s"], 2)
    out["full_test_set"] = full
  return out


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--catalogue", choices=("synthetic", "beauty_reference"), default="synthetic")
  p.add_argument("--sizes", default="t5_tiny")
  p.add_argument("--batches", default="1,32,256")
  p.add_argument("--beams", type=int, default=10)
  p.add_argument("--users", type=int, default=256, help="users timed per (mode, batch), ours")
  p.add_argument("--hf_users", type=int, default=100, help="users timed per batch < 256, HF")
  p.add_argument("--hf_users_256", type=int, default=256, help="users timed at batch >= 256, HF")
  p.add_argument("--full_users", type=int, default=0, help="ours over this many test users")
  p.add_argument("--modes", default="full,subset_exact,subset,unconstrained")
  p.add_argument("--full_mode", default="subset", help="mode of the --full_users run")
  p.add_argument("--overhead_batch", type=int, default=32, help="0: skip the per-step timing")
  p.add_argument("--overhead_users", type=int, default=128)
  p.add_argument("--items", type=int, default=12000, help="synthetic catalogue size")
  p.add_argument("--inputs", type=int, default=128, help="synthetic prompt length")
  p.add_argument("--no_hf", action="store_true")
  a = p.parse_args()
  n_users = max(a.full_users, a.users, a.hf_users, a.hf_users_256,
                max(int(x) for x in a.batches.split(",")))
  if a.catalogue == "synthetic":
    items, enc = synthetic(a.items, n_users, a.inputs)
  else:
    items, enc = beauty_reference(n_users)
  if not a.no_hf:
    import torch
    torch.set_num_threads(os.cpu_count() or 1)
  out = {"bench": "decoding", "catalogue": a.catalogue, "items": len(items),
         "prompt_len_padded": int(enc.shape[1]),
         "prompt_len_mean": round(float((enc > 0).sum(1).mean()), 1), "beams": a.beams,
         "cpu_count": os.cpu_count(), "machine": platform.machine(), "args": vars(a),
         "results": {}}
  for size in a.sizes.split(","):
    out["results"][size] = bench_size(size, items, enc, a)
  print(json.dumps(out, indent=1))


if __name__ == "__main__":
  main()
