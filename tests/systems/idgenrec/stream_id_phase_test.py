"""Stream ID phase: soft slots land on the hard IDs' positions, one-hot soft IDs give the rec
phase's loss exactly, and the loss trains the generator through the frozen recommender."""
import jax
import jax.numpy as jnp
import numpy as np

from llmrec_jax import decoder_model
from llmrec_jax.data import item_streams
from llmrec_jax.decoding import trie as trie_lib
from llmrec_jax.network import T5Config, decoder_only
from llmrec_jax.systems.idgenrec import id_phase, stream_id_phase
from llmrec_jax.training import trainer as trainer_lib
from llmrec_jax.training.train_state import TrainState
import optax

V = 24
ITEM_TOKENS = [[5, 6], [5, 7], [8], [9, 10, 11], [5, 6, 12], [13, 14]]
HISTORIES = [np.array([0, 3, 2, 5], np.int32), np.array([4, 1], np.int32)]


def _setup():
  trie = trie_lib.ItemTrie.from_sequences([t + [1] for t in ITEM_TOKENS], eos_id=1, vocab_size=V)
  nodes, branching = trie.choice_nodes()
  choices = item_streams.TrieChoices(nodes, branching, trie.token_ids)
  text = np.arange(2, 2 + 6 * 4, dtype=np.int32).reshape(6, 4) % V
  batcher = stream_id_phase.IdStreamBatcher(text, ITEM_TOKENS, choices, max_items=3)
  cfg = T5Config(vocab_size=V, emb_dim=16, num_heads=2, head_dim=8, num_encoder_layers=1,
                 num_decoder_layers=1, mlp_dim=32, dropout_rate=0.0, logits_via_embedding=True)
  rec = decoder_model.DecoderOnlyModel(decoder_only.DecoderOnlyTransformer(cfg), trie_softmax=True)
  rec_params = rec.get_initial_variables(jax.random.PRNGKey(0),
                                         {"decoder_input_tokens": (2, 8)})["params"]
  return trie, batcher, rec, rec_params


def test_soft_slots_point_at_each_inputs_own_id_token():
  _, batcher, _, _ = _setup()
  batch = batcher.batch(HISTORIES)
  b, t = batch["soft_slot"].shape
  ids_BxM = batch["item_id_targets"].reshape(b, -1)
  inputs = batch["decoder_input_tokens"]
  for r in range(b):
    for p in range(t):
      slot = batch["soft_slot"][r, p]
      if slot >= 0:
        assert ids_BxM[r, slot] == inputs[r, p] and inputs[r, p] not in (0, 1)
      else:  # start token, EOS separators and padding stay hard
        assert inputs[r, p] in (0, 1)
  # The last max_items=3 items of the first history: 3, 2, 5.
  np.testing.assert_array_equal(batch["item_id_targets"][0, :4], [9, 10, 11, 1])
  np.testing.assert_array_equal(batch["item_id_targets"][2], [13, 14, 1, 0])
  np.testing.assert_array_equal(batch["item_text_tokens"][5], 0)  # the second user has 2 items


class _OneHotGenerator:
  """A generator whose teacher-forced logits are `scale` * one-hot of the current ID tokens."""

  def compute_logits(self, params, batch, rng):
    del rng
    return params["scale"] * jax.nn.one_hot(batch["decoder_target_tokens"], V)


def test_one_hot_soft_ids_give_the_rec_phase_loss_and_train_only_the_generator():
  trie, batcher, rec, rec_params = _setup()
  batch = {k: jnp.asarray(v) for k, v in batcher.batch(HISTORIES).items()}
  gen_params = {"scale": jnp.float32(1e4)}
  loss, _ = stream_id_phase.stream_id_phase_loss(gen_params, batch, None, rec_params, trie.arrays,
                                                 gen_model=_OneHotGenerator(), rec_model=rec)
  want, _ = rec.trie_loss(rec_params, batch, None, trie.arrays)
  np.testing.assert_allclose(loss, want, rtol=1e-6)
  # Soft (not one-hot) IDs change the loss, and a train step moves the generator only.
  gen_params = {"scale": jnp.float32(0.5)}
  soft, _ = stream_id_phase.stream_id_phase_loss(gen_params, batch, None, rec_params, trie.arrays,
                                                 gen_model=_OneHotGenerator(), rec_model=rec)
  assert abs(float(soft) - float(want)) > 1e-4
  loss_fn = lambda p, b, rng, rp, t: stream_id_phase.stream_id_phase_loss(  # noqa: E731
      p, b, rng, rp, t, gen_model=_OneHotGenerator(), rec_model=rec,
      mixing=id_phase.Mixing.SOFTMAX)
  tx = optax.sgd(1.0)
  state = TrainState.create(gen_params, tx)
  rec_before = jax.tree_util.tree_map(np.array, rec_params)
  new_state, _ = trainer_lib.Trainer(loss_fn, tx).train(state, batch, rec_params, trie.arrays)
  assert float(new_state.params["scale"]) != 0.5
  jax.tree_util.tree_map(np.testing.assert_array_equal, rec_params, rec_before)


def _alternation(model_dir, tmp_ids=None):
  from llmrec_jax import models, network
  from llmrec_jax.systems.idgenrec import stream_training
  from llmrec_jax.data import synthetic
  data = synthetic.make_synthetic(num_users=40, num_items=12, seed=0, num_topics=4, max_len=10)
  names = [f"w{i // 4} v{i % 4}" for i in range(12)]
  vocab = {w: 3 + k for k, w in enumerate(sorted({w for n in names for w in n.split()}))}
  encode = lambda text: [vocab[w] for w in text.split()]  # noqa: E731
  cfg = T5Config(vocab_size=V, emb_dim=16, num_heads=2, head_dim=8, num_encoder_layers=1,
                 num_decoder_layers=1, mlp_dim=32, dropout_rate=0.0, logits_via_embedding=True)
  rec = decoder_model.DecoderOnlyModel(decoder_only.DecoderOnlyTransformer(cfg), trie_softmax=True)
  rec_params = rec.get_initial_variables(jax.random.PRNGKey(0),
                                         {"decoder_input_tokens": (2, 8)})["params"]
  gen = models.EncoderDecoderModel(network.Transformer(cfg))
  gen_params = gen.get_initial_variables(jax.random.PRNGKey(1), {
      "encoder_input_tokens": (2, 6), "decoder_input_tokens": (2, 4)})["params"]
  schedule = stream_training.StreamSchedule(
      epochs=4, learning_rate=1e-2, warmup_steps=1, tokens_per_batch=256, max_items=6,
      bucket_multiple=32, eval_every_epochs=2, valid_users=None, eval_batch_size=16)
  trainer = stream_training.StreamTrainer(rec, rec_params, data.sequences,
                                          [encode(n) for n in names], schedule, vocab_size=V,
                                          model_dir=model_dir)
  # New IDs: a rotation that depends on the generator (so a wrong restore shows).
  def assign(params):
    shift = 1 + int(abs(float(np.asarray(params["token_embedder"]["embedding"]).sum())) * 1e3) % 5
    return [names[(i + shift) % 12] for i in range(12)]
  text = (np.arange(12 * 6, dtype=np.int32).reshape(12, 6) % (V - 3)) + 3
  alt = stream_id_phase.StreamAlternation(
      trainer, gen, gen_params, assign, encode, text,
      stream_id_phase.StreamIdSchedule(rounds=2, id_steps=3, id_batch_size=4, id_lr=1e-2,
                                       id_max_items=4))
  return alt


def test_alternation_freezes_each_model_in_the_others_phase_and_resumes_exactly(tmp_path):
  full = _alternation(str(tmp_path / "full"))
  gen0 = jax.tree_util.tree_map(np.array, full.gen_state.params)
  assert full.rec.train_until(2)
  jax.tree_util.tree_map(np.testing.assert_array_equal, full.gen_state.params, gen0)
  rec0 = jax.tree_util.tree_map(np.array, full.rec.state.params)
  tokens0 = full.rec.item_tokens
  full._id_phase(0)  # pylint: disable=protected-access
  jax.tree_util.tree_map(np.testing.assert_array_equal, full.rec.state.params, rec0)
  assert any(not np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(gen0),
                                                      jax.tree_util.tree_leaves(full.gen_state.params)))
  full = _alternation(str(tmp_path / "full2"))
  expected = full.run()
  assert expected["id_rounds"][0]["changed_ids"] == 12 and full.rec.item_tokens != tokens0
  killed = _alternation(str(tmp_path / "killed"))
  assert killed.run(stop_after_epoch=2) is None
  resumed = _alternation(str(tmp_path / "killed"))
  assert resumed.maybe_restore()
  assert resumed.rec.item_tokens == full.rec.item_tokens != tokens0
  got = resumed.run()
  assert got["test"] == expected["test"]
  jax.tree_util.tree_map(np.testing.assert_array_equal, resumed.gen_state.params,
                         full.gen_state.params)
