"""Group (diverse) beam search (default 'per_group' pools) vs a line-by-line python transcription
of newer HF's group beam search semantics, lambda=0 == independent beam searches, large lambda
separates groups, sharding. The '4.26' pools: group_pool_test.py."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from llmrec_jax.decoding import beams
from llmrec_jax.decoding import diverse
from llmrec_jax.decoding import trie as trie_lib

EOS, PAD = 1, 0


def hf_reference(next_lp, vocab, groups, kg, lam, max_new, min_len, lp, early_stopping=False,
                 allowed=None):
  """Newer HF BeamSearchScorer/BeamHypotheses/Hamming semantics for one example, plain python:
  a pool and a done flag per group, live beams normalised by their new tokens.

  next_lp(prefix_with_bos) -> [V] log-probs. Returns per group a best-first list of
  (score, tokens) hypotheses (tokens without BOS).
  """
  k = groups * kg
  seqs = [[0] for _ in range(k)]
  run = [0.0 if j % kg == 0 else -np.inf for j in range(k)]
  hyps = [[] for _ in range(groups)]
  done = [False] * groups

  def add(g, score, seq):
    if not np.isfinite(score):
      return
    h = hyps[g]
    if len(h) < kg or score > min(s for s, _ in h):
      h.append((score, seq))
      if len(h) > kg:
        h.remove(min(h, key=lambda x: x[0]))

  for step in range(max_new):
    if all(done):
      break
    lps = [next_lp(s) for s in seqs]
    cur = []  # tokens picked at this step, in group order
    new_seqs, new_run = list(seqs), list(run)
    for g in range(groups):
      idx = range(g * kg, (g + 1) * kg)
      if done[g]:
        for j in idx:
          new_seqs[j], new_run[j] = seqs[j] + [PAD], 0.0
        cur += [PAD] * kg
        continue
      counts = np.bincount(np.asarray(cur, int), minlength=vocab)[:vocab] if cur else 0
      cands = []
      for jj, j in enumerate(idx):
        row = lps[j].copy()
        if len(seqs[j]) < min_len:
          row[EOS] = -np.inf
        if allowed is not None:
          ok = np.zeros(vocab, bool)
          ok[list(allowed(seqs[j][1:]))] = True
          row[~ok] = -np.inf
        row = row - lam * counts
        cands += [(run[j] + row[t], jj * vocab + t) for t in range(vocab)]
      cands.sort(key=lambda c: (-c[0], c[1]))
      top = cands[:2 * kg]
      nxt = []
      for rank, (val, flat) in enumerate(top):
        jj, t = divmod(flat, vocab)
        j = g * kg + jj
        if t == EOS:
          if rank < kg:
            add(g, val / (step + 1) ** lp, seqs[j][1:] + [EOS])
        else:
          nxt.append((val, j, t))
        if len(nxt) == kg:
          break
      for slot, (val, j, t) in zip(idx, nxt):
        new_seqs[slot], new_run[slot] = seqs[j] + [t], val
        cur.append(t)
      if len(hyps[g]) >= kg:
        best = top[0][0]
        worst = min(s for s, _ in hyps[g])
        if early_stopping is True:
          done[g] = True
        else:
          den = max_new if (early_stopping == "never" and lp > 0) else step + 1
          done[g] = worst >= best / den ** lp
    seqs, run = new_seqs, new_run
  for g in range(groups):
    if not done[g]:
      for j in range(g * kg, (g + 1) * kg):
        add(g, run[j] / (len(seqs[j]) - 1) ** lp, seqs[j][1:])
  return [sorted(h, key=lambda x: -x[0]) for h in hyps]


CASES = [
    dict(groups=3, kg=2, lam=0.7, max_new=5, min_len=2, lp=1.0, early=False, trie=False),
    dict(groups=4, kg=1, lam=1.5, max_new=6, min_len=0, lp=1.0, early=False, trie=True),
    dict(groups=2, kg=3, lam=0.3, max_new=4, min_len=3, lp=0.5, early="never", trie=False),
    dict(groups=2, kg=2, lam=0.5, max_new=5, min_len=1, lp=1.0, early=True, trie=True),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"G{c['groups']}xK{c['kg']}-{c['early']}")
def test_matches_hf_group_beam_search_semantics(toy, helpers, case):
  vocab, b = 7, 2
  model = toy(seed=21, vocab=vocab)
  enc = model.encode(21, b)
  kw = {}
  allowed = None
  if case["trie"]:
    rng = np.random.default_rng(3)
    items = helpers["random_catalogue"](rng, 25, vocab=vocab, max_len=4)
    trie = trie_lib.ItemTrie.from_sequences(items, vocab_size=vocab)
    kw["constraint"] = beams.TrieConstraint(trie.arrays)
    prefixes = {}
    for s in items:
      for d in range(len(s)):
        prefixes.setdefault(tuple(s[:d]), set()).add(s[d])
    allowed = lambda p: prefixes.get(tuple(p), set())
  res = helpers["run_group_search"](model, enc, case["max_new"], num_groups=case["groups"],
                                    beams_per_group=case["kg"], diversity_penalty=case["lam"],
                                    min_decode_len=case["min_len"], length_penalty=case["lp"],
                                    early_stopping=case["early"], **kw)
  seqs, scores = np.asarray(res.sequences_BxPxNxL), np.asarray(res.scores_BxPxN)
  for i in range(b):
    ref = hf_reference(functools.partial(helpers["np_next_logprobs"], model, enc[i]), vocab,
                       case["groups"], case["kg"], case["lam"], case["max_new"], case["min_len"],
                       case["lp"], case["early"], allowed)
    for g in range(case["groups"]):
      want = ref[g]
      got_s = scores[i, g]
      assert np.isfinite(got_s).sum() == len(want), (i, g)
      for j, (ws, wseq) in enumerate(want):
        np.testing.assert_allclose(got_s[j], ws, rtol=1e-4, atol=1e-4)
        assert helpers["strip_eos"](seqs[i, g, j]) == wseq, (i, g, j)
  # HF's pooled order.
  pooled, pscores, group = diverse.best_first(res)
  assert np.all(np.diff(np.where(np.isfinite(pscores), pscores, -1e30), axis=1) <= 0)
  np.testing.assert_array_equal(np.sort(np.asarray(pscores), axis=1),
                                np.sort(scores.reshape(b, -1), axis=1))


@pytest.fixture(scope="module")
def lam_model(toy):
  model = toy(seed=31, vocab=9)
  return model, model.encode(31, 3)


def test_zero_penalty_gives_each_group_the_plain_beam_search(lam_model, helpers):
  model, enc = lam_model
  run = helpers["run_group_search"]
  many = run(model, enc, 5, num_groups=3, beams_per_group=2, diversity_penalty=0.0)
  one = run(model, enc, 5, num_groups=1, beams_per_group=2, diversity_penalty=0.0)
  for g in range(3):
    np.testing.assert_array_equal(np.asarray(many.sequences_BxPxNxL[:, g]),
                                  np.asarray(one.sequences_BxPxNxL[:, 0]))
    np.testing.assert_allclose(np.asarray(many.scores_BxPxN[:, g]),
                               np.asarray(one.scores_BxPxN[:, 0]), rtol=1e-6)


def test_zero_penalty_single_group_exhaustive_equals_brute_force(toy, helpers):
  # 2 new tokens over 4 tokens: 4 EOS-ended sequences plus, as HF finalises live beams at
  # max length, the 9 EOS-free length-2 ones; 13 <= Kg = 16 and no length normalisation, so
  # the search is exhaustive.
  model = toy(seed=5, vocab=4)
  enc = model.encode(5, 2)
  res = helpers["run_group_search"](model, enc, 2, num_groups=1, beams_per_group=16,
                                    diversity_penalty=0.0, length_penalty=0.0)
  cands = helpers["all_sequences"](4, 2) + [[a, b] for a in (0, 2, 3) for b in (0, 2, 3)]
  lengths = np.array([len(c) for c in cands])
  for i in range(2):
    brute = model.log_prob(enc[i], helpers["pad"](cands, 2), lengths)
    order = np.argsort(-brute)
    got = np.asarray(res.scores_BxPxN[i, 0])
    np.testing.assert_allclose(got[:13], brute[order], rtol=1e-4, atol=1e-4)
    assert np.all(np.isneginf(got[13:]))
    got_seqs = [helpers["strip_eos"](r) for r in np.asarray(res.sequences_BxPxNxL[i, 0, :13])]
    assert got_seqs == [cands[j] for j in order]


def test_large_penalty_makes_first_tokens_differ(lam_model, helpers):
  model, enc = lam_model
  groups = 6  # <= 7 non-EOS first tokens available
  run = helpers["run_group_search"]
  res = run(model, enc, 4, num_groups=groups, beams_per_group=1, diversity_penalty=1e4, min_decode_len=2)
  first = np.asarray(res.sequences_BxPxNxL[:, :, 0, 0])
  for row in first:
    assert len(set(row.tolist())) == groups, row
  zero = run(model, enc, 4, num_groups=groups, beams_per_group=1, diversity_penalty=0.0, min_decode_len=2)
  assert all(len(set(r.tolist())) == 1 for r in np.asarray(zero.sequences_BxPxNxL[:, :, 0, 0]))


def test_sharded_batch_equals_unsharded(toy):
  model = toy(seed=41, vocab=8)
  b = 8
  enc = model.encode(41, b)
  inputs = jnp.zeros((b, 4), jnp.int32)

  def run(e):
    r = diverse.group_beam_search(inputs, model.init_cache(e), model.tokens_to_logits, EOS,
                                  num_groups=3, beams_per_group=1, diversity_penalty=1.0)
    return r.sequences_BxPxNxL, r.scores_BxPxN

  ref = jax.jit(run)(enc)
  shard = NamedSharding(Mesh(np.array(jax.devices()[:8]), ("data",)), P("data"))
  enc_s = jax.device_put(enc, shard)
  with jax.transfer_guard("disallow"):
    out = jax.jit(run, in_shardings=(shard,))(enc_s)
  np.testing.assert_array_equal(np.asarray(out[0]), np.asarray(ref[0]))
  np.testing.assert_allclose(np.asarray(out[1]), np.asarray(ref[1]), rtol=1e-6)


def test_bad_options_fail_loudly(toy):
  model = toy(seed=0, vocab=4)
  with pytest.raises(ValueError, match="early_stopping"):
    diverse.group_beam_search(jnp.zeros((1, 3), jnp.int32), model.init_cache(model.encode(0, 1)),
                              model.tokens_to_logits, EOS, num_groups=2, early_stopping="yes")


def test_hf_beam_search_with_trie_excludes_items_and_returns_items(toy, helpers):
  rng = np.random.default_rng(17)
  items = helpers["random_catalogue"](rng, 10, vocab=6, max_len=4)
  trie = trie_lib.ItemTrie.from_sequences(items, vocab_size=6)
  model = toy(seed=17, vocab=6)
  b, k = 3, 10
  enc = model.encode(17, b)
  excluded = np.full((b, 4), -1, np.int32)
  for i in range(b):
    excluded[i, :i + 2] = rng.choice(len(items), size=i + 2, replace=False)
  inputs = jnp.zeros((b, 5), jnp.int32)
  seqs, scores = jax.jit(lambda e, x: diverse.hf_beam_search(
      inputs, model.init_cache(e), model.tokens_to_logits, EOS, k, trie=trie,
      excluded_items=x, length_penalty=0.0))(enc, excluded)
  seqs, scores = np.asarray(seqs), np.asarray(scores)
  got = trie.items_from_sequences(seqs)
  for i in range(b):
    banned = set(excluded[i][excluded[i] >= 0].tolist())
    real = np.isfinite(scores[i])
    # K >= items left and lp = 0: exactly the allowed items, ascending (T5X order).
    assert sorted(got[i][real].tolist()) == sorted(set(range(len(items))) - banned)
    assert np.all(np.diff(scores[i][real]) >= 0)
    lengths = np.array([len(items[j]) for j in got[i][real]])
    brute = model.log_prob(enc[i], helpers["pad"]([items[j] for j in got[i][real]], 5), lengths)
    np.testing.assert_allclose(scores[i][real], brute, rtol=1e-4, atol=1e-4)
