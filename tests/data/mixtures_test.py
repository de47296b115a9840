"""Mixtures: the union catalogue, SeqIO's rates and the users each epoch draws."""
import collections

import numpy as np
import pytest
import seqio

from llmrec_jax.data import mixtures
from llmrec_jax.data.errors import DataError
from llmrec_jax.data.records import RecData
from llmrec_jax.data.synthetic import make_synthetic


def _catalogues(sizes):
  out, start = [], 0
  for i, n in enumerate(sizes):
    out.append(mixtures.Catalogue(f"d{i}", 0, 1, start, start + n))
    start += n
  return out


def test_epoch_counts_follow_the_rates_and_add_up_to_the_capped_total():
  sizes, cap, temperature = [1000, 300, 50], 400, 2.0
  rates = [min(n, cap) ** (1 / temperature) for n in sizes]
  counts = mixtures.epoch_counts(sizes, rates, cap)
  total = sum(min(n, cap) for n in sizes)
  assert counts.sum() == total
  exact = np.asarray(rates) / sum(rates) * total
  assert np.all(np.abs(counts - exact) < 1.0)


def test_an_epoch_without_cap_at_temperature_one_holds_every_user_once():
  cats = _catalogues([7, 3, 5])
  users = mixtures.epoch_users(cats, [7, 3, 5], seed=0, epoch=3)
  np.testing.assert_array_equal(users, np.arange(15))


def test_epoch_users_draw_each_dataset_by_its_rate_repeating_a_small_one():
  cats = _catalogues([100, 10])
  users = mixtures.epoch_users(cats, [1.0, 1.0], seed=1, epoch=0)   # equal rates: 55 each
  per = collections.Counter(int(u >= 100) for u in users)
  assert per == {0: 55, 1: 55}
  small = collections.Counter(int(u) for u in users if u >= 100)
  assert set(small) == set(range(100, 110)) and {5, 6} >= set(small.values())  # 5 each, 5 + 1
  assert len(set(users[users < 100].tolist())) == 55   # a subset without repeats
  again = mixtures.epoch_users(cats, [1.0, 1.0], seed=1, epoch=0)
  other = mixtures.epoch_users(cats, [1.0, 1.0], seed=1, epoch=1)
  np.testing.assert_array_equal(users, again)
  assert not np.array_equal(users, other)


def test_union_keeps_each_dataset_whole_and_catalogue_data_gives_it_back():
  a, b = make_synthetic(30, 20, seed=0, num_topics=4, max_len=8), make_synthetic(12, 9, seed=1, num_topics=3, max_len=8)
  data, cats = mixtures.union([a, b], ["a", "b"])
  assert data.num_items == a.num_items + b.num_items and data.num_users == a.num_users + b.num_users
  for original, c in zip((a, b), cats):
    back = mixtures.catalogue_data(data, c)
    assert back.item_ids == original.item_ids and back.user_ids == original.user_ids
    assert back.item_meta == original.item_meta
    assert all(np.array_equal(x, y) for x, y in zip(back.sequences, original.sequences))
    for s in data.sequences[c.user_start:c.user_stop]:   # union indices stay in the catalogue
      assert s.min() >= c.item_start and s.max() < c.item_stop


def test_the_registered_seqio_mixture_has_the_examples_proportional_rates_and_samples_by_them():
  a, b = make_synthetic(40, 20, seed=0, num_topics=4, max_len=8), make_synthetic(10, 9, seed=1, num_topics=3, max_len=8)
  rate = mixtures.MixingRate(temperature=1.0, maximum=30)
  mix = mixtures.register_mixture("llmrec_test_mix", {"a": a, "b": b}, rate)
  assert mixtures.mixture_rates(mix) == [30.0, 10.0]   # min(40, 30), 10
  ds = mix.get_dataset(sequence_length=None, split="train", shuffle=True, seed=0, num_epochs=None)
  of_a, of_b = ({tuple(x.tolist()) for x in d.sequences} for d in (a, b))
  assert not of_a & of_b
  n = 2000
  drawn = [tuple(ex["targets"].tolist()) for ex in ds.take(n).as_numpy_iterator()]
  assert all(t in of_a or t in of_b for t in drawn)
  assert abs(sum(t in of_b for t in drawn) / n - 0.25) < 0.04   # SeqIO's sampling: 10 of 40
  seqio.MixtureRegistry.remove("llmrec_test_mix")


def test_a_dataset_without_item_text_is_named_with_what_is_missing(tmp_path):
  data = make_synthetic(10, 8, seed=0, num_topics=2, max_len=8)
  bare = RecData("bare", data.user_ids, data.item_ids, tuple({} for _ in data.item_ids), data.sequences)
  with pytest.raises(DataError, match=r"bare_dir.*has no item text \(items\.jsonl"):
    mixtures.check_item_text(bare, str(tmp_path / "bare_dir"))


def test_names_are_made_unique_and_a_folder_given_twice_is_an_error(tmp_path):
  (tmp_path / "x" / "beauty").mkdir(parents=True)
  (tmp_path / "y" / "beauty").mkdir(parents=True)
  dirs = [str(tmp_path / "x" / "beauty"), str(tmp_path / "y" / "beauty")]
  assert mixtures.unique_names(dirs, ["beauty", "beauty"]) == ["x_beauty", "y_beauty"]
  with pytest.raises(DataError, match="given twice"):
    mixtures.unique_names([dirs[0], dirs[0]], ["beauty", "beauty"])
