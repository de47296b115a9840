"""The ID-scheme table with semantic IDs, from finished runs (prints Markdown, then one JSON object).

  python bench/semantic_ids_table.py [--semantic runs/semantic] [--textual runs/stream]

Reads `<semantic>/<dataset>/sid_<scheme>_<embeddings>/results.json` (made by
`python -m llmrec_jax.experiments.table --datasets D --models sid_tiger_glove,... --run
--run_gin runs/cpu_stream_table.gin --vocab_path '' --runs_dir runs/semantic`) and, for the
textual-ID rows of the same recipe, `<textual>/<dataset>/ids_<scheme>/results.json` (the
README's whole-stream table). Test split, full ranking; generative rows test the same 5,000
sampled users per dataset. Popularity (every test user), both SASRecs (18-minute budget, every
test user) and TIGER's published numbers are copied from the README and the data README
(`QUOTED`), not rerun. Also prints each semantic run's codes: RQ-VAE seconds, codebook
utilisation per level, the share of items whose code tuple collided before the scheme's fix,
the extra level's size (TIGER) and the run's wall clock (`.run.json`).
"""
import argparse
import json
import os

from run_files import load_json

DATASETS = ("beauty", "toys", "yelp")
METRICS = ("hit@5", "ndcg@5", "hit@10", "ndcg@10")
SEMANTIC = (("sid_tiger_glove", "Semantic IDs, TIGER-style, GloVe"),
            ("sid_lcrec_glove", "Semantic IDs, LC-Rec-style, GloVe"),
            ("sid_tiger_sasrec", "Semantic IDs, TIGER-style, SASRec embeddings"),
            ("sid_lcrec_sasrec", "Semantic IDs, LC-Rec-style, SASRec embeddings"),
            ("sid_tiger_glove_tfidf", "Semantic IDs, TIGER-style, GloVe with TF-IDF pooling"),
            ("sid_tiger_sasrec_users", "Semantic IDs, TIGER-style, SASRec embeddings, hashed user token"))
TEXTUAL = (("ids_reference", "Textual IDs, reference (released)"),
           ("ids_title", "Textual IDs, title"),
           ("ids_learned", "Textual IDs, learned (IDGenRec)"),
           ("ids_sequential", "Sequential IDs"))
# HR@5, NDCG@5, HR@10, NDCG@10 per dataset (None: not published / not run).
QUOTED = {
    "Popularity (README, every test user)": {
        "beauty": (.0073, .0040, .0114, .0054), "toys": (.0028, .0021, .0072, .0035),
        "yelp": (.0058, .0038, .0100, .0051)},
    "SASRec-CE, 18-minute budget (README, every test user)": {
        "beauty": (.0492, .0279, .0770, .0369), "toys": (.0697, .0406, .1030, .0513),
        "yelp": (.0375, .0263, .0575, .0327)},
    "SASRec-BCE, 18-minute budget (README, every test user)": {
        "beauty": (.0242, .0128, .0452, .0195), "toys": (.0384, .0205, .0659, .0293),
        "yelp": (.0257, .0181, .0406, .0229)},
    "TIGER (published; Sentence-T5 + RQ-VAE, T5 encoder-decoder, GPU scale)": {
        "beauty": (.0454, .0321, .0648, .0384), "toys": (.0521, .0371, .0712, .0432), "yelp": None},
}


def _test(results):
  test = ((results or {}).get("best") or {}).get("test") or {}
  return tuple(test.get(m) for m in METRICS) if test else None


def _cells(values):
  if values is None:
    return " | ".join(["-"] * len(METRICS))
  return " | ".join("-" if v is None else f"{v:.4f}" for v in values)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--semantic", default="runs/semantic")
  parser.add_argument("--textual", default="runs/stream")
  args = parser.parse_args()
  rows, out = [], {"rows": {}, "codes": {}}
  for name, label in SEMANTIC:
    rows.append((label + " (ours)", {d: _test(load_json(os.path.join(args.semantic, d, name, "results.json")))
                                     for d in DATASETS}))
  for name, label in TEXTUAL:
    rows.append((label + " (ours)", {d: _test(load_json(os.path.join(args.textual, d, name, "results.json")))
                                     for d in DATASETS}))
  rows += [(label + " (quoted)", values) for label, values in QUOTED.items()]
  head = " | ".join(f"{d.capitalize()} {m}" for d in DATASETS for m in ("HR@5", "NDCG@5", "HR@10", "NDCG@10"))
  print(f"| model | {head} |")
  print("|---|" + "---|" * (len(DATASETS) * len(METRICS)))
  for label, per_dataset in rows:
    print(f"| {label} | " + " | ".join(_cells(per_dataset.get(d)) for d in DATASETS) + " |")
    out["rows"][label] = per_dataset
  print()
  print("| dataset | run | RQ-VAE s | utilisation per level | collided before fix | extra level | IDs tokens + EOS | wall min |")
  print("|---|---|---|---|---|---|---|---|")
  for d in DATASETS:
    for name, _ in SEMANTIC:
      results = load_json(os.path.join(args.semantic, d, name, "results.json"))
      prov = load_json(os.path.join(args.semantic, d, f"{name}.run.json")) or {}
      stats = (results or {}).get("semantic_ids")
      if not stats:
        continue
      sizes = stats["level_sizes"]
      extra = sizes[3] if len(sizes) > 3 else "-"
      util = ", ".join(f"{u:.2f}" for u in stats.get("codebook_utilisation", []))
      wall = prov.get("wall_seconds")
      print(f"| {d} | {name} | {stats.get('seconds')} | {util} | {stats.get('collision_rate', 0):.4f} | "
            f"{extra} | {len(sizes) + 1} | {'-' if wall is None else round(wall / 60, 1)} |")
      out["codes"][f"{d}/{name}"] = {**{k: v for k, v in stats.items()}, "wall_seconds": wall}
  print()
  print(json.dumps(out))


if __name__ == "__main__":
  main()
