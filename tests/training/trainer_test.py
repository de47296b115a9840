"""Trainer on a tiny linear model: microbatching equals the full batch, the loss falls."""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from llmrec_jax.training import trainer
from llmrec_jax.training.train_state import TrainState


def _loss_fn(params, batch, dropout_rng):
  del dropout_rng
  pred = batch["x"] @ params["w"] + params["b"][None, :]
  loss = jnp.mean(jnp.square(pred - batch["y"]))
  return loss, {"loss": loss}


def _data(n=16):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(n, 3)).astype(np.float32)
  return {"x": x, "y": (x @ np.array([[1.0], [-2.0], [0.5]]) + 0.3).astype(np.float32)}


def _params():
  return {"w": jnp.zeros((3, 1)), "b": jnp.zeros((1,))}


def test_microbatched_grads_equal_full_batch():
  batch = _data()
  g1, m1 = trainer.compute_grads(_params(), batch, jax.random.PRNGKey(0), loss_fn=_loss_fn)
  g4, m4 = trainer.compute_grads(_params(), batch, jax.random.PRNGKey(0), loss_fn=_loss_fn,
                                 num_microbatches=4)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), g1, g4)
  np.testing.assert_allclose(m1["loss"], m4["loss"], rtol=1e-5)


def test_trainer_lowers_loss_and_counts_steps():
  tx = optax.adam(0.1)
  t = trainer.Trainer(_loss_fn, tx, num_microbatches=2)
  state = TrainState.create(_params(), tx)
  batch = _data()
  first = float(t.evaluate(state.params, batch)["loss"])
  for _ in range(100):
    state, _ = t.train(state, batch)
  assert int(state.step) == 100
  assert float(t.evaluate(state.params, batch)["loss"]) < 0.01 * first
