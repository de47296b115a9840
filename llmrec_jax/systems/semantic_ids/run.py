"""A semantic-ID run of `llmrec_jax.train` (`train.semantic_ids = @semantic_ids.SemanticIds()`).

The items' semantic IDs (`codes`) become tokens of a code vocabulary (`indexing.code_tokens`: one
range per level), and the whole-stream recommender of the CPU recipe
(`systems.idgenrec.stream_run`: a causal T5 stack over the users' streams of item IDs, the item
trie's own softmax, trie-constrained top-K over every item) trains and is tested on them with
the same data, splits, decoder and metrics as the textual IDs. The codes are computed once per
MODEL_DIR and kept in `initial_ids.json` with the settings they depend on, so a resumed run
skips the embeddings and the RQ-VAE.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any

import numpy as np

from llmrec_jax.data.records import RecData
from llmrec_jax.indexing import code_tokens
from llmrec_jax.systems.idgenrec import run_data, setup_cache, stream_run
from llmrec_jax.systems.semantic_ids import codes as codes_lib

log = logging.getLogger(__name__)

CODES_FILE = code_tokens.CODES_FILE


def check_settings(config: codes_lib.SemanticIds, *, rec_form: str, data_dirs, initial_ids: str,
                   rounds: int) -> None:
  """Fails before any work on settings a semantic-ID run cannot honour, naming them."""
  if config is None:
    raise ValueError("initial_ids='semantic' needs train.semantic_ids = @semantic_ids.SemanticIds() "
                     "(the semantic_ids/*.gin files bind it)")
  if rec_form != "decoder_only":
    raise ValueError("semantic IDs train the whole-stream recommender: set "
                     f"train.rec_form='decoder_only' (got {rec_form!r}; e.g. include stream_cpu.gin)")
  if len(data_dirs) > 1:
    raise ValueError(f"semantic IDs are made per dataset; DATA_DIR lists {len(data_dirs)} folders")
  if rounds > 1:
    raise ValueError(f"stream_ids.rounds={rounds}: semantic IDs are fixed (no ID phases); set 1")
  if initial_ids != "semantic":
    raise ValueError(f"train.semantic_ids is set but initial_ids={initial_ids!r}: set "
                     "initial_ids='semantic' (the semantic_ids/*.gin files do)")
  if config.embeddings == "npy" and not os.path.isfile(config.embeddings_file):
    raise FileNotFoundError(f"{config.embeddings_file}: SemanticIds.embeddings_file not found")


def semantic_item_ids(data: RecData, config: codes_lib.SemanticIds, model_dir: str,
                      data_dir: str, log_fn=None) -> tuple[code_tokens.CodeVocabulary, list[str], dict]:
  """(code vocabulary, every item's ID text, stats); loaded from MODEL_DIR when made there before
  with the same settings."""
  # As JSON reads it back (tuples become lists), so a saved key compares equal.
  key = json.loads(json.dumps({"data_dir": run_data.absolute_data_dir(data_dir),
                               "semantic_ids": dataclasses.asdict(config)}))
  saved = setup_cache.load_initial_ids(model_dir, key)
  if saved is None:
    x_NxD = codes_lib.item_embeddings(data, config)
    if x_NxD.shape[0] != data.num_items:
      raise ValueError(f"{x_NxD.shape[0]} embeddings for {data.num_items} items")
    codes_NxL, stats = codes_lib.quantize(x_NxD, config, log_fn=_prefixed(log_fn, "rqvae/"))
    vocab = code_tokens.CodeVocabulary(stats["level_sizes"], config.user_tokens)
    vocab.save(model_dir)
    item_ids = [vocab.id_text(c) for c in codes_NxL]
    stats = {**stats, "embedding_dim": int(x_NxD.shape[1])}
    setup_cache.save_initial_ids(model_dir, item_ids, [], stats, key)
    with open(os.path.join(model_dir, CODES_FILE), "w", encoding="utf-8") as f:
      json.dump({"item_ids": data.item_ids, "codes": np.asarray(codes_NxL).tolist(), "stats": stats}, f)
    log.warning("semantic IDs: %s", {k: v for k, v in stats.items() if not isinstance(v, list)})
    return vocab, item_ids, stats
  stats = saved["stats"]
  vocab = code_tokens.CodeVocabulary(stats["level_sizes"], config.user_tokens)
  vocab.save(model_dir)
  return vocab, saved["item_ids"], stats


def run(config: codes_lib.SemanticIds, data: RecData, data_dir: str, model_dir: str, record, *,
        log_fn, rec_size: str, dropout_rate: float, schedule, partitioner=None) -> dict[str, Any]:
  """A semantic-ID run: the items' codes (made, or reloaded from MODEL_DIR), the run record
  (`record(vocab_size=...)` is saved), then the whole-stream recommender trained and tested on
  them. The summary has `train`'s shape plus `semantic_ids` (the codes' stats)."""
  vocab, item_ids, stats = semantic_item_ids(data, config, model_dir, data_dir, log_fn=log_fn)
  record(vocab_size=vocab.vocab_size).save(model_dir)
  user_tokens = None
  if vocab.user_tokens:
    user_tokens = np.asarray([vocab.user_token(u) for u in data.user_ids], np.int32)
  summary = stream_run.train_stream(
      item_ids, data, vocab, vocab.vocab_size, rec_size=rec_size, dropout_rate=dropout_rate,
      schedule=schedule, model_dir=model_dir, log_fn=log_fn,
      stream_ids=_no_id_phases(), partitioner=partitioner, user_tokens=user_tokens)
  summary["semantic_ids"] = stats
  return summary


def _prefixed(log_fn, prefix: str):
  """`log_fn` with `prefix` on every scalar's name (the RQ-VAE's curves beside the recommender's)."""
  if log_fn is None:
    return None
  return lambda record: log_fn({k if k in ("step", "phase") else prefix + k: v
                                for k, v in record.items()})


def _no_id_phases():
  from llmrec_jax.systems.idgenrec import stream_id_phase  # pylint: disable=g-import-not-at-top
  return stream_id_phase.StreamIdSchedule(rounds=1)
