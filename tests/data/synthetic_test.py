"""Synthetic data: determinism, sizes, learnable structure, P5 round trip."""
import collections

import numpy as np
import pytest

from llmrec_jax.data import item_text, sources, synthetic


@pytest.fixture(scope="module")
def data():
  return synthetic.make_synthetic()


def test_deterministic_per_seed(data):
  again = synthetic.make_synthetic()
  other = synthetic.make_synthetic(seed=1)
  assert again.item_ids == data.item_ids and again.item_meta == data.item_meta
  assert all(np.array_equal(a, b) for a, b in zip(again.sequences, data.sequences))
  assert other.item_meta != data.item_meta


def test_sizes_and_lengths(data):
  assert data.num_users == 300 and 190 <= data.num_items <= 200
  assert data.lengths.min() >= 5 and data.lengths.max() <= 20
  small = synthetic.make_synthetic(num_users=7, num_items=12, num_topics=3, min_len=3, max_len=4, seed=5)
  assert small.num_users == 7 and small.num_items <= 12 and set(small.lengths.tolist()) <= {3, 4}
  with pytest.raises(ValueError):
    synthetic.make_synthetic(num_items=5, num_topics=10)
  with pytest.raises(ValueError):
    synthetic.make_synthetic(min_len=2)
  with pytest.raises(TypeError):
    synthetic.make_synthetic(num_topic=3)


def test_items_are_described_by_their_topic(data):
  titles = [m["title"] for m in data.item_meta]
  assert len(set(titles)) == len(titles)
  by_topic = collections.defaultdict(set)
  for m in data.item_meta:
    by_topic[m["topic"]].add((m["brand"], tuple(m["categories"][0])))
  assert all(len(v) == 1 for v in by_topic.values())  # one brand and category path per topic
  assert len({next(iter(v)) for v in by_topic.values()}) == len(by_topic)  # and they differ across topics
  assert all(item_text.render_item_text(m).startswith(m["title"]) for m in data.item_meta)


def test_sequences_follow_topics_and_chains(data):
  topic_N = np.array([m["topic"] for m in data.item_meta])
  pairs = [(a, b) for s in data.sequences for a, b in zip(s[:-1].tolist(), s[1:].tolist())]
  same_topic = np.mean([topic_N[a] == topic_N[b] for a, b in pairs])
  assert same_topic > 0.7  # random would be ~1/20
  # The most frequent successor of an item predicts the next item far above chance.
  succ = collections.defaultdict(collections.Counter)
  for a, b in pairs:
    succ[a][b] += 1
  top1 = np.mean([succ[a].most_common(1)[0][0] == b for a, b in pairs])
  assert top1 > 0.4
  assert all(len(set(s.tolist())) == len(s) for s in data.sequences)  # no repeats


def test_write_p5_round_trip(tmp_path, data):
  back = sources.load_p5(synthetic.write_p5(data, tmp_path))
  assert back.user_ids == data.user_ids and back.item_ids == data.item_ids and back.item_meta == data.item_meta
  assert all(np.array_equal(a, b) for a, b in zip(back.sequences, data.sequences))
  assert back.name == tmp_path.name
