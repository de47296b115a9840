"""Collision schemes for semantic IDs: unique tuples, untouched unique items, Sinkhorn and greedy by brute force."""
import itertools

import numpy as np
import pytest

from llmrec_jax.quantization import collisions


def _unique(codes_NxL) -> bool:
  return len({tuple(row) for row in np.asarray(codes_NxL).tolist()}) == len(codes_NxL)


def _shared_brute_force(codes_NxL) -> list[bool]:
  rows = np.asarray(codes_NxL).tolist()
  return [any(rows[i] == rows[j] for j in range(len(rows)) if j != i) for i in range(len(rows))]


def _colliding_catalogue(seed: int, k: int = 4, prefixes: int = 3):
  """Codes whose prefixes (levels 0..1) hold k items each, with random last-level codes; distances."""
  rng = np.random.default_rng(seed)
  prefix_N = np.repeat(np.arange(prefixes), k)
  codes_NxL = np.stack([prefix_N % 2, prefix_N, rng.integers(0, k, prefixes * k)], axis=1)
  return codes_NxL[rng.permutation(prefixes * k)], rng.random((prefixes * k, k))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_collision_rate_and_groups_equal_brute_force(seed):
  codes_NxL = np.random.default_rng(seed).integers(0, 3, size=(30, 2))
  shared = _shared_brute_force(codes_NxL)
  assert collisions.collision_rate(codes_NxL) == pytest.approx(sum(shared) / len(shared))
  rows = codes_NxL.tolist()
  expected = {tuple(i for i in range(len(rows)) if rows[i] == row) for row in rows}
  groups = collisions.colliding_groups(codes_NxL)
  assert {tuple(g.tolist()) for g in groups} == {g for g in expected if len(g) > 1}
  assert [g[0] for g in groups] == sorted(g[0] for g in groups)
  assert collisions.collision_rate(np.zeros((0, 2), int)) == 0.0


@pytest.mark.parametrize("use_order", [False, True])
def test_tiger_extra_level_keeps_the_levels_and_numbers_each_group_in_order(use_order):
  rng = np.random.default_rng(3)
  codes_NxL = rng.integers(0, 3, size=(40, 2))
  order = rng.permutation(40) if use_order else np.arange(40)
  codes_NxM, size = collisions.tiger_extra_level(codes_NxL, order=order if use_order else None)
  assert np.array_equal(codes_NxM[:, :2], codes_NxL) and _unique(codes_NxM)
  rows, place = codes_NxL.tolist(), {int(item): p for p, item in enumerate(order)}
  for i, shared in enumerate(_shared_brute_force(codes_NxL)):
    earlier = sum(rows[j] == rows[i] and place[j] < place[i] for j in range(len(rows)))
    assert codes_NxM[i, 2] == earlier and (shared or earlier == 0)
  assert size == max(rows.count(row) for row in rows) == codes_NxM[:, 2].max() + 1


@pytest.mark.parametrize("n", [3, 4])  # N < K and N = K
def test_identical_embeddings_get_unique_codes_from_both_schemes(n):
  codes_NxL = np.full((n, 3), 2)
  extra_NxM, size = collisions.tiger_extra_level(codes_NxL)
  assert _unique(extra_NxM) and size == n
  last_NxL = collisions.uniform_last_level(codes_NxL, np.ones((n, 4)))
  assert _unique(last_NxL) and np.array_equal(last_NxL[:, :2], codes_NxL[:, :2])
  assert np.array_equal(collisions.lcrec_unique(codes_NxL, [None, None, np.ones((n, 4))],
                                                codebook_sizes=[3, 3, 4]), last_NxL)


@pytest.mark.parametrize("n", [5, 11, 16])  # N > K, up to every tuple of two levels of 4 codes
@pytest.mark.parametrize("first_level_distances", [False, True])
def test_identical_embeddings_beyond_k_spread_over_the_earlier_level(n, first_level_distances):
  codes_NxL = np.full((n, 2), 1)
  with pytest.raises(ValueError, match=rf"{n} items share .* K = 4 .*tiger_extra_level"):
    collisions.uniform_last_level(codes_NxL, np.ones((n, 4)))
  assert _unique(collisions.tiger_extra_level(codes_NxL).codes_NxM)
  first = np.ones((n, 4)) if first_level_distances else None
  unique_NxL = collisions.lcrec_unique(codes_NxL, [first, np.ones((n, 4))], codebook_sizes=[4, 4])
  assert _unique(unique_NxL) and unique_NxL.min() >= 0 and unique_NxL.max() < 4
  if not first_level_distances:  # moved items go to the least-used level-0 codes
    moved_counts = np.bincount(unique_NxL[:, 0], minlength=4)[[0, 2, 3]]
    assert moved_counts.max() - moved_counts.min() <= 1
  with pytest.raises(ValueError, match="17 items but only 16 distinct tuples"):
    collisions.lcrec_unique(np.full((17, 2), 1), [None, None], codebook_sizes=[4, 4])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_uniform_last_level_moves_only_colliding_items(seed):
  codes_NxL, distances_NxK = _colliding_catalogue(seed)
  assert collisions.collision_rate(codes_NxL) > 0
  shared = _shared_brute_force(codes_NxL)
  new_NxL = collisions.uniform_last_level(codes_NxL, distances_NxK)
  assert _unique(new_NxL) and np.array_equal(new_NxL[:, :2], codes_NxL[:, :2])
  assert all(np.array_equal(new_NxL[i], codes_NxL[i]) for i in range(len(shared)) if not shared[i])
  assert collisions.lcrec_unique(codes_NxL, [None, None, distances_NxK], codebook_sizes=[2, 3, 4]).tolist() \
      == new_NxL.tolist()


@pytest.mark.parametrize("seed", [0, 1])
def test_lcrec_unique_keeps_unique_items_when_prefixes_overflow(seed):
  rng = np.random.default_rng(seed)
  codes_NxL = rng.integers(0, 2, size=(40, 3))  # 8 tuples for 40 items: most prefixes overflow
  distances = [rng.random((40, 4)), None, rng.random((40, 3))]
  new_NxL = collisions.lcrec_unique(codes_NxL, distances, codebook_sizes=[4, 5, 3])
  assert _unique(new_NxL) and (new_NxL < [4, 5, 3]).all()
  shared = _shared_brute_force(codes_NxL)
  assert all(np.array_equal(new_NxL[i], codes_NxL[i]) for i in range(40) if not shared[i])


def test_colliding_items_with_distinct_nearest_free_codes_take_them():
  codes_NxL = np.array([[0, 1], [0, 1], [0, 3]])  # items 0 and 1 collide, code 3 is taken
  distances_NxK = np.array([[1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.0]])
  new_NxL = collisions.uniform_last_level(codes_NxL, distances_NxK)
  assert new_NxL[:, 1].tolist() == [int(np.argmin(distances_NxK[0])), int(np.argmin(distances_NxK[1])), 3]


@pytest.mark.parametrize("epsilon", [0.05, 1.0])
def test_sinkhorn_marginals_and_gibbs_form_match_brute_force(epsilon):
  cost_MxK = np.random.default_rng(4).random((5, 3))
  plan_MxK = collisions.sinkhorn(cost_MxK, epsilon, iterations=2000)
  m, k = cost_MxK.shape
  for i in range(m):
    assert sum(plan_MxK[i, j] for j in range(k)) == pytest.approx(1.0, abs=1e-9)
  for j in range(k):
    assert sum(plan_MxK[i, j] for i in range(m)) == pytest.approx(m / k, abs=1e-6)
  # plan = diag(u) exp(-cost / epsilon) diag(v): log plan + cost / epsilon is a row term plus a column term
  gibbs_MxK = np.log(plan_MxK) + cost_MxK / epsilon
  assert np.allclose(gibbs_MxK - gibbs_MxK[:, :1] - gibbs_MxK[:1, :] + gibbs_MxK[0, 0], 0.0, atol=1e-9)
  tiny_plan = collisions.sinkhorn(cost_MxK * 100, 1e-4, iterations=50)
  assert np.isfinite(tiny_plan).all() and np.allclose(tiny_plan.sum(axis=1), 1.0)


def test_greedy_takes_the_nearest_free_code_without_contention():
  rng = np.random.default_rng(5)
  distances_MxK = rng.random((3, 5))
  distances_MxK[[0, 1, 2], [4, 1, 2]] -= 1.0  # distinct nearest codes; code 0 is taken
  capacity_K = np.array([0, 1, 1, 1, 1])
  code_M = collisions.greedy_assignment(-distances_MxK, capacity_K)
  free = [k for k in range(5) if capacity_K[k]]
  assert code_M.tolist() == [min(free, key=lambda k: distances_MxK[i, k]) for i in range(3)]
  best = min(itertools.permutations(free, 3), key=lambda p: sum(distances_MxK[i, k] for i, k in enumerate(p)))
  assert code_M.tolist() == list(best)


def test_greedy_fills_codes_up_to_their_capacity_only():
  score_MxK = np.random.default_rng(6).random((7, 3))
  code_M = collisions.greedy_assignment(score_MxK, [2, 0, 3])
  assert (code_M == -1).sum() == 2 and (code_M == 1).sum() == 0
  assert (code_M == 0).sum() == 2 and (code_M == 2).sum() == 3
