"""Restoring a trained IDGenRec recommender and recommending with it (used by `eval` and `infer`)."""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Optional, Sequence

import numpy as np

from llmrec_jax import model_sizes, models, network
from llmrec_jax.checkpoints import layout, orbax_t5x
from llmrec_jax.data import prompts
from llmrec_jax.data.records import RecData
from llmrec_jax.evaluation import generative as evaluation
from llmrec_jax.systems.idgenrec import components as idgenrec, prompt_batches
from llmrec_jax.systems.idgenrec.run_record import FILE_NAME as RUN_RECORD, RunRecord, VOCAB_FILE

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Restored:
  data: RecData
  tokenizer: Any
  model: models.EncoderDecoderModel
  params: Any
  item_ids: list[str]
  user_ids: list[str]
  step: int
  run: RunRecord  # run_config.json as recorded
  data_dir: str  # the dataset actually loaded: the recorded DATA_DIR or the override


def restore(model_dir: str, step: Optional[int] = None, data_dir: Optional[str] = None) -> Restored:
  """The recommender params and ID tables of a checkpoint in `model_dir/recommender`, with the
  data, tokenizer and sizes that `llmrec_jax.train` recorded in `model_dir`.

  `model_dir` may be relative to the working directory. `data_dir`, when given, replaces the
  recorded DATA_DIR (a moved dataset, another machine); it must hold as many items and users
  as the checkpoint's ID tables. Fails before loading params when the checkpoint is a
  decoder-only one (those restore with `stream_inference.restore`) or the dataset is missing or
  does not match.
  """
  from llmrec_jax.indexing import text_tokens  # pylint: disable=g-import-not-at-top
  model_dir = os.path.abspath(model_dir)
  run = RunRecord.load(model_dir)
  if run.rec_form == "decoder_only":
    raise ValueError(f"{model_dir} is a decoder-only run: restore it with stream_inference.restore")
  root = layout.recommender_root(model_dir)
  step = checkpoint_step(root, step)
  ckpt_path = orbax_t5x.step_dir(root, step)
  meta = orbax_t5x.restore_metadata(ckpt_path)
  if "item_ids" not in meta and "item_tokens" in meta:  # the stream trainer's metadata
    raise ValueError(f"{model_dir} holds a decoder-only (stream) checkpoint, but its {RUN_RECORD} "
                     f"records rec_form={run.rec_form!r} (written before train recorded decoder-only "
                     f"runs), so eval and infer would read it as an encoder-decoder run; run the same "
                     f"train command again to rewrite it (it resumes and tests the finished run); "
                     f"its test metrics are in {model_dir}/results.json")
  data_dir = resolve_data_dir(run, os.path.join(model_dir, RUN_RECORD), data_dir)
  data = idgenrec.load_data(data_dir, synthetic_users=run.synthetic_users,
                            synthetic_items=run.synthetic_items, seed=run.seed)
  for what, n_data, n_ckpt in (("items", data.num_items, len(meta["item_ids"])),
                               ("users", data.num_users, len(meta["user_ids"]))):
    if n_data != n_ckpt:
      raise ValueError(f"dataset {data_dir} has {n_data} {what} but checkpoint {ckpt_path} has "
                       f"{n_ckpt} in its ID table: it is not the dataset of this run")
  tokenizer = text_tokens.load_sentencepiece(os.path.join(model_dir, VOCAB_FILE))
  model = models.EncoderDecoderModel(network.Transformer(_model_config(ckpt_path, meta, run)))
  params = orbax_t5x.restore_params(ckpt_path)
  return Restored(data, tokenizer, model, params, list(meta["item_ids"]), list(meta["user_ids"]), step,
                  run, data_dir)


def checkpoint_step(root: str, step: Optional[int]) -> int:
  """`step` (default: the latest) when the checkpoint root `root` holds it."""
  steps = orbax_t5x.all_steps(root)
  if not steps:
    raise FileNotFoundError(f"no checkpoint in {root}")
  if step is not None and step not in steps:
    raise FileNotFoundError(f"no checkpoint {step} in {root} (steps: {steps})")
  return steps[-1] if step is None else step


def _model_config(ckpt_path: str, meta: dict[str, Any], run: RunRecord):
  """The recommender's network as saved with its checkpoint (dropout off); for a checkpoint
  saved without it, the recorded size name, with a warning."""
  config = orbax_t5x.saved_model_config(ckpt_path, meta)
  if config is None:
    log.warning("%s holds no %s: building the recommender from the recorded size %r",
                ckpt_path, orbax_t5x.MODEL_CONFIG, run.rec_size)
    return model_sizes.t5_config(run.rec_size, vocab_size=run.vocab_size, dropout_rate=0.0)
  return dataclasses.replace(config, dropout_rate=0.0)


def resolve_data_dir(run: RunRecord, cfg_path: str, override: Optional[str]) -> str:
  """`override` (made absolute), else the recorded DATA_DIR, which must still exist."""
  if override is not None:
    return override if override == idgenrec.SYNTHETIC else os.path.abspath(override)
  recorded = run.data_dir
  if recorded != idgenrec.SYNTHETIC and not os.path.isdir(recorded):
    raise FileNotFoundError(
        f"{cfg_path} records DATA_DIR {recorded}, which does not exist (moved dataset, another "
        f"machine?): pass the dataset's location with --gin.evaluate.data_dir=\"'/path'\" "
        f"(eval) or --gin.infer.data_dir=\"'/path'\" (infer)")
  return recorded


def recommend(r: Restored, histories: Sequence[Sequence[int]], user_ids: Sequence[str], *, top_k: int = 10,
              templates: Optional[prompts.TemplateSet] = None, input_len: int = 256, id_len: int = 16,
              max_his: int = 20, exclude: Optional[Sequence[Sequence[int]]] = None,
              truncation: str = "drop_oldest") -> tuple[np.ndarray, np.ndarray]:
  """Top-K item indices and scores [U, K] (best first) for histories of item indices."""
  templates = templates or prompts.get_template_set("llmrec_default")
  batcher = prompt_batches.PromptBatcher(r.tokenizer.encode, None, r.item_ids, templates.train,
                                         num_history=max_his, input_len=input_len, id_len=id_len,
                                         target_len=id_len, grow_lengths=True,  # as training's IDs
                                         truncation=truncation)
  trie = batcher.item_tokens.trie(r.model.module.config.vocab_size)
  batch = batcher.rec_batch(list(user_ids), [list(h) for h in histories], [0] * len(histories),
                            [0] * len(histories))
  batch.pop("history_items")
  if exclude is not None:
    width = max(1, max(len(e) for e in exclude))
    ex = np.full((len(exclude), width), -1, np.int32)
    for i, e in enumerate(exclude):
      ex[i, :len(e)] = e
    batch["excluded_items"] = ex
  topk = evaluation.make_topk_fn(r.model, evaluation.DecodeOptions(num_beams=top_k, ks=(top_k,)))
  items, scores = topk(r.params, batch, trie.arrays)
  return np.asarray(items), np.asarray(scores)
