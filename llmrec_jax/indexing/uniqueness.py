"""Unique textual IDs by escalating diverse beam search, resolved deterministically in batches.

The official IDGenRec loop (`indexing.py:generate_item_id_from_text`) works one item at a time: run
diverse beam search (10 groups of 1 beam) with diversity penalty 1, 2, ..., 9; after 9 the
minimum length grows by 10 tokens and the penalty restarts; the item takes its best candidate
(normalised by `normalize_id`) that no earlier item has taken.

Here the same escalation runs **level by level over all pending keys at once**: at level l the
generator produces candidates for every key still pending (in big fixed-shape batches), then keys
are resolved in key order; each takes its best free candidate, the others go on to level l + 1.
The outcome depends only on each key's candidates per level, never on how they were batched.
A candidate is free when neither its normalised string nor its token sequence is taken (two
strings can tokenize alike, e.g. through <unk>), and it is never empty. After `max_levels` levels
the remaining keys get a deterministic fallback: their best candidate (or a given fallback text)
plus the smallest number `n >= 2` that makes it free. No JAX here.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Hashable, Optional, Sequence

import numpy as np

from llmrec_jax.data.id_tables import normalize_id

log = logging.getLogger(__name__)

FALLBACK_LEVEL = -1  # `AssignmentResult.levels` entry of a key that needed the fallback
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

  def __len__(self) -> int:
    return len(self._strings)

  def is_free(self, text: str) -> bool:
    if not text or text in self._strings:
      return False
    return self._token_key is None or self._token_key(text) not in self._tokens

  def try_take(self, text: str) -> bool:
    """Takes `text` when free; returns whether it did."""
    if not self.is_free(text):
      return False
    self._strings.add(text)
    if self._token_key is not None:
      self._tokens.add(self._token_key(text))
    return True


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


def resolve_level(keys: Sequence[int], candidates: Sequence[Sequence[str]], namespace: IdNamespace
                  ) -> tuple[dict[int, str], list[int]]:
  """One level of resolution: in the order of `keys`, each takes its best free candidate.

  Args:
    keys: pending keys, in resolution order.
    candidates: per key, raw candidate strings best first (normalised here).
    namespace: taken IDs; updated in place.
  Returns:
    ({key: ID} for the keys that got one, keys still pending in the same order).
  """
  if len(keys) != len(candidates):
    raise ValueError(f"resolve_level: {len(candidates)} candidate lists for {len(keys)} keys")
  done: dict[int, str] = {}
  pending: list[int] = []
  for key, cands in zip(keys, candidates):
    for cand in cands:
      text = normalize_id(cand)
      if namespace.try_take(text):
        done[key] = text
        break
    else:
      pending.append(key)
  return done, pending


def fallback_id(base: str, namespace: IdNamespace) -> str:
  """`base` if free, else `base n` for the smallest n >= 2 that is free (taken in `namespace`)."""
  base = normalize_id(base) or "id"
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
                  on_level: Optional[Callable[[EscalationLevel, int, int], None]] = None
                  ) -> AssignmentResult:
  """Unique IDs for keys 0..num_keys-1 by level-by-level escalation (see the module docstring).

  Args:
    num_keys: number of keys (items or users).
    candidate_fn: (pending keys int [P] ascending, level) -> P candidate lists, best first.
    schedule: escalation levels; after `schedule.max_levels` levels the fallback runs.
    namespace: taken IDs (default: a fresh string-only one); updated in place.
    fallback_texts: per key, text to base the fallback on when the key never produced a
      non-empty candidate (default "id").
    on_level: called after each level with (level, keys tried, keys resolved) (logging/progress).
  Returns:
    AssignmentResult; terminates after at most `max_levels` candidate_fn calls.
  """
  namespace = IdNamespace() if namespace is None else namespace
  if fallback_texts is not None and len(fallback_texts) != num_keys:
    raise ValueError(f"assign_unique: {len(fallback_texts)} fallback texts for {num_keys} keys")
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
        best = next((t for t in (normalize_id(c) for c in cl) if t), None)
        if best is not None:
          first_cand[key] = best
    done, still = resolve_level(pending, cands, namespace)
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
    base = first_cand.get(key) or (
        " ".join(normalize_id(fallback_texts[key]).split()[:_FALLBACK_WORDS]) if fallback_texts is not None else "")
    ids[key] = fallback_id(base, namespace)
  return AssignmentResult(ids=list(ids), levels=levels)
