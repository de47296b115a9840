"""Beam search vs brute force on toy RNN decoders (exhaustive regimes), trie validity,
exclusion, and sharded == unsharded."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from llmrec_jax.decoding import beam_search as bs
from llmrec_jax.decoding import trie as trie_lib

EOS = 1


def _normaliser(mode, alpha, lp):
  return lambda n: np.asarray(bs.length_penalty_divisor(n, bs.LengthNormalization(mode), alpha, lp))


def _run(model, enc, k, length, **kw):
  fn = functools.partial(bs.beam_search, eos_id=EOS, num_decodes=k, max_decode_len=length, **kw)
  inputs = jnp.zeros((enc.shape[0], length), jnp.int32)
  seqs, scores = jax.jit(lambda e: fn(inputs, model.init_cache(e), model.tokens_to_logits))(enc)
  return np.asarray(seqs), np.asarray(scores)


def _brute(model, enc_H, seqs, norm):
  lengths = np.array([len(s) for s in seqs])
  width = max(lengths)
  padded = np.array([s + [0] * (width - len(s)) for s in seqs], np.int32)
  return model.log_prob(enc_H, padded, lengths) / norm(lengths)


def _seq_list(row_L):
  row = list(map(int, row_L))
  return row[:row.index(EOS) + 1] if EOS in row else row


def _check_exhaustive(model, enc, seqs_BxKxL, scores_BxK, candidates_per_b, norm):
  """Returned (desc) == brute-force top of all candidates, slot by slot, up to float noise."""
  for b in range(enc.shape[0]):
    cands = candidates_per_b[b]
    brute = _brute(model, enc[b], cands, norm)
    order = np.argsort(-brute, kind="stable")
    got_scores = scores_BxK[b, ::-1]
    got = [_seq_list(r) for r in seqs_BxKxL[b, ::-1]]
    n = min(len(cands), len(got))
    np.testing.assert_allclose(got_scores[:n], brute[order[:n]], rtol=1e-4, atol=1e-4)
    assert np.all(np.isneginf(got_scores[n:]))
    lookup = {tuple(c): s for c, s in zip(cands, brute)}
    for s, sc in zip(got[:n], got_scores[:n]):
      np.testing.assert_allclose(lookup[tuple(s)], sc, rtol=1e-4, atol=1e-4)
    assert len({tuple(s) for s in got[:n]}) == n


@pytest.mark.parametrize("mode,alpha,lp", [("none", 0.0, 1.0), ("t5x", 0.6, 1.0), ("hf", 0.0, 1.0)])
def test_unconstrained_equals_brute_force_length3(toy, helpers, mode, alpha, lp):
  vocab, length, k = 4, 3, 16  # 13 sequences; <= 9 live prefixes, so K=16 is exhaustive
  model = toy(seed=1, vocab=vocab)
  enc = model.encode(1, 3)
  seqs, scores = _run(model, enc, k, length, alpha=alpha, length_normalization=mode,
                      length_penalty=lp)
  assert seqs.shape == (3, k, length) and scores.shape == (3, k)
  fin = np.where(np.isfinite(scores), scores, -1e30)
  assert np.all(np.diff(fin, axis=1) >= 0), "T5X order: ascending, best last"
  cands = helpers["all_sequences"](vocab, length)
  _check_exhaustive(model, enc, seqs, scores, [cands] * 3, _normaliser(mode, alpha, lp))


@pytest.fixture(scope="module")
def catalogue(helpers):
  rng = np.random.default_rng(7)
  items = helpers["random_catalogue"](rng, 12, vocab=7, max_len=4)
  return items, trie_lib.ItemTrie.from_sequences(items, eos_id=EOS, vocab_size=7)


@pytest.mark.parametrize("mode,alpha", [("none", 0.0), ("t5x", 0.6)])
def test_constrained_exhaustive_ranking_equals_brute_force(toy, catalogue, mode, alpha):
  items, trie = catalogue
  model = toy(seed=2, vocab=7)
  enc = model.encode(2, 3)
  k, length = len(items), 6
  fn = functools.partial(bs.constrained_beam_search, eos_id=EOS, num_decodes=k,
                         max_decode_len=length, alpha=alpha, length_normalization=mode,
                         return_item_indices=True)
  inputs = jnp.zeros((3, length), jnp.int32)
  seqs, scores, got_items = jax.jit(
      lambda e, t: fn(inputs, model.init_cache(e), model.tokens_to_logits, trie=t))(
          enc, trie.arrays)
  seqs, scores = np.asarray(seqs), np.asarray(scores)
  _check_exhaustive(model, enc, seqs, scores, [items] * 3, _normaliser(mode, alpha, 1.0))
  np.testing.assert_array_equal(np.asarray(got_items), trie.items_from_sequences(seqs))
  assert sorted(np.asarray(got_items)[0].tolist()) == list(range(len(items)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_constrained_returns_only_complete_items(toy, helpers, seed):
  rng = np.random.default_rng(seed)
  vocab = int(rng.integers(5, 12))
  items = helpers["random_catalogue"](rng, 40, vocab=vocab, max_len=5)
  trie = trie_lib.ItemTrie.from_sequences(items, eos_id=EOS, vocab_size=vocab)
  model = toy(seed=10 + seed, vocab=vocab)
  enc = model.encode(seed, 4)
  k, length = 5, 7
  inputs = jnp.zeros((4, length), jnp.int32)
  seqs, scores = jax.jit(lambda e: bs.constrained_beam_search(
      inputs, model.init_cache(e), model.tokens_to_logits, EOS, k, 0.6, length,
      trie=trie))(enc)
  seqs, scores = np.asarray(seqs), np.asarray(scores)
  got = trie.items_from_sequences(seqs)
  assert (got >= 0).all(), "every decode must be a complete item"
  assert all(len(set(r)) == k for r in got.tolist())
  norm = _normaliser("t5x", 0.6, 1.0)
  for b in range(4):
    brute = _brute(model, enc[b], items, norm)
    np.testing.assert_allclose(scores[b], brute[got[b]], rtol=1e-4, atol=1e-4)
    assert scores[b, -1] <= brute.max() + 1e-5
    assert np.all(np.diff(scores[b]) >= 0)


def test_excluded_items_never_appear(toy, catalogue):
  items, trie = catalogue
  model = toy(seed=3, vocab=7)
  b, k, length = 3, len(items), 6
  enc = model.encode(3, b)
  rng = np.random.default_rng(3)
  excluded = np.full((b, 5), -1, np.int32)
  for i in range(b):
    excluded[i, :i + 3] = rng.choice(len(items), size=i + 3, replace=False)
  inputs = jnp.zeros((b, length), jnp.int32)
  seqs, scores, got = jax.jit(lambda e, x: bs.constrained_beam_search(
      inputs, model.init_cache(e), model.tokens_to_logits, EOS, k, 0.0, length, trie=trie,
      excluded_items=x, return_item_indices=True, length_normalization="none"))(enc, excluded)
  got, scores, seqs = np.asarray(got), np.asarray(scores), np.asarray(seqs)
  for i in range(b):
    banned = set(excluded[i][excluded[i] >= 0].tolist())
    kept = [j for j in range(len(items)) if j not in banned]
    assert not banned & set(got[i].tolist())
    # K >= items left: exactly the remaining items, in brute-force order.
    _check_exhaustive(model, enc[i:i + 1], seqs[i:i + 1], scores[i:i + 1],
                      [[items[j] for j in kept]], _normaliser("none", 0.0, 1.0))


def test_sharded_batch_equals_unsharded(toy, catalogue):
  items, trie = catalogue
  model = toy(seed=4, vocab=7)
  b, k, length = 8, 4, 6
  enc = model.encode(4, b)
  inputs = jnp.zeros((b, length), jnp.int32)

  def run(e, x):
    return bs.constrained_beam_search(inputs, model.init_cache(e), model.tokens_to_logits, EOS,
                                      k, 0.6, length, trie=trie, excluded_items=x)

  excluded = jnp.asarray(np.random.default_rng(0).integers(-1, len(items), size=(b, 3)), jnp.int32)
  ref = jax.jit(run)(enc, excluded)
  mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
  shard = NamedSharding(mesh, P("data"))
  enc_s, excluded_s = jax.device_put(enc, shard), jax.device_put(excluded, shard)
  with jax.transfer_guard("disallow"):  # what eval loops run under: no hidden host copies
    out = jax.jit(run, in_shardings=(shard, shard))(enc_s, excluded_s)
  np.testing.assert_array_equal(np.asarray(out[0]), np.asarray(ref[0]))
  np.testing.assert_allclose(np.asarray(out[1]), np.asarray(ref[1]), rtol=1e-6)


def test_bad_length_normalization_fails_loudly(toy):
  model = toy(seed=0, vocab=4)
  with pytest.raises(ValueError):
    bs.beam_search(jnp.zeros((1, 3), jnp.int32), model.init_cache(model.encode(0, 1)),
                   model.tokens_to_logits, EOS, length_normalization="hf_typo")


@pytest.mark.parametrize("search", ["t5x", "hf"])
def test_logits_over_token_subset_equal_full_vocab_masked_outside(toy, helpers, search):
  from llmrec_jax.decoding import diverse
  rng = np.random.default_rng(11)
  items = helpers["random_catalogue"](rng, 20, vocab=8, max_len=4)  # tokens 1..7 of 12
  trie = trie_lib.ItemTrie.from_sequences(items, vocab_size=12)
  compact = trie.compact()
  ids = jnp.asarray(trie.token_ids)
  assert compact.vocab_size == len(trie.token_ids) < 12
  model = toy(seed=12, vocab=12)
  enc = model.encode(12, 2)
  inside = jnp.zeros(12, bool).at[ids].set(True)

  def full(ds):
    logits, cache = model.tokens_to_logits(ds)
    return jnp.where(inside[None, :], logits, -jnp.inf), cache

  def sub(ds):
    logits, cache = model.tokens_to_logits(ds)
    return logits[:, ids], cache

  fn = bs.constrained_beam_search if search == "t5x" else diverse.hf_beam_search
  inputs = jnp.zeros((2, 6), jnp.int32)
  run = lambda t2l, t, **kw: jax.jit(lambda e: fn(inputs, model.init_cache(e), t2l, EOS, 4,
                                                   trie=t, **kw))(enc)
  want = run(full, trie)
  got = run(sub, compact, column_token_ids=ids)
  np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(want[0]))
  np.testing.assert_allclose(np.asarray(got[1]), np.asarray(want[1]), rtol=1e-5)
  assert (trie.items_from_sequences(np.asarray(got[0])) >= 0).all()


def test_cache_offset_one_scanned_layout_gives_same_result(toy, catalogue):
  # Scanned layers keep the cache as [layers, batch, ...]: cache_offset=1 must expand and
  # gather beams along axis 1.
  items, trie = catalogue
  model = toy(seed=6, vocab=7)
  enc = model.encode(6, 3)
  inputs = jnp.zeros((3, 6), jnp.int32)

  def scanned(cache, fn):
    return {"layer": {"h": fn(cache["layer"]["h"]), "cache_index": cache["layer"]["cache_index"]}}

  def scanned_t2l(ds):
    logits, new = model.tokens_to_logits(ds.replace(cache=scanned(ds.cache, lambda h: h[0])))
    return logits, scanned(new, lambda h: h[None])

  def run(e, offset):
    cache = model.init_cache(e)
    t2l = model.tokens_to_logits
    if offset:
      cache = scanned(cache, lambda h: h[None])
      t2l = scanned_t2l
    return bs.constrained_beam_search(inputs, cache, t2l, EOS, 4, 0.6, 6, cache_offset=offset,
                                      trie=trie)

  want = jax.jit(lambda e: run(e, 0))(enc)
  got = jax.jit(lambda e: run(e, 1))(enc)
  np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(want[0]))
  np.testing.assert_allclose(np.asarray(got[1]), np.asarray(want[1]), rtol=1e-6)


def test_decode_length_shorter_than_longest_item_fails_loudly(toy, catalogue):
  from llmrec_jax.decoding import diverse
  _, trie = catalogue
  model = toy(seed=0, vocab=7)
  short = jnp.zeros((1, trie.max_len - 1), jnp.int32)
  cache = model.init_cache(model.encode(0, 1))
  for fn in (bs.constrained_beam_search, diverse.hf_beam_search):
    with pytest.raises(ValueError, match="longest item"):
      fn(short, cache, model.tokens_to_logits, EOS, 2, trie=trie)


def test_exclusion_equals_search_over_a_per_user_trie(toy, helpers):
  # IDGenRec's filtered evaluation builds one trie per user without the seen items; pruning
  # fully-excluded subtrees must give the very same beams (here K < items, not exhaustive).
  rng = np.random.default_rng(13)
  items = helpers["random_catalogue"](rng, 30, vocab=6, max_len=4)
  trie = trie_lib.ItemTrie.from_sequences(items, vocab_size=6)
  model = toy(seed=13, vocab=6)
  b, k, length = 2, 3, 6
  enc = model.encode(13, b)
  inputs = jnp.zeros((b, length), jnp.int32)
  excluded = np.full((b, 12), -1, np.int32)
  for i in range(b):  # a whole first-token subtree plus a few random items
    first = items[i][0]
    sub = [j for j, s in enumerate(items) if s[0] == first][:9]
    excluded[i, :len(sub) + 3] = sub + list(rng.integers(0, len(items), size=3))
  run = jax.jit(lambda e, x, t: bs.constrained_beam_search(
      inputs[:e.shape[0]], model.init_cache(e), model.tokens_to_logits, EOS, k, 0.6, length,
      trie=t, excluded_items=x))
  seqs, scores = run(enc, excluded, trie.arrays)
  for i in range(b):
    banned = set(excluded[i].tolist()) - {-1}
    own = trie_lib.ItemTrie.from_sequences([s for j, s in enumerate(items) if j not in banned],
                                           vocab_size=6)
    want = run(enc[i:i + 1], None, own.arrays)
    np.testing.assert_array_equal(np.asarray(seqs[i]), np.asarray(want[0][0]))
    np.testing.assert_allclose(np.asarray(scores[i]), np.asarray(want[1][0]), rtol=1e-6)
