"""Where the recommender's training time goes, on real Beauty batches, for each recommender form.

  python bench/rec_throughput.py [--data_dir ../shared/data/amazon2014_beauty] [--batches 12]
                                 [--forms encdec,stream_full,stream_trie] [--size t5_tiny]

Forms (same t5_tiny sizes, the same 8k dataset SentencePiece and reference item IDs):
  encdec       the paper's encoder-decoder, one prompt per target (rec-phase batches of 64,
               template 0, 20 history items, as `alternating` builds them);
  stream_full  the decoder-only recommender on whole item streams, full-vocabulary softmax;
  stream_trie  the same with the trie softmax (only branch positions projected, over U tokens).
Prints one JSON object: the machine's f32 matmul peak measured in this process (a large
`jnp.dot`), and per form real vs padded tokens per example, FLOPs per example (XLA's cost
analysis of the compiled train step), achieved GFLOP/s and its ratio to the peak, examples/s
and target items/s (the number that matters: next-item targets learned from per second).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np


def matmul_peak_gflops(n: int = 2048, reps: int = 10) -> float:
  import jax
  import jax.numpy as jnp
  a = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  t0 = time.perf_counter()
  for _ in range(reps):
    out = f(a)
  out.block_until_ready()
  return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


def _setup(data_dir: str):
  from llmrec_jax.systems.idgenrec import components as idgenrec
  from llmrec_jax.data import id_tables, splits
  data = idgenrec.load_data(data_dir)
  tokenizer, vocab_size, _ = idgenrec.load_tokenizer(
      None, data, dataset_vocab_size=8000, fixed_ids=[id_tables.load_reference_ids(data_dir)])
  item_ids = idgenrec.fixed_item_ids("reference", data, data_dir, encode=tokenizer.encode)
  return data, splits.leave_one_out(data, max_his=20), tokenizer, vocab_size, item_ids


def encdec_batches(data, split, tokenizer, item_ids, num: int, batch_size: int = 64):
  from llmrec_jax.systems.idgenrec import components as idgenrec, prompt_batches
  templates = idgenrec.load_templates("llmrec_default").train
  batcher = prompt_batches.PromptBatcher(tokenizer.encode, None, item_ids, templates,
                                         num_history=20, input_len=256, id_len=24, target_len=24,
                                         length_bucket=32)
  train = split["train"]
  rng = np.random.default_rng(0)
  users = idgenrec.fixed_user_ids(data)
  out = []
  for _ in range(num):
    ex = rng.integers(0, train.num_examples, batch_size)
    b = batcher.rec_batch([users[u] for u in train.user[ex]], [train.history[i] for i in ex],
                          train.target[ex], np.zeros(batch_size, np.int64))
    b.pop("history_items")
    real = int((b["encoder_input_tokens"] > 0).sum() + (b["decoder_target_tokens"] > 0).sum())
    padded = int(b["encoder_input_tokens"].size + b["decoder_target_tokens"].size)
    out.append((b, batch_size, batch_size, real, padded))
  return out


def stream_batches(data, tokenizer, item_ids, num: int, trie_softmax: bool):
  from llmrec_jax.evaluation import generative as evaluation
  from llmrec_jax.data import item_streams
  item_tokens = [tokenizer.encode(t) for t in item_ids]
  streams = item_streams.train_streams(data.sequences, item_tokens, max_items=20, eos_id=1)
  trie = evaluation.build_item_trie(item_tokens, eos_id=1, vocab_size=None)
  kw = {}
  if trie_softmax:
    nodes, branching = trie.choice_nodes()
    choices = item_streams.TrieChoices(nodes, branching, trie.token_ids)
    kw = dict(choices=choices, node_streams=choices.streams(data.sequences, 20))
  out = []
  for b in item_streams.epoch_batches(streams, tokens_per_batch=4096, seed=0, epoch=0, **kw):
    targets = b["decoder_target_tokens"]
    rows = int((targets > 0).any(axis=1).sum())
    items = int((targets == 1).sum())
    out.append((b, rows, items, int((targets > 0).sum()), int(targets.size)))
    if len(out) == num:
      break
  return out, trie


def bench_form(form: str, batches, vocab_size: int, size: str, trie=None) -> dict:
  import jax
  from llmrec_jax import decoder_model, model_sizes, models, network
  from llmrec_jax.training import optimizers, trainer
  from llmrec_jax.network import decoder_only
  from llmrec_jax.training.train_state import TrainState
  cfg = model_sizes.t5_config(size, vocab_size=vocab_size, dropout_rate=0.1)
  aux = ()
  if form == "encdec":
    model = models.EncoderDecoderModel(network.Transformer(cfg))
    shapes = {k: v.shape for k, v in batches[0][0].items()}
  else:
    model = decoder_model.DecoderOnlyModel(decoder_only.DecoderOnlyTransformer(cfg),
                                           trie_softmax=form == "stream_trie")
    shapes = {"decoder_input_tokens": (2, 16)}
    aux = (trie.arrays,) if form == "stream_trie" else ()
  params = model.get_initial_variables(jax.random.PRNGKey(0), shapes)["params"]
  tx = optimizers.adamw(1e-3)
  t = trainer.Trainer(model.loss_fn, tx)
  state = TrainState.create(params, tx)
  flops = 0.0
  step = jax.jit(lambda s, b, *a: trainer.train_step(s, b, jax.random.PRNGKey(0), *a,
                                                        loss_fn=model.loss_fn, tx=tx))
  for b, *_ in batches:  # compile every shape untimed; FLOPs from XLA's cost model
    cost = step.lower(state, b, *aux).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops += float(cost.get("flops", 0.0))
    state, m = t.train(state, b, *aux)
  jax.block_until_ready(m)
  t0 = time.perf_counter()
  for b, *_ in batches:
    state, m = t.train(state, b, *aux)
  jax.block_until_ready(m)
  seconds = time.perf_counter() - t0
  examples = sum(x[1] for x in batches)
  return {"examples_per_s": examples / seconds,
          "target_items_per_s": sum(x[2] for x in batches) / seconds,
          "real_tokens_per_example": sum(x[3] for x in batches) / examples,
          "padded_tokens_per_example": sum(x[4] for x in batches) / examples,
          "gflop_per_example": flops / examples / 1e9,
          "gflops_achieved": flops / seconds / 1e9,
          "seconds": seconds, "batches": len(batches)}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--data_dir", default="../shared/data/amazon2014_beauty")
  p.add_argument("--batches", type=int, default=12)
  p.add_argument("--forms", default="encdec,stream_full,stream_trie")
  p.add_argument("--size", default="t5_tiny")
  a = p.parse_args()
  data, split, tokenizer, vocab_size, item_ids = _setup(a.data_dir)
  result = {"matmul_peak_gflops": matmul_peak_gflops(), "size": a.size, "forms": {}}
  for form in a.forms.split(","):
    trie = None
    if form == "encdec":
      batches = encdec_batches(data, split, tokenizer, item_ids, a.batches)
    else:
      batches, trie = stream_batches(data, tokenizer, item_ids, a.batches, form == "stream_trie")
    r = bench_form(form, batches, vocab_size, a.size, trie)
    r["peak_ratio"] = r["gflops_achieved"] / result["matmul_peak_gflops"]
    result["forms"][form] = r
  result["matmul_peak_gflops_after"] = matmul_peak_gflops()
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  main()
