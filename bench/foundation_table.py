"""The foundation setting's tables from finished runs (prints Markdown, then one JSON object).

  python bench/foundation_table.py [--runs runs/foundation]

Reads, per left-out dataset T, `<runs>/no_<T>/results.json` (the mixture model's in-domain test
numbers on its three datasets), `<runs>/zs_no_<T>.json` (`llmrec_jax.eval` on T: zero-shot) and
`<runs>/single_<T>/results.json` where it exists (the same recipe on T alone); random ranking is
exact (HR@K = K / N, NDCG@K = sum_{r<=K} 1 / log2(r + 1) / N over N items); popularity and the
single-dataset stream rows with title IDs come from the README's tables (`POPULARITY`,
`SINGLE_STREAM`).
"""
import argparse
import json
import math
import os

from run_files import load_json

ITEMS = {"movielens": 1682, "beauty": 12101, "toys": 11924, "yelp": 20033}
FOLDER = {"movielens": "movielens_100k", "beauty": "amazon2014_beauty", "toys": "amazon2014_toys",
          "yelp": "yelp"}
METRICS = ("hit@5", "ndcg@5", "hit@10", "ndcg@10")
# Popularity from each dataset's own training split, every test user (README tables; MovieLens:
# `python -m llmrec_jax.baselines --model popularity --data_dir ../shared/data/movielens_100k`).
POPULARITY = {"beauty": (.0073, .0040, .0114, .0054), "toys": (.0028, .0021, .0072, .0035),
              "yelp": (.0058, .0038, .0100, .0051), "movielens": (.0159, .0081, .0286, .0121)}
# The stream recipe on the dataset alone with (lowercase) title IDs (README, "Results table with
# the whole-stream recommender": 6 epochs, 8k dataset vocabulary, 5,000 test users).
SINGLE_STREAM = {"beauty": (.0200, .0131, .0302, .0164), "toys": (.0196, .0121, .0344, .0170),
                 "yelp": (.0046, .0031, .0060, .0035)}


def random_metrics(n: int) -> tuple[float, ...]:
  def ndcg(k):
    return sum(1 / math.log2(r + 1) for r in range(1, k + 1)) / n
  return (5 / n, ndcg(5), 10 / n, ndcg(10))


def _row(values):
  return " | ".join("-" if v is None else f"{v:.4f}" for v in values)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--runs", default="runs/foundation")
  args = parser.parse_args()
  out = {}
  print("| left out (zero-shot target) | model | HR@5 | NDCG@5 | HR@10 | NDCG@10 |")
  print("|---|---|---|---|---|---|")
  for t in ITEMS:
    zs = load_json(os.path.join(args.runs, f"zs_no_{t}.json"))
    single = load_json(os.path.join(args.runs, f"single_{t}", "results.json"))
    rows = {"zero-shot (trained on the other three)": zs and [zs["test"][m] for m in METRICS],
            "random": random_metrics(ITEMS[t]), "popularity (its own training split)": POPULARITY[t],
            "in-domain, this recipe on it alone": single and [single["best"]["test"][m] for m in METRICS],
            "in-domain, 6-epoch stream recipe on it alone (results table)": SINGLE_STREAM.get(t)}
    out[t] = {k: (list(v) if v else None) for k, v in rows.items()}
    for name, values in rows.items():
      print(f"| {t} | {name} | {_row(values or [None] * 4)} |")
  print()
  print("| dataset | model | HR@5 | NDCG@5 | HR@10 | NDCG@10 | test users |")
  print("|---|---|---|---|---|---|---|")
  for t in ITEMS:
    single = load_json(os.path.join(args.runs, f"single_{t}", "results.json"))
    if single is not None:
      test = single["best"]["test"]
      print(f"| {t} | alone (this recipe) | {_row([test[m] for m in METRICS])} | {test['users']} |")
    for left in ITEMS:
      res = load_json(os.path.join(args.runs, f"no_{left}", "results.json"))
      key = FOLDER[t]
      if res is None or f"{key}/hit@10" not in res["best"]["test"]:
        continue
      test = res["best"]["test"]
      print(f"| {t} | mixture without {left} | {_row([test[f'{key}/{m}'] for m in METRICS])} | "
            f"{test[f'{key}/users']} |")
      out.setdefault("mixture_in_domain", {}).setdefault(left, {})[t] = [test[f"{key}/{m}"] for m in METRICS]
  print()
  print(json.dumps(out))


if __name__ == "__main__":
  main()
