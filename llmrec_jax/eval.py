"""Evaluate a trained IDGenRec run: HR@K / NDCG@K on validation and test, full ranking.

  python -m llmrec_jax.eval --gin.evaluate.model_dir="'/tmp/idgenrec_tiny'" \
      [--gin.evaluate.exclude_seen=True] [--gin.evaluate.max_eval_examples=1000] \
      [--gin.evaluate.decode=@DecodeOptions() --gin.DecodeOptions.output_vocab="'subset'"] \
      [--gin.evaluate.data_dir="'/new/place/of/the/dataset'"]

Restores the latest checkpoint (or `step`) with the ID tables it was trained with; prints JSON.
The model dir may be relative to the working directory. The dataset is the DATA_DIR recorded in
`model_dir/run_config.json`, or `data_dir` when the dataset moved (another machine); it must
be the run's dataset (same items and users).
"""
from __future__ import annotations

import functools
import json
import os
from typing import Optional

import numpy as np

from llmrec_jax.data import splits as splits_lib
from llmrec_jax.evaluation import evaluator, generative as evaluation
from llmrec_jax.systems.idgenrec import components as idgenrec, prompt_batches
from llmrec_jax.systems.idgenrec import inference


def evaluate(*, model_dir: str, step: Optional[int] = None, max_eval_examples: Optional[int] = None,
             exclude_seen: bool = False, batch_size: int = 32,
             decode: evaluation.DecodeOptions = evaluation.DecodeOptions(),
             data_dir: Optional[str] = None) -> dict:
  model_dir = os.path.abspath(model_dir)
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
    sp = split[name]
    n = sp.num_examples if max_eval_examples is None else min(max_eval_examples, sp.num_examples)
    rows = batcher.by_history_length(sp, np.arange(n))  # shortest history first, as training's
    out[name] = evaluator.evaluate_split(ranker, evaluator.HeldOut(name, sp, rows), ks=decode.ks)
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
