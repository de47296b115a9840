"""SASRec model and losses: causality, bucketing equivalence, padding row, loss math, negatives."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llmrec_jax.systems.sasrec import model as sasrec

N, L, D = 12, 8, 16


@pytest.fixture(scope="module")
def model_and_params():
  model = sasrec.SASRec(sasrec.SASRecConfig(num_items=N, hidden=D, num_blocks=2, num_heads=2, max_len=L, dropout=0.3))
  params = model.init(jax.random.key(0), jnp.ones((1, L), jnp.int32))["params"]
  hidden_fn = jax.jit(lambda p, tok: model.apply({"params": p}, tok))
  score_fn = jax.jit(lambda p, tok: model.apply({"params": p}, tok, method=sasrec.SASRec.score_last))
  return model, params, hidden_fn, score_fn


def _tokens(rng, B, T, min_len=1):
  """Left-padded random token rows (items 1..N) with lengths in [min_len, T]."""
  tok = rng.integers(1, N + 1, size=(B, T)).astype(np.int32)
  lens = rng.integers(min_len, T + 1, size=B)
  tok[np.arange(T)[None, :] < (T - lens)[:, None]] = 0
  return tok


def test_output_at_t_ignores_later_positions(model_and_params):
  _, params, hidden_fn, _ = model_and_params
  rng = np.random.default_rng(0)
  tok = _tokens(rng, 4, L, min_len=L)
  h = np.asarray(hidden_fn(params, tok))
  for t in range(L - 1):
    changed = tok.copy()
    changed[:, t + 1:] = rng.integers(1, N + 1, size=(4, L - t - 1))
    h2 = np.asarray(hidden_fn(params, changed))
    np.testing.assert_allclose(h2[:, :t + 1], h[:, :t + 1], rtol=1e-5, atol=1e-5)
    assert not np.allclose(h2[:, t + 1:], h[:, t + 1:], atol=1e-4)  # later positions do react


def test_gradient_at_t_has_no_path_from_later_inputs(model_and_params):
  model, params, _, _ = model_and_params
  tok = _tokens(np.random.default_rng(1), 2, L, min_len=L)
  t = 3

  def out_t(pos_table):
    p = {**params, "pos_embed": {"embedding": pos_table}}
    return jnp.sum(model.apply({"params": p}, tok)[:, t] ** 2)

  g_LxD = np.asarray(jax.jit(jax.grad(out_t))(params["pos_embed"]["embedding"]))
  assert np.all(g_LxD[t + 1:] == 0.0)
  assert np.all(np.abs(g_LxD[: t + 1]).sum(axis=1) > 0)


def test_short_bucket_equals_full_padding(model_and_params):
  _, params, hidden_fn, _ = model_and_params
  tok = _tokens(np.random.default_rng(2), 4, 3)  # at most 3 items
  full = np.concatenate([np.zeros((4, L - 3), np.int32), tok], axis=1)
  np.testing.assert_allclose(np.asarray(hidden_fn(params, tok)), np.asarray(hidden_fn(params, full))[:, -3:],
                             rtol=1e-5, atol=1e-5)


def test_padding_row_is_never_scored_and_changes_nothing(model_and_params):
  _, params, hidden_fn, score_fn = model_and_params
  tok = _tokens(np.random.default_rng(3), 4, L)
  scores = np.asarray(score_fn(params, tok))
  assert scores.shape == (4, N)
  h = np.asarray(hidden_fn(params, tok))[:, -1]
  table = np.asarray(params["item_embed"]["embedding"])
  np.testing.assert_allclose(scores, h @ table[1:].T, rtol=1e-5, atol=1e-5)
  huge = {**params, "item_embed": {"embedding": params["item_embed"]["embedding"].at[0].set(1e4)}}
  np.testing.assert_allclose(np.asarray(score_fn(huge, tok)), scores, rtol=1e-5, atol=1e-5)


def test_every_item_can_be_ranked_first(model_and_params):
  _, params, hidden_fn, score_fn = model_and_params
  table = params["item_embed"]["embedding"]
  for i in range(N):
    j = 1 if i != 0 else 2  # input item (token), never the boosted one
    tok = np.zeros((4, L), np.int32)  # same shape as the other tests: no recompilation
    tok[:, -1] = j
    h = np.asarray(hidden_fn(params, tok))[0, -1]
    boosted = {**params, "item_embed": {"embedding": table.at[i + 1].add(50.0 * h / np.dot(h, h))}}
    assert int(np.argmax(np.asarray(score_fn(boosted, tok))[0])) == i


def test_ce_loss_matches_numpy():
  rng = np.random.default_rng(4)
  h = rng.normal(size=(3, 5, D)).astype(np.float32)
  items = rng.normal(size=(N, D)).astype(np.float32)
  targets = _tokens(rng, 3, 5)
  logits = h @ items.T
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  valid = targets > 0
  want = -np.mean([logp[b, t, targets[b, t] - 1] for b, t in zip(*np.nonzero(valid))])
  np.testing.assert_allclose(float(sasrec.ce_loss(h, items, targets)), want, rtol=1e-5)


def test_bce_loss_matches_numpy():
  rng = np.random.default_rng(5)
  h = rng.normal(size=(3, 5, D)).astype(np.float32)
  items = rng.normal(size=(N, D)).astype(np.float32)
  targets = _tokens(rng, 3, 5)
  negs = rng.integers(1, N + 1, size=(3, 5)).astype(np.int32)
  sig = lambda x: 1 / (1 + np.exp(-x))
  terms = [-np.log(sig(h[b, t] @ items[targets[b, t] - 1])) - np.log(1 - sig(h[b, t] @ items[negs[b, t] - 1]))
           for b, t in zip(*np.nonzero(targets > 0))]
  np.testing.assert_allclose(float(sasrec.bce_loss(h, items, targets, negs)), np.mean(terms), rtol=1e-5)


def test_negatives_are_never_positives_and_cover_the_complement():
  rng = np.random.default_rng(6)
  pos = _tokens(rng, 64, 10)  # duplicates and padding included
  pos[0] = np.arange(1, 11)  # 10 of the 12 items: only tokens 11 and 12 remain
  pos[1, :] = 0
  pos[1, -1] = 5  # a single positive
  negs = np.asarray(jax.jit(sasrec.sample_negatives, static_argnums=(2, 3))(jax.random.key(0), pos, N, 400))
  assert negs.min() >= 1 and negs.max() <= N
  for row_pos, row_neg in zip(pos, negs):
    assert not set(row_neg.tolist()) & set(row_pos.tolist())
  assert set(negs[0].tolist()) == {11, 12}
  assert set(negs[1].tolist()) == set(range(1, N + 1)) - {5}
  # uniform over the complement: each allowed item gets roughly 400 / 11 draws
  counts = np.bincount(negs[1], minlength=N + 1)[1:]
  assert counts[4] == 0 and counts[np.arange(N) != 4].min() > 15


def test_valid_positions_lists_every_real_target_once():
  rng = np.random.default_rng(7)
  targets = _tokens(rng, 5, 6)
  for granule in (1, 4, 7, 64):
    flat, tgt = sasrec.valid_positions(targets, granule)
    real = np.flatnonzero(targets.reshape(-1))
    assert flat.size % granule == 0 and flat.size - real.size < granule
    np.testing.assert_array_equal(flat[:real.size], real)
    np.testing.assert_array_equal(tgt[:real.size], targets.reshape(-1)[real])
    assert np.all(tgt[real.size:] == 0)
  with pytest.raises(ValueError, match="granule"):
    sasrec.valid_positions(targets, 0)


@pytest.mark.parametrize("granule", [1, 5, 32])
def test_gathered_ce_equals_full_ce_with_gradients(granule):
  rng = np.random.default_rng(8)
  h = rng.normal(size=(4, 6, D)).astype(np.float32)
  items = rng.normal(size=(N, D)).astype(np.float32)
  targets = _tokens(rng, 4, 6)
  flat, tgt = sasrec.valid_positions(targets, granule)
  full = jax.value_and_grad(sasrec.ce_loss, argnums=(0, 1))
  gathered = jax.value_and_grad(lambda h, e: sasrec.ce_loss_at(h.reshape(-1, D)[flat], e, tgt), argnums=(0, 1))
  (v_full, (gh_full, ge_full)), (v_gat, (gh_gat, ge_gat)) = full(h, items, targets), gathered(h, items)
  np.testing.assert_allclose(float(v_gat), float(v_full), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(gh_gat), np.asarray(gh_full), rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(np.asarray(ge_gat), np.asarray(ge_full), rtol=1e-5, atol=1e-7)
  assert np.all(np.asarray(gh_gat)[targets == 0] == 0)  # padding positions get no gradient
