"""Top-K recommendations from a trained IDGenRec run.

  python -m llmrec_jax.infer --gin.infer.model_dir="'/tmp/idgenrec_tiny'" \
      --gin.infer.users="['U00001']"            # users of the dataset (their full history)
  python -m llmrec_jax.infer ... --gin.infer.history="['I00003', 'I00017']"   # any history of item ids
  python -m llmrec_jax.infer ... --gin.infer.data_dir="'/new/place/of/the/dataset'"  # moved dataset

The data, tokenizer and sizes come from what `llmrec_jax.train` recorded in the model dir (which
may be relative to the working directory); `data_dir` replaces the recorded DATA_DIR when the
dataset moved (another machine) and must be the run's dataset (same items and users).

Prints, per query, the K items best first: item id, title, textual ID and score.

A decoder-only run (rec_form 'decoder_only', `stream_inference`) recommends with its best
validated recommender over the catalogue of `data_dir` alone: the run's dataset, one of its
mixture's, or ZERO-SHOT any other dataset directory with item text (the run's generator writes
its items' IDs); `users` and `history` name that catalogue's users and items, and the score is
the item's log-probability.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

from llmrec_jax.systems.idgenrec import components as idgenrec
from llmrec_jax.systems.idgenrec import inference, stream_inference


def infer(*, model_dir: str, users: Sequence[str] = (), history: Sequence[str] = (), top_k: int = 10,
          exclude_seen: bool = False, step: Optional[int] = None, data_dir: Optional[str] = None
          ) -> list[dict]:
  """Recommendations for dataset users (their whole sequence as history) and/or one item history."""
  if stream_inference.is_decoder_only(os.path.abspath(model_dir)):
    return _infer_stream(os.path.abspath(model_dir), users=users, history=history, top_k=top_k,
                         exclude_seen=exclude_seen, step=step, data_dir=data_dir)
  r = inference.restore(os.path.abspath(model_dir), step=step, data_dir=data_dir)
  data_dir = r.data_dir
  queries = []
  for u in users:
    if u not in r.data.user_index:
      raise ValueError(f"unknown user {u!r} in {data_dir}")
    idx = r.data.user_index[u]
    queries.append((u, r.user_ids[idx], r.data.sequences[idx].tolist()))
  if history:
    missing = [i for i in history if i not in r.data.item_index]
    if missing:
      raise ValueError(f"unknown item ids {missing} in {data_dir}")
    queries.append(("<history>", "user", [r.data.item_index[i] for i in history]))
  if not queries:
    raise ValueError("give infer.users and/or infer.history")
  items, scores = inference.recommend(
      r, [q[2] for q in queries], [q[1] for q in queries], top_k=top_k,
      templates=idgenrec.load_templates(r.run.template_set), input_len=r.run.input_len,
      id_len=r.run.id_len, max_his=r.run.max_his, truncation=r.run.truncation,
      exclude=[q[2] for q in queries] if exclude_seen else None)
  out = []
  for (name, _, _), row_items, row_scores in zip(queries, items, scores):
    recs = [{"item_id": r.data.item_ids[i], "title": str(r.data.item_meta[i].get("title", "")),
             "textual_id": r.item_ids[i], "score": float(s)} for i, s in zip(row_items, row_scores) if i >= 0]
    out.append({"query": name, "recommendations": recs})
  return out


def _queries(data, data_dir: str, users: Sequence[str], history: Sequence[str]
             ) -> list[tuple[str, list[int]]]:
  """(name, item indices) per query: each user's whole sequence, then `history`."""
  queries = []
  for u in users:
    if u not in data.user_index:
      raise ValueError(f"unknown user {u!r} in {data_dir}")
    queries.append((u, data.sequences[data.user_index[u]].tolist()))
  if history:
    missing = [i for i in history if i not in data.item_index]
    if missing:
      raise ValueError(f"unknown item ids {missing} in {data_dir}")
    queries.append(("<history>", [data.item_index[i] for i in history]))
  if not queries:
    raise ValueError("give infer.users and/or infer.history")
  return queries


def _infer_stream(model_dir: str, *, users: Sequence[str], history: Sequence[str], top_k: int,
                  exclude_seen: bool, step: Optional[int], data_dir: Optional[str]) -> list[dict]:
  """Recommendations of a decoder-only run over the catalogue of `data_dir` (see the module doc)."""
  r = stream_inference.restore(model_dir, step=step)
  cat = stream_inference.catalogue(r, data_dir)
  queries = _queries(cat.data, cat.data_dir, users, history)
  items, scores = stream_inference.recommend(
      r, cat, [q[1] for q in queries], top_k=top_k,
      exclude=[q[1] for q in queries] if exclude_seen else None)
  out = []
  for (name, _), row_items, row_scores in zip(queries, items, scores):
    recs = [{"item_id": cat.data.item_ids[i], "title": _title(cat.data.item_meta[i]),
             "textual_id": cat.textual_ids[i], "score": float(s)}
            for i, s in zip(row_items, row_scores) if i >= 0]
    out.append({"query": name, "recommendations": recs, "zero_shot": cat.zero_shot})
  return out


def _title(meta: dict) -> str:
  return str(meta.get("title", meta.get("name", "")))


def main(argv) -> None:
  del argv
  import gin  # pylint: disable=g-import-not-at-top
  from llmrec_jax import gin_utils  # pylint: disable=g-import-not-at-top
  configured = gin.configurable(infer)
  gin_utils.parse_gin_flags()
  for q in configured():
    print(f"\n{q['query']}{' (zero-shot)' if q.get('zero_shot') else ''}:")
    for rank, rec in enumerate(q["recommendations"], 1):
      print(f"  {rank:2d}. {rec['item_id']:14s} score {rec['score']:8.4f}  [{rec['textual_id']}]  {rec['title'][:60]}")
  print()


if __name__ == "__main__":
  from llmrec_jax import gin_utils as _gin_utils  # pylint: disable=g-import-not-at-top
  _gin_utils.run(main)
