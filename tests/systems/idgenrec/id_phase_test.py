"""ID phase: exact splice positions, gradients reach only the generator, official modes run."""
import functools

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
                            free_running_steps=3, rec_dropout=True),
    id_phase.IdPhaseOptions(mixing="LOG_SOFTMAX", generator_mode="FREE_RUNNING_GREEDY",
                            free_running_steps=3, free_running_rules="HF426",
                            generator_dropout=True, rec_dropout=True)])
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


# ----------------------------------------------------------------------------- HF426 free running
EOS, PAD = 1, 0


def hf426_greedy(logits_fn, n, max_length=10, min_length=1):
  """transformers 4.26 `greedy_search` with the processors `generate` builds for `min_length=1,
  renormalize_logits=True`, transcribed: (sequences [n, 1 + T], scores [n, T, V])."""
  input_ids = np.zeros((n, 1), np.int64)  # decoder_start_token_id
  unfinished = np.ones(n, np.int64)
  scores = []
  while True:
    s = np.array(logits_fn(input_ids), np.float32)  # next_token_logits
    if input_ids.shape[-1] < min_length:  # MinLengthLogitsProcessor
      s[:, EOS] = -np.inf
    m = s.max(-1, keepdims=True)
    s = s - m - np.log(np.exp(s - m).sum(-1, keepdims=True))  # LogitNormalization (log_softmax),
    scores.append(s)                                          # the last processor
    next_tokens = s.argmax(-1)
    next_tokens = next_tokens * unfinished + PAD * (1 - unfinished)
    input_ids = np.concatenate([input_ids, next_tokens[:, None]], axis=-1)
    unfinished = unfinished * (next_tokens != EOS)
    if unfinished.max() == 0 or input_ids.shape[-1] >= max_length:
      break
  return input_ids, np.stack(scores, axis=1)


def _check_against(ref_seq, ref_scores, logits, tokens, finished):
  """Our decode (F steps, all rows official) gives the reference's T, sequences and scores."""
  t = ref_scores.shape[1]
  assert int(id_phase.stop_step(finished, jnp.ones(len(ref_seq), bool))) == t
  np.testing.assert_array_equal(np.asarray(tokens)[:, :t], ref_seq[:, 1:])
  np.testing.assert_allclose(jax.nn.log_softmax(logits, axis=-1)[:, :t], ref_scores, atol=1e-5)


def test_hf426_greedy_matches_the_transcription_on_a_table():
  """Step logits from a table plus a term of the fed token (so feeding pad or the argmax after EOS
  changes later scores): EOS is taken at the first step, pad is fed after EOS, and the batch
  stops when its last row finishes."""
  rng = np.random.default_rng(3)
  n, f, v = 5, 9, 12
  table = rng.normal(size=(n, f, v)).astype(np.float32)
  follow = rng.normal(size=(v, v)).astype(np.float32)
  table[:, :, EOS], follow[:, EOS] = -10.0, 0.0
  table[0, 0, EOS] = 10.0   # row 0: EOS is the argmax of the first step
  table[1, 2, EOS] = 10.0   # row 1 finishes at step 3
  table[2:, 4, EOS] = 10.0  # the others at step 5: T = 5
  table_j, follow_j = jnp.asarray(table), jnp.asarray(follow)
  step_logits = lambda inputs, t: table_j[:, t] + follow_j[inputs[:, t]]  # noqa: E731
  logits, tokens, finished = jax.jit(lambda: id_phase.greedy_decode(step_logits, n, f, "HF426"))()
  seq, scores = hf426_greedy(lambda ids: table[:, ids.shape[1] - 1] + follow[ids[:, -1]], n)
  _check_against(seq, scores, logits, tokens, finished)
  tokens = np.asarray(tokens)
  assert tokens[0, 0] == EOS and (tokens[0, 1:] == PAD).all()  # the decoder is fed pad after EOS
  assert tokens[1, 2] == EOS and (tokens[1, 3:] == PAD).all()
  assert scores.shape[1] == 5
  # FIXED_STEPS bans EOS at the first step and feeds each argmax back.
  _, fixed, _ = id_phase.greedy_decode(step_logits, n, f, "FIXED_STEPS")
  assert int(fixed[0, 0]) != EOS


@functools.lru_cache(maxsize=None)
def _tiny_model(dropout_rate=0.0):
  cfg = network.T5Config(vocab_size=V, emb_dim=16, num_heads=2, head_dim=8, num_encoder_layers=1,
                         num_decoder_layers=1, mlp_dim=32, dropout_rate=dropout_rate)
  return cfg, models.EncoderDecoderModel(network.Transformer(cfg))


def _tiny_generator(seed, eos_scale, dropout_rate=0.0):
  """An untied tiny T5 (a tied random one just repeats its start token) whose EOS logit column is
  scaled so that sequences finish early."""
  cfg, model = _tiny_model(dropout_rate)
  params = model.get_initial_variables(jax.random.PRNGKey(seed), {
      "encoder_input_tokens": (2, 8), "decoder_input_tokens": (2, 4)})["params"]
  kernel = params["decoder"]["logits_dense"]["kernel"]
  params["decoder"]["logits_dense"]["kernel"] = kernel.at[:, EOS].multiply(eos_scale)
  return cfg, model, params


@functools.partial(jax.jit, static_argnums=(0, 3))
def _free_run(model, params, text, steps):
  return id_phase.generator_logits_free_running(model, params, text, steps, rules="HF426")


def _hf426_batch(setup, steps):
  """Three prompts of two history items each (so the padded history rows are not official rows)."""
  batcher = setup[0]
  batcher = prompt_batches.PromptBatcher(batcher.encode, batcher.item_texts, batcher.item_ids,
                                         batcher.templates, num_history=4, text_len=16, id_len=6,
                                         input_len=48, target_len=6, free_running_steps=steps)
  return batcher.build(["red user", "blue user", "pink user"], [[0, 1], [5, 4], [6, 7]],
                       [8, 9, 10], [0, 1, 0])


# (seed, EOS scale) of the tiny generator on `_hf426_batch`'s texts: some rows emit EOS at the
# first step (then pad is fed to them), every row has finished after 3 steps (T = 3), the
# official rows after 2.
GENERATOR = (5, 6.0)


def test_hf426_greedy_of_the_generator_matches_the_transcription(setup):
  _, model, params = _tiny_generator(*GENERATOR)
  text = jnp.asarray(_hf426_batch(setup, 9)["item_text_tokens"])
  logits, tokens, finished = _free_run(model, params, text, 9)
  prefix_logits = jax.jit(lambda ids: model.compute_logits(params, {
      "encoder_input_tokens": text, "decoder_input_tokens": ids,
      "decoder_target_tokens": jnp.ones_like(ids)}))

  def logits_fn(ids):  # the prefix's last position; padded to one shape (the decoder is causal)
    padded = np.zeros((len(ids), 10), np.int32)
    padded[:, :ids.shape[1]] = ids
    return np.asarray(prefix_logits(jnp.asarray(padded)))[:, ids.shape[1] - 1]
  seq, scores = hf426_greedy(logits_fn, len(text))
  _check_against(seq, scores, logits, tokens, finished)
  assert (seq[:, 1] == EOS).any()  # EOS taken at the first step
  assert scores.shape[1] == 3  # early stop


def test_hf426_greedy_matches_transformers_generate(setup, tmp_path):
  """Same tokens and scores as HF `generate` (greedy, min_length=1, renormalize_logits=True;
  transformers 4.57 keeps 4.26's rules for these: MinLength on the length with the start token,
  pad after EOS, stop when all finished, processed scores) on the same weights."""
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  from llmrec_jax.checkpoints import hf_t5  # pylint: disable=g-import-not-at-top
  cfg, model, params = _tiny_generator(*GENERATOR)
  hf_t5.save_hf_t5(tmp_path, cfg, params)
  hf = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path).eval()
  text = _hf426_batch(setup, 9)["item_text_tokens"]
  ids = torch.from_numpy(np.asarray(text)).long()
  with torch.no_grad():
    out = hf.generate(input_ids=ids, attention_mask=(ids > 0).long(), max_length=10, min_length=1,
                      num_beams=1, do_sample=False, renormalize_logits=True, output_scores=True,
                      return_dict_in_generate=True)
  scores = torch.stack(out.scores, dim=1).numpy()
  logits, tokens, finished = _free_run(model, params, jnp.asarray(text), 9)
  _check_against(out.sequences.numpy(), scores, logits, tokens, finished)


def test_compaction_equals_the_prompt_laid_out_with_fewer_slots(setup):
  """F slots per item, compacted to T, equal the prompt built with T slots per item: same
  attended positions (soft vectors zeroed by the punctuation mask are not attended) and the same
  vectors there; everything else is zero."""
  f, t, d = 4, 2, 8
  batch_f, batch_t = _hf426_batch(setup, f), _hf426_batch(setup, t)
  rng = np.random.default_rng(0)
  emb_VxD = rng.normal(size=(V, d)).astype(np.float32)
  n = batch_f["item_text_tokens"].shape[0]
  soft_NxFxD = rng.normal(size=(n, f, d)).astype(np.float32)
  zeroed_NxF = rng.random((n, f)) < 0.3
  soft_NxFxD[zeroed_NxF] = 0.0
  b = batch_f["encoder_input_tokens"].shape[0]

  def spliced(bt, soft):
    slot = bt["soft_slot"]
    x = np.asarray(id_phase.splice(jnp.asarray(emb_VxD)[bt["encoder_input_tokens"]],
                                   jnp.asarray(soft.reshape(b, -1, d)), jnp.asarray(slot)))
    return x, slot

  x_f, slot_f = spliced(batch_f, soft_NxFxD)
  attend_f = np.where(slot_f >= 0, np.linalg.norm(x_f, axis=-1) > 1e-6,
                      batch_f["encoder_input_tokens"] > 0)
  got_x, got_attend = id_phase.compact_soft_steps(jnp.asarray(x_f), jnp.asarray(attend_f),
                                                  jnp.asarray(slot_f), f, jnp.int32(t))
  x_t, slot_t = spliced(batch_t, soft_NxFxD[:, :t])
  zeroed_t = zeroed_NxF[:, :t].reshape(b, -1)
  want_attend = (batch_t["encoder_input_tokens"] > 0) & ~np.where(
      slot_t >= 0, np.take_along_axis(zeroed_t, np.maximum(slot_t, 0), axis=1), False)
  s = want_attend.shape[1]
  np.testing.assert_array_equal(got_attend[:, :s], want_attend)
  assert not np.asarray(got_attend[:, s:]).any()
  np.testing.assert_array_equal(got_x[:, :s], np.where(want_attend[..., None], x_t, 0.0))
  assert not np.asarray(got_x[:, s:]).any()


def test_hf426_loss_equals_the_loss_on_the_prompt_built_with_T_slots(setup):
  """The whole HF426 ID-phase loss against a brute force: T from the transcribed HF loop over the
  official rows, the batch built with T slots per item, punctuation vectors zeroed and masked."""
  _, _, rec_model, _, rec = setup
  _, gen_model, gen = _tiny_generator(*GENERATOR)
  f = 4
  batch_f = _hf426_batch(setup, f)
  text = jnp.asarray(batch_f["item_text_tokens"])
  logits, tokens, _ = _free_run(gen_model, gen, text, f)
  # Official rows: the histories padded to the batch's longest (2), not to H = 4.
  n_b = (batch_f["history_items"] >= 0).sum(axis=1)
  rows = (np.arange(4)[None, :] < n_b.max()).repeat(len(n_b), 0).reshape(-1)
  np.testing.assert_array_equal(id_phase.official_rows(jnp.asarray(batch_f["history_items"])), rows)
  step_logits = np.asarray(logits)  # the oracle for the transcription (its rows are causal)
  _, scores = hf426_greedy(lambda ids: step_logits[rows, ids.shape[1] - 1], int(rows.sum()),
                           max_length=f + 1)
  _, scores_all = hf426_greedy(lambda ids: step_logits[:, ids.shape[1] - 1], len(rows),
                               max_length=f + 1)
  t = scores.shape[1]
  assert t < scores_all.shape[1] <= f  # early stop, and the padded history rows would delay it
  punct = jnp.array([int(np.asarray(tokens)[0, 0])])  # the first token of every real row
  options = id_phase.IdPhaseOptions(mixing="LOG_SOFTMAX", generator_mode="FREE_RUNNING_GREEDY",
                                    free_running_steps=f, free_running_rules="HF426")
  loss, metrics = jax.jit(functools.partial(
      id_phase.id_phase_loss, gen_model=gen_model, rec_model=rec_model, options=options,
      punct_token_ids=punct))(gen, jax.tree_util.tree_map(jnp.asarray, batch_f), None, rec)
  assert float(metrics["soft_steps"]) == t
  batch_t = _hf426_batch(setup, t)
  emb = rec["token_embedder"]["embedding"]
  keep_NxT = ~np.isin(np.asarray(tokens)[:, :t], np.asarray(punct))
  assert not keep_NxT.all()
  weights = id_phase.mixing_weights(logits[:, :t], id_phase.Mixing.LOG_SOFTMAX)
  soft = id_phase.soft_embeddings(weights, emb) * keep_NxT[..., None]
  b = batch_t["encoder_input_tokens"].shape[0]
  slot = batch_t["soft_slot"]
  prompt = id_phase.splice(emb[batch_t["encoder_input_tokens"]], soft.reshape(b, -1, emb.shape[1]),
                           jnp.asarray(slot))
  dropped = (slot >= 0) & ~np.take_along_axis(keep_NxT.reshape(b, -1), np.maximum(slot, 0), axis=1)
  masked = dict(batch_t, encoder_input_tokens=np.where(dropped, 0, batch_t["encoder_input_tokens"]))
  want, _ = jax.jit(lambda p, bt, x: rec_model.loss_from_logits(
      rec_model.compute_logits(p, bt, encoder_input_embeddings=x), bt))(rec, masked, prompt)
  np.testing.assert_allclose(loss, want, rtol=1e-5)


def test_generator_dropout_keeps_each_positions_mask_across_steps():
  """With dropout (one key for every step), step t's logits still depend on inputs 0..t only, so
  the states of earlier positions are the ones their own steps computed, as in HF's cached
  decoder; and dropout does change the logits."""
  _, model, params = _tiny_generator(0, 1.0, dropout_rate=0.3)
  text = jnp.asarray(np.random.default_rng(0).integers(3, V, size=(4, 8)))
  inputs = jnp.asarray(np.random.default_rng(1).integers(2, V, size=(4, 5)))
  later = inputs.at[:, 3:].set(5)

  @jax.jit
  def run(rng):
    step = id_phase.generator_step_fn(model, params, text, 5, dropout_rng=rng)
    plain = id_phase.generator_step_fn(model, params, text, 5)
    return step(inputs, 2), step(later, 2), plain(inputs, 2)
  now, after, plain = run(jax.random.PRNGKey(7))
  np.testing.assert_array_equal(now, after)
  assert not np.allclose(now, plain)
