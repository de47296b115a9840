"""Input-pipeline throughput: tokenized, padded, batched training examples/s from a SeqIO rec task.

  python bench/input_pipeline.py [--data_dir ../shared/data/amazon2014_beauty]
      [--vocab ../shared/vocab/t5_spiece.model] [--templates official|default]
      [--batch 64] [--inputs 256] [--targets 32] [--max_examples 0] [--passes 2]
      [--converter batched|seqio]

Registers the dataset's tasks (reference item IDs, "user <raw id>" user IDs), renders the train split,
tokenizes it once into an in-memory `tf.data` cache (pass 1), then times the following passes
(shuffle -> pad/shift/batch, i.e. what a training loop consumes). `--converter batched` pads whole
batches (`llmrec_jax.data.batching.encdec_batches`), `seqio` uses EncDecFeatureConverter(pack=False)
per example then batches; both give the same arrays. Token-length statistics of the untrimmed
prompts are measured on a 2,000-example sample. Prints one JSON object; `cached_examples_per_s` is
the steady-state number.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = (REPO / ".." / "shared").resolve()


def _args():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--data_dir", default=str(SHARED / "data" / "amazon2014_beauty"))
  p.add_argument("--vocab", default=str(SHARED / "vocab" / "t5_spiece.model"))
  p.add_argument("--templates", choices=("official", "default"), default="official")
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--inputs", type=int, default=256)
  p.add_argument("--targets", type=int, default=32)
  p.add_argument("--max_examples", type=int, default=0, help="0 = the whole train split")
  p.add_argument("--passes", type=int, default=2, help="pass 1 fills the cache; later passes are timed")
  p.add_argument("--converter", choices=("batched", "seqio"), default="batched")
  return p.parse_args()


def main():
  args = _args()
  t0 = time.perf_counter()
  import numpy as np
  import seqio
  import tensorflow as tf

  from llmrec_jax.data import batching
  from llmrec_jax.data import task_builders as tb
  from llmrec_jax.data import vocab as vocab_lib
  from llmrec_jax.data.id_tables import load_reference_ids
  from llmrec_jax.data.prompts import get_template_set, load_idgenrec_prompts
  from llmrec_jax.data.sources import load_dataset
  t_import = time.perf_counter() - t0

  templates = (load_idgenrec_prompts(SHARED / "data" / "idgenrec_prompts.txt") if args.templates == "official"
               else get_template_set("llmrec_default"))
  vocab = vocab_lib.get_vocabulary(args.vocab)
  t0 = time.perf_counter()
  data = load_dataset(args.data_dir)
  item, user = tb.title_id_tables(data)  # user IDs: "user <raw id>"
  item = load_reference_ids(args.data_dir)
  examples = tb.RecExamples(data, tb.IdProvider(item=item, user=user), tb.TaskSpec(templates=templates))
  task = seqio.TaskRegistry.add(**tb.task_kwargs("bench_input_pipeline", examples, vocab))
  t_load = time.perf_counter() - t0

  lengths = {"inputs": args.inputs, "targets": args.targets}
  t0 = time.perf_counter()
  ds = task.get_dataset(lengths, split="train", shuffle=False, num_epochs=1)   # renders the prompts
  t_render = time.perf_counter() - t0
  if args.max_examples:
    ds = ds.take(args.max_examples)
  # Only the model features are cached (the pretokenized strings are not needed for training).
  ds = ds.map(lambda ex: {"inputs": ex["inputs"], "targets": ex["targets"]}).cache()
  shuffled = ds.shuffle(10_000, seed=0, reshuffle_each_iteration=True)
  if args.converter == "seqio":
    pipeline = seqio.EncDecFeatureConverter(pack=False)(shuffled, lengths).batch(args.batch, drop_remainder=True)
  else:
    pipeline = batching.encdec_batches(shuffled, lengths, args.batch)
  pipeline = pipeline.prefetch(tf.data.AUTOTUNE)

  passes = []
  for _ in range(args.passes):
    t0 = time.perf_counter()
    n = 0
    for batch in pipeline:
      n += int(batch["encoder_input_tokens"].shape[0])
    passes.append((n, time.perf_counter() - t0))

  # Untrimmed token counts (+1 for EOS) of a sample of the rendered prompts.
  rows = examples.examples("train")
  pick = np.random.default_rng(0).choice(len(rows["inputs"]), size=min(2000, len(rows["inputs"])), replace=False)
  lens_in = np.array([len(vocab.encode(rows["inputs"][i])) + 1 for i in pick])
  lens_tg = np.array([len(vocab.encode(rows["targets"][i])) + 1 for i in pick])
  n_first, s_first = passes[0]
  timed = passes[1:] or passes
  n_cached, s_cached = sum(n for n, _ in timed), sum(s for _, s in timed)
  print(json.dumps({
      "bench": "input_pipeline", "task": task.name, "data_dir": args.data_dir, "templates": templates.name,
      "vocab_size": vocab.vocab_size, "batch": args.batch, "lengths": lengths,
      "converter": args.converter, "train_examples": n_first,
      "import_s": round(t_import, 2), "load_register_s": round(t_load, 2), "render_s": round(t_render, 2),
      "first_pass_s": round(s_first, 2), "first_pass_examples_per_s": round(n_first / s_first, 1),
      "cached_pass_s": round(s_cached, 2), "cached_examples_per_s": round(n_cached / s_cached, 1),
      "sample_inputs_len_max": int(lens_in.max()), "sample_inputs_len_p50": float(np.percentile(lens_in, 50)),
      "sample_inputs_len_p99": float(np.percentile(lens_in, 99)), "sample_targets_len_max": int(lens_tg.max()),
      "sample_truncated_inputs_frac": float(np.mean(lens_in > args.inputs)),
      "cpu_count": os.cpu_count(), "python": platform.python_version(), "tf": tf.__version__,
  }, indent=1))


if __name__ == "__main__":
  main()
