"""Case-kept vs lowercase textual IDs: tokens per ID, collisions, and (optionally) a training result.

  python bench/id_case_ablation.py [--datasets beauty,toys] [--data_root ../shared/data]
      [--t5_vocab ../shared/vocab/t5_spiece.model] [--dataset_vocab_size 8000 | 0]
      [--generator DATASET=MODEL_DIR] [--runs lower=DIR,keep_case=DIR]
      [--out bench/results/id_case_ablation_DATE.json]

Per dataset and ID source, the IDs are built lowercase (`normalize_id`, our default) and with case
kept (the official `" ".join(re.findall(r"\\b\\w+\\b", text))`):
  title: `id_schemes` 'title' (the first 8 words of the title);
  keywords: the TF-IDF keyword IDs the generator is bootstrapped on (`keywords.keyword_ids`), the
    closest cheap stand-in for generated IDs;
  reference: the released IDGenRec IDs verbatim (the tag generator's case) and lowercased, plus
    "recased": each word written as it first appears in the item's own text (the source text the
    IDs were generated from), where it does.
For each: `collisions` (IDs equal, as strings, to an earlier item's: what the uniqueness step must
escalate or suffix), `token_collisions` (the same over T5 token sequences), and the T5
SentencePiece pieces per unique ID (EOS not counted), mean and max. With `--dataset_vocab_size` the
pieces per ID are also counted under the dataset vocabulary a stream run trains (`--vocab_path ''`:
item text, plus its lowercase copy for lowercase IDs).

`--generator` runs a learned run's ID generator (MODEL_DIR/generator, with MODEL_DIR/spiece.model,
inputs cut to 64 tokens as the run did) over every item of DATASET with the official schedule (18
levels), and assigns its IDs four ways: lowercase / case kept x level_by_level / item_by_item, all
from the same decodes (cached per key and level). For each: escalated and fallback keys, IDs
differing from level_by_level's, candidate_fn calls and keys decoded, pieces per ID.
`--runs` adds the test metrics of two training runs (MODEL_DIRs of `python -m llmrec_jax.train`).
Prints one JSON object and writes it.
"""
from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import platform
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# pylint: disable=g-import-not-at-top,wrong-import-position
from llmrec_jax.data import id_tables, item_text, sources
from llmrec_jax.indexing import id_schemes, keywords, text_tokens
# pylint: enable=g-import-not-at-top,wrong-import-position

FOLDERS = {"beauty": "amazon2014_beauty", "toys": "amazon2014_toys", "sports": "amazon2014_sports"}
CASES = ("lower", "keep_case")


def collisions(ids, key=lambda t: t) -> int:
  """Number of IDs whose key equals an earlier ID's (empty IDs count as colliding)."""
  seen, n = set(), 0
  for text in ids:
    k = key(text)
    n += (not text) or k in seen
    seen.add(k)
  return n


def piece_stats(ids, tokenizer) -> dict:
  lengths_N = np.array([len(tokenizer.encode(t)) for t in ids])
  return {"mean": round(float(lengths_N.mean()), 3), "max": int(lengths_N.max())}


def describe(raw_ids, t5, vocabs: dict) -> dict:
  """Collisions of `raw_ids` (before uniqueness) and pieces per ID once made unique under T5."""
  t5_key = lambda t: tuple(t5.encode(t))
  unique = id_schemes.make_unique(raw_ids, t5.encode, what="bench")
  out = {"ids": len(raw_ids), "collisions": collisions(raw_ids), "token_collisions": collisions(raw_ids, t5_key),
         "with_uppercase": sum(t != t.lower() for t in raw_ids),
         "mean_words": round(float(np.mean([len(t.split()) for t in unique])), 3),
         "t5_pieces": piece_stats(unique, t5)}
  for name, tok in vocabs.items():
    out[f"{name}_pieces"] = piece_stats(unique, tok)
  return out


def recase(tid: str, text: str) -> str:
  """`tid`'s words as first written in `text` (case-insensitively matched), others as they are."""
  forms = {}
  for word in id_tables._WORD.findall(text):  # pylint: disable=protected-access
    forms.setdefault(word.lower(), word)
  return " ".join(forms.get(w.lower(), w) for w in tid.split())


def dataset_vocabs(data, texts, size: int) -> dict:
  """The dataset vocabulary of a stream run per case (`train._tokenizer` with `--vocab_path ''`)."""
  from llmrec_jax.systems.idgenrec import components  # pylint: disable=g-import-not-at-top
  out = {}
  for case in CASES:
    extra = [t.lower() for t in texts] if case == "lower" else []
    out[case] = components.load_tokenizer(None, data, dataset_vocab_size=size, extra_texts=extra)[0]
  return out


def one_dataset(folder: pathlib.Path, t5, vocab_size: int) -> dict:
  data = sources.load_dataset(str(folder))
  yelp = any("name" in m and "title" not in m for m in data.item_meta[:100])
  texts = [item_text.render_item_text(m, fields=item_text.YELP_FIELDS if yelp else item_text.DEFAULT_FIELDS)
           for m in data.item_meta]
  titles = [keywords.item_title(m) for m in data.item_meta]
  t0 = time.time()
  vocabs = dataset_vocabs(data, texts, vocab_size) if vocab_size else {}
  out = {"items": data.num_items, "seconds_dataset_vocabs": round(time.time() - t0, 1)}
  for source, build in (
      ("title", lambda keep: id_schemes.title_ids(data, "", seed=0, title_words=id_schemes.TITLE_ID_WORDS,
                                                    keep_case=keep)),
      ("keywords", lambda keep: [t if keep else t.lower() for t in keywords.keyword_ids(titles, keep_case=True)])):
    out[source] = {case: describe(build(case == "keep_case"), t5, {f"dataset_{case}": vocabs[case]}
                                  if vocabs else {}) for case in CASES}
  if (folder / id_tables.REFERENCE_IDS).is_file():
    ref = id_tables.load_reference_ids(folder)
    verbatim = [ref.ids.get(i, "") for i in data.item_ids]
    variants = {"verbatim": verbatim, "lower": [t.lower() for t in verbatim],
                "recased": [recase(t, text) for t, text in zip(verbatim, texts)]}
    out["reference"] = {name: describe(ids, t5, {}) for name, ids in variants.items()}
  return out


def generated_ids(folder: pathlib.Path, model_dir: pathlib.Path, t5, max_levels: int = 18) -> dict:
  """The four assignments of a learned generator's IDs (see the module doc)."""
  from llmrec_jax.indexing import uniqueness  # pylint: disable=g-import-not-at-top
  from llmrec_jax.systems.idgenrec import assign, generator  # pylint: disable=g-import-not-at-top
  data = sources.load_dataset(str(folder))
  texts = assign.item_texts_and_titles(data)[0]
  tok = text_tokens.load_sentencepiece(model_dir / "spiece.model")
  cfg, params = assign.load_generator(str(model_dir / "generator"))
  gen = generator.T5IdGenerator(cfg, params, tok, generator.GeneratorOptions(max_input_tokens=64))
  decode, cache, calls = gen.candidate_fn(texts), {}, []

  def cached(keys_P, level):
    calls.append(len(keys_P))
    missing = [int(k) for k in keys_P if (int(k), level.index) not in cache]
    if missing:
      cache.update(zip(((k, level.index) for k in missing), decode(np.asarray(missing), level)))
    return [cache[(int(k), level.index)] for k in keys_P]

  out, t0 = {"items": len(texts), "max_levels": max_levels}, time.time()
  schedule = uniqueness.EscalationSchedule(max_levels=max_levels)
  for case in CASES:
    by = {}
    for resolution in uniqueness.RESOLUTIONS:
      calls.clear()
      namespace = uniqueness.IdNamespace(assign.token_key_fn(tok))
      result = uniqueness.assign_unique(len(texts), cached, schedule, namespace, fallback_texts=texts,
                                        resolution=resolution, keep_case=case == "keep_case")
      by[resolution] = result.ids
      out[f"{case}/{resolution}"] = {
          "escalated": int(np.sum(result.levels != 0)), "fallbacks": result.num_fallbacks,
          "levels": result.level_histogram(), "candidate_fn_calls": len(calls), "keys_decoded": int(sum(calls)),
          "with_uppercase": sum(t != t.lower() for t in result.ids),
          "differ_from_level_by_level": sum(a != b for a, b in zip(result.ids, by[uniqueness.LEVEL_BY_LEVEL])),
          "t5_pieces": piece_stats(result.ids, t5), "run_vocab_pieces": piece_stats(result.ids, tok)}
  out["seconds"] = round(time.time() - t0, 1)
  return out


def run_results(spec: str) -> dict:
  """{case: test / valid metrics and minutes} of `case=MODEL_DIR,...` training runs."""
  out = {}
  for part in filter(None, spec.split(",")):
    case, model_dir = part.split("=", 1)
    summary = json.loads((pathlib.Path(model_dir) / "results.json").read_text())
    best = summary.get("best") or {}
    lines = (pathlib.Path(model_dir) / "metrics.jsonl").read_text().splitlines()
    out[case] = {"model_dir": model_dir, "test": best.get("test"), "valid": best.get("valid"),
                 "minutes": json.loads(lines[-1]).get("minutes") if lines else None}
  return out


def main() -> None:
  p = argparse.ArgumentParser()
  p.add_argument("--datasets", default="beauty,toys")
  p.add_argument("--data_root", default=str(REPO / ".." / "shared" / "data"))
  p.add_argument("--t5_vocab", default=str(REPO / ".." / "shared" / "vocab" / "t5_spiece.model"))
  p.add_argument("--dataset_vocab_size", type=int, default=8000, help="0: no dataset vocabulary")
  p.add_argument("--generator", default="", help="DATASET=MODEL_DIR of a learned run (its generator/)")
  p.add_argument("--runs", default="", help="case=MODEL_DIR,... of finished training runs")
  p.add_argument("--out", default=str(REPO / "bench" / "results" /
                                      f"id_case_ablation_{datetime.date.today().isoformat()}.json"))
  args = p.parse_args()
  t5 = text_tokens.load_sentencepiece(args.t5_vocab)
  result = {"date": datetime.date.today().isoformat(), "host": platform.node(),
            "t5_vocab": str(pathlib.Path(args.t5_vocab).resolve()), "dataset_vocab_size": args.dataset_vocab_size,
            "datasets": {ds: one_dataset(pathlib.Path(args.data_root) / FOLDERS[ds], t5, args.dataset_vocab_size)
                         for ds in args.datasets.split(",")}}
  if args.generator:
    ds, model_dir = args.generator.split("=", 1)
    folder = pathlib.Path(args.data_root) / FOLDERS[ds]
    result["generated"] = {ds: generated_ids(folder, pathlib.Path(model_dir).resolve(), t5)}
  if args.runs:
    result["training"] = run_results(args.runs)
  text = json.dumps(result, indent=1)
  print(text)
  pathlib.Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
  main()
