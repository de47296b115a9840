"""IDGenRec training batches built through the registered whole-prompt SeqIO tasks.

`SeqioPromptBatches.rec_batch` / `.build` return what `prompt_batches.PromptBatcher.rec_batch` /
`.build` return (same keys, shapes, dtypes, length bucketing) for the loop's training rows (example
index, template index per row, as `alternating.phase_order` / `_rows` give them), but every prompt
comes from the task's `TokenizePrompts` preprocessor (`data/prompt_token_tasks.py`): rendered from
the `IdProvider`'s current tables, tokenized whole, soft slots on those same tokens.

The rows go through the preprocessor's NumPy form (`TokenizePrompts.rows`), not through
`task.get_dataset`: the loop draws its own template per row and its own order per (round, phase,
epoch), and a batch may span two epochs, so only the rows the loop names give its exact batches.
`get_dataset` maps the same per-row code over the task's own rows (tested equal), and skipping it
saves a tf.data pipeline per batch.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from llmrec_jax.data import batching, prompt_token_tasks
from llmrec_jax.data.id_tables import IdTable
from llmrec_jax.data.records import RecData
from llmrec_jax.data.splits import LooSplit
from llmrec_jax.systems.idgenrec import prompt_batches


def set_provider_ids(provider, data: RecData, item_ids: Sequence[str], user_ids: Sequence[str],
                     phase: int = 0) -> bool:
  """Points `provider` at the loop's ID lists (per item / user index), e.g. after regeneration.
  Returns False, and leaves the provider (and the tasks' encoded IDs) as they are, when it
  already holds these IDs: the loop calls this for every phase and evaluation."""
  if (provider.item.for_ids(data.item_ids) == list(item_ids)
      and provider.user.for_ids(data.user_ids) == list(user_ids)):
    return False
  provider.set(item=IdTable("item", phase, dict(zip(data.item_ids, item_ids))),
               user=IdTable("user", phase, dict(zip(data.user_ids, user_ids))))
  return True


class SeqioPromptBatches:
  """Rec-phase and ID-phase batches from one registered task's `TokenizePrompts`.

  Attributes:
    prep: the task's preprocessor (its spec sets H, S, C, T and the templates).
    split: the loop's train split; rows index it.
    item_texts: plain text per item index (ID-phase batches only).
    text_len: L, item-text tokens per item (EOS included).
    length_bucket: encoder inputs are cut to the batch's longest prompt rounded up to this
      multiple (0 keeps `input_len`), as `PromptBatcher`.
  """

  def __init__(self, task, split: LooSplit, *, item_texts: Optional[Sequence[str]] = None,
               text_len: int = 128, length_bucket: int = 32):
    self.prep = prompt_token_tasks.tokenize_prompts_of(task)
    self.split = split
    self.item_texts = item_texts
    self.text_len = text_len
    self.length_bucket = length_bucket
    self._text_NxL = None

  def _prompts(self, example_idx, template_idx):
    spec = self.prep.spec
    rows = self.prep.rows(prompt_token_tasks.index_rows(self.split, example_idx, template_idx,
                                                        spec.num_history))
    enc_BxS, slot_BxS = prompt_batches.cut_to_bucket(
        batching.pad_rows([r["inputs"] for r in rows], spec.input_len),
        batching.pad_rows([r["soft_slot"] for r in rows], spec.input_len, fill=-1), self.length_bucket)
    hist_BxH = np.stack([r["history_items"] for r in rows]).astype(np.int32)
    targets = batching.decoder_features(batching.pad_rows([r["targets"] for r in rows],
                                                          self.prep.snapshot().target_len))
    return enc_BxS, slot_BxS, hist_BxH, targets

  def rec_batch(self, example_idx, template_idx) -> dict[str, np.ndarray]:
    """As `PromptBatcher.rec_batch`: `encoder_input_tokens`, `history_items` and the targets."""
    if self.prep.spec.free_running_steps is not None:
      raise ValueError("rec batches need the hard IDs: use a task without free_running_steps")
    enc_BxS, _, hist_BxH, targets = self._prompts(example_idx, template_idx)
    return {"encoder_input_tokens": enc_BxS, "history_items": hist_BxH, **targets}

  def build(self, example_idx, template_idx) -> dict[str, np.ndarray]:
    """As `PromptBatcher.build`: one ID-phase batch (keys in `id_phase.id_phase_loss`)."""
    if self.item_texts is None:
      raise ValueError("ID-phase batches need item_texts")
    sp, eos = self.prep.sp, self.prep.spec.eos_id
    if self._text_NxL is None:
      self._text_NxL = batching.pad_rows([sp.encode(t) + [eos] for t in self.item_texts], self.text_len)
    enc_BxS, slot_BxS, hist_BxH, targets = self._prompts(example_idx, template_idx)
    snap = self.prep.snapshot()
    items_N = hist_BxH.reshape(-1)
    real_N = items_N >= 0
    text_NxL = np.where(real_N[:, None], self._text_NxL[np.maximum(items_N, 0)], 0)
    ids = [snap.item_tokens.tokens(x) + [eos] if x >= 0 else [] for x in items_N]
    id_targets_NxC = batching.pad_rows(ids, snap.id_len)
    return {
        "item_text_tokens": text_NxL.astype(np.int32),
        "item_id_inputs": batching.shift_right(id_targets_NxC),
        "item_id_targets": id_targets_NxC,
        "history_items": hist_BxH,
        "encoder_input_tokens": enc_BxS,
        "soft_slot": slot_BxS,
        **targets,
    }
