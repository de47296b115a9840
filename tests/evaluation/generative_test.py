"""Constrained full-ranking evaluation with the real T5: decodes are real items, ranking equals
brute-force scoring of every item, metrics follow the ranks; both searches ('t5x', 'hf')."""
import functools

import jax
import numpy as np
import pytest

from llmrec_jax import model_sizes, models, network
from llmrec_jax.data import batching
from llmrec_jax.data import splits
from llmrec_jax.decoding import diverse
from llmrec_jax.evaluation import evaluator, generative as evaluation

V, S, T = 40, 10, 6


@pytest.fixture(scope="module")
def setup():
  rng = np.random.default_rng(0)
  # 7 items with distinct ID token sequences of 1-4 tokens (several share prefixes).
  id_tokens = [[5], [5, 6], [5, 6, 7], [8, 9], [8, 10, 11, 12], [13], [14, 5]]
  trie = evaluation.build_item_trie(id_tokens, vocab_size=V)
  cfg = model_sizes.t5_config("t5_tiny", vocab_size=V, dropout_rate=0.0)
  model = models.EncoderDecoderModel(network.Transformer(cfg))
  params = model.get_initial_variables(jax.random.PRNGKey(3), {"encoder_input_tokens": (2, S),
                                                               "decoder_input_tokens": (2, T)})["params"]
  enc = rng.integers(2, V, size=(4, S)).astype(np.int32)
  batch = {"encoder_input_tokens": enc, "decoder_input_tokens": np.zeros((4, T), np.int32)}
  return id_tokens, trie, model, params, batch


def _brute_force(model, params, enc, id_tokens, normalize, subset_U=None):
  """Every item's teacher-forced score; with subset_U, log_softmax over those tokens only."""
  scores = np.zeros((enc.shape[0], len(id_tokens)))
  for i, toks in enumerate(id_tokens):
    tgt = np.zeros((enc.shape[0], T), np.int32)
    tgt[:, :len(toks) + 1] = toks + [1]
    batch = {"encoder_input_tokens": enc, "decoder_target_tokens": tgt,
             "decoder_input_tokens": batching.shift_right(tgt)}
    if subset_U is None:
      s = np.asarray(model.score_batch(params, batch))
    else:
      logits = np.asarray(model.compute_logits(params, batch), np.float64)
      sub = logits[:, :, subset_U]
      m = sub.max(-1, keepdims=True)
      lse = m[..., 0] + np.log(np.exp(sub - m).sum(-1))
      tok_lp = np.take_along_axis(logits, tgt[..., None], axis=-1)[..., 0] - lse
      s = (tok_lp * (tgt > 0)).sum(-1)
    scores[:, i] = s / (len(toks) + 1) if normalize else s
  return scores


@pytest.mark.parametrize("norm,output_vocab", [("t5x", "subset_exact"), ("hf", "subset_exact"),
                                               ("hf", "full"), ("hf", "subset")])
def test_topk_equals_brute_force_ranking(setup, norm, output_vocab):
  """Exact modes rank by full-vocab scores; 'subset' by scores renormalised over the trie's
  tokens (its documented approximation)."""
  id_tokens, trie, model, params, batch = setup
  opts = evaluation.DecodeOptions(num_beams=7, length_normalization=norm, alpha=0.0, ks=(5,),
                                  output_vocab=output_vocab)
  items, scores = evaluation.make_topk_fn(model, opts)(params, batch, trie.arrays)
  items, scores = np.asarray(items), np.asarray(scores)
  brute = _brute_force(model, params, batch["encoder_input_tokens"], id_tokens,
                       normalize=norm == "hf",
                       subset_U=trie.token_ids if output_vocab == "subset" else None)
  for b in range(4):
    assert sorted(items[b].tolist()) == list(range(7))  # every item exactly once
    np.testing.assert_allclose(scores[b], np.sort(brute[b])[::-1], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(items[b], np.argsort(-brute[b], kind="stable"))


def test_excluded_items_batch_key_removes_those_items_from_the_ranking(setup):
  """With an `excluded_items` batch key the top-K is the brute-force ranking of the other items
  (in order), then -1 for the slots no remaining item fills."""
  id_tokens, trie, model, params, batch = setup
  excluded = np.array([[0, 4], [6, -1], [2, 3], [-1, -1]], np.int32)
  opts = evaluation.DecodeOptions(num_beams=7, ks=(5,))
  items, _ = evaluation.make_topk_fn(model, opts)(params, dict(batch, excluded_items=excluded),
                                                  trie.arrays)
  brute = _brute_force(model, params, batch["encoder_input_tokens"], id_tokens, normalize=True)
  for b in range(4):
    kept = [i for i in np.argsort(-brute[b], kind="stable") if i not in excluded[b]]
    np.testing.assert_array_equal(np.asarray(items[b]), kept + [-1] * (7 - len(kept)))


def test_prompt_ranker_metrics_equal_hit_and_ndcg_of_brute_force_ranks(setup):
  """`PromptRanker` through `evaluator.evaluate_split` against an independent computation: each
  target's rank among the brute-force scores of every item (HF length normalisation, as the
  default decode), then HR@k = share of ranks < k and NDCG@k = mean 1 / log2(rank + 2) over
  ranks < k, written out here."""
  id_tokens, trie, model, params, batch = setup
  topk = evaluation.make_topk_fn(model, evaluation.DecodeOptions(num_beams=5, ks=(1, 5)))
  targets = np.array([0, 3, 6, 2], np.int32)
  split = splits.LooSplit(user=np.arange(4, dtype=np.int32), history=(np.zeros(1, np.int32),) * 4,
                          target=targets)
  ranker = evaluation.PromptRanker(topk, params, trie, lambda examples: [batch], batch_size=4)
  examples = evaluator.HeldOut.every("test", split)
  top = ranker.topk(examples)
  metrics = evaluator.evaluate_split(ranker, examples, ks=(1, 5))
  assert top.shape == (4, 5) and ((top >= 0) & (top < 7)).all()
  brute = _brute_force(model, params, batch["encoder_input_tokens"], id_tokens, normalize=True)
  ranks = [int(np.argsort(-brute[b], kind="stable").tolist().index(t)) for b, t in enumerate(targets)]
  for k in (1, 5):
    assert metrics[f"hit@{k}"] == pytest.approx(np.mean([r < k for r in ranks]))
    assert metrics[f"ndcg@{k}"] == pytest.approx(np.mean([1 / np.log2(r + 2) if r < k else 0.0 for r in ranks]))
  assert 0 < metrics["hit@5"]  # the check is not vacuous: some target is found


def test_subset_mode_scores_differ_from_full_vocab(setup):
  """The approximation is real: renormalising over the trie's tokens raises every score."""
  _, trie, model, params, batch = setup
  run = lambda mode: np.asarray(evaluation.make_topk_fn(model, evaluation.DecodeOptions(
      num_beams=7, ks=(5,), output_vocab=mode))(params, batch, trie.arrays)[1])
  assert (run("subset") > run("subset_exact") + 1e-3).all()


def test_bad_output_vocab_fails_loudly():
  with pytest.raises(ValueError, match="subset_exactt"):
    evaluation.DecodeOptions(output_vocab="subset_exactt")


@pytest.mark.parametrize("search", ["t5x", "hf"])
def test_both_searches_return_real_items_scored_as_brute_force(setup, search):
  """Either search, with excluded items and the compact trie: every filled slot is a distinct
  allowed item whose score is its brute-force score, best first; empty slots are -1 / -inf."""
  id_tokens, trie, model, params, batch = setup
  excluded = np.array([[0, 4], [6, -1], [2, 3], [-1, -1]], np.int32)
  opts = evaluation.DecodeOptions(num_beams=7, ks=(5,), search=search)
  items, scores = evaluation.make_topk_fn(model, opts)(params, dict(batch, excluded_items=excluded),
                                                       trie.arrays)
  items, scores = np.asarray(items), np.asarray(scores)
  brute = _brute_force(model, params, batch["encoder_input_tokens"], id_tokens, normalize=True)
  for b in range(4):
    real = items[b] >= 0
    assert np.array_equal(real, np.isfinite(scores[b]))
    got = items[b][real]
    assert len(set(got.tolist())) == len(got) and not set(got.tolist()) & set(excluded[b].tolist())
    assert len(got) >= 5  # the search finds most of the 5-7 allowed items
    np.testing.assert_allclose(scores[b][real], brute[b][got], rtol=1e-4, atol=1e-4)
    assert np.all(np.diff(scores[b][real]) <= 0)


def test_hf_search_is_diverse_hf_beam_search(setup):
  """search='hf' decodes exactly as `diverse.hf_beam_search` called through the model."""
  id_tokens, trie, model, params, batch = setup
  opts = evaluation.DecodeOptions(num_beams=5, ks=(5,), search="hf", output_vocab="full")
  items, scores = evaluation.make_topk_fn(model, opts)(params, batch, trie.arrays)
  direct = model.with_decode_fn(functools.partial(diverse.hf_beam_search, length_penalty=1.0))
  decodes, aux = jax.jit(lambda p, b: direct.predict_batch_with_aux(
      p, b, return_all_decodes=True, num_decodes=5, decoder_params={"trie": trie.arrays}))(
          params, batch)
  want_scores = np.asarray(aux["scores"])[:, ::-1]
  want_items = np.where(np.isfinite(want_scores),
                        trie.items_from_sequences(np.asarray(decodes))[:, ::-1], -1)
  np.testing.assert_array_equal(np.asarray(scores), want_scores)
  np.testing.assert_array_equal(np.asarray(items), want_items)
  assert (np.asarray(items) >= 0).sum() > 0


def test_bad_search_fails_loudly():
  with pytest.raises(ValueError, match="hff"):
    evaluation.DecodeOptions(search="hff")
  with pytest.raises(ValueError, match="length_normalization"):
    evaluation.DecodeOptions(search="hf", length_normalization="t5x")
