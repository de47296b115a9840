"""Collaborative item embeddings `[num_items, D]` for semantic IDs: a trained SASRec's item table.

SASRec is trained with the full-softmax CE loss by `train.train_and_evaluate` and validated once,
after the last epoch (`eval_every = epochs`), so the table is that of the final parameters. Its rows
1..N (row 0 is padding) are the items in item-index order. Ten epochs of the default model reach
valid HR@10 about .07 on Amazon Beauty (about 5 minutes on two shared CPU cores).
"""
from __future__ import annotations

import logging

import numpy as np

from llmrec_jax.data.records import RecData
from llmrec_jax.systems.sasrec import model as sasrec
from llmrec_jax.systems.sasrec import train as sasrec_train

log = logging.getLogger(__name__)


def collaborative_embeddings(data: RecData, *, epochs: int = 10, seed: int = 0,
                             model_config: sasrec.SASRecConfig | None = None, **train_options) -> np.ndarray:
  """float32 [num_items, hidden]: the item embedding table of SASRec trained on `data`.

  Args:
    data: the dataset (leave-one-out: each user's last two items are not trained on).
    epochs, seed: training length and seed.
    model_config: model sizes; defaults to `SASRecConfig(num_items=data.num_items)` (hidden 64).
    **train_options: other `TrainConfig` fields (batch_size, learning_rate, show_progress, ...);
      `eval_every` defaults to `epochs`.
  """
  model_config = model_config or sasrec.SASRecConfig(num_items=data.num_items)
  config = sasrec_train.TrainConfig(loss=sasrec_train.Loss.CE, epochs=epochs, seed=seed,
                                    **{"eval_every": epochs, **train_options})
  out = sasrec_train.train_and_evaluate(data, model_config, config, return_params=True)
  log.info("%s: SASRec item embeddings after %d epochs, valid %s", data.name, out["epochs_run"], out["valid"])
  return np.asarray(out["params"]["item_embed"]["embedding"][1:], np.float32)
