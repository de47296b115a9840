"""Full-ranking HR@k / NDCG@k of an encoder-decoder recommender on a SeqIO task's held-out split.

The task must name items in its targets and have an `item_catalogues` entry (its items' textual
IDs). Each example's `inputs` is decoded under the trie of every item's ID
(`generative.make_topk_fn`, trie-constrained top-K); its target item is the example's
`target_index` feature when it has one, else the item whose ID tokens its `targets` are.
Metrics come from `evaluator.metrics_from_topk`, as every other system's.
"""
from __future__ import annotations

import itertools
import logging
from typing import Any, Iterator, Mapping, Optional

import numpy as np

from llmrec_jax import models
from llmrec_jax.data import batching, item_catalogues
from llmrec_jax.evaluation import evaluator, generative
from llmrec_jax.indexing.item_tokens import ItemTokens

log = logging.getLogger(__name__)


def item_tokens_of(task) -> Optional[ItemTokens]:
  """The ID tokens of `task`'s items under its targets vocabulary, or None without a catalogue."""
  catalogue = item_catalogues.get(task.name)
  if catalogue is None:
    return None
  vocab = task.output_features["targets"].vocabulary
  return ItemTokens.encode(list(catalogue.item_ids()), vocab.encode, eos_id=vocab.eos_id)


def held_out_examples(task, *, sequence_length: Mapping[str, int], split: str,
                      max_examples: Optional[int] = None) -> list[dict[str, Any]]:
  """The first `max_examples` (None: all) tokenized examples of `split`, in the task's order."""
  ds = task.get_dataset(sequence_length=dict(sequence_length), split=split, shuffle=False,
                        num_epochs=1)
  return list(itertools.islice(ds.as_numpy_iterator(), max_examples))


def target_items(examples: list[dict[str, Any]], items: ItemTokens) -> np.ndarray:
  """int [E]: each example's target item (`target_index`, else matched by its target tokens; -1
  when no item has them)."""
  if examples and item_catalogues.TARGET_INDEX in examples[0]:
    return np.array([int(e[item_catalogues.TARGET_INDEX]) for e in examples], np.int64)
  return np.array([items.item_of(e["targets"].tolist()) for e in examples], np.int64)


def prompt_batches(examples: list[dict[str, Any]], *, input_len: int, target_len: int,
                   batch_size: int) -> Iterator[dict[str, np.ndarray]]:
  """Fixed-size batches of the examples' inputs in order (the last wraps around): int32
  `encoder_input_tokens` [B, S] and the `decoder_input_tokens` [B, T] that set the decode length."""
  n = len(examples)
  for start in range(0, n, batch_size):
    rows = [examples[i % n]["inputs"] for i in range(start, start + batch_size)]
    yield {"encoder_input_tokens": batching.pad_rows(rows, input_len),
           "decoder_input_tokens": np.zeros((batch_size, target_len), np.int32)}


def rank_task(model: models.EncoderDecoderModel, params: Any, task, *,
              sequence_length: Mapping[str, int], split: str = "test", batch_size: int = 32,
              max_examples: Optional[int] = None,
              decode: generative.DecodeOptions = generative.DecodeOptions(),
              topk_fn=None) -> Optional[dict[str, Any]]:
  """{'hit@k', 'ndcg@k', 'examples', 'unmatched_targets'} of `model` on `task`'s `split`, or None
  when the task has no item catalogue. `topk_fn`: a `generative.make_topk_fn(model, decode)` to
  reuse (one compile for several tasks of the same shapes).

  Raises:
    ValueError: no example's target is an item of the catalogue (the catalogue is not this
      task's), or an item's ID does not fit `sequence_length['targets']`.
  """
  items = item_tokens_of(task)
  if items is None:
    return None
  target_len = items.fit_length(sequence_length["targets"], name="task_feature_lengths['targets']")
  examples = held_out_examples(task, sequence_length=sequence_length, split=split,
                               max_examples=max_examples)
  targets_E = target_items(examples, items)
  unmatched = int(np.sum(targets_E < 0))
  if examples and unmatched == len(examples):
    raise ValueError(f"task {task.name!r}: no {split} target is an item of its catalogue")
  if unmatched:
    log.warning("task %s: %d of %d %s targets are no catalogue item (counted as misses)",
                task.name, unmatched, len(examples), split)
  topk_fn = topk_fn or generative.make_topk_fn(model, decode)
  batches = prompt_batches(examples, input_len=sequence_length["inputs"], target_len=target_len,
                           batch_size=batch_size)
  trie = items.trie(model.module.config.vocab_size, source=f"task {task.name}")
  topk_ExK = generative.decode_batches(topk_fn, params, trie, batches, num_rows=len(examples),
                                       num_batches=-(-len(examples) // batch_size),
                                       desc=f"evaluate {task.name}")
  metrics = evaluator.metrics_from_topk(topk_ExK, targets_E, decode.ks) if examples else {}
  return {**metrics, "examples": len(examples), "unmatched_targets": unmatched}
