"""Leave-one-out examples -> prompt text: the host-side rendering behind every SeqIO task.

The rendering is plain Python over index arrays (textual-ID lookups, template formatting), run inside
a task's `dataset_fn`, so it always uses the ID tables current at dataset-build time. Tokenization,
EOS and padding are the standard SeqIO steps applied afterwards (see `task_builders`).

Row order of every function here: example-major, template-sample-minor (example e, samples 0..S-1),
which is how IDGenRec lays out its `sample_num` prompts per training position.
TensorFlow is imported only by `to_tf_dataset`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from llmrec_jax.data.prompts import HISTORY_SEP, Template, render_prompt
from llmrec_jax.data.splits import LooSplit

PAD_INDEX = -1  # history_indices padding


def _check_template_ids(split: LooSplit, templates: Sequence[Template], template_ids_ExS: np.ndarray) -> np.ndarray:
  template_ids_ExS = np.asarray(template_ids_ExS)
  if template_ids_ExS.ndim != 2 or template_ids_ExS.shape[0] != split.num_examples:
    raise ValueError(f"template_ids shape {template_ids_ExS.shape} is not [E={split.num_examples}, S]")
  if template_ids_ExS.size and (template_ids_ExS.min() < 0 or template_ids_ExS.max() >= len(templates)):
    raise ValueError(f"template ids outside [0, {len(templates)})")
  return template_ids_ExS


def _render_rows(split: LooSplit, history_of, *, item_tids: Sequence[str], user_tids: Sequence[str],
                 templates: Sequence[Template], template_ids_ExS: np.ndarray, sep: str) -> dict[str, np.ndarray]:
  """E*S rendered rows; `history_of(history_items) -> list[str]` fills `{history}`."""
  template_ids_ExS = _check_template_ids(split, templates, template_ids_ExS)
  num_samples = template_ids_ExS.shape[1]
  inputs, targets = [], []
  for e, (hist, tgt, user) in enumerate(zip(split.history, split.target.tolist(), split.user.tolist())):
    history = history_of(hist)
    for t in template_ids_ExS[e].tolist():
      x, y = render_prompt(templates[t], user_id=user_tids[user], history=history, target=item_tids[tgt], sep=sep)
      inputs.append(x)
      targets.append(y)
  return {
      "inputs": np.array(inputs, dtype=object),
      "targets": np.array(targets, dtype=object),
      "user_index": np.repeat(split.user, num_samples).astype(np.int32),
      "target_index": np.repeat(split.target, num_samples).astype(np.int32),
      "template_id": template_ids_ExS.reshape(-1).astype(np.int32),
  }


def rec_examples(split: LooSplit, *, item_tids: Sequence[str], user_tids: Sequence[str],
                 templates: Sequence[Template], template_ids_ExS: np.ndarray, sep: str = HISTORY_SEP
                 ) -> dict[str, np.ndarray]:
  """Recommendation prompts: history and target as textual IDs, `{user_id}` the user's textual ID.

  Args:
    split: E leave-one-out examples (item / user indices).
    item_tids: textual ID per item index [N]; user_tids: textual ID per user index [U].
    templates: the templates that `template_ids_ExS` index.
    template_ids_ExS: int [E, S] template per (example, sample).
    sep: joins the history IDs.
  Returns:
    E*S rows: `inputs`, `targets` (object str arrays), `user_index`, `target_index`, `template_id` (int32).
  """
  return _render_rows(split, lambda hist: [item_tids[i] for i in hist.tolist()], item_tids=item_tids,
                      user_tids=user_tids, templates=templates, template_ids_ExS=template_ids_ExS, sep=sep)


def id_phase_examples(split: LooSplit, *, item_texts: Sequence[str], item_tids: Sequence[str],
                      user_tids: Sequence[str], templates: Sequence[Template], template_ids_ExS: np.ndarray,
                      num_his: int, sep: str = HISTORY_SEP) -> dict[str, np.ndarray]:
  """ID-phase prompts (IDGenRec): the history is the items' plain text, only the last `num_his` items.

  Targets and `{user_id}` are still textual IDs. `history_indices` lets the ID phase splice soft IDs:
  row r holds the item indices whose texts fill `{history}` of row r, oldest first, left-padded with -1
  (so the last column is the most recent item).

  Args:
    item_texts: plain text per item index [N] (`render_item_text`).
    num_his: history items kept (IDGenRec: max_his // 2 = 10).
    others: as `rec_examples`.
  Returns:
    `rec_examples`' rows plus `history_indices` int32 [E*S, num_his].
  """
  if num_his < 1:
    raise ValueError(f"id_phase_examples: num_his must be >= 1, got {num_his}")
  rows = _render_rows(split, lambda hist: [item_texts[i] for i in hist[-num_his:].tolist()],
                      item_tids=item_tids, user_tids=user_tids, templates=templates,
                      template_ids_ExS=template_ids_ExS, sep=sep)
  num_samples = np.shape(template_ids_ExS)[1]
  history_ExH = split.padded_history(num_his, pad_value=PAD_INDEX)
  return {
      **rows,
      "history_indices": np.repeat(history_ExH, num_samples, axis=0).astype(np.int32),
  }


def to_tf_dataset(examples: dict[str, np.ndarray]):
  """A `tf.data.Dataset` with one element per row of `examples` (object arrays become tf.string)."""
  import tensorflow as tf
  tensors = {}
  for k, v in examples.items():
    if v.dtype == object:
      tensors[k] = tf.constant(v.tolist() if v.size else np.zeros((0,), dtype=np.bytes_), dtype=tf.string)
    else:
      tensors[k] = tf.constant(v)
  return tf.data.Dataset.from_tensor_slices(tensors)
