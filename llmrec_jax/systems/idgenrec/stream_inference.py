"""A decoder-only (whole-stream) IDGenRec run after training: restore it, give a catalogue its
item IDs, rank that catalogue (used by `eval` and `infer`).

`restore` rebuilds the recommender best on validation (`MODEL_DIR/best/`), the run's
SentencePiece and its `run_config.json`. `catalogue` loads a dataset directory with the ID
tokens the recommender decodes over:
  - one of the run's own datasets (`data_dir`, or one of a mixture's `data_dirs`): its slice of
    the checkpoint's `item_tokens` (every training dataset's items, in `data_dirs` order);
  - any other directory (zero-shot): the run's latest generator (`generator/`, else
    `bootstrap/`) writes unique IDs for its items from their text, as training wrote its own.
`evaluate` scores a catalogue as `StreamTrainer.evaluate` does (leave-one-out, full ranking
over that catalogue's trie alone, users sampled by the run's seed), so the run's own dataset
gives the test metrics of its results.json; `recommend` returns the top-K items of histories.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
from typing import Any, Optional, Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp

from llmrec_jax import decoder_model, model_sizes
from llmrec_jax.checkpoints import layout, orbax_t5x
from llmrec_jax.data import item_streams, splits
from llmrec_jax.data.records import RecData
from llmrec_jax.evaluation import evaluator, generative
from llmrec_jax.indexing import code_tokens, text_tokens, uniqueness
from llmrec_jax.indexing.item_tokens import ItemTokens
from llmrec_jax.network import T5Config, decoder_only
from llmrec_jax.systems.idgenrec import components as idgenrec, inference, stream_training
from llmrec_jax.systems.idgenrec.run_record import FILE_NAME as RUN_RECORD, RunRecord, VOCAB_FILE

log = logging.getLogger(__name__)

ZERO_SHOT_DIR = "zero_shot"  # MODEL_DIR/zero_shot/<dataset>/item_ids.txt: the IDs written for it
IDS_FILE = "item_ids.txt"
IDS_JSON = "ids.json"  # the same IDs with what wrote them: a later eval / infer reuses them


@dataclasses.dataclass
class StreamRun:
  """A restored decoder-only run: its recommender best on validation and what it trained with."""
  model_dir: str
  run: RunRecord
  model: decoder_model.DecoderOnlyModel
  params: Any
  tokenizer: Any
  item_tokens: list[list[int]]  # the checkpoint's: every training dataset's items, in order
  step: int
  checkpoint: str  # the best/ step folder


@dataclasses.dataclass
class Catalogue:
  """A dataset and the ID tokens of its items (item index -> tokens without EOS)."""
  data: RecData
  data_dir: str
  item_tokens: list[list[int]]
  textual_ids: list[str]
  zero_shot: bool
  id_stats: dict[str, Any] = dataclasses.field(default_factory=dict)  # the generator's (zero-shot)


def is_decoder_only(model_dir: str) -> bool:
  """Whether `model_dir/run_config.json` records a decoder-only run."""
  return RunRecord.load(model_dir).rec_form == "decoder_only"


def restore(model_dir: str, step: Optional[int] = None) -> StreamRun:
  """The run in `model_dir` (relative to the working directory or absolute): the best/
  checkpoint `step` (default: the latest), its network (dropout off), tokenizer and record."""
  model_dir = os.path.abspath(model_dir)
  run = RunRecord.load(model_dir)
  if run.rec_form != "decoder_only":
    raise ValueError(f"{os.path.join(model_dir, RUN_RECORD)} records rec_form={run.rec_form!r}: "
                     "restore it with inference.restore")
  root = layout.best_root(model_dir)
  step = inference.checkpoint_step(root, step)
  path = orbax_t5x.step_dir(root, step)
  meta = orbax_t5x.restore_metadata(path)
  config = orbax_t5x.saved_model_config(path, meta)
  if config is None:
    log.warning("%s holds no %s: building the recommender from the recorded size %r", path,
                orbax_t5x.MODEL_CONFIG, run.rec_size)
    config = model_sizes.t5_config(run.rec_size, vocab_size=run.vocab_size)
  model = decoder_model.DecoderOnlyModel(
      decoder_only.DecoderOnlyTransformer(dataclasses.replace(config, dropout_rate=0.0)),
      trie_softmax=run.trie_softmax)
  params = ocp.PyTreeCheckpointer().restore(os.path.join(path, "state"))["params"]
  tokenizer = _tokenizer(model_dir, run)
  return StreamRun(model_dir, run, model, params, tokenizer,
                   [list(t) for t in meta["item_tokens"]], step, path)


def _tokenizer(model_dir: str, run: RunRecord):
  """The run's SentencePiece model, or the code vocabulary of a semantic-ID run."""
  if run.initial_ids != "semantic":
    return text_tokens.load_sentencepiece(os.path.join(model_dir, VOCAB_FILE))
  vocab = code_tokens.CodeVocabulary.load(model_dir)
  if vocab.user_tokens:
    raise ValueError(f"{model_dir}: eval / infer of a run with user tokens (SemanticIds.user_tokens="
                     f"{vocab.user_tokens}) is not supported; its training run reports its test")
  return vocab


def training_dirs(run: RunRecord) -> list[str]:
  """The datasets the run trained on, in the order of its item tokens."""
  return list(run.data_dirs) or [run.data_dir]


def catalogue(r: StreamRun, data_dir: Optional[str] = None, *, write_ids: bool = True) -> Catalogue:
  """`data_dir` (default: the run's DATA_DIR) with its item ID tokens: the checkpoint's for one
  of the run's own datasets, else (zero-shot) the generator's, also written to
  MODEL_DIR/zero_shot/<dataset>/ (item_ids.txt to read, ids.json to reuse) when `write_ids`."""
  data_dir = inference.resolve_data_dir(r.run, os.path.join(r.model_dir, RUN_RECORD), data_dir)
  data = _load(r.run, data_dir)
  own = [_same_dir(data_dir, d) for d in training_dirs(r.run)]
  if any(own):
    tokens = _own_item_tokens(r, own.index(True), data)
    return Catalogue(data, data_dir, tokens, [r.tokenizer.decode(t) for t in tokens],
                     zero_shot=False)
  return _zero_shot(r, data, data_dir, write_ids)


def _load(run: RunRecord, data_dir: str) -> RecData:
  return idgenrec.load_data(data_dir, synthetic_users=run.synthetic_users,
                            synthetic_items=run.synthetic_items, seed=run.seed)


def _same_dir(a: str, b: str) -> bool:
  if idgenrec.SYNTHETIC in (a, b):
    return a == b
  return os.path.realpath(a) == os.path.realpath(b)


def _own_item_tokens(r: StreamRun, index: int, data: RecData) -> list[list[int]]:
  """The checkpoint's item tokens of training dataset `index` (`data`); fails naming the
  checkpoint and every dataset's item count when they do not add up to the checkpoint's."""
  dirs = training_dirs(r.run)
  counts = [data.num_items if d == index else _load(r.run, dirs[d]).num_items
            for d in range(len(dirs))]
  if sum(counts) != len(r.item_tokens):
    listed = ", ".join(f"{d} ({n} items)" for d, n in zip(dirs, counts))
    raise ValueError(f"checkpoint {r.checkpoint} holds the IDs of {len(r.item_tokens)} items but "
                     f"the run's dataset(s) {listed} have {sum(counts)}: {dirs[index]} is not the "
                     f"dataset this run trained on (its contents changed?)")
  start = sum(counts[:index])
  return r.item_tokens[start:start + data.num_items]


def generator_checkpoint(model_dir: str, run: RunRecord) -> str:
  """The step folder of the run's latest generator: the last ID phase's (`generator/`), else the
  bootstrapped one (`bootstrap/`)."""
  for root in (layout.generator_root(model_dir), layout.bootstrap_root(model_dir)):
    step = orbax_t5x.latest_step(root)
    if step is not None:
      return orbax_t5x.step_dir(root, step)
  raise FileNotFoundError(
      f"zero-shot needs a generator (or the title rule of a title-ID run): this run used fixed IDs (initial_ids other than 'bootstrap' and 'title', "
      f"no ID phases) or a gen_checkpoint it did not copy, so {model_dir} holds neither "
      f"{layout.GENERATOR}/ nor {layout.BOOTSTRAP}/; evaluate it on its own dataset(s) "
      f"({', '.join(training_dirs(run))}), or train with initial_ids='bootstrap'")


def restore_generator(model_dir: str, run: RunRecord) -> tuple[T5Config, Any, str]:
  """(config with dropout off, params, step folder) of `generator_checkpoint`; bootstrap/ is
  saved without its config: the recorded `gen_size`."""
  path = generator_checkpoint(model_dir, run)
  config = orbax_t5x.saved_model_config(path)
  if config is None:
    config = model_sizes.t5_config(run.gen_size, vocab_size=run.vocab_size)
  return dataclasses.replace(config, dropout_rate=0.0), orbax_t5x.restore_params(path), path


def _zero_shot(r: StreamRun, data: RecData, data_dir: str, write_ids: bool) -> Catalogue:
  """Unique IDs for the items of an unseen catalogue from the run's generator (item texts and
  `text_len` as training's), encoded with the run's tokenizer; read back from
  MODEL_DIR/zero_shot/<dataset>/ when that generator wrote them for these items before. A run
  of fixed title IDs without a generator writes them by its own rule (`_zero_shot_titles`)."""
  if r.run.initial_ids == "semantic":
    raise ValueError(f"{data_dir} is not a dataset {r.model_dir} trained on: zero-shot needs the "
                     "codes of an unseen catalogue, and a semantic-ID run keeps its own items' codes only")
  idgenrec.check_item_text(data, data_dir, "bootstrap")  # no items.jsonl: fails naming it
  if r.run.initial_ids == "title" and not _has_generator(r.model_dir):
    return _zero_shot_titles(r, data, data_dir, write_ids)
  texts = idgenrec.item_texts(data)  # the generator's input
  key = {"generator": generator_checkpoint(r.model_dir, r.run), "data_dir": data_dir,
         "text_len": r.run.text_len, "keep_case": r.run.keep_case, "extractive": r.run.extractive,
         "items": hashlib.sha1(json.dumps([data.item_ids, texts]).encode()).hexdigest()}
  folder = os.path.join(r.model_dir, ZERO_SHOT_DIR, data.name)
  saved = _saved_ids(folder, key)
  if saved is not None:
    ids, stats = saved
  else:
    config, gen_params, _ = restore_generator(r.model_dir, r.run)
    assigner = idgenrec.GeneratorAssigner(
        config, r.tokenizer, data, texts, progress=False,
        options=idgenrec.GeneratorOptions(max_input_tokens=r.run.text_len,
                                          extractive=r.run.extractive),
        assignment=uniqueness.IdAssignment(keep_case=r.run.keep_case))
    assigner.check_words = False  # its stats below say how much of the item text the IDs use
    ids = assigner.item_ids(gen_params)
    stats = {**assigner.stats["items"], "generator": key["generator"]}
    if write_ids:
      stats["ids_file"] = _write_ids(folder, key, data.item_ids, ids, stats)
  return Catalogue(data, data_dir, [list(r.tokenizer.encode(t)) for t in ids], ids,
                   zero_shot=True, id_stats=stats)


def _has_generator(model_dir: str) -> bool:
  return any(orbax_t5x.latest_step(root) is not None
             for root in (layout.generator_root(model_dir), layout.bootstrap_root(model_dir)))


def _zero_shot_titles(r: StreamRun, data: RecData, data_dir: str, write_ids: bool) -> Catalogue:
  """A title-ID run's IDs for an unseen catalogue: the same rule (`id_schemes` 'title': the
  title's first words, case as the run's, made unique under the run's tokenizer)."""
  ids = idgenrec.fixed_item_ids("title", data, data_dir, encode=r.tokenizer.encode,
                                keep_case=r.run.keep_case)
  stats = {"scheme": "title", "items": len(ids), "unique": len(set(ids))}
  if write_ids:
    key = {"scheme": "title", "data_dir": data_dir, "keep_case": r.run.keep_case}
    stats["ids_file"] = _write_ids(os.path.join(r.model_dir, ZERO_SHOT_DIR, data.name), key,
                                   data.item_ids, ids, stats)
  return Catalogue(data, data_dir, [list(r.tokenizer.encode(t)) for t in ids], ids,
                   zero_shot=True, id_stats=stats)


def _saved_ids(folder: str, key: dict[str, Any]) -> Optional[tuple[list[str], dict[str, Any]]]:
  """(IDs, stats) saved in `folder` with this `key`, or None."""
  path = os.path.join(folder, IDS_JSON)
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as f:
    saved = json.load(f)
  if saved.get("key") != key:
    log.info("%s was written for %s, not %s: writing the IDs again", path, saved.get("key"), key)
    return None
  log.info("read the zero-shot IDs from %s", path)
  return saved["textual_ids"], saved["stats"]


def _write_ids(folder: str, key: dict[str, Any], item_ids: Sequence[str], ids: Sequence[str],
               stats: dict[str, Any]) -> Optional[str]:
  """`folder`/item_ids.txt (`item id <TAB> textual ID` per item, to read) and ids.json (with
  `key`, to reuse); the text file's path, or None (with a warning) when MODEL_DIR is read-only."""
  path = os.path.join(folder, IDS_FILE)
  try:
    os.makedirs(folder, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
      f.writelines(f"{item}\t{tid}\n" for item, tid in zip(item_ids, ids))
    with open(os.path.join(folder, IDS_JSON), "w", encoding="utf-8") as f:
      json.dump({"key": key, "textual_ids": list(ids), "stats": {**stats, "ids_file": path}}, f)
  except OSError as e:
    log.warning("could not write the zero-shot IDs to %s: %s", folder, e)
    return None
  return path


def _trie(r: StreamRun, cat: Catalogue):
  return ItemTokens(cat.item_tokens, eos_id=r.model.eos_id).trie(r.model.module.config.vocab_size)


def evaluate(r: StreamRun, cat: Catalogue, *, max_eval_examples: Optional[int] = None,
             batch_size: int = 256, num_beams: int = 10,
             split_names: Sequence[str] = ("valid", "test")) -> dict[str, Any]:
  """HR@5/10 and NDCG@5/10 on `split_names` ('valid', 'test' or both) over `cat` alone (`StreamTrainer.evaluate`):
  every user, or `max_eval_examples` of them drawn as the trainer draws its samples (valid:
  the run's seed, test: seed + 1)."""
  trie = _trie(r, cat)
  topk_fn = decoder_model.make_topk_fn(r.model, num_beams=num_beams, max_decode_len=trie.max_len)
  ranker = generative.StreamRanker(topk_fn, r.params, trie, cat.item_tokens, r.model.eos_id,
                                   batch_size)
  out = {}
  for split, seed in (("valid", r.run.stream_seed), ("test", r.run.stream_seed + 1)):
    if split not in split_names:
      continue
    users = stream_training.sample_users(cat.data.num_users, max_eval_examples, seed)
    held_out = splits.held_out_split(cat.data.sequences, split, max_his=r.run.max_his)
    metrics = evaluator.evaluate_split(ranker, evaluator.HeldOut(split, held_out, users),
                                       ks=(5, 10))
    out[split] = dict(metrics, users=len(users))
  return out


def recommend(r: StreamRun, cat: Catalogue, histories: Sequence[Sequence[int]], *, top_k: int = 10,
              exclude: Optional[Sequence[Sequence[int]]] = None, batch_size: int = 32
              ) -> tuple[np.ndarray, np.ndarray]:
  """Top-K item indices of `cat` and their log-probabilities [U, K], best first (-1: none), for
  histories of its item indices (their last `max_his` items, as evaluation reads them);
  `exclude`: items banned per history. The search keeps max(top_k, 10) beams, evaluation's."""
  trie = _trie(r, cat)
  topk = jax.jit(functools.partial(r.model.predict_topk, num_beams=max(top_k, 10),
                                   max_decode_len=trie.max_len))
  histories = [np.asarray(h, np.int64)[-r.run.max_his:] for h in histories]
  items, scores = [], []
  for start in range(0, len(histories), batch_size):
    rows = histories[start:start + batch_size]
    prompt, valid = item_streams.prompt_batch(rows, cat.item_tokens, eos_id=r.model.eos_id,
                                              multiple=32)
    kwargs = {}
    if exclude is not None:
      banned = exclude[start:start + batch_size]
      ex = np.full((len(rows), max(1, max(len(e) for e in banned))), -1, np.int32)
      for i, e in enumerate(banned):
        ex[i, :len(e)] = e
      kwargs["excluded_items"] = ex
    got_items, got_scores = topk(r.params, prompt, valid, trie.arrays, **kwargs)
    items.append(np.asarray(got_items)[:, :top_k])
    scores.append(np.asarray(got_scores)[:, :top_k])
  return np.concatenate(items), np.concatenate(scores)
