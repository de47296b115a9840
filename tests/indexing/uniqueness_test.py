"""Batched, deterministic conflict resolution with escalation and fallback (fake candidate generators)."""

import re

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


# ----------------------------------------------------------------------------- item-by-item resolution
def _official_loop(num_keys, cand_of, max_levels, token_key=None, fallback_texts=None, keep_case=False,
                   taken=()):
  """Brute-force transcription of the official sequential loop (`generate_item_id_from_text`):
  item by item, escalate until a candidate is free, then the next item. Plus our rules: never an
  empty ID, token-sequence collisions count as taken, and after `max_levels` levels the fallback
  (best candidate, else the first 8 words of the fallback text, else "id"; then " n", n >= 2)."""
  strings, tokens, ids, levels = set(taken), {token_key(t) for t in taken} if token_key else set(), [], []
  norm = lambda c: " ".join(re.findall(r"\b\w+\b", c if keep_case else c.lower()))
  free = lambda t: t and t not in strings and (token_key is None or token_key(t) not in tokens)

  def take(t):
    strings.add(t)
    if token_key is not None:
      tokens.add(token_key(t))
    ids.append(t)

  for key in range(num_keys):
    best = None
    for level in range(max_levels):
      cands = [norm(c) for c in cand_of(key, level)]
      best = best or next((c for c in cands if c), None)
      hit = next((c for c in cands if free(c)), None)
      if hit:
        take(hit)
        levels.append(level)
        break
    else:
      text = fallback_texts[key] if fallback_texts is not None else ""
      base = best or " ".join(norm(text).split()[:8]) or "id"
      n, cand = 2, base
      while not free(cand):
        cand, n = f"{base} {n}", n + 1
      take(cand)
      levels.append(U.FALLBACK_LEVEL)
  return ids, levels


def _random_table(seed, num_keys, num_texts, pool_size, max_levels, cased=False):
  """(cand_of, texts): per (text, level) a few random candidates from a small word pool."""
  rng = np.random.default_rng(seed)
  pool = [f"w{i}" for i in range(pool_size)] + (["W0", "W1"] if cased else []) + ["", "!"]
  texts = [f"t{rng.integers(num_texts)}" for _ in range(num_keys)]
  table = {(t, l): [" ".join(rng.choice(pool, size=rng.integers(0, 3))) for _ in range(rng.integers(1, 5))]
           for t in set(texts) for l in range(max_levels)}
  return (lambda k, l: table[(texts[k], l)]), texts


@pytest.mark.parametrize("seed", range(12))
def test_item_by_item_equals_the_official_loop(seed):
  max_levels = 1 + seed % 5
  keep_case = seed % 2 == 1
  cand_of, texts = _random_table(seed, num_keys=40, num_texts=3 + seed % 9, pool_size=4 + seed % 4,
                                 max_levels=max_levels, cased=keep_case)
  token_key = (lambda s: tuple(s.replace(" ", "").lower())) if seed % 3 == 0 else None
  calls = []

  def candidate_fn(keys, level):
    calls.append((level.index, keys.tolist()))
    assert keys.tolist() == sorted(keys.tolist())
    return [cand_of(k, level.index) for k in keys]

  ns = U.IdNamespace(token_key)
  taken = ("w0", "w1 w2") if seed % 4 == 0 else ()   # taken before: e.g. by another assignment
  assert all(ns.try_take(t) for t in taken)
  result = U.assign_unique(len(texts), candidate_fn, U.EscalationSchedule(max_levels=max_levels), ns,
                           fallback_texts=texts, resolution=U.ITEM_BY_ITEM, keep_case=keep_case)
  want_ids, want_levels = _official_loop(len(texts), cand_of, max_levels, token_key, texts, keep_case, taken)
  assert result.ids == want_ids and result.levels.tolist() == want_levels
  assert len(ns) == len(texts) + len(taken) and not any(ns.is_free(t) for t in want_ids)  # the caller's took them
  decoded = [(l, k) for l, keys in calls for k in keys]
  assert len(decoded) == len(set(decoded))                     # no (key, level) decoded twice
  needed = {(l, k) for k, lvl in enumerate(want_levels) for l in range(lvl + 1 if lvl >= 0 else max_levels)}
  assert set(decoded) == needed                                 # and none the official loop does not decode


def test_item_by_item_and_level_by_level_can_differ():
  # Key 1 escalates to "b" (level 1) before key 2 takes "b" at level 0 (the official order);
  # level by level, key 2 takes "b" first and key 1 escalates further.
  table = {0: [["a"], ["x"]], 1: [["a"], ["b"], ["c"]], 2: [["b"], ["d"]]}
  fn = lambda keys, level: [table[k][level.index] if level.index < len(table[k]) else ["z"] for k in keys]
  sched = U.EscalationSchedule(max_levels=3)
  by_item = U.assign_unique(3, fn, sched, resolution=U.ITEM_BY_ITEM)
  by_level = U.assign_unique(3, fn, sched, resolution=U.LEVEL_BY_LEVEL)
  assert by_item.ids == ["a", "b", "d"] and by_level.ids == ["a", "c", "b"]
  # ... and so do random tables: the equality test above could fail for level_by_level.
  differ = 0
  for seed in range(12):
    cand_of, texts = _random_table(seed, num_keys=40, num_texts=3 + seed % 9, pool_size=4 + seed % 4,
                                   max_levels=3)
    fn = lambda keys, level, cand_of=cand_of: [cand_of(k, level.index) for k in keys]
    results = [U.assign_unique(len(texts), fn, U.EscalationSchedule(max_levels=3), fallback_texts=texts,
                               resolution=r).ids for r in U.RESOLUTIONS]
    differ += results[0] != results[1]
  assert differ > 0


def test_item_by_item_batches_the_few_escalations():
  # 300 keys with a candidate of their own, but keys 50, 120 and 180 share key 7's text: one call
  # decodes level 0 for all, one more level 1 for exactly those three (they take its 3 candidates).
  texts = [f"t{i}" for i in range(300)]
  for k in (50, 120, 180):
    texts[k] = texts[7]
  fn = CountingFn(texts, lambda t, l: [f"{t} 0"] if l.index == 0 else [f"{t} {l.index} {j}" for j in range(3)])
  result = U.assign_unique(len(texts), fn, U.EscalationSchedule(max_levels=18), resolution=U.ITEM_BY_ITEM)
  _check_ids(result)
  assert fn.calls == [(0, list(range(300))), (1, [50, 120, 180])]
  assert [result.ids[k] for k in (7, 50, 120, 180)] == ["t7 0", "t7 1 0", "t7 1 1", "t7 1 2"]


def test_unknown_resolution_fails_loudly():
  with pytest.raises(ValueError, match=r"unknown ID resolution 'greedy'; known: \('level_by_level', "):
    U.assign_unique(2, lambda keys, level: [["a"]] * len(keys), U.EscalationSchedule(), resolution="greedy")
  with pytest.raises(ValueError, match="unknown ID resolution"):
    U.IdAssignment(resolution="official")


@pytest.mark.parametrize("resolution", U.RESOLUTIONS)
def test_keep_case_keeps_ids_apart_that_differ_only_in_case(resolution):
  fn = lambda keys, level: [["OPI Top-Coat!", "opi top coat"] for _ in keys]
  sched = U.EscalationSchedule(max_levels=1)
  assert U.assign_unique(3, fn, sched, resolution=resolution, keep_case=True).ids == [
      "OPI Top Coat", "opi top coat", "OPI Top Coat 2"]
  assert U.assign_unique(3, fn, sched, resolution=resolution).ids == ["opi top coat", "opi top coat 2",
                                                                      "opi top coat 3"]


def test_group_search_names_are_the_decoders_and_a_typo_fails():
  from llmrec_jax.decoding import diverse  # pylint: disable=g-import-not-at-top
  assert set(U.GROUP_SEARCHES) == {s.value for s in diverse.HfSemantics}
  with pytest.raises(ValueError, match="group_search"):
    U.IdAssignment(group_search="4.57")
