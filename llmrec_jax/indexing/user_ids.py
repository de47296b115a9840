"""Generator inputs for textual user IDs, leak-free by default.

The official code writes a user's ID from the textual IDs of ALL items in the user's sequence,
the validation and test targets included (IDGenRec issue #1), and the user ID is part of every
test prompt, so the ID can leak the answer. By default we use only the training part
`seq[:-2]`; `leaky=True` reproduces the official input, for comparison only. No JAX here.
"""
from __future__ import annotations

import logging
from typing import Sequence

from llmrec_jax.data import splits
from llmrec_jax.data.records import RecData

log = logging.getLogger(__name__)


def user_history_texts(data: RecData, item_ids: Sequence[str], *, leaky: bool = False) -> list[str]:
  """One generator input per user: the textual IDs of the user's items, joined by spaces.

  Args:
    data: the dataset (sequences oldest first).
    item_ids: textual ID per item index (e.g. `list(table.ids.values())` in `data.item_ids` order).
    leaky: False (default): the training items `seq[:-2]` only. True: every item, as the official
      code does (includes the validation and test targets; logs a warning).
  Returns:
    num_users strings in `data.user_ids` order (truncation to the generator's input length is
    the generator's job: right truncation, as the official `max_length=256`).
  """
  if len(item_ids) != data.num_items:
    raise ValueError(f"user_history_texts: {len(item_ids)} item IDs for {data.num_items} items")
  if leaky:
    log.warning("leaky user IDs: user IDs are generated from ALL items of each sequence, including the "
                "validation and test targets (official IDGenRec behaviour, issue #1). Use for comparison only.")
  texts = []
  for user, seq in zip(data.user_ids, data.sequences):
    items = seq.tolist() if leaky else splits.train_items(seq).tolist()
    if not leaky and not items:
      raise ValueError(f"{data.name}: user {user!r} has {seq.size} items; leak-free user IDs need >= 3")
    texts.append(" ".join(item_ids[i] for i in items))
  return texts
