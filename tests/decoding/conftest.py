"""Toy decoders for the decoding tests: a tiny RNN whose logits depend on the whole prefix
through a carried cache, plus brute-force scoring by re-running it over whole sequences."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest


class ToyRNN:
  """h_t = tanh(E[tok_t] + P[t] + h_{t-1} U); logits_t = 3 * h_t O. Cache: {'h', 'cache_index'}."""

  def __init__(self, seed: int, vocab: int, hidden: int = 8, max_len: int = 16):
    k = jax.random.split(jax.random.PRNGKey(seed), 5)
    self.vocab = vocab
    self.emb_VxH = jax.random.normal(k[0], (vocab, hidden))
    self.pos_LxH = jax.random.normal(k[1], (max_len + 1, hidden))
    self.u_HxH = jax.random.normal(k[2], (hidden, hidden)) / np.sqrt(hidden)
    self.out_HxV = jax.random.normal(k[3], (hidden, vocab))
    self.hidden = hidden

  def encode(self, seed: int, batch: int) -> jax.Array:
    return jax.random.normal(jax.random.PRNGKey(1000 + seed), (batch, self.hidden))

  def init_cache(self, enc_BxH):
    return {"layer": {"h": enc_BxH, "cache_index": jnp.array(0, jnp.int32)}}

  def cell(self, h, tok, pos):
    h = jnp.tanh(self.emb_VxH[tok] + self.pos_LxH[pos][None, :] + h @ self.u_HxH)
    return h, 3.0 * h @ self.out_HxV

  def tokens_to_logits(self, ds):
    c = ds.cache["layer"]
    h, logits = self.cell(c["h"], ds.cur_token[:, 0], ds.cur_index)
    return logits, {"layer": {"h": h, "cache_index": c["cache_index"] + 1}}

  def log_prob(self, enc_H, seqs_NxT, lengths_N):
    """Sum of log-probs of each sequence's first lengths_N tokens (BOS-fed); numpy float64."""
    emb, pos, u, out = (np.asarray(a, np.float64) for a in
                        (self.emb_VxH, self.pos_LxH, self.u_HxH, self.out_HxV))
    seqs_NxT = np.asarray(seqs_NxT)
    lengths_N = np.asarray(lengths_N)
    n, t = seqs_NxT.shape
    inp = np.concatenate([np.zeros((n, 1), np.int64), seqs_NxT[:, :-1]], axis=1)
    h = np.broadcast_to(np.asarray(enc_H, np.float64), (n, self.hidden))
    total = np.zeros(n)
    for p in range(t):
      h = np.tanh(emb[inp[:, p]] + pos[p][None, :] + h @ u)
      logits = 3.0 * h @ out
      m = logits.max(axis=1, keepdims=True)
      lse = m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))
      lp = logits[np.arange(n), seqs_NxT[:, p]] - lse
      total = total + np.where(p < lengths_N, lp, 0.0)
    return total


def np_next_logprobs(model, enc_H, prefix):
  """log p(. | prefix) of the toy model, prefix starting with the BOS slot (0); numpy float64."""
  emb, pos, u, out = (np.asarray(a, np.float64) for a in
                      (model.emb_VxH, model.pos_LxH, model.u_HxH, model.out_HxV))
  h = np.asarray(enc_H, np.float64)
  for p, tok in enumerate(prefix):
    h = np.tanh(emb[tok] + pos[p] + h @ u)
  logits = 3.0 * h @ out
  m = logits.max()
  return logits - m - np.log(np.exp(logits - m).sum())


def random_catalogue(rng, n_items, vocab, min_len=1, max_len=4, eos=1):
  """n_items distinct token sequences over tokens 2..vocab-1, each + EOS."""
  seen = set()
  while len(seen) < n_items:
    length = int(rng.integers(min_len, max_len + 1))
    seen.add(tuple(int(x) for x in rng.integers(2, vocab, size=length)) + (eos,))
  return [list(s) for s in sorted(seen, key=lambda s: rng.random())]


def all_sequences(vocab, max_len, eos=1):
  """Every EOS-terminated sequence of length <= max_len (EOS counted) over range(vocab)."""
  out = []
  other = [t for t in range(vocab) if t != eos]
  for n in range(max_len):
    out += [list(p) + [eos] for p in itertools.product(other, repeat=n)]
  return out


def pad(seqs, length):
  return np.array([s + [0] * (length - len(s)) for s in seqs], np.int32)


@pytest.fixture(scope="module")
def toy():
  return ToyRNN


@pytest.fixture(scope="module")
def helpers():
  return {"random_catalogue": random_catalogue, "all_sequences": all_sequences, "pad": pad,
          "np_next_logprobs": np_next_logprobs, "strip_eos": strip_eos,
          "run_group_search": run_group_search}


def strip_eos(row, eos: int = 1):
  """The row up to and including its first EOS, as ints."""
  row = list(map(int, row))
  return row[:row.index(eos) + 1] if eos in row else row


_COMPILED = {}


def run_group_search(model, enc, length, constraint=None, eos: int = 1, **kw):
  """`diverse.group_beam_search` under jit, compiled once per shape and options (the diversity
  penalty is a traced argument, so escalating it does not recompile)."""
  from llmrec_jax.decoding import diverse  # pylint: disable=g-import-not-at-top
  lam = kw.pop("diversity_penalty")
  key = (id(model), enc.shape, length, constraint is None, eos, tuple(sorted(kw.items())))
  if key not in _COMPILED:
    inputs = jnp.zeros((enc.shape[0], length), jnp.int32)
    _COMPILED[key] = jax.jit(lambda e, l, c: diverse.group_beam_search(
        inputs, model.init_cache(e), model.tokens_to_logits, eos, diversity_penalty=l,
        max_decode_len=length, constraint=c, **kw))
  return _COMPILED[key](enc, lam, constraint)
