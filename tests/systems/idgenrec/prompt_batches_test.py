"""Prompt batches read the item-token table: too-long IDs fail naming the item unless growth is
asked for, and held-out batches exclude exactly the items before each user's target."""
import numpy as np
import pytest

from llmrec_jax.data import prompts, splits, synthetic
from llmrec_jax.evaluation import evaluator
from llmrec_jax.systems.idgenrec import prompt_batches

TEMPLATES = prompts.get_template_set("llmrec_default").train


def encode(text):
  return [3 + (sum(map(ord, w)) % 50) for w in text.split()]


def _batcher(item_ids, **kw):
  return prompt_batches.PromptBatcher(encode, None, item_ids, TEMPLATES, num_history=4, input_len=96,
                                      **kw)


def test_id_longer_than_id_len_fails_naming_the_item_unless_growth_is_asked():
  ids = ["a b", "c d e f g h"]
  with pytest.raises(ValueError, match=r"item 1 \('c d e f g h'\) has 6 ID tokens \+ EOS > id_len=4"):
    _batcher(ids, id_len=4, target_len=8)
  with pytest.raises(ValueError, match="target_len=4"):
    _batcher(ids, id_len=8, target_len=4)
  grown = _batcher(ids, id_len=4, target_len=4, grow_lengths=True)
  assert (grown.id_len, grown.target_len) == (8, 8)
  batch = grown.rec_batch(["user 1"], [[0]], [1], [0])
  assert batch["decoder_target_tokens"].shape == (1, 8)
  assert batch["decoder_target_tokens"][0, :7].tolist() == encode("c d e f g h") + [1]


def test_held_out_batches_exclude_the_items_before_each_target():
  data = synthetic.make_synthetic(num_users=12, num_items=10, num_topics=2, max_len=8, seed=3)
  ids = [f"item {chr(97 + i)}" for i in range(data.num_items)]
  batcher = _batcher(ids, id_len=4, target_len=4)
  user_ids = [f"user {u}" for u in range(data.num_users)]
  for name in ("valid", "test"):
    split = splits.leave_one_out(data, max_his=4)[name]
    rows = np.asarray([5, 1, 7, 2, 9])
    batches = list(batcher.held_out_batches(evaluator.HeldOut(name, split, rows), user_ids, batch_size=3,
                                            exclude_seen_of=data.sequences))
    users = rows[np.arange(6) % 5]  # two batches of 3; the last one wraps around
    excluded = np.concatenate([b["excluded_items"] for b in batches])
    for u, row in zip(users, excluded):
      seen = splits.seen_before_target(data.sequences[u], name)
      assert row.tolist() == seen.tolist() + [-1] * (row.size - seen.size)
    targets = np.concatenate([b["decoder_target_tokens"] for b in batches])
    assert [t[:3].tolist() for t in targets] == [encode(ids[split.target[u]]) + [1] for u in users]
    plain = batcher.held_out_batches(evaluator.HeldOut(name, split, rows), user_ids, batch_size=3)
    assert all("excluded_items" not in b for b in plain)


def test_trie_of_the_batcher_holds_its_item_ids():
  ids = ["a b", "a c", "d"]
  batcher = _batcher(ids, id_len=4, target_len=4)
  trie = batcher.item_tokens.trie()
  seqs = np.zeros((3, 3), np.int32)
  for i, text in enumerate(ids):
    seqs[i, :len(encode(text)) + 1] = encode(text) + [1]
  np.testing.assert_array_equal(trie.items_from_sequences(seqs), [0, 1, 2])
  assert [batcher.item_id_tokens(i) for i in range(3)] == [encode(t) for t in ids]
