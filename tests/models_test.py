"""EncoderDecoderModel on t5_tiny: training lowers the loss; scoring and decoding agree."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llmrec_jax import model_sizes, models, network, toy_tasks
from llmrec_jax.data import batching
from llmrec_jax.training import optimizers, trainer
from llmrec_jax.training.train_state import TrainState

VOCAB, MAX_LEN, BATCH = 32, 8, 32


@pytest.fixture(scope="module")
def model():
  cfg = model_sizes.t5_config("t5_tiny", vocab_size=VOCAB, dropout_rate=0.0)
  return models.EncoderDecoderModel(network.Transformer(cfg))


@pytest.fixture(scope="module")
def trained(model):
  """Trains 300 steps on the copy task; returns (params, losses every step)."""
  rng = np.random.default_rng(0)
  example = toy_tasks.copy_task_batch(rng, BATCH, MAX_LEN, VOCAB)
  variables = model.get_initial_variables(jax.random.PRNGKey(0), {k: v.shape for k, v in example.items()})
  tx = optimizers.adamw(optimizers.linear_warmup_decay(3e-3, 30, 300))
  t = trainer.Trainer(model.loss_fn, tx)
  state = TrainState.create(variables["params"], tx)
  losses = []
  for _ in range(300):
    state, m = t.train(state, toy_tasks.copy_task_batch(rng, BATCH, MAX_LEN, VOCAB))
    losses.append(float(m["loss"]))
  return state.params, np.array(losses)


def test_initial_variables_emit_params_axes(model):
  v = model.get_initial_variables(jax.random.PRNGKey(0), {"encoder_input_tokens": (2, 5),
                                                          "decoder_input_tokens": (2, 3)})
  assert "params_axes" in v
  n_params = len(jax.tree_util.tree_leaves(v["params"]))
  assert n_params == len(jax.tree_util.tree_leaves(v["params_axes"], is_leaf=lambda x: hasattr(x, "names")))


def test_copy_task_loss_falls(trained):
  _, losses = trained
  # Random init predicts ~uniformly over 32 ids (ln 32 = 3.47); copying is learnable fast.
  assert losses[:5].mean() > 2.5
  assert losses[-20:].mean() < 0.5 * losses[:5].mean(), losses[-20:]


def test_score_batch_is_sum_of_target_logprobs(model, trained):
  params, _ = trained
  batch = toy_tasks.copy_task_batch(np.random.default_rng(1), 4, MAX_LEN, VOCAB)
  scores = model.score_batch(params, batch)
  logits = model.compute_logits(params, batch)
  logp = jax.nn.log_softmax(logits, axis=-1)
  want = [sum(float(logp[b, t, batch["decoder_target_tokens"][b, t]])
              for t in range(MAX_LEN) if batch["decoder_target_tokens"][b, t] > 0) for b in range(4)]
  np.testing.assert_allclose(scores, want, rtol=1e-5, atol=1e-5)
  # The loss with SUM normalisation is minus the summed scores.
  m_sum = models.EncoderDecoderModel(model.module, loss_normalizing_factor=None)
  loss, _ = m_sum.eval_fn(params, batch)
  np.testing.assert_allclose(loss, -np.sum(want), rtol=1e-5)


def test_beam_decodes_are_sorted_and_rescored_exactly(model, trained):
  params, _ = trained
  batch = toy_tasks.copy_task_batch(np.random.default_rng(2), 8, MAX_LEN, VOCAB)
  decodes, aux = jax.jit(lambda p, b: model.predict_batch_with_aux(
      p, b, return_all_decodes=True, num_decodes=4, decoder_params={"alpha": 0.0}))(params, batch)
  assert decodes.shape == (8, 4, MAX_LEN) and aux["scores"].shape == (8, 4)
  assert np.all(np.diff(np.asarray(aux["scores"]), axis=1) >= -1e-5)  # ascending: best last
  best = np.asarray(decodes[:, -1])
  rescored = model.score_batch(params, {
      "encoder_input_tokens": batch["encoder_input_tokens"], "decoder_target_tokens": best,
      "decoder_input_tokens": batching.shift_right(best),
      "decoder_loss_weights": (best > 0).astype(np.float32)})
  np.testing.assert_allclose(rescored, aux["scores"][:, -1], rtol=1e-4, atol=1e-4)


def test_with_decode_fn_swaps_only_the_decode_fn(model, trained):
  """The copy decodes with the new function, which gets T5X's arguments plus `decoder_params`
  and no batch key (not even `excluded_items`); its loss equals the original's."""
  params, _ = trained
  batch = dict(toy_tasks.copy_task_batch(np.random.default_rng(4), 2, MAX_LEN, VOCAB))
  batch["excluded_items"] = np.zeros((2, 1), np.int32)
  seen = {}

  def decode_fn(*, inputs, cache, tokens_to_logits, eos_id, num_decodes, cache_offset, **kwargs):
    del cache, tokens_to_logits, cache_offset
    seen.update(kwargs, eos_id=eos_id)
    b, t = inputs.shape
    return jnp.zeros((b, num_decodes, t), jnp.int32), jnp.zeros((b, num_decodes))

  swapped = model.with_decode_fn(decode_fn)
  assert swapped is not model and swapped.module is model.module
  decodes, _ = swapped.predict_batch_with_aux(params, batch, return_all_decodes=True,
                                              num_decodes=3, decoder_params={"alpha": 0.5})
  assert decodes.shape == (2, 3, MAX_LEN)
  assert seen == {"alpha": 0.5, "eos_id": 1}
  np.testing.assert_array_equal(swapped.eval_fn(params, batch)[0], model.eval_fn(params, batch)[0])


def test_dropout_only_with_rng(model, trained):
  params, _ = trained
  cfg = model_sizes.t5_config("t5_tiny", vocab_size=VOCAB, dropout_rate=0.3)
  m = models.EncoderDecoderModel(network.Transformer(cfg))
  batch = toy_tasks.copy_task_batch(np.random.default_rng(3), 4, MAX_LEN, VOCAB)
  a, _ = m.loss_fn(params, batch, jax.random.PRNGKey(0))
  b, _ = m.loss_fn(params, batch, jax.random.PRNGKey(1))
  c, _ = m.eval_fn(params, batch)
  d, _ = m.eval_fn(params, batch)
  assert float(a) != float(b) and float(c) == float(d)


def test_subset_column_token_ids_end_with_the_rest_column():
  ids = np.asarray([1, 4, 7, 30], np.int32)
  cols = np.asarray(models.subset_column_token_ids(jnp.asarray(ids), "subset_exact"))
  np.testing.assert_array_equal(cols, list(ids) + [models.REST_TOKEN])
