"""The adjusted Rand index equals a brute-force pair count and is 1 for relabelled partitions."""
import itertools

import numpy as np
import pytest

from llmrec_jax.metrics import clustering


def _ari_by_pair_counting(a, b) -> float:
  """ARI from the 2x2 table of item pairs (same/different cluster in a, in b), all pairs enumerated."""
  same_same = same_diff = diff_same = diff_diff = 0
  for i, j in itertools.combinations(range(len(a)), 2):
    in_a, in_b = a[i] == a[j], b[i] == b[j]
    same_same += in_a and in_b
    same_diff += in_a and not in_b
    diff_same += (not in_a) and in_b
    diff_diff += (not in_a) and not in_b
  numerator = 2.0 * (same_same * diff_diff - same_diff * diff_same)
  denominator = ((same_same + same_diff) * (same_diff + diff_diff) +
                 (same_same + diff_same) * (diff_same + diff_diff))
  return 1.0 if denominator == 0 else numerator / denominator


@pytest.mark.parametrize("seed", range(6))
def test_ari_equals_pair_counting_on_random_labelings(seed):
  rng = np.random.default_rng(seed)
  n = int(rng.integers(2, 60))
  a = rng.integers(0, int(rng.integers(1, 8)), size=n)
  b = rng.integers(0, int(rng.integers(1, 8)), size=n)
  assert clustering.adjusted_rand_index(a, b) == pytest.approx(_ari_by_pair_counting(a, b), abs=1e-12)


def test_ari_equals_pair_counting_when_one_labeling_refines_the_other():
  rng = np.random.default_rng(7)
  fine = rng.integers(0, 12, size=50)
  coarse = fine // 3
  assert clustering.adjusted_rand_index(fine, coarse) == pytest.approx(_ari_by_pair_counting(fine, coarse))


def test_ari_is_one_for_identical_partitions_under_any_relabelling():
  rng = np.random.default_rng(3)
  a = rng.integers(0, 6, size=40)
  relabel = rng.permutation(6) * 10 - 7  # other names, other order
  assert clustering.adjusted_rand_index(a, relabel[a]) == 1.0
  assert clustering.adjusted_rand_index(a.astype(str), a) == 1.0
  assert clustering.adjusted_rand_index(np.zeros(5), np.ones(5)) == 1.0  # one cluster each
  assert clustering.adjusted_rand_index(np.arange(5), np.arange(5)[::-1]) == 1.0  # all singletons


def test_ari_is_symmetric_and_rejects_mismatched_shapes():
  rng = np.random.default_rng(5)
  a, b = rng.integers(0, 4, size=30), rng.integers(0, 3, size=30)
  assert clustering.adjusted_rand_index(a, b) == clustering.adjusted_rand_index(b, a)
  with pytest.raises(ValueError, match="same items"):
    clustering.adjusted_rand_index(a, b[:-1])
