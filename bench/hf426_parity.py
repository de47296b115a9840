"""Our HF-rule searches vs transformers 4.26.0 itself (the version the official IDGenRec pins).

  python bench/hf426_parity.py --run MODEL_DIR --generator HF_DIR [--hf_python PY]
      [--prompts 500] [--items 200] [--out bench/results/hf426_parity_DATE.json]

Runs in the project venv; the 4.26 side is bench/hf426_generate.py under `--hf_python` (made by
bench/hf426_env.sh), fed through npz/json files. Weights travel by `checkpoints.save_hf_t5`.

(a) Evaluation search. MODEL_DIR is a trained encoder-decoder run (`llmrec_jax.train`, restored
with `inference.restore`); the first `--prompts` test users' prompts as evaluation builds them
(template 0 of the run's set). Ours: `evaluation.make_topk_fn` with `search='hf'` (and 't5x'),
default output vocab; 4.26: `generate(num_beams=10, num_return_sequences=10, max_length=50,
prefix_allowed_tokens_fn=trie over [0] + item tokens + EOS)` at batch 1. Reports the share of
prompts with the same top-10 (ordered, as a set, top-1, mean overlap; and whether the second
list's scores are at least the first's at every rank), and for the first 20 others the first
differing rank with both sides' scores around it (score gaps: ties show as equal neighbours).

(b) Group search. HF_DIR is an ID generator (`assign --save_generator`, with spiece.model); the
first `--items` Beauty item texts. Ours: `T5IdGenerator(hf_semantics='4.26' | 'per_group')`;
4.26: `generate(num_beams=10, num_beam_groups=10, diversity_penalty=dp, min_length=m,
max_length=m+10, num_return_sequences=10)` with the same emittable tokens (`suppress_tokens` =
the generator's banned ones). Same returned sequences in the same order, per level. Then the
whole official assignment loop (`uniqueness.assign_unique(resolution='item_by_item',
keep_case=True)` vs the loop transcribed in hf426_generate.py): same final IDs.
Prints one JSON object (also written to --out).

Inputs of bench/results/hf426_parity_2026-12-06.json (2 shared CPU cores, niced):
  python -m llmrec_jax.train --gin_file=idgenrec.gin --gin_file=ablations/ids_reference.gin \
    --gin_file=runs/cpu_table.gin --gin.DATA_DIR="'../shared/data/amazon2014_beauty'" \
    --gin.VOCAB_PATH="'../shared/vocab/t5_spiece.model'" --gin.MODEL_DIR="'/tmp/parity_beauty2'" \
    --gin.REC_EPOCHS=0.3 --gin.alternating.Schedule.max_his=5 \
    --gin.train_script.train.input_len=128 \
    --gin.train_script.train.valid_examples=100 --gin.train_script.train.test_examples=200
  python -m llmrec_jax.systems.idgenrec.assign --data_dir ../shared/data/amazon2014_beauty \
    --out /tmp/parity_gen/ids.txt --max_items 20 --bootstrap_steps 300 --max_input_tokens 64 \
    --save_generator /tmp/parity_gen/hf --no_progress
  python bench/hf426_parity.py --run /tmp/parity_beauty2 --generator /tmp/parity_gen/hf \
    --out bench/results/hf426_parity_2026-12-06.json
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
BEAUTY = ROOT.parent / "shared" / "data" / "amazon2014_beauty"
HELPER = ROOT / "bench" / "hf426_generate.py"
EOS = 1


def call_426(python: str, mode: str, model_dir: str, data: dict, tmp: str, **extra) -> tuple:
  """Runs hf426_generate.py `mode`; returns (its output file's content, its JSON line)."""
  inp, out = os.path.join(tmp, f"{mode}_in.npz"), os.path.join(tmp, f"{mode}_out")
  out += ".json" if mode == "ids" else ".npz"
  np.savez(inp, **data)
  cmd = [python, str(HELPER), mode, "--model", model_dir, "--data", inp, "--out", out]
  for k, v in extra.items():
    cmd += [f"--{k}", str(v)]
  res = subprocess.run(cmd, check=True, capture_output=True, text=True)
  info = json.loads(res.stdout.strip().splitlines()[-1])
  if mode == "ids":
    with open(out, encoding="utf-8") as f:
      return json.load(f), info
  return dict(np.load(out)), info


def until_eos(row) -> tuple[int, ...]:
  row = [int(x) for x in row if x >= 0]
  return tuple(row[:row.index(EOS) + 1] if EOS in row else row)


def padded(rows, pad, dtype=np.int32):
  out = np.full((len(rows), max(len(r) for r in rows)), pad, dtype)
  for i, r in enumerate(rows):
    out[i, :len(r)] = r
  return out


def compare_lists(a_items, a_scores, b_items, b_scores):
  """Agreement of two best-first item lists per prompt (-1 = empty slot, ignored)."""
  same_order, same_set, same_top1, overlap, diffs = 0, 0, 0, 0.0, []
  for i, (ai, bi) in enumerate(zip(a_items, b_items)):
    ra, rb = [int(x) for x in ai if x >= 0], [int(x) for x in bi if x >= 0]
    same_order += ra == rb
    same_set += set(ra) == set(rb)
    same_top1 += ra[:1] == rb[:1]
    overlap += len(set(ra) & set(rb)) / max(len(ra), len(rb), 1)
    if ra != rb:
      j = next(k for k in range(max(len(ra), len(rb)))
               if k >= len(ra) or k >= len(rb) or ra[k] != rb[k])
      diffs.append({"prompt": i, "rank": j,
                    "a": [float(s) for s in a_scores[i][max(j - 1, 0):j + 2]],
                    "b": [float(s) for s in b_scores[i][max(j - 1, 0):j + 2]],
                    "a_items": ra[max(j - 1, 0):j + 2], "b_items": rb[max(j - 1, 0):j + 2]})
  n = len(a_items)
  return {"prompts": n, "same_ordered_top10": same_order / n, "same_top10_set": same_set / n,
          "same_top1": same_top1 / n, "mean_top10_overlap": overlap / n,
          "b_scores_at_least_a_at_every_rank": float(np.mean(np.all(
              np.asarray(b_scores) >= np.asarray(a_scores) - 1e-5, axis=1))),
          "differing": diffs[:20]}


def eval_check(args, tmp) -> dict:
  """(a): search='hf' / 't5x' vs 4.26 generate on the run's test prompts."""
  import jax.numpy as jnp
  from llmrec_jax.checkpoints import save_hf_t5
  from llmrec_jax.data import splits as splits_lib
  from llmrec_jax.evaluation import generative as evaluation
  from llmrec_jax.systems.idgenrec import components as idgenrec, inference, prompt_batches
  r = inference.restore(args.run)
  batcher = prompt_batches.PromptBatcher(
      r.tokenizer.encode, None, r.item_ids, idgenrec.load_templates(r.run.template_set).train,
      num_history=r.run.max_his, input_len=r.run.input_len, id_len=r.run.id_len,
      target_len=r.run.id_len, grow_lengths=True, truncation=r.run.truncation)
  trie = batcher.item_tokens.trie(r.model.module.config.vocab_size)
  test = splits_lib.leave_one_out(r.data, max_his=r.run.max_his)["test"]
  n = min(args.prompts, test.num_examples)
  batches = list(batcher.eval_batches(test, r.user_ids, num_examples=n, batch_size=args.batch))
  ours = {}
  for search in ("hf", "t5x"):
    fn = evaluation.make_topk_fn(r.model, evaluation.DecodeOptions(search=search))
    t0 = time.time()
    outs = [fn(r.params, {k: jnp.asarray(v) for k, v in b.items()}, trie.arrays) for b in batches]
    items = np.concatenate([np.asarray(o[0]) for o in outs])[:n]
    scores = np.concatenate([np.asarray(o[1]) for o in outs])[:n]
    ours[search] = (items, scores, time.time() - t0)
  items_tok = [batcher.item_tokens.tokens(i) + [EOS] for i in range(len(r.item_ids))]
  index = {tuple(t): i for i, t in enumerate(items_tok)}
  prompts = np.concatenate([b["encoder_input_tokens"] for b in batches])[:n]
  hf_dir = os.path.join(tmp, "recommender_hf")
  save_hf_t5(hf_dir, r.model.module.config, r.params)
  got, info = call_426(args.hf_python, "eval", hf_dir,
                       {"prompts": prompts, "items": padded(items_tok, -1)}, tmp)
  hf_scores = got["scores"]
  hf_items = np.array([[index.get(until_eos(s), -1) if sc > -1e8 else -1
                        for s, sc in zip(seqs, scs)]
                       for seqs, scs in zip(got["sequences"], hf_scores)])
  real = (hf_items >= 0) & (ours["hf"][0] == hf_items)
  return {
      "run": os.path.abspath(args.run), "step": r.step, "items": len(items_tok),
      "duplicate_item_token_sequences": len(items_tok) - len(index),
      "ours_hf_vs_hf426": compare_lists(ours["hf"][0], ours["hf"][1], hf_items, hf_scores),
      "ours_hf_vs_ours_t5x": compare_lists(ours["hf"][0], ours["hf"][1], ours["t5x"][0],
                                           ours["t5x"][1]),
      "max_abs_score_diff_same_item_same_rank":
          float(np.abs(ours["hf"][1] - hf_scores)[real].max()),
      "hf426_slots_without_item": int((hf_items < 0).sum()),
      "distinct_hf426_top10_lists": len({tuple(row) for row in hf_items.tolist()}),
      "ours_hf_empty_slots": int((ours["hf"][0] < 0).sum()),
      "seconds": {"ours_hf": ours["hf"][2], "ours_t5x": ours["t5x"][2], "hf426": info["seconds"]},
      "hf426": {k: info[k] for k in ("transformers", "torch")},
  }


def group_check(args, tmp) -> dict:
  """(b): our group search (both pool conventions) vs 4.26, then the full assignment loop."""
  from llmrec_jax.data import sources
  from llmrec_jax.indexing import text_tokens, uniqueness
  from llmrec_jax.systems.idgenrec import assign
  from llmrec_jax.systems.idgenrec.generator import GeneratorOptions, T5IdGenerator, allowed_tokens
  data = sources.load_p5(BEAUTY)
  texts = assign.item_texts_and_titles(data)[0][:args.items]
  spm = pathlib.Path(args.generator) / assign.SPM_IN_CHECKPOINT
  tokenizer = text_tokens.load_sentencepiece(spm)
  config, params = assign.load_generator(args.generator)
  inputs = text_tokens.encode_texts(texts, tokenizer, args.max_input_tokens)
  schedule = uniqueness.EscalationSchedule()
  levels = [schedule.level(i) for i in args.levels]
  gens = {sem: T5IdGenerator(config, params, tokenizer, GeneratorOptions(
      batch_size=args.batch, max_input_tokens=args.max_input_tokens, hf_semantics=sem))
          for sem in ("4.26", "per_group")}
  banned = np.flatnonzero(~allowed_tokens(config.vocab_size, text_tokens.num_pieces(tokenizer)))
  got, info = call_426(args.hf_python, "group", args.generator,
                       {"inputs": inputs, "suppress": banned.astype(np.int32),
                        "levels": np.array([[l.diversity_penalty, l.min_length] for l in levels])},
                       tmp)
  out = {"generator": os.path.abspath(args.generator), "items": len(texts), "levels": {},
         "seconds_hf426": info["seconds"]}
  for li, level in enumerate(levels):
    row = {}
    for sem, gen in gens.items():
      seqs, scores = gen.generate(inputs, level)
      same = [all(until_eos(a) == until_eos(b) for a, b in zip(seqs[i], got["sequences"][i, li]))
              for i in range(len(texts))]
      finite = np.isfinite(scores)
      row[sem] = {"same_sequences_same_order": float(np.mean(same)),
                  "max_abs_score_diff": float(np.abs(scores - got["scores"][:, li])[finite].max()),
                  "differing_items": [i for i, s in enumerate(same) if not s][:20]}
    out["levels"][f"dp={level.diversity_penalty:g},min_length={level.min_length}"] = row
  if uniqueness.ITEM_BY_ITEM in getattr(uniqueness, "RESOLUTIONS", ()):
    t0 = time.time()
    ours = uniqueness.assign_unique(len(texts), gens["4.26"].candidate_fn(texts), schedule,
                                    uniqueness.IdNamespace(), resolution=uniqueness.ITEM_BY_ITEM,
                                    keep_case=True)
    sec = time.time() - t0
    hf_ids, info = call_426(args.hf_python, "ids", args.generator,
                            {"inputs": inputs, "suppress": banned.astype(np.int32)}, tmp,
                            spiece=spm)
    same = [a == b for a, b in zip(ours.ids, hf_ids["ids"])]
    out["official_loop"] = {
        "same_final_ids": float(np.mean(same)),
        "differing": [{"item": i, "ours": ours.ids[i], "hf426": hf_ids["ids"][i],
                       "ours_level": int(ours.levels[i]), "hf426_level": hf_ids["levels"][i]}
                      for i, s in enumerate(same) if not s][:20],
        "levels_hf426": {str(l): hf_ids["levels"].count(l) for l in sorted(set(hf_ids["levels"]))},
        "seconds": {"ours": sec, "hf426": info["seconds"]}}
  return out


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--run", required=True, help="trained encoder-decoder MODEL_DIR")
  p.add_argument("--generator", required=True, help="ID generator HF folder with spiece.model")
  p.add_argument("--hf_python", default=str(ROOT.parent / "hf426" / "bin" / "python"))
  p.add_argument("--prompts", type=int, default=500)
  p.add_argument("--items", type=int, default=200)
  p.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")], default=[0, 13],
                 help="escalation level indices (0: dp 1, m 1; 13: dp 5, m 11)")
  p.add_argument("--max_input_tokens", type=int, default=256)
  p.add_argument("--batch", type=int, default=50)
  p.add_argument("--skip", choices=("eval", "group"), default=None)
  p.add_argument("--out", default=None)
  args = p.parse_args()
  result = {"bench": "hf426_parity", "date": time.strftime("%Y-%m-%d"),
             "argv": ["python", "bench/hf426_parity.py"] + sys.argv[1:]}

  def write():  # after each part, so a failure later keeps what was measured
    text = json.dumps(result, indent=1,
                      default=lambda o: o.item() if hasattr(o, "item") else str(o))
    if args.out:
      pathlib.Path(args.out).write_text(text + "\n")
    return text

  with tempfile.TemporaryDirectory() as tmp:
    if args.skip != "eval":
      result["eval_search"] = eval_check(args, tmp)
      write()
    if args.skip != "group":
      result["group_search"] = group_check(args, tmp)
  print(write())


if __name__ == "__main__":
  main()
