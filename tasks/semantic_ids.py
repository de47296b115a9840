"""LC-Rec's tasks over semantic IDs (Zheng et al., ICDE 2024) as SeqIO Tasks and a Mixture.

`register(name, data_dir, model_dir)` reads a semantic-ID run's `MODEL_DIR/semantic_ids.json`
(`systems.semantic_ids.run`: the item ids and every item's code tuple) and the dataset, and
registers, on a vocabulary extended with the code tokens (`data.code_vocabulary`):
  <name>_seqrec         "history: <codes> ; <codes> ..." -> the next item's codes (train, validation,
                        test: the leave-one-out examples of `data.splits`); its `item_catalogues`
                        entry is every item's codes, so the single-model mode ranks it over all items;
  <name>_item2code      "item code of: <item text>" -> the item's codes;
  <name>_code2item      "title of item: <codes>" -> the item's title;
  <name>_history2title  "next title after: <codes> ; <codes> ..." -> the next item's title;
  <name>                the Mixture of the four (`Rates`; seqrec weighted most).
The alignment tasks have a train split only, built from training data alone: item2code and
code2item cover the items of the users' training parts (`splits.train_items`), history2title the
training examples of seqrec; no user's validation or test item is a training target.

Registration from a run's settings (T5X's `MIXTURE_OR_TASK_MODULE`): importing this module with
the environment variables `LLMREC_SID_RUN` (the semantic-ID run's MODEL_DIR) and `LLMREC_SID_DATA`
(its dataset folder) set registers them, named `LLMREC_SID_NAME` (default 'lcrec'), on the
SentencePiece model `LLMREC_SID_VOCAB` (default: one trained on the dataset's text, cached).
`gin_configs/semantic_ids/lcrec_alignment.gin` runs it.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import pathlib
from typing import Optional, Sequence

import numpy as np
import seqio

from llmrec_jax.data import item_catalogues, preprocessors, seqio_metrics
from llmrec_jax.data import task_builders as tb
from llmrec_jax.data import vocab as vocab_lib
from llmrec_jax.data.code_vocabulary import CodeExtendedVocabulary
from llmrec_jax.data.item_text import field_text, render_item_text
from llmrec_jax.data.prompts import HISTORY_SEP
from llmrec_jax.data.records import RecData
from llmrec_jax.data.splits import leave_one_out, train_items
from llmrec_jax.indexing.code_tokens import CODES_FILE, CodeVocabulary

log = logging.getLogger(__name__)

PREFIXES = {"seqrec": "history:", "item2code": "item code of:", "code2item": "title of item:",
            "history2title": "next title after:"}
TITLE_FIELDS = ("title", "name")  # an item's title: the first present (Yelp businesses have a name)
ENV_RUN, ENV_DATA, ENV_NAME, ENV_VOCAB = "LLMREC_SID_RUN", "LLMREC_SID_DATA", "LLMREC_SID_NAME", "LLMREC_SID_VOCAB"


@dataclasses.dataclass(frozen=True)
class Rates:
  """Mixing rate of each task in the Mixture (relative sampling weights)."""
  seqrec: float = 4.0
  item2code: float = 1.0
  code2item: float = 1.0
  history2title: float = 1.0

  def __post_init__(self):
    if min(dataclasses.astuple(self)) < 0 or self.seqrec <= 0:
      raise ValueError(f"Rates: seqrec must be > 0 and the others >= 0, got {self}")


def read_codes(model_dir: str | os.PathLike, data: RecData) -> tuple[CodeVocabulary, list[str]]:
  """(the code vocabulary, every item's code text) of `model_dir/semantic_ids.json`, whose items
  must be `data`'s (same ids, same order) and whose code tuples must be distinct."""
  path = pathlib.Path(model_dir) / CODES_FILE
  try:
    with open(path, encoding="utf-8") as f:
      saved = json.load(f)
    item_ids, codes_NxL = list(saved["item_ids"]), np.asarray(saved["codes"], np.int64)
    codes = CodeVocabulary(saved["stats"]["level_sizes"])
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise ValueError(f"{path}: not a semantic-ID run's codes ({type(e).__name__}: {e})") from e
  if item_ids != list(data.item_ids):
    diff = next((i for i, (a, b) in enumerate(zip(item_ids, data.item_ids)) if a != b),
                min(len(item_ids), data.num_items))
    raise ValueError(f"{path}: its {len(item_ids)} item ids are not the {data.num_items} items of "
                     f"dataset {data.name!r} (first difference at item index {diff}); was it made "
                     "from another dataset?")
  try:
    codes.item_tokens(codes_NxL)  # checks the shape and each level's range
  except ValueError as e:
    raise ValueError(f"{path}: {e}") from e
  texts = [codes.id_text(c) for c in codes_NxL]
  if len(set(texts)) != len(texts):
    raise ValueError(f"{path}: {len(texts) - len(set(texts))} items share a code tuple; the codes "
                     "must be unique (a collision scheme makes them so)")
  return codes, texts


def item_titles(data: RecData) -> list[str]:
  """Each item's title ('' when it has none)."""
  return [next((t for t in (field_text(m.get(f)) for f in TITLE_FIELDS) if t), "") for m in data.item_meta]


def _history(codes: Sequence[str], history: np.ndarray) -> str:
  return HISTORY_SEP.join(codes[i] for i in history.tolist())


def seqrec_examples(splits, codes: Sequence[str], split: str) -> dict[str, np.ndarray]:
  """Rows of `split` ('train' | 'validation' | 'test'): history codes -> next item's codes."""
  loo = splits[tb.SPLITS[split]]
  inputs = [f"{PREFIXES['seqrec']} {_history(codes, h)}" for h in loo.history]
  return {"inputs": np.array(inputs, dtype=object),
          "targets": np.array([codes[t] for t in loo.target.tolist()], dtype=object),
          "user_index": loo.user.astype(np.int32), "target_index": loo.target.astype(np.int32)}


def item2code_examples(items: np.ndarray, texts: Sequence[str], codes: Sequence[str]) -> dict[str, np.ndarray]:
  """Rows of `items` that have text: item text -> item codes."""
  items = np.array([i for i in items.tolist() if texts[i]], np.int32)
  return {"inputs": np.array([f"{PREFIXES['item2code']} {texts[i]}" for i in items], dtype=object),
          "targets": np.array([codes[i] for i in items], dtype=object), "target_index": items}


def code2item_examples(items: np.ndarray, titles: Sequence[str], codes: Sequence[str]) -> dict[str, np.ndarray]:
  """Rows of `items` that have a title: item codes -> title."""
  items = np.array([i for i in items.tolist() if titles[i]], np.int32)
  return {"inputs": np.array([f"{PREFIXES['code2item']} {codes[i]}" for i in items], dtype=object),
          "targets": np.array([titles[i] for i in items], dtype=object), "target_index": items}


def history2title_examples(splits, titles: Sequence[str], codes: Sequence[str]) -> dict[str, np.ndarray]:
  """Training examples whose target has a title: history codes -> next item's title."""
  loo = splits["train"]
  keep = [e for e, t in enumerate(loo.target.tolist()) if titles[t]]
  return {"inputs": np.array([f"{PREFIXES['history2title']} {_history(codes, loo.history[e])}" for e in keep],
                             dtype=object),
          "targets": np.array([titles[loo.target[e]] for e in keep], dtype=object),
          "user_index": loo.user[keep].astype(np.int32), "target_index": loo.target[keep].astype(np.int32)}


def training_items(data: RecData) -> np.ndarray:
  """int32: the items of some user's training part (before the validation target), ascending."""
  if not data.num_users:
    return np.zeros((0,), np.int32)
  return np.unique(np.concatenate([train_items(s) for s in data.sequences])).astype(np.int32)


def _add_task(name: str, rows_of, splits: Sequence[str], vocab, overwrite: bool, *, ranked: bool):
  """Registers a Task whose split `s` is `rows_of(s)` (a dict of equal-length arrays, made once)."""
  rows_of = functools.cache(rows_of)

  def dataset_fn(split, shuffle_files=False, seed=None):
    del shuffle_files, seed
    return preprocessors.to_tf_dataset(rows_of(split))
  counts = {s: len(rows_of(s)["inputs"]) for s in splits}
  source = seqio.FunctionDataSource(dataset_fn=dataset_fn, splits=tuple(splits), num_input_examples=counts)
  metrics = dict(postprocess_fn=seqio_metrics.postprocess_textual_id,
                 metric_fns=[seqio_metrics.make_hit_ndcg((5, 10))]) if ranked else {}
  if overwrite:
    seqio.TaskRegistry.remove(name)
  seqio.TaskRegistry.add(name, source=source, output_features=tb.output_features(vocab),
                         preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim],
                         **metrics)


def base_vocabulary(data: RecData, vocab_path: Optional[str] = None, vocab_size: int = 8000):
  """The SentencePiece model at `vocab_path`, else one trained on `data`'s text and the prompts."""
  if vocab_path:
    return vocab_lib.get_vocabulary(vocab_path)
  return vocab_lib.get_vocabulary(data=data, extra_texts=list(PREFIXES.values()), vocab_size=vocab_size)


def register(name: str, data_dir: str | os.PathLike, model_dir: str | os.PathLike,
             vocab: Optional[seqio.SentencePieceVocabulary] = None, *, rates: Rates = Rates(),
             max_his: int = 20, overwrite: bool = False) -> seqio.Mixture:
  """Registers the four tasks and the Mixture `name` (see the module docstring); returns the Mixture.

  Args:
    name: prefix of the task names and the Mixture's name.
    data_dir: the dataset folder (`sources.load_dataset`), the one the codes were made from.
    model_dir: the semantic-ID run's MODEL_DIR (holds semantic_ids.json).
    vocab: the base SentencePiece vocabulary; None = `base_vocabulary(data)`.
    rates: the Mixture's rate per task.
    max_his: history items kept per example (the most recent).
    overwrite: replace tasks, catalogue and Mixture of the same names.
  """
  from llmrec_jax.data.sources import load_dataset  # pylint: disable=g-import-not-at-top
  data = load_dataset(data_dir)
  code_vocab, codes = read_codes(model_dir, data)
  vocab = CodeExtendedVocabulary(vocab or base_vocabulary(data), code_vocab.level_sizes)
  splits = leave_one_out(data, max_his)
  titles, items = item_titles(data), training_items(data)
  texts = [render_item_text(m) if m else "" for m in data.item_meta]
  rows = {"seqrec": lambda s: seqrec_examples(splits, codes, s),
          "item2code": lambda s: item2code_examples(items, texts, codes),
          "code2item": lambda s: code2item_examples(items, titles, codes),
          "history2title": lambda s: history2title_examples(splits, titles, codes)}
  for task, rows_of in rows.items():
    _add_task(f"{name}_{task}", rows_of, tuple(tb.SPLITS) if task == "seqrec" else ("train",), vocab,
              overwrite, ranked=task == "seqrec")
  item_catalogues.register(f"{name}_seqrec", item_catalogues.ItemCatalogue(lambda: list(codes)),
                           overwrite=overwrite)
  if overwrite:
    seqio.MixtureRegistry.remove(name)
  rate = dataclasses.asdict(rates)
  return seqio.MixtureRegistry.add(name, [(f"{name}_{t}", rate[t]) for t in rows if rate[t] > 0])


def register_from_env(environ=os.environ) -> Optional[seqio.Mixture]:
  """`register` with the settings of the `LLMREC_SID_*` environment variables (module docstring);
  None when neither `LLMREC_SID_RUN` nor `LLMREC_SID_DATA` is set."""
  run, data_dir = environ.get(ENV_RUN), environ.get(ENV_DATA)
  if not run and not data_dir:
    log.warning("%s: %s and %s are not set, so no task is registered on import (call register())",
                __name__, ENV_RUN, ENV_DATA)
    return None
  if not run or not data_dir:
    raise ValueError(f"set both {ENV_RUN} (the semantic-ID run's MODEL_DIR) and {ENV_DATA} (its dataset "
                     f"folder); only {ENV_RUN if run else ENV_DATA} is set")
  name = environ.get(ENV_NAME) or "lcrec"
  vocab = vocab_lib.get_vocabulary(environ[ENV_VOCAB]) if environ.get(ENV_VOCAB) else None
  mixture = register(name, data_dir, run, vocab, overwrite=True)
  log.info("registered the semantic-ID Mixture %r (%s) from %s and %s", name,
           ", ".join(t.name for t in mixture.tasks), run, data_dir)
  return mixture


register_from_env()
