"""Unique textual IDs by escalating diverse beam search, resolved deterministically in batches.

The official IDGenRec loop (`indexing.py:generate_item_id_from_text`) works one item at a time, in
file order: run diverse beam search (10 groups of 1 beam) with diversity penalty 1, 2, ..., 9;
after 9 the minimum length grows by 10 tokens and the penalty restarts; the item takes its best
candidate (normalised by `normalize_id`, case kept) that no earlier item has taken, before the
next item starts. It has no cap on the escalation.

Two resolutions (`assign_unique(resolution=...)`), both batching the generator:
  level_by_level: at level l the generator produces candidates for every key still pending, then
    keys are resolved in key order; each takes its best free candidate, the others go on to
    level l + 1. A key can take a level-0 candidate that the official loop would have given to
    an earlier key at a later level, so the IDs can differ from the official ones.
  item_by_item: exactly the official loop's result. Level-0 candidates come for all keys at once
    (candidates never depend on what is taken), then the keys are walked in order; a walk that
    reaches a key whose known candidates are all taken asks for its next level. Such a key's
    need is certain (what is taken only grows), and so is that of every later key that the same
    walk, with those keys taking nothing, finds blocked: all of them get their next level in one
    call per level, and the walk restarts at the first of them. The generator only ever decodes
    (key, level) pairs that the sequential loop decodes.
A candidate is free when neither its normalised string nor its token sequence is taken (two
strings can tokenize alike, e.g. through <unk>), and it is never empty. A key still without an ID
after `max_levels` levels gets a deterministic fallback (level_by_level: after all levels;
item_by_item: at its turn): its best candidate (or a given fallback text) plus the smallest
number `n >= 2` that makes it free. No JAX here.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Hashable, Optional, Sequence

import numpy as np

from llmrec_jax.data.id_tables import normalize_id

log = logging.getLogger(__name__)

FALLBACK_LEVEL = -1  # `AssignmentResult.levels` entry of a key that needed the fallback
LEVEL_BY_LEVEL = "level_by_level"
ITEM_BY_ITEM = "item_by_item"
RESOLUTIONS = (LEVEL_BY_LEVEL, ITEM_BY_ITEM)
# The group search's hypothesis pools (`decoding.diverse.HfSemantics` values): newer
# transformers' per-group pools, or transformers 4.26.0's one pool per example (official).
GROUP_SEARCHES = ("per_group", "4.26")
_MAX_SUFFIX = 10_000_000
_FALLBACK_WORDS = 8  # words of a fallback text kept as the base of a fallback ID


@dataclasses.dataclass(frozen=True)
class EscalationLevel:
  """Decoding settings of one level (HF `generate` lengths count the decoder start token).

  Attributes:
    index: level number, 0-based.
    diversity_penalty: HF Hamming diversity penalty.
    min_length: HF `min_length` (EOS is banned for the first `min_length - 1` new tokens).
    max_length: HF `max_length` (at most `max_length - 1` new tokens, EOS included).
  """
  index: int
  diversity_penalty: float
  min_length: int
  max_length: int

  @property
  def min_new_tokens(self) -> int:
    return self.min_length - 1

  @property
  def max_new_tokens(self) -> int:
    return self.max_length - 1


@dataclasses.dataclass(frozen=True)
class EscalationSchedule:
  """Official escalation: penalties `penalty_start + i * penalty_step` for i < num_penalties, then
  `min_length += length_step`, `max_length = min_length + window`, penalties restart.

  Attributes:
    num_penalties: penalties per length (official: 9, i.e. 1..9).
    penalty_start, penalty_step: official 1.0 and 1.0.
    first_min_length: official 1.
    length_step: official 10.
    window: max_length - min_length; official 10.
    max_levels: levels tried before the fallback (the official loop has no cap).
  """
  num_penalties: int = 9
  penalty_start: float = 1.0
  penalty_step: float = 1.0
  first_min_length: int = 1
  length_step: int = 10
  window: int = 10
  max_levels: int = 18

  def __post_init__(self):
    for name in ("num_penalties", "first_min_length", "window"):
      if getattr(self, name) < 1:
        raise ValueError(f"EscalationSchedule.{name} must be >= 1, got {getattr(self, name)}")
    if self.length_step < 0 or self.max_levels < 0:
      raise ValueError(f"EscalationSchedule: length_step and max_levels must be >= 0: {self}")

  def level(self, index: int) -> EscalationLevel:
    if not 0 <= index < self.max_levels:
      raise ValueError(f"level {index} outside 0..{self.max_levels - 1}")
    rnd, i = divmod(index, self.num_penalties)
    min_length = self.first_min_length + rnd * self.length_step
    return EscalationLevel(index=index, diversity_penalty=self.penalty_start + i * self.penalty_step,
                           min_length=min_length, max_length=min_length + self.window)

  def levels(self) -> list[EscalationLevel]:
    return [self.level(i) for i in range(self.max_levels)]


@dataclasses.dataclass(frozen=True)
class IdAssignment:
  """How generated IDs are resolved and normalised (gin: `uniqueness.IdAssignment`).

  Attributes:
    resolution: 'level_by_level' or 'item_by_item' (the official loop's result); see the module doc.
    keep_case: normalise candidates keeping case (the official rule; the default, chosen by the
      ablation in `bench/id_case_ablation.py`: fewer collisions, no more tokens per ID with a
      dataset vocabulary, equal or better training) instead of lowercasing them; also applies
      to the fixed 'title' IDs (`id_schemes`).
    group_search: the generator's diverse beam search semantics, one of `GROUP_SEARCHES`:
      'per_group' (newer transformers, each group keeps its own best beams) or '4.26' (the
      official code's transformers 4.26.0: one hypothesis pool per example shared by the groups).
    extractive: the generator emits only tokens of the item's own input text (plus EOS), so an ID
      is made of the item's own pieces (not the official behaviour, which is unconstrained). An
      under-trained generator then still writes IDs that differ across items: with the
      foundation recipe's 500-step bootstrap and T5's vocabulary, unconstrained decoding left
      about 70% of 44k items colliding after level 0 and barely fewer after levels 1 and 2.
  """
  resolution: str = LEVEL_BY_LEVEL
  keep_case: bool = True
  group_search: str = "per_group"
  extractive: bool = False

  def __post_init__(self):
    check_resolution(self.resolution)
    if self.group_search not in GROUP_SEARCHES:
      raise ValueError(f"unknown group_search {self.group_search!r}; known: {GROUP_SEARCHES}")


def check_resolution(resolution: str) -> None:
  if resolution not in RESOLUTIONS:
    raise ValueError(f"unknown ID resolution {resolution!r}; known: {RESOLUTIONS}")


class IdNamespace:
  """The IDs taken so far in one namespace (items and users have separate ones).

  Args:
    token_key: string -> hashable token sequence (e.g. the tokenizer's ids as a tuple); two
      strings with the same key collide. None: strings only.
  """

  def __init__(self, token_key: Optional[Callable[[str], Hashable]] = None):
    self._token_key = token_key
    self._strings: set[str] = set()
    self._tokens: set[Hashable] = set()
    self._keys: dict[str, Hashable] = {}  # memo of token_key, shared with copies

  def __len__(self) -> int:
    return len(self._strings)

  def _key(self, text: str) -> Hashable:
    if text not in self._keys:
      self._keys[text] = self._token_key(text)
    return self._keys[text]

  def is_free(self, text: str) -> bool:
    if not text or text in self._strings:
      return False
    return self._token_key is None or self._key(text) not in self._tokens

  def try_take(self, text: str) -> bool:
    """Takes `text` when free; returns whether it did."""
    if not self.is_free(text):
      return False
    self._strings.add(text)
    if self._token_key is not None:
      self._tokens.add(self._key(text))
    return True

  def copy(self) -> IdNamespace:
    """An independent namespace with the same IDs taken."""
    other = IdNamespace(self._token_key)
    other._strings, other._tokens, other._keys = set(self._strings), set(self._tokens), self._keys
    return other


@dataclasses.dataclass(frozen=True)
class AssignmentResult:
  """Attributes:
    ids: one normalised, non-empty, unique ID per key.
    levels: int [num_keys]: escalation level at which each key got its ID (FALLBACK_LEVEL = fallback).
  """
  ids: list[str]
  levels: np.ndarray

  @property
  def num_fallbacks(self) -> int:
    return int(np.sum(self.levels == FALLBACK_LEVEL))

  def level_histogram(self) -> dict[str, int]:
    """{"0": n, "1": n, ..., "fallback": n}, only levels that occur."""
    values, counts = np.unique(self.levels, return_counts=True)
    return {("fallback" if v == FALLBACK_LEVEL else str(int(v))): int(c) for v, c in zip(values, counts)}


# (keys to generate for [P], level) -> per key, its candidate strings best first (raw decodes).
CandidateFn = Callable[[np.ndarray, EscalationLevel], Sequence[Sequence[str]]]


def resolve_level(keys: Sequence[int], candidates: Sequence[Sequence[str]], namespace: IdNamespace,
                  keep_case: bool = False) -> tuple[dict[int, str], list[int]]:
  """One level of resolution: in the order of `keys`, each takes its best free candidate.

  Args:
    keys: pending keys, in resolution order.
    candidates: per key, raw candidate strings best first (normalised here, see `normalize_id`).
    namespace: taken IDs; updated in place.
    keep_case: `normalize_id` keeps case.
  Returns:
    ({key: ID} for the keys that got one, keys still pending in the same order).
  """
  if len(keys) != len(candidates):
    raise ValueError(f"resolve_level: {len(candidates)} candidate lists for {len(keys)} keys")
  done: dict[int, str] = {}
  pending: list[int] = []
  for key, cands in zip(keys, candidates):
    for cand in cands:
      text = normalize_id(cand, keep_case)
      if namespace.try_take(text):
        done[key] = text
        break
    else:
      pending.append(key)
  return done, pending


def fallback_id(base: str, namespace: IdNamespace, keep_case: bool = False) -> str:
  """`base` if free, else `base n` for the smallest n >= 2 that is free (taken in `namespace`)."""
  base = normalize_id(base, keep_case) or "id"
  if namespace.try_take(base):
    return base
  for n in range(2, _MAX_SUFFIX):
    text = f"{base} {n}"
    if namespace.try_take(text):
      return text
  raise RuntimeError(f"fallback_id: no free ID of the form {base!r} + number")  # unreachable in practice


def assign_unique(num_keys: int, candidate_fn: CandidateFn, schedule: EscalationSchedule,
                  namespace: Optional[IdNamespace] = None,
                  fallback_texts: Optional[Sequence[str]] = None,
                  on_level: Optional[Callable[[EscalationLevel, int, int], None]] = None, *,
                  resolution: str = LEVEL_BY_LEVEL, keep_case: bool = False) -> AssignmentResult:
  """Unique IDs for keys 0..num_keys-1 by escalation (see the module docstring).

  Args:
    num_keys: number of keys (items or users).
    candidate_fn: (keys int [P] ascending, level) -> P candidate lists, best first.
    schedule: escalation levels; after `schedule.max_levels` levels the fallback runs (the
      official loop has no cap).
    namespace: taken IDs (default: a fresh string-only one); updated in place.
    fallback_texts: per key, text to base the fallback on when the key never produced a
      non-empty candidate (default "id").
    on_level: called with (level, keys tried, keys resolved) after each level (level_by_level)
      or, for every level reached, once all keys are resolved (item_by_item); logging/progress.
    resolution: 'level_by_level' or 'item_by_item' (`RESOLUTIONS`).
    keep_case: candidates are normalised with case kept (the official rule), not lowercased.
  Returns:
    AssignmentResult. level_by_level makes at most `max_levels` candidate_fn calls; item_by_item
    decodes each (key, level) pair at most once, in one call per level per walk.
  """
  check_resolution(resolution)
  namespace = IdNamespace() if namespace is None else namespace
  if fallback_texts is not None and len(fallback_texts) != num_keys:
    raise ValueError(f"assign_unique: {len(fallback_texts)} fallback texts for {num_keys} keys")

  def fallback(key: int, first: Optional[str], ns: IdNamespace) -> str:
    base = first or (" ".join(normalize_id(fallback_texts[key], keep_case).split()[:_FALLBACK_WORDS])
                     if fallback_texts is not None else "")
    return fallback_id(base, ns, keep_case)

  run = _level_by_level if resolution == LEVEL_BY_LEVEL else _item_by_item
  ids, levels = run(num_keys, candidate_fn, schedule, namespace, fallback, on_level, keep_case)
  return AssignmentResult(ids=ids, levels=levels)


def _level_by_level(num_keys, candidate_fn, schedule, namespace, fallback, on_level, keep_case):
  """(ids, levels) of the level-by-level resolution; fallbacks after the last level."""
  ids: list[Optional[str]] = [None] * num_keys
  levels = np.full((num_keys,), FALLBACK_LEVEL, np.int32)
  first_cand: dict[int, str] = {}
  pending = list(range(num_keys))
  for level in schedule.levels():
    if not pending:
      break
    cands = candidate_fn(np.asarray(pending, np.int64), level)
    for key, cl in zip(pending, cands):
      if key not in first_cand:
        best = next((t for t in (normalize_id(c, keep_case) for c in cl) if t), None)
        if best is not None:
          first_cand[key] = best
    done, still = resolve_level(pending, cands, namespace, keep_case)
    for key, text in done.items():
      ids[key] = text
      levels[key] = level.index
    if on_level is not None:
      on_level(level, len(pending), len(done))
    pending = still
  if pending:
    log.info("assign_unique: %d of %d keys need the fallback after %d levels", len(pending), num_keys,
             schedule.max_levels)
  for key in pending:
    ids[key] = fallback(key, first_cand.get(key), namespace)
  return ids, levels


def _item_by_item(num_keys, candidate_fn, schedule, namespace, fallback, on_level, keep_case):
  """(ids, levels) of the official sequential loop, decoded in batches (see the module doc)."""
  known: list[list[list[str]]] = [[] for _ in range(num_keys)]  # per key, per decoded level: normalised
  calls = 0

  def decode(keys_by_level: dict[int, list[int]]) -> None:
    nonlocal calls
    for index in sorted(keys_by_level):
      keys = keys_by_level[index]
      cands = candidate_fn(np.asarray(keys, np.int64), schedule.level(index))
      calls += 1
      if len(cands) != len(keys):
        raise ValueError(f"assign_unique: {len(cands)} candidate lists for {len(keys)} keys")
      for key, cl in zip(keys, cands):
        known[key].append([normalize_id(c, keep_case) for c in cl])

  ids: list[Optional[str]] = [None] * num_keys
  levels = np.full((num_keys,), FALLBACK_LEVEL, np.int32)
  if num_keys and schedule.max_levels:
    decode({0: list(range(num_keys))})
  start, exact, walks = 0, namespace.copy(), 0   # `exact`: the IDs of keys < start, final
  while True:
    walks += 1
    ns, blocked, restart = exact.copy(), {}, None
    for key in range(start, num_keys):
      found = next(((lvl, t) for lvl, cl in enumerate(known[key]) for t in cl if ns.is_free(t)), None)
      if found is not None:
        levels[key], ids[key] = found
        ns.try_take(ids[key])
      elif len(known[key]) < schedule.max_levels:   # certainly needs its next level
        if restart is None:
          restart = (key, ns.copy())
        blocked.setdefault(len(known[key]), []).append(key)
      else:
        levels[key] = FALLBACK_LEVEL
        ids[key] = fallback(key, next((t for cl in known[key] for t in cl if t), None), ns)  # takes it
    if not blocked:
      break
    decode(blocked)
    start, exact = restart
  for text in ids:  # the caller's namespace takes the final IDs, in key order
    if not namespace.try_take(text):
      raise RuntimeError(f"assign_unique: ID {text!r} was taken twice")  # unreachable
  log.info("assign_unique (item by item): %d keys, %d candidate_fn calls, %d walks, %d fallbacks",
           num_keys, calls, walks, int(np.sum(levels == FALLBACK_LEVEL)))
  if on_level is not None:
    for index in range(max((len(k) for k in known), default=0)):
      on_level(schedule.level(index), sum(len(k) > index for k in known), int(np.sum(levels == index)))
  return ids, levels
