"""ID phase: exact splice positions, gradients reach only the generator, official modes run."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from llmrec_jax import model_sizes, models, network
from llmrec_jax.data import prompts
from llmrec_jax.systems.idgenrec import id_phase, prompt_batches
from llmrec_jax.training import trainer
from llmrec_jax.training.train_state import TrainState

WORDS = ("red blue green lipstick cream soap gel mask oil brush nail pink matte gloss serum "
         "user considering has interacted with items what is the next recommendation for ; . ?").split()
VOCAB = {w: i + 3 for i, w in enumerate(WORDS)}
V = 64


def encode(text):
  return [VOCAB.get(w, 2) for w in text.lower().split()]


@pytest.fixture(scope="module")
def setup():
  rng = np.random.default_rng(0)
  item_words = WORDS[:15]
  n_items = 12
  item_ids = [" ".join(rng.choice(item_words, size=rng.integers(1, 4), replace=False)) + f" {item_words[i]}"
              for i in range(n_items)]
  item_texts = [f"{i} " + " ".join(rng.choice(item_words, size=6)) for i in item_ids]
  templates = [prompts.Template("Considering user {user_id} has interacted with items {history} . what is next ?",
                                "{target}"),
               prompts.Template("{history} ; what is the next recommendation for {user_id} ?", "{target}")]
  batcher = prompt_batches.PromptBatcher(encode, item_texts, item_ids, templates, num_history=4,
                                         text_len=16, id_len=6, input_len=48, target_len=6)
  batch = batcher.build(["red user", "blue user", "pink user"], [[0, 1, 2, 3, 4], [5], [6, 7]],
                        [8, 9, 10], [0, 1, 0])
  cfg = model_sizes.t5_config("t5_tiny", vocab_size=V, dropout_rate=0.0)
  model = models.EncoderDecoderModel(network.Transformer(cfg))
  shapes = {"encoder_input_tokens": (2, 16), "decoder_input_tokens": (2, 6)}
  gen = model.get_initial_variables(jax.random.PRNGKey(1), shapes)["params"]
  rec = model.get_initial_variables(jax.random.PRNGKey(2), shapes)["params"]
  return batcher, batch, model, gen, rec


def test_layout_keeps_last_items_in_order_and_slots_match_id_tokens(setup):
  batcher, batch, *_ = setup
  np.testing.assert_array_equal(batch["history_items"][0], [1, 2, 3, 4])  # last H, oldest first
  np.testing.assert_array_equal(batch["history_items"][1], [5, -1, -1, -1])
  e = np.eye(V, dtype=np.float32)
  # One-hot weights of each item's ID tokens, spliced, rebuild the prompt token for token.
  onehot_NxCxV = e[batch["item_id_targets"]]
  emb_VxD = e  # identity embedding: the spliced vectors are the one-hot tokens themselves
  soft = id_phase.soft_embeddings(jnp.asarray(onehot_NxCxV), jnp.asarray(emb_VxD))
  b = batch["encoder_input_tokens"].shape[0]
  spliced = id_phase.splice(jnp.asarray(emb_VxD)[batch["encoder_input_tokens"]],
                            soft.reshape(b, -1, V), jnp.asarray(batch["soft_slot"]))
  np.testing.assert_array_equal(np.argmax(spliced, -1), batch["encoder_input_tokens"])
  assert (batch["soft_slot"] >= 0).any(axis=1).all()
  # The prompt equals the rendered string of the same history.
  want = encode(prompts.render_prompt(batcher.templates[0], user_id="pink user",
                                      history=[batcher.item_ids[6], batcher.item_ids[7]],
                                      target=batcher.item_ids[10])[0]) + [1]
  got = batch["encoder_input_tokens"][2]
  np.testing.assert_array_equal(got[:len(want)], want)


def test_hard_weights_give_the_rec_phase_loss(setup):
  """With one-hot mixing weights the ID-phase loss equals the plain rec loss on the prompt."""
  _, batch, model, _, rec = setup
  batch = jax.tree_util.tree_map(jnp.asarray, batch)
  emb = rec["token_embedder"]["embedding"]
  soft = id_phase.soft_embeddings(jax.nn.one_hot(batch["item_id_targets"], V), emb)
  b = batch["encoder_input_tokens"].shape[0]
  prompt = id_phase.splice(emb[batch["encoder_input_tokens"]], soft.reshape(b, -1, emb.shape[1]),
                           batch["soft_slot"])
  logits = model.compute_logits(rec, batch, encoder_input_embeddings=prompt)
  spliced_loss, _ = model.loss_from_logits(logits, batch)
  plain_loss, _ = model.eval_fn(rec, batch)
  np.testing.assert_allclose(spliced_loss, plain_loss, rtol=1e-5)


@pytest.mark.parametrize("options", [
    id_phase.IdPhaseOptions(),
    id_phase.IdPhaseOptions(mixing="LOG_SOFTMAX", generator_mode="FREE_RUNNING_GREEDY",
                            free_running_steps=3, rec_dropout=True)])
def test_train_step_changes_only_the_generator(setup, options):
  batcher, _, model, gen, rec = setup
  if options.generator_mode is id_phase.GeneratorMode.FREE_RUNNING_GREEDY:
    batcher = prompt_batches.PromptBatcher(batcher.encode, batcher.item_texts, batcher.item_ids,
                                           batcher.templates, num_history=4, text_len=16, id_len=6,
                                           input_len=48, target_len=6, free_running_steps=3)
  batch = batcher.build(["red user", "blue user"], [[0, 1, 2], [5, 6]], [8, 9], [0, 1])
  batch = jax.tree_util.tree_map(jnp.asarray, batch)

  def loss_fn(g, bt, rng):
    return id_phase.id_phase_loss(g, bt, rng, rec, gen_model=model, rec_model=model, options=options,
                                  punct_token_ids=jnp.array([VOCAB[";"], VOCAB["."]]))
  tx = optax.adam(1e-2)
  t = trainer.Trainer(loss_fn, tx)
  state = TrainState.create(jax.tree_util.tree_map(jnp.array, gen), tx)  # copy: the step donates
  gen_before = jax.tree_util.tree_map(np.array, gen)
  state, m = t.train(state, batch)
  assert np.isfinite(float(m["loss"])) and float(m["grad_norm"]) > 0
  changed = jax.tree_util.tree_leaves(jax.tree_util.tree_map(
      lambda a, b: bool(np.any(np.asarray(a) != b)), state.params, gen_before))
  assert any(changed)
  # That the recommender stays frozen is a property of the loop (JAX arrays are immutable, so
  # `rec` here cannot change): see alternating_test's
  # test_each_phase_of_the_real_loop_leaves_the_other_model_bit_identical.
