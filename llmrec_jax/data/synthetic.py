"""A small synthetic catalogue with learnable sequential structure (the offline default for `make demo`).

Items belong to latent topics; each topic has its own vocabulary of made-up title words, its own
brand and category path. A user starts in a random topic and walks a per-topic item chain (next
item = the chain successor with probability `chain_prob`), drifting to the neighbouring topic with
probability `drift` per step (a Markov chain over topics). So both the item's text and the user's
recent history predict the next item. Fully determined by the seed.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib

import numpy as np

from llmrec_jax.data.records import RecData
from llmrec_jax.data.sources import P5_ITEMS, P5_SEQUENCES

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "kr", "st", "tr")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ou")
_KINDS = ("Cream", "Serum", "Lotion", "Brush", "Kit", "Gel", "Spray", "Mask", "Oil", "Balm")


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  """Sizes and dynamics of the synthetic dataset (see the module docstring)."""
  num_users: int = 300
  num_items: int = 200
  num_topics: int = 20
  min_len: int = 5
  max_len: int = 20
  words_per_topic: int = 8
  drift: float = 0.15
  chain_prob: float = 0.8

  def __post_init__(self):
    if min(self.num_users, self.num_items, self.num_topics, self.words_per_topic) < 1:
      raise ValueError(f"SyntheticConfig: sizes must be positive: {self}")
    if self.num_items < self.num_topics:
      raise ValueError(f"SyntheticConfig: num_items ({self.num_items}) < num_topics ({self.num_topics})")
    if not 3 <= self.min_len <= self.max_len <= self.num_items:
      raise ValueError(f"SyntheticConfig: need 3 <= min_len <= max_len <= num_items: {self}")
    if not (0.0 <= self.drift <= 1.0 and 0.0 <= self.chain_prob <= 1.0):
      raise ValueError(f"SyntheticConfig: drift and chain_prob must be probabilities: {self}")


def _words(rng: np.random.Generator, count: int) -> list[str]:
  out: dict[str, None] = {}
  while len(out) < count:
    n = rng.integers(2, 4)
    out["".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(n))] = None
  return list(out)


def _catalogue(cfg: SyntheticConfig, rng: np.random.Generator):
  """(topic of each item [N], chain order of each topic, metadata of each item)."""
  words = _words(rng, cfg.num_topics * (cfg.words_per_topic + 3))
  topic_N = rng.permutation(np.arange(cfg.num_items) % cfg.num_topics)
  chains = [rng.permutation(np.flatnonzero(topic_N == t)) for t in range(cfg.num_topics)]
  meta = [None] * cfg.num_items
  for t in range(cfg.num_topics):
    w = words[t * (cfg.words_per_topic + 3):(t + 1) * (cfg.words_per_topic + 3)]
    brand, category, sub, vocab = w[0].capitalize(), w[1].capitalize(), w[2].capitalize(), w[3:]
    for k, item in enumerate(chains[t]):
      picked = rng.choice(vocab, size=min(3, len(vocab)), replace=False)
      title = f"{brand} {' '.join(picked)} {_KINDS[rng.integers(len(_KINDS))]} No. {k + 1}"
      meta[item] = {"title": title, "brand": brand, "categories": [["Synthetic", category, sub]]}
  return topic_N, chains, meta


def _walk(cfg: SyntheticConfig, rng: np.random.Generator, topic_N, chains, pos_in_chain) -> list[int]:
  length = int(rng.integers(cfg.min_len, cfg.max_len + 1))
  seen: set[int] = set()
  topic = int(rng.integers(cfg.num_topics))
  current = int(rng.choice(chains[topic]))
  seq = [current]
  seen.add(current)
  while len(seq) < length:
    if rng.random() < cfg.drift:
      topic = (topic + (1 if rng.random() < 0.5 else -1)) % cfg.num_topics
    chain = chains[topic]
    if all(int(it) in seen for it in chain):   # topic exhausted: move on
      topic = (topic + 1) % cfg.num_topics
      continue
    if topic_N[current] == topic and rng.random() < cfg.chain_prob:
      k = pos_in_chain[current]
      candidates = [int(chain[(k + j) % len(chain)]) for j in range(1, len(chain) + 1)]
    else:
      candidates = [int(it) for it in rng.permutation(chain)]
    current = next(it for it in candidates if it not in seen)
    seq.append(current)
    seen.add(current)
  return seq


def make_synthetic(num_users: int = 300, num_items: int = 200, seed: int = 0, *, num_topics: int = 20,
                   min_len: int = 5, max_len: int = 20, **kwargs) -> RecData:
  """A deterministic synthetic dataset named "synthetic" (see the module docstring).

  Args:
    num_users, num_items, num_topics, min_len, max_len: sizes; further `SyntheticConfig` fields via kwargs.
    seed: same seed, same dataset.
  Returns:
    RecData whose items are indexed by first appearance (so `write_p5` + `load_p5` round-trips exactly);
    items no user touched are left out, so `num_items` can be slightly below the requested number.
  """
  cfg = SyntheticConfig(num_users=num_users, num_items=num_items, num_topics=num_topics, min_len=min_len,
                        max_len=max_len, **kwargs)
  rng = np.random.default_rng(seed)
  topic_N, chains, meta = _catalogue(cfg, rng)
  pos_in_chain = {int(it): k for chain in chains for k, it in enumerate(chain)}
  walks = [_walk(cfg, rng, topic_N, chains, pos_in_chain) for _ in range(cfg.num_users)]
  used = list(dict.fromkeys(it for w in walks for it in w))
  new_index = {it: i for i, it in enumerate(used)}
  item_ids = tuple(f"I{it:05d}" for it in used)
  item_meta = tuple({**meta[it], "topic": int(topic_N[it])} for it in used)
  seqs = tuple(np.array([new_index[it] for it in w], dtype=np.int32) for w in walks)
  return RecData(name="synthetic", user_ids=tuple(f"U{u:05d}" for u in range(cfg.num_users)), item_ids=item_ids,
                 item_meta=item_meta, sequences=seqs)


def write_p5(data: RecData, out_dir: str | os.PathLike) -> pathlib.Path:
  """Writes `data` in the P5 layout (`user_sequence.txt`, plus `items.jsonl` unless no item has metadata).

  Returns:
    out_dir as a Path (created if needed).
  """
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  for raw in data.user_ids + data.item_ids:
    if not raw or any(c.isspace() for c in raw):
      raise ValueError(f"write_p5: id {raw!r} is empty or contains whitespace")
  with open(out / P5_SEQUENCES, "w", encoding="utf-8") as f:
    for user, seq in zip(data.user_ids, data.sequences):
      f.write(" ".join([user] + [data.item_ids[i] for i in seq.tolist()]) + "\n")
  if any(data.item_meta):
    with open(out / P5_ITEMS, "w", encoding="utf-8") as f:
      for item, meta in zip(data.item_ids, data.item_meta):
        if "item_id" in meta:
          raise ValueError(f"write_p5: metadata of {item!r} has a reserved 'item_id' key")
        f.write(json.dumps({"item_id": item, **meta}, ensure_ascii=False) + "\n")
  return out
