"""Built TFDS datasets (a sequences config + optionally its `_items` config) -> `RecData`.

So data prepared with `amazon2014` / `movielens_sequences` feeds the same splits and SeqIO tasks as
the P5 folders: `register_idgenrec_tasks(name, recdata_from_tfds(seq, items), ...)`.
"""
from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from llmrec_jax.data.records import RecData


def _text(x) -> str:
  return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def _strings(x) -> list:
  x = x.to_list() if hasattr(x, "to_list") else x  # nested sequences come back ragged
  return [_strings(v) if isinstance(v, (list, np.ndarray)) else _text(v) for v in x]


def recdata_from_tfds(sequences: tfds.core.DatasetBuilder, items: tfds.core.DatasetBuilder | None = None,
                      name: str | None = None) -> RecData:
  """Reads the prepared builders (split `train` of `sequences`, split `items` of `items`).

  Items are those some user interacted with, in the order of the items split (amazon: asin order,
  MovieLens: movie-file order), or by first appearance without one. Metadata keeps every text field;
  MovieLens `genres` are also given as `categories` (what `render_item_text` reads, as `load_movielens`).
  """
  users, seqs = [], []
  for row in tfds.as_numpy(sequences.as_dataset(split="train", shuffle_files=False)):
    users.append(_text(row["user_id"]))
    seqs.append(_strings(row["item_ids"]))
  used = dict.fromkeys(i for s in seqs for i in s)
  meta_of = {}
  if items is not None:
    for row in tfds.as_numpy(items.as_dataset(split="items", shuffle_files=False)):
      meta = {k: (_text(v) if isinstance(v, (bytes, str)) else _strings(v)) for k, v in row.items() if k != "item_id"}
      if "genres" in meta:
        meta["categories"] = meta["genres"]
      meta_of[_text(row["item_id"])] = meta
    missing = [i for i in used if i not in meta_of]
    if missing:
      raise ValueError(f"{items.info.full_name}: {len(missing)} interacted items have no metadata, e.g. {missing[0]}")
    item_ids = [i for i in meta_of if i in used]
  else:
    item_ids = list(used)
  index = {i: k for k, i in enumerate(item_ids)}
  return RecData(name=name or sequences.info.full_name, user_ids=tuple(users), item_ids=tuple(item_ids),
                 item_meta=tuple(meta_of.get(i, {}) for i in item_ids),
                 sequences=tuple(np.array([index[i] for i in s], dtype=np.int32) for s in seqs))
