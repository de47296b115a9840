"""StreamTrainer and its ID phase on a (data=4, model=2) mesh of the 8 simulated devices: the
same params and validation metrics as on one device, the state really sharded, and a restored
run continues sharded to the uninterrupted run's end."""
import jax
import numpy as np
import pytest

from llmrec_jax import decoder_model, models, network, partitioning
from llmrec_jax.data import synthetic
from llmrec_jax.network import T5Config, decoder_only
from llmrec_jax.systems.idgenrec import stream_id_phase, stream_training

CFG = T5Config(vocab_size=24, emb_dim=32, num_heads=2, head_dim=16, num_encoder_layers=1,
               num_decoder_layers=1, mlp_dim=64, dropout_rate=0.1, logits_via_embedding=True)


def _trainer(partitioner=None, model_dir=None):
  """stream_training_test's tiny setting: 80 users, one bucket of 8 rows x 32 tokens."""
  data = synthetic.make_synthetic(num_users=80, num_items=30, seed=0)
  item_tokens = [[3 + i // 6, 10 + i % 6] for i in range(data.num_items)]
  model = decoder_model.DecoderOnlyModel(decoder_only.DecoderOnlyTransformer(CFG), trie_softmax=True)
  params = model.get_initial_variables(jax.random.PRNGKey(0), {"decoder_input_tokens": (2, 8)})["params"]
  schedule = stream_training.StreamSchedule(
      epochs=2, learning_rate=1e-2, warmup_steps=2, tokens_per_batch=256, max_items=8,
      bucket_multiple=32, eval_every_epochs=1, valid_users=None, eval_batch_size=32)
  return stream_training.StreamTrainer(model, params, data.sequences, item_tokens, schedule,
                                       vocab_size=24, model_dir=model_dir, partitioner=partitioner)


def _mesh():
  part = partitioning.PjitPartitioner(num_partitions=2)
  assert dict(part.mesh.shape) == {"data": 4, "model": 2}
  return part


def _assert_close(a, b):
  jax.tree_util.tree_map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5), a, b)


def _valid(trainer):
  return [{k: v for k, v in r.items() if k.startswith("valid/")} for r in trainer.curve]


def _assert_sharded(trainer):
  wo = trainer.state.params["decoder"]["layers_0"]["mlp"]["wo"]["kernel"]
  assert len({s.device for s in wo.addressable_shards}) == 8 and wo.sharding.spec[0] == "model"


@pytest.fixture(scope="module")
def one_device():
  with jax.default_matmul_precision("highest"):
    trainer = _trainer()
    trainer.train_until(2)
  return trainer


def test_sharded_training_equals_one_device(one_device):
  with jax.default_matmul_precision("highest"):
    sharded = _trainer(_mesh())
    assert sharded.steps_per_epoch == one_device.steps_per_epoch   # 8 rows: already a multiple of 4
    sharded.train_until(2)
  _assert_sharded(sharded)
  assert int(sharded.state.step) == int(one_device.state.step) == 2 * one_device.steps_per_epoch
  _assert_close(sharded.state.params, one_device.state.params)
  _assert_close(sharded.best_params, one_device.best_params)
  got, want = _valid(sharded), _valid(one_device)
  assert len(got) == 2 and [r.keys() for r in got] == [r.keys() for r in want]
  for g, w in zip(got, want):
    assert g == pytest.approx(w, abs=1e-6)
  assert sharded.curve[-1]["item_nll"] == pytest.approx(one_device.curve[-1]["item_nll"], rel=1e-5)


def test_restored_run_continues_sharded(one_device, tmp_path):
  with jax.default_matmul_precision("highest"):
    assert not _trainer(_mesh(), str(tmp_path)).train_until(2, stop_after_epoch=1)
    resumed = _trainer(_mesh(), str(tmp_path))
    assert resumed.maybe_restore() and resumed.epoch == 1
    _assert_sharded(resumed)
    resumed.train_until(2)
  _assert_sharded(resumed)
  _assert_close(resumed.state.params, one_device.state.params)
  assert _valid(resumed)[-1] == pytest.approx(_valid(one_device)[-1], abs=1e-6)


def test_sharded_id_phase_equals_one_device():
  gen_cfg = T5Config(vocab_size=24, emb_dim=16, num_heads=2, head_dim=8, num_encoder_layers=1,
                     num_decoder_layers=1, mlp_dim=32, dropout_rate=0.0, logits_via_embedding=True)
  gen_model = models.EncoderDecoderModel(network.Transformer(gen_cfg))
  gen_params = gen_model.get_initial_variables(
      jax.random.PRNGKey(1), {"encoder_input_tokens": (2, 8), "decoder_input_tokens": (2, 4)})["params"]
  text_NxL = (np.arange(30 * 6, dtype=np.int32).reshape(30, 6) % 20) + 2
  schedule = stream_id_phase.StreamIdSchedule(rounds=2, id_steps=2, id_batch_size=8, id_lr=1e-3,
                                              id_max_items=4)

  def run(partitioner):
    with jax.default_matmul_precision("highest"):
      params = jax.tree_util.tree_map(np.array, gen_params)   # a train step donates its state
      alt = stream_id_phase.StreamAlternation(_trainer(partitioner), gen_model, params,
                                              lambda p: [], lambda t: [], text_NxL, schedule)
      alt._id_phase(0)
    return alt.gen_state.params
  sharded = run(_mesh())
  q = sharded["encoder"]["layers_0"]["attention"]["query"]["kernel"]
  assert q.sharding.spec[-1] == "model"
  one = run(None)
  _assert_close(sharded, one)
  moved = [np.abs(np.asarray(a) - b).max() for a, b in zip(jax.tree_util.tree_leaves(one),
                                                           jax.tree_util.tree_leaves(gen_params))]
  assert max(moved) > 1e-3   # the generator trained: the equality above is not vacuous
