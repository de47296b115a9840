"""Item streams: leave-one-out rule, epoch order, bucketing, branch rows."""
import numpy as np

from llmrec_jax.data import item_streams
from llmrec_jax.decoding import trie as trie_lib

ITEM_TOKENS = [[5, 6], [5, 7], [8], [9, 10, 11], [5, 6, 12]]


def _sequences(num_users=30, seed=0):
  rng = np.random.default_rng(seed)
  return [rng.integers(0, len(ITEM_TOKENS), size=rng.integers(3, 12)).astype(np.int32)
          for _ in range(num_users)]


def test_train_streams_hold_training_items_only():
  seqs = [np.array([0, 2, 3, 1, 4], np.int32)]
  (stream,) = item_streams.train_streams(seqs, ITEM_TOKENS, max_items=2, eos_id=1)
  # seq[:-2] = [0, 2, 3]; its last 2 items: 2, 3.
  np.testing.assert_array_equal(stream, [8, 1, 9, 10, 11, 1])
  hist, target = item_streams.held_out_histories(seqs, "valid", max_items=10)
  np.testing.assert_array_equal(hist[0], [0, 2, 3])
  assert target[0] == 1
  hist, target = item_streams.held_out_histories(seqs, "test", max_items=10)
  np.testing.assert_array_equal(hist[0], [0, 2, 3, 1])
  assert target[0] == 4


def _epoch(streams, seed, epoch, tokens=64):
  return list(item_streams.epoch_batches(streams, tokens_per_batch=tokens, seed=seed, epoch=epoch,
                                         multiple=8))


def _rows(batches):
  out = []
  for b in batches:
    for row in b["decoder_target_tokens"]:
      if row.any():
        out.append(tuple(row[row > 0]))
  return out


def test_every_stream_once_per_epoch_and_inputs_shifted():
  streams = item_streams.train_streams(_sequences(), ITEM_TOKENS, max_items=20, eos_id=1)
  batches = _epoch(streams, seed=0, epoch=0)
  assert sorted(_rows(batches)) == sorted(tuple(s) for s in streams)
  for b in batches:
    np.testing.assert_array_equal(b["decoder_input_tokens"][:, 1:], b["decoder_target_tokens"][:, :-1])
    assert (b["decoder_input_tokens"][:, 0] == item_streams.START_ID).all()
    np.testing.assert_array_equal(b["decoder_loss_weights"], b["decoder_target_tokens"] > 0)
    assert b["decoder_target_tokens"].size <= 64 or b["decoder_target_tokens"].shape[0] == 1


def test_epoch_order_differs_between_epochs_and_follows_the_seed():
  streams = item_streams.train_streams(_sequences(), ITEM_TOKENS, max_items=20, eos_id=1)
  e0, e1 = _rows(_epoch(streams, 0, 0)), _rows(_epoch(streams, 0, 1))
  assert e0 != e1 and sorted(e0) == sorted(e1)
  assert e0 == _rows(_epoch(streams, 0, 0))
  assert e0 != _rows(_epoch(streams, 1, 0))


def test_branch_rows_are_exactly_the_positions_with_a_choice():
  seqs = _sequences()
  trie = trie_lib.ItemTrie.from_sequences([t + [1] for t in ITEM_TOKENS], eos_id=1)
  nodes, branching = trie.choice_nodes()
  choices = item_streams.TrieChoices(nodes, branching, trie.token_ids)
  streams = item_streams.train_streams(seqs, ITEM_TOKENS, max_items=20, eos_id=1)
  node_streams = choices.streams(seqs, 20)
  for b in item_streams.epoch_batches(streams, tokens_per_batch=64, seed=0, epoch=0, multiple=8,
                                      choices=choices, node_streams=node_streams):
    targets = b["decoder_target_tokens"].reshape(-1)
    real = b["branch_weights"] > 0
    rows = b["branch_rows"][real]
    # Choices: the first token of every item (5, 8 or 9 at the root), after [5] (6 or 7) and
    # after [5, 6] (EOS or 12); every other position has one child.
    prev = np.concatenate([[1], targets[:-1]])
    expected = []
    for r in np.flatnonzero(targets > 0):
      at_root = prev[r] == 1 or r % b["decoder_target_tokens"].shape[1] == 0
      after_5 = prev[r] == 5
      after_56 = prev[r] == 6 and r >= 2 and targets[r - 2] == 5
      if at_root or after_5 or after_56:
        expected.append(r)
    np.testing.assert_array_equal(rows, expected)
    np.testing.assert_array_equal(trie.token_ids[b["branch_targets"][real]], targets[rows])
    assert b["num_items"] == (targets == 1).sum()
    assert b["branch_rows"].shape[0] % 8 == 0 or b["branch_rows"].shape[0] == targets.size


def test_prompt_batch_is_left_padded_without_the_last_eos():
  tokens, valid = item_streams.prompt_batch([np.array([2, 0], np.int32), np.array([3], np.int32)],
                                            ITEM_TOKENS, eos_id=1, multiple=8)
  assert tokens.shape == (2, 8)
  np.testing.assert_array_equal(tokens[0, -5:], [0, 8, 1, 5, 6])
  np.testing.assert_array_equal(valid[0], [False] * 3 + [True] * 5)
  np.testing.assert_array_equal(tokens[1, -4:], [0, 9, 10, 11])
  np.testing.assert_array_equal(item_streams.prompt_lengths(
      [np.array([2, 0], np.int32), np.array([3], np.int32)], ITEM_TOKENS), [5, 4])


def test_num_batches_counts_an_epoch_without_building_it():
  streams = item_streams.train_streams(_sequences(), ITEM_TOKENS, max_items=20, eos_id=1)
  for tokens in (32, 64, 256):
    assert item_streams.num_batches(streams, tokens_per_batch=tokens, multiple=8) == len(
        _epoch(streams, 0, 0, tokens))


def _with_row_multiple(streams, seed, tokens, row_multiple):
  return list(item_streams.epoch_batches(streams, tokens_per_batch=tokens, seed=seed, epoch=seed + 1,
                                         multiple=8, row_multiple=row_multiple))


def test_row_multiple_one_leaves_every_batch_as_it_is():
  streams = item_streams.train_streams(_sequences(), ITEM_TOKENS, max_items=20, eos_id=1)
  for seed in range(3):
    for tokens in (24, 64, 100):
      plain = list(item_streams.epoch_batches(streams, tokens_per_batch=tokens, seed=seed,
                                              epoch=seed + 1, multiple=8))
      ones = _with_row_multiple(streams, seed, tokens, 1)
      assert len(plain) == len(ones)
      for a, b in zip(plain, ones):
        assert a.keys() == b.keys()
        for k in a:
          np.testing.assert_array_equal(a[k], b[k])
        rows, length = b["decoder_target_tokens"].shape
        assert rows == max(1, tokens // length)


def test_row_multiple_rounds_rows_down_to_a_multiple():
  streams = item_streams.train_streams(_sequences(), ITEM_TOKENS, max_items=20, eos_id=1)
  for tokens in (24, 64, 100):
    batches = _with_row_multiple(streams, 0, tokens, 4)
    assert sorted(_rows(batches)) == sorted(tuple(s) for s in streams)   # every stream once
    assert len(batches) == item_streams.num_batches(streams, tokens_per_batch=tokens, multiple=8,
                                                    row_multiple=4)
    for b in batches:
      rows, length = b["decoder_target_tokens"].shape
      assert rows % 4 == 0 and rows == max(4, tokens // length // 4 * 4)


def _assert_same_batches(a_batches, b_batches):
  assert len(a_batches) == len(b_batches)
  for a, b in zip(a_batches, b_batches):
    assert a.keys() == b.keys()
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
      assert np.asarray(a[k]).dtype == np.asarray(b[k]).dtype


def test_all_zero_start_tokens_give_the_default_batches_and_prompts():
  seqs = _sequences()
  trie = trie_lib.ItemTrie.from_sequences([t + [1] for t in ITEM_TOKENS], eos_id=1)
  choices = item_streams.TrieChoices(*trie.choice_nodes(), trie.token_ids)
  streams = item_streams.train_streams(seqs, ITEM_TOKENS, max_items=20, eos_id=1)
  zeros = np.zeros(len(streams), np.int32)
  for kw in ({}, {"choices": choices, "node_streams": choices.streams(seqs, 20)}):
    plain = list(item_streams.epoch_batches(streams, tokens_per_batch=64, seed=0, epoch=1,
                                            multiple=8, **kw))
    _assert_same_batches(plain, list(item_streams.epoch_batches(
        streams, tokens_per_batch=64, seed=0, epoch=1, multiple=8, start_tokens=zeros, **kw)))
  hist = [s[:-1] for s in seqs[:5]]
  for a, b in zip(item_streams.prompt_batch(hist, ITEM_TOKENS, eos_id=1, multiple=8),
                  item_streams.prompt_batch(hist, ITEM_TOKENS, eos_id=1, multiple=8,
                                            start_tokens=np.zeros(5, np.int32))):
    np.testing.assert_array_equal(a, b)
    assert a.dtype == b.dtype


def test_each_start_token_lands_at_its_own_rows_first_input_only():
  streams = item_streams.train_streams(_sequences(), ITEM_TOKENS, max_items=20, eos_id=1)
  starts = 100 + np.arange(len(streams), dtype=np.int32)   # stream u starts with 100 + u
  plain = _epoch(streams, seed=0, epoch=0)
  given = list(item_streams.epoch_batches(streams, tokens_per_batch=64, seed=0, epoch=0,
                                          multiple=8, start_tokens=starts))
  assert len(plain) == len(given)
  seen = []
  for a, b in zip(plain, given):
    for k in ("decoder_target_tokens", "decoder_loss_weights"):
      np.testing.assert_array_equal(a[k], b[k])
    np.testing.assert_array_equal(a["decoder_input_tokens"][:, 1:], b["decoder_input_tokens"][:, 1:])
    for target, first in zip(b["decoder_target_tokens"], b["decoder_input_tokens"][:, 0]):
      if not target.any():   # an empty filler row
        assert first == item_streams.START_ID
        continue
      u = int(first) - 100
      np.testing.assert_array_equal(target[target > 0], streams[u][-target.size:])
      seen.append(u)
  assert sorted(seen) == list(range(len(streams)))   # every stream once, with its own token

  hist = [np.array([2, 0], np.int32), np.array([3], np.int32)]
  plain_tokens, plain_valid = item_streams.prompt_batch(hist, ITEM_TOKENS, eos_id=1, multiple=8)
  tokens, valid = item_streams.prompt_batch(hist, ITEM_TOKENS, eos_id=1, multiple=8,
                                            start_tokens=np.array([7, 9], np.int32))
  np.testing.assert_array_equal(valid, plain_valid)
  first = valid.argmax(axis=1)
  np.testing.assert_array_equal(tokens[[0, 1], first], [7, 9])
  tokens[[0, 1], first] = item_streams.START_ID
  np.testing.assert_array_equal(tokens, plain_tokens)
