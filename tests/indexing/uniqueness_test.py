"""Batched, deterministic conflict resolution with escalation and fallback (fake candidate generators)."""

import numpy as np
import pytest

from llmrec_jax.data.id_tables import normalize_id
from llmrec_jax.indexing import uniqueness as U


def _official_levels(n):
  """The official loop's (dp, min_length, max_length) sequence, written as the reference code."""
  out, dp, min_l = [], 1.0, 1
  while len(out) < n:
    out.append((dp, min_l, min_l + 10))
    dp += 1
    if dp >= 10:
      min_l += 10
      dp = 1.0
  return out


def test_schedule_matches_official_escalation():
  sched = U.EscalationSchedule(max_levels=30)
  got = [(l.diversity_penalty, l.min_length, l.max_length) for l in sched.levels()]
  assert got == _official_levels(30)
  assert sched.level(9).min_new_tokens == 10 and sched.level(9).max_new_tokens == 20
  with pytest.raises(ValueError):
    sched.level(30)
  with pytest.raises(ValueError):
    U.EscalationSchedule(num_penalties=0)


class CountingFn:
  """Fake generator: candidates depend only on (text of key, level); counts calls."""

  def __init__(self, texts, per_level):
    self.texts, self.per_level, self.calls = texts, per_level, []

  def __call__(self, keys, level):
    self.calls.append((level.index, keys.tolist()))
    return [self.per_level(self.texts[k], level) for k in keys]


def _check_ids(result, token_key=None):
  ids = result.ids
  assert all(ids) and all(normalize_id(t) == t for t in ids)
  assert len(set(ids)) == len(ids)
  if token_key is not None:
    assert len({token_key(t) for t in ids}) == len(ids)


def test_identical_texts_all_unique_and_terminate():
  texts = ["same text"] * 50
  fn = CountingFn(texts, lambda t, l: [f"Cand {j}!" for j in range(10)])   # same 10 at every level
  sched = U.EscalationSchedule(max_levels=4)
  result = U.assign_unique(len(texts), fn, sched)
  _check_ids(result)
  assert len(fn.calls) == 4                    # every level tried once, then the fallback
  assert result.num_fallbacks == 40
  assert result.level_histogram() == {"0": 10, "fallback": 40}
  assert result.ids[:10] == [f"cand {j}" for j in range(10)]
  assert result.ids[10:13] == ["cand 0 2", "cand 0 3", "cand 0 4"]   # best candidate + number


def test_escalation_resolves_what_later_levels_allow():
  texts = ["x"] * 12
  fn = CountingFn(texts, lambda t, l: [f"w{l.index} {j}" for j in range(5)])
  result = U.assign_unique(len(texts), fn, U.EscalationSchedule(max_levels=5))
  _check_ids(result)
  assert result.levels.tolist() == [0] * 5 + [1] * 5 + [2] * 2
  assert [keys for _, keys in fn.calls] == [list(range(12)), list(range(5, 12)), [10, 11]]


def _best_free_property(result, cand_of):
  """Each key got its first candidate that no earlier resolved key (earlier level, or same level and
  smaller key) had taken: a brute-force restatement of the rule, independent of the implementation."""
  order = sorted(range(len(result.ids)), key=lambda k: (result.levels[k] if result.levels[k] >= 0 else 10**9, k))
  taken = set()
  for k in order:
    lvl = result.levels[k]
    if lvl >= 0:
      free = [normalize_id(c) for c in cand_of(k, lvl) if normalize_id(c) and normalize_id(c) not in taken]
      assert free and free[0] == result.ids[k]
    taken.add(result.ids[k])


def test_random_pools_follow_the_rule_and_are_unique():
  rng = np.random.default_rng(0)
  pool = [f"w{i}" for i in range(6)]
  table = {}

  def per_level(text, level):
    key = (text, level.index)
    if key not in table:
      table[key] = [" ".join(rng.choice(pool, size=rng.integers(0, 3))) for _ in range(4)]
    return table[key]

  texts = [f"t{i % 7}" for i in range(40)]
  result = U.assign_unique(len(texts), CountingFn(texts, per_level), U.EscalationSchedule(max_levels=6))
  _check_ids(result)
  _best_free_property(result, lambda k, l: table[(texts[k], l)])


def test_token_collisions_count_as_taken():
  # "ab c" and "a b c" tokenize alike under this key (spaces dropped): only one may be taken.
  key = lambda s: tuple(s.replace(" ", ""))
  texts = ["a"] * 3
  fn = CountingFn(texts, lambda t, l: ["a b c", "ab c", "abc", "x y"])
  ns = U.IdNamespace(key)
  result = U.assign_unique(3, fn, U.EscalationSchedule(max_levels=2), ns)
  _check_ids(result, key)
  assert result.ids == ["a b c", "x y", "a b c 2"]


def test_empty_candidates_never_give_empty_ids():
  fn = CountingFn(["", "", ""], lambda t, l: ["", "!!!", "  ", "\u2047"])
  result = U.assign_unique(3, fn, U.EscalationSchedule(max_levels=2),
                           fallback_texts=["Pink Gel!", "", "Pink gel"])
  _check_ids(result)
  assert result.ids == ["pink gel", "id", "pink gel 2"]
  assert result.num_fallbacks == 3


def test_namespaces_are_separate_and_persist():
  fn = CountingFn(["a", "b"], lambda t, l: ["shared", t])
  items = U.assign_unique(2, fn, U.EscalationSchedule(max_levels=1))
  users = U.assign_unique(2, fn, U.EscalationSchedule(max_levels=1), U.IdNamespace())
  assert items.ids == users.ids == ["shared", "b"]
  ns = U.IdNamespace()
  assert ns.try_take("shared") and not ns.try_take("shared") and not ns.try_take("")


@pytest.mark.parametrize("max_levels", [0, 1, 3])
def test_zero_or_few_levels_terminate(max_levels):
  fn = CountingFn(["q"] * 5, lambda t, l: ["one"])
  result = U.assign_unique(5, fn, U.EscalationSchedule(max_levels=max_levels))
  _check_ids(result)
  assert len(fn.calls) == min(max_levels, 5)
  assert sum(result.level_histogram().values()) == 5


def test_resolution_is_independent_of_chunking():
  # The same candidates delivered through a generator that works in chunks of any size.
  texts = [f"t{i % 5}" for i in range(23)]
  per_level = lambda t, l: [f"{t} v{(l.index + j) % 3}" for j in range(2)]

  def chunked(bsz):
    def fn(keys, level):
      out = []
      for s in range(0, len(keys), bsz):
        out.extend(per_level(texts[k], level) for k in keys[s:s + bsz])
      return out
    return fn

  results = [U.assign_unique(len(texts), chunked(b), U.EscalationSchedule(max_levels=4)) for b in (1, 4, 64)]
  for r in results[1:]:
    assert r.ids == results[0].ids and r.levels.tolist() == results[0].levels.tolist()
