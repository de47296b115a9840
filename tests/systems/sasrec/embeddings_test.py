"""SASRec item embeddings: the trained item table, rows 1..N, in item-index order."""
import numpy as np

from llmrec_jax.data.synthetic import make_synthetic
from llmrec_jax.systems.sasrec import embeddings
from llmrec_jax.systems.sasrec import model as sasrec
from llmrec_jax.systems.sasrec import train as sasrec_train


def test_collaborative_embeddings_are_the_trained_item_rows(monkeypatch):
  data = make_synthetic(num_users=300, num_items=200, seed=0)
  runs = []
  real = sasrec_train.train_and_evaluate
  def spy(*args, **kwargs):
    runs.append(real(*args, **kwargs))
    return runs[-1]
  monkeypatch.setattr(sasrec_train, "train_and_evaluate", spy)
  # the sizes of sasrec_train_test's short run, so its compiled steps are reused
  model_config = sasrec.SASRecConfig(num_items=data.num_items, hidden=32, max_len=20, dropout=0.2)
  emb_NxD = embeddings.collaborative_embeddings(
      data, epochs=1, model_config=model_config, learning_rate=5e-3, batch_size=64, buckets=(),
      eval_batch_size=300, show_progress=False, gather_granule_div=2)
  assert emb_NxD.shape == (data.num_items, 32) and emb_NxD.dtype == np.float32
  (out,) = runs
  assert out["epochs_run"] == 1 and out["best_epoch"] == 1
  table = np.asarray(out["params"]["item_embed"]["embedding"])
  np.testing.assert_array_equal(emb_NxD, table[1:])
  init = np.asarray(sasrec_train.init_params(sasrec.SASRec(model_config), 0)["item_embed"]["embedding"])
  assert not np.allclose(table, init)  # trained, not the initial table
