"""`group_beam_search(hf_semantics='4.26')` vs a python transcription of transformers 4.26.0's
`group_beam_search` + `BeamSearchScorer` + `BeamHypotheses` (one pool of G*Kg hypotheses and one
done flag per example), on the toy decoder; the two pool conventions really differ."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llmrec_jax.decoding import beams
from llmrec_jax.decoding import diverse
from llmrec_jax.decoding import trie as trie_lib

EOS, PAD = 1, 0


def hf426_reference(next_lp, vocab, groups, kg, lam, max_new, min_len, lp, early_stopping=False,
                    allowed=None):
  """transformers 4.26.0 group beam search for one example, plain python, in the source's order.

  next_lp(row) -> [V] log-probs of the next token after `row` (decoder start first). min_len is
  HF `min_length`, max_new + 1 HF `max_length`. Returns the pool best first as (score, tokens)
  (EOS appended to ended hypotheses); HF's junk entries (-1e9 starts, -inf EOS) included.
  """
  k = groups * kg
  input_ids = [[0] for _ in range(k)]
  beam_scores = [0.0 if j % kg == 0 else -1e9 for j in range(k)]  # utils.py: -1e9, 0 per group
  pool, worst = [], [1e9]  # BeamHypotheses(num_beams=k): shared by every group
  done = False

  def add(row, sum_logprobs, ended):  # BeamHypotheses.add: divides by len(input_ids row)
    score = sum_logprobs / len(row) ** lp
    if len(pool) < k or score > worst[0]:
      pool.append((score, row[1:] + ([EOS] if ended else [])))
      if len(pool) > k:
        ranked = sorted((s, i) for i, (s, _) in enumerate(pool))
        del pool[ranked[0][1]]
        worst[0] = ranked[1][0]
      else:
        worst[0] = min(score, worst[0])

  def is_done(best, cur_len):  # BeamHypotheses.is_done
    if len(pool) < k:
      return False
    if early_stopping:
      return True
    return worst[0] >= best / cur_len ** lp

  cur_len = 1
  while True:
    lps = [next_lp(row) for row in input_ids]
    current = [0] * k
    for g in range(groups):
      idx = list(range(g * kg, (g + 1) * kg))
      flat = []
      for j in idx:  # log_softmax -> Hamming, MinLength, prefix_allowed -> + beam score
        row = lps[j].copy()
        if g > 0:
          row = row - lam * np.bincount(np.asarray(current[:g * kg]), minlength=vocab)
        if cur_len < min_len:
          row[EOS] = -np.inf
        if allowed is not None:
          ok = np.zeros(vocab, bool)
          ok[list(allowed(input_ids[j][1:]))] = True
          row = np.where(ok, row, -np.inf)
        flat.append(row + beam_scores[j])
      flat = np.concatenate(flat)
      top = sorted(range(len(flat)), key=lambda c: (-flat[c], c))[:2 * kg]
      group_rows = [input_ids[j] for j in idx]
      if done:  # BeamSearchScorer.process of a done example: pad, score 0, beam 0
        nxt = [(0.0, PAD, 0)] * kg
      else:
        nxt = []
        for rank, c in enumerate(top):
          jj, t = divmod(c, vocab)
          if t == EOS:
            if rank < kg:
              add(group_rows[jj], flat[c], ended=True)
          else:
            nxt.append((flat[c], t, jj))
          if len(nxt) == kg:
            break
        done = done or is_done(flat[top[0]], cur_len)
      for b, (score, t, jj) in enumerate(nxt):
        input_ids[idx[b]] = group_rows[jj]
        beam_scores[idx[b]] = score
        current[idx[b]] = t
    input_ids = [row + [current[j]] for j, row in enumerate(input_ids)]
    cur_len += 1
    if done or cur_len >= max_new + 1:
      break
  if not done:  # BeamSearchScorer.finalize
    for j in range(k):
      add(input_ids[j], beam_scores[j], ended=False)
  return sorted(pool, key=lambda x: -x[0])


def _best_first(result):
  """(sequences, scores) of `diverse.best_first`, best first, as numpy."""
  seqs, scores, _ = diverse.best_first(result)
  return np.asarray(seqs), np.asarray(scores)


CASES = [  # min_len is HF min_length; max_new + 1 is HF max_length
    dict(groups=3, kg=2, lam=0.7, max_new=5, min_len=2, lp=1.0, early=False, trie=False),
    dict(groups=4, kg=1, lam=1.5, max_new=6, min_len=0, lp=1.0, early=False, trie=True),
    dict(groups=5, kg=1, lam=0.5, max_new=4, min_len=1, lp=1.0, early=True, trie=False),
    dict(groups=2, kg=2, lam=0.3, max_new=4, min_len=4, lp=2.0, early=False, trie=False),
    dict(groups=1, kg=3, lam=0.0, max_new=3, min_len=3, lp=1.0, early=False, trie=False),
]


def _trie_setup(vocab):
  items = [[2, 3, 1], [2, 4, 5, 1], [3, 1], [3, 5, 6, 1], [4, 2, 1], [5, 1], [5, 6, 2, 1],
           [6, 4, 1]]
  trie = trie_lib.ItemTrie.from_sequences(items, vocab_size=vocab)
  prefixes = {}
  for s in items:
    for d in range(len(s)):
      prefixes.setdefault(tuple(s[:d]), set()).add(s[d])
  return beams.TrieConstraint(trie.arrays), lambda p: prefixes.get(tuple(p), set())


@pytest.fixture(scope="module")
def searched(toy, helpers):
  """Per case: (4.26 reference pools, 4.26 results, per_group results) for a batch of 2."""
  vocab, b = 7, 2
  model = toy(seed=21, vocab=vocab)
  enc = model.encode(21, b)
  out = []
  for case in CASES:
    constraint, allowed = _trie_setup(vocab) if case["trie"] else (None, None)
    kw = dict(num_groups=case["groups"], beams_per_group=case["kg"],
              min_decode_len=case["min_len"], length_penalty=case["lp"],
              early_stopping=case["early"])
    ref = [hf426_reference(functools.partial(helpers["np_next_logprobs"], model, enc[i]), vocab,
                           case["groups"], case["kg"], case["lam"], case["max_new"],
                           case["min_len"], case["lp"], case["early"], allowed) for i in range(b)]
    runs = {sem: _best_first(helpers["run_group_search"](
        model, enc, case["max_new"], constraint, diversity_penalty=case["lam"], hf_semantics=sem, **kw))
            for sem in ("4.26", "per_group")}
    out.append((ref, runs["4.26"], runs["per_group"]))
  return out


@pytest.mark.parametrize("c", range(len(CASES)))
def test_hf426_mode_matches_transformers_426_transcription(searched, c, helpers):
  ref, (seqs, scores), _ = searched[c]
  for i, pool in enumerate(ref):
    real = [(s, q) for s, q in pool if s > -1e8]  # HF's junk entries are our -inf slots
    assert np.isfinite(scores[i]).sum() == len(real), (c, i)
    for j, (want_score, want_seq) in enumerate(real):
      np.testing.assert_allclose(scores[i, j], want_score, rtol=1e-4, atol=1e-4)
      assert helpers["strip_eos"](seqs[i, j]) == want_seq, (c, i, j)


def test_the_two_pool_conventions_differ(searched):
  """Shared pool (4.26) vs a pool per group: some case returns other sequences or order, and
  the one-group case differs only in the live beams' max-length divisor (n + 1 vs n)."""
  differ = [not (np.array_equal(s26, spg) and np.allclose(c26, cpg, equal_nan=True))
            for _, (s26, c26), (spg, cpg) in searched]
  assert any(differ[:-1]), differ
  _, (s26, c26), (spg, cpg) = searched[-1]  # groups=1, EOS banned until max length
  np.testing.assert_array_equal(s26, spg)
  n = CASES[-1]["max_new"]
  np.testing.assert_allclose(c26 * (n + 1), cpg * n, rtol=1e-5)


def test_hf_beam_search_follows_426_at_max_length(toy):
  """hf_beam_search defaults to 4.26: beams cut at max length (EOS banned throughout here) are
  normalised by new tokens + 1 = 4, per_group by 3."""
  model = toy(seed=21, vocab=7)
  enc = model.encode(21, 2)
  inputs = jnp.zeros((2, 3), jnp.int32)

  def run(**kw):
    out = jax.jit(lambda e: diverse.hf_beam_search(
        inputs, model.init_cache(e), model.tokens_to_logits, EOS, 3, min_decode_len=4, **kw))(enc)
    return [np.asarray(x) for x in out]

  (s_default, c_default), (s_group, c_group) = run(), run(hf_semantics="per_group")
  np.testing.assert_array_equal(s_default, s_group)
  assert np.isfinite(c_default).all()
  np.testing.assert_allclose(c_default * 4, c_group * 3, rtol=1e-5)


def test_426_mode_rejects_never():
  with pytest.raises(ValueError, match="4.26"):
    diverse.group_beam_search(jnp.zeros((1, 3), jnp.int32), {}, lambda ds: None, EOS,
                              num_groups=2, early_stopping="never", hf_semantics="4.26")
  with pytest.raises(ValueError, match="per_groupp"):
    diverse.group_beam_search(jnp.zeros((1, 3), jnp.int32), {}, lambda ds: None, EOS,
                              num_groups=2, hf_semantics="per_groupp")
