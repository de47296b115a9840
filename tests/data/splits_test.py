"""Leave-one-out splits: brute force on synthetic data, dense histories, real-data counts."""
import numpy as np
import pytest

from llmrec_jax.data import records, sources, splits, synthetic


def brute_force_loo(seqs, max_his):
  """The reference rule written as plainly as possible, on Python lists."""
  out = {"train": [], "valid": [], "test": []}
  for u, seq in enumerate(seqs):
    seq = list(seq)
    items = seq[:-2]
    for i in range(1, len(items)):
      out["train"].append((u, items[:i][-max_his:], items[i]))
    out["valid"].append((u, seq[:-2][-max_his:], seq[-2]))
    out["test"].append((u, seq[:-1][-max_his:], seq[-1]))
  return out


def as_tuples(split):
  return [(int(u), h.tolist(), int(t)) for u, h, t in zip(split.user, split.history, split.target)]


@pytest.fixture(scope="module")
def syn():
  return synthetic.make_synthetic(num_users=60, num_items=50, num_topics=5, min_len=3, max_len=30, seed=3)


@pytest.mark.parametrize("max_his", [1, 3, 20])
def test_matches_brute_force(syn, max_his):
  got = splits.leave_one_out(syn, max_his=max_his)
  want = brute_force_loo(syn.sequences, max_his)
  assert set(got) == {"train", "valid", "test"}
  for name in ("train", "valid", "test"):
    assert as_tuples(got[name]) == want[name], name
    assert got[name].user.dtype == np.int32 and got[name].target.dtype == np.int32
    assert all(h.dtype == np.int32 for h in got[name].history)
  assert got["train"].num_examples == int(sum(len(s) - 3 for s in syn.sequences))


def test_padded_history_matches_brute_force(syn):
  split = splits.leave_one_out(syn, max_his=7)["train"]
  for length in (1, 4, 9):
    dense = split.padded_history(length, pad_value=-5)
    assert dense.shape == (split.num_examples, length) and dense.dtype == np.int32
    for row, h in zip(dense, split.history):
      h = h.tolist()[-length:]
      assert row.tolist() == [-5] * (length - len(h)) + h


def test_test_history_contains_validation_item(syn):
  s = splits.leave_one_out(syn, max_his=20)
  for u in range(syn.num_users):
    assert s["test"].history[u][-1] == s["valid"].target[u]
    assert s["test"].target[u] == syn.sequences[u][-1]


def test_rejects_short_sequences_and_bad_max_his():
  data = records.RecData(name="tiny", user_ids=("a", "b"), item_ids=("x", "y", "z"), item_meta=({}, {}, {}),
                         sequences=(np.array([0, 1, 2], np.int32), np.array([0, 1], np.int32)))
  with pytest.raises(ValueError, match="'b' has 2 items"):
    splits.leave_one_out(data)
  with pytest.raises(ValueError, match="max_his"):
    splits.leave_one_out(data, max_his=0)


@pytest.mark.parametrize("folder,users,train", [("amazon2014_beauty", 22363, 131413),
                                                ("amazon2014_sports", 35598, 189543),
                                                ("amazon2014_toys", 19412, 109361)])
def test_real_split_sizes(shared_dir, folder, users, train):
  data = sources.load_p5(shared_dir / "data" / folder)
  s = splits.leave_one_out(data, max_his=20)
  assert s["train"].num_examples == train
  assert s["valid"].num_examples == s["test"].num_examples == users
  assert int(s["train"].history_lengths().max()) == 20


# ------------------------------------------------------------------ the held-out rule
@pytest.mark.parametrize("max_his", [1, 3, None])
def test_history_and_target_equal_the_splits_examples(syn, max_his):
  got = splits.leave_one_out(syn, max_his=max_his or 100)
  for name in ("valid", "test"):
    for u, seq in enumerate(syn.sequences):
      history, target = splits.history_and_target(seq, name, max_his)
      assert target == got[name].target[u]
      assert history.tolist() == got[name].history[u].tolist()
      seen = splits.seen_before_target(seq, name)
      assert seen.tolist() == seq[:len(seq) - splits.held_out_count(name)].tolist()
      assert seen[-(max_his or 100):].tolist() == history.tolist()
  # Training targets are exactly the items of `train_items` after the first.
  train = {(int(u), int(t)) for u, t in zip(got["train"].user, got["train"].target)}
  assert train == {(u, int(t)) for u, s in enumerate(syn.sequences) for t in splits.train_items(s)[1:]}


def test_held_out_split_of_sequences_equals_leave_one_out(syn):
  got = splits.leave_one_out(syn, max_his=5)
  for name in ("valid", "test"):
    held = splits.held_out_split(list(syn.sequences), name, max_his=5)
    assert as_tuples(held) == as_tuples(got[name])


def test_held_out_rule_rejects_unknown_splits_and_short_sequences():
  with pytest.raises(ValueError, match="'validation'"):
    splits.held_out_count("validation")
  with pytest.raises(ValueError, match="sequence 1 has 2 items: a valid example needs more than 2"):
    splits.held_out_split([np.array([0, 1, 2]), np.array([3, 4])], "valid")
  assert splits.held_out_split([np.array([0, 1, 2]), np.array([3, 4])], "test").target.tolist() == [2, 4]
