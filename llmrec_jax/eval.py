"""Evaluate a trained IDGenRec run: HR@K / NDCG@K on validation and test, full ranking.

  python -m llmrec_jax.eval --gin.evaluate.model_dir="'/tmp/idgenrec_tiny'" \
      [--gin.evaluate.exclude_seen=True] [--gin.evaluate.max_eval_examples=1000] \
      [--gin.evaluate.decode=@DecodeOptions() --gin.DecodeOptions.output_vocab="'subset'"] \
      [--gin.evaluate.data_dir="'/new/place/of/the/dataset'"]

Restores the latest checkpoint (or `step`) with the ID tables it was trained with; prints JSON.
The model dir may be relative to the working directory. The dataset is the DATA_DIR recorded in
`model_dir/run_config.json`, or `data_dir` when the dataset moved (another machine); it must
be the run's dataset (same items and users).

A decoder-only run (rec_form 'decoder_only', `stream_inference`) is evaluated with the best
validated recommender (`step`: of `best/`) over the catalogue of `data_dir` alone: the run's
dataset or one of its mixture's (their own IDs; `max_eval_examples` users sampled as training
samples them, so the run's own settings reproduce its results.json), or ZERO-SHOT any other
dataset directory with item text: the run's generator writes IDs for its items
("zero_shot": true, with the IDs' stats; they are saved to
MODEL_DIR/zero_shot/<dataset>/item_ids.txt). `decode.num_beams` sets its beams; its metrics are
HR / NDCG @5 and @10.

  python -m llmrec_jax.eval --gin.evaluate.model_dir="'/tmp/stream_run'" \
      --gin.evaluate.data_dir="'/data/a_catalogue_it_never_saw'"
"""
from __future__ import annotations

import functools
import json
import os
from typing import Optional, Sequence

import numpy as np

from llmrec_jax.data import splits as splits_lib
from llmrec_jax.evaluation import evaluator, generative as evaluation
from llmrec_jax.systems.idgenrec import components as idgenrec, prompt_batches
from llmrec_jax.systems.idgenrec import inference, stream_inference


def evaluate(*, model_dir: str, step: Optional[int] = None, max_eval_examples: Optional[int] = None,
             exclude_seen: bool = False, batch_size: int = 32,
             decode: evaluation.DecodeOptions = evaluation.DecodeOptions(),
             data_dir: Optional[str] = None, splits: Sequence[str] = ("valid", "test")) -> dict:
  """`splits`: 'valid', 'test' or both (a zero-shot test of every user need not decode every
  user twice)."""
  model_dir = os.path.abspath(model_dir)
  bad = set(splits) - {"valid", "test"}
  if bad or not splits:
    raise ValueError(f"evaluate.splits={list(splits)!r}: use 'valid' and/or 'test'")
  if stream_inference.is_decoder_only(model_dir):
    return _evaluate_stream(model_dir, step=step, max_eval_examples=max_eval_examples,
                            exclude_seen=exclude_seen, batch_size=batch_size, decode=decode,
                            data_dir=data_dir, splits=splits)
  r = inference.restore(model_dir, step=step, data_dir=data_dir)
  split = splits_lib.leave_one_out(r.data, max_his=r.run.max_his)
  batcher = prompt_batches.PromptBatcher(
      r.tokenizer.encode, None, r.item_ids, idgenrec.load_templates(r.run.template_set).train,
      num_history=r.run.max_his, input_len=r.run.input_len, id_len=r.run.id_len,
      target_len=r.run.id_len, grow_lengths=True,  # as long as the IDs training used
      truncation=r.run.truncation)
  ranker = evaluation.PromptRanker(
      evaluation.make_topk_fn(r.model, decode), r.params,
      batcher.item_tokens.trie(r.model.module.config.vocab_size),
      functools.partial(batcher.held_out_batches, user_ids=r.user_ids, batch_size=batch_size,
                        exclude_seen_of=r.data.sequences if exclude_seen else None), batch_size)
  out = {"model_dir": model_dir, "step": r.step}
  for name in ("valid", "test"):
    if name not in splits:
      continue
    sp = split[name]
    n = sp.num_examples if max_eval_examples is None else min(max_eval_examples, sp.num_examples)
    rows = batcher.by_history_length(sp, np.arange(n))  # shortest history first, as training's
    out[name] = evaluator.evaluate_split(ranker, evaluator.HeldOut(name, sp, rows), ks=decode.ks)
  return out


def _evaluate_stream(model_dir: str, *, step: Optional[int], max_eval_examples: Optional[int],
                     exclude_seen: bool, batch_size: int, decode: evaluation.DecodeOptions,
                     data_dir: Optional[str], splits: Sequence[str]) -> dict:
  """A decoder-only run on the catalogue of `data_dir` (see the module doc)."""
  if exclude_seen:
    raise ValueError("exclude_seen: a decoder-only run is evaluated as it was trained and tested, "
                     "without excluding seen items")
  r = stream_inference.restore(model_dir, step=step)
  cat = stream_inference.catalogue(r, data_dir)
  metrics = stream_inference.evaluate(r, cat, max_eval_examples=max_eval_examples,
                                      batch_size=batch_size, num_beams=decode.num_beams,
                                      split_names=splits)
  out = {"model_dir": model_dir, "step": r.step, "rec_form": "decoder_only",
         "data_dir": cat.data_dir, "dataset": cat.data.name, "zero_shot": cat.zero_shot,
         "items": cat.data.num_items, **metrics}
  if cat.zero_shot:
    out["id_stats"] = cat.id_stats
  return out


def main(argv) -> None:
  del argv
  import gin  # pylint: disable=g-import-not-at-top
  from llmrec_jax import gin_utils  # pylint: disable=g-import-not-at-top
  configured = gin.configurable(evaluate)
  # --gin.evaluate.decode=@DecodeOptions() --gin.DecodeOptions.length_normalization="'t5x'" ...
  gin.external_configurable(evaluation.DecodeOptions, module="evaluation")
  gin_utils.parse_gin_flags()
  print(json.dumps(configured(), indent=1))


if __name__ == "__main__":
  from llmrec_jax import gin_utils as _gin_utils  # pylint: disable=g-import-not-at-top
  _gin_utils.run(main)
