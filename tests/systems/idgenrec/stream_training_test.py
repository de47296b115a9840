"""StreamTrainer: it learns a synthetic catalogue, resume equals an uninterrupted run, and the
selected parameters are the best validated ones."""
import os
import signal

import jax
import numpy as np
import pytest

from llmrec_jax import decoder_model
from llmrec_jax.data import item_streams, synthetic
from llmrec_jax.network import T5Config, decoder_only
from llmrec_jax.systems.idgenrec import stream_training
from llmrec_jax.training import stopping


def _trainer(model_dir, epochs=4, seed=0, **kw):
  data = synthetic.make_synthetic(num_users=80, num_items=30, seed=0)
  # Two-token IDs with shared first tokens: a trie with real choices at both levels.
  item_tokens = [[3 + i // 6, 10 + i % 6] for i in range(data.num_items)]
  cfg = T5Config(vocab_size=24, emb_dim=32, num_heads=2, head_dim=16, num_encoder_layers=1,
                 num_decoder_layers=1, mlp_dim=64, dropout_rate=0.1, logits_via_embedding=True)
  model = decoder_model.DecoderOnlyModel(decoder_only.DecoderOnlyTransformer(cfg), trie_softmax=True)
  params = model.get_initial_variables(jax.random.PRNGKey(seed),
                                       {"decoder_input_tokens": (2, 8)})["params"]
  schedule = stream_training.StreamSchedule(
      epochs=epochs, learning_rate=1e-2, warmup_steps=2, tokens_per_batch=256, max_items=8,
      bucket_multiple=32, eval_every_epochs=2, valid_users=None, eval_batch_size=32, seed=seed)
  records = []
  trainer = stream_training.StreamTrainer(model, params, data.sequences, item_tokens, schedule,
                                          vocab_size=24, model_dir=model_dir,
                                          log_fn=records.append, **kw)
  return trainer, records


def test_resume_equals_uninterrupted_run(tmp_path):
  full, _ = _trainer(str(tmp_path / "full"))
  expected = full.run()
  killed, _ = _trainer(str(tmp_path / "killed"))
  assert killed.run(stop_after_epoch=2) is None
  resumed, records = _trainer(str(tmp_path / "killed"))
  assert resumed.maybe_restore() and resumed.epoch == 2
  got = resumed.run()
  assert got["test"] == expected["test"]
  assert [r["valid/ndcg@10"] for r in got["curve"]] == [r["valid/ndcg@10"] for r in expected["curve"]]
  assert len(records) == 1  # only the epoch-4 validation ran after the resume
  jax.tree_util.tree_map(np.testing.assert_array_equal, resumed.best_params, full.best_params)


def test_sigterm_inside_an_epoch_saves_that_batch_and_the_resumed_run_ends_the_same(tmp_path):
  full, _ = _trainer(str(tmp_path / "full"))
  expected = full.run()
  killed, _ = _trainer(str(tmp_path / "killed"))
  kill_at = killed.steps_per_epoch + killed.steps_per_epoch // 2   # in the middle of epoch 1
  train = killed.trainer.train

  def train_and_signal(state, batch, *aux):
    out = train(state, batch, *aux)
    if int(out[0].step) == kill_at:
      os.kill(os.getpid(), signal.SIGTERM)
    return out
  killed.trainer.train = train_and_signal
  with stopping.stop_on_signals() as stop:
    assert killed.run(stop=stop) is None
  assert killed._ckpt["recommender"].latest_step() == kill_at
  resumed, _ = _trainer(str(tmp_path / "killed"))
  assert resumed.maybe_restore() and (resumed.epoch, resumed.batch_in_epoch) == (1, kill_at - killed.steps_per_epoch)
  got = resumed.run()
  assert got["test"] == expected["test"]
  for a, b in zip(got["curve"], expected["curve"]):
    assert {k: v for k, v in a.items() if "minutes" not in k} == {k: v for k, v in b.items() if "minutes" not in k}
  jax.tree_util.tree_map(np.testing.assert_array_equal, resumed.state.params, full.state.params)


def test_learns_and_selects_the_best_validated_parameters(tmp_path):
  trainer, records = _trainer(None, epochs=6)
  summary = trainer.run()
  assert [r["epoch"] for r in records] == [2, 4, 6]
  best = max(records, key=lambda r: r["valid/ndcg@10"])
  assert summary["best"]["epoch"] == best["epoch"]
  again = trainer.evaluate("valid", np.arange(len(trainer.sequences)))
  assert again["ndcg@10"] == pytest.approx(best["valid/ndcg@10"])
  assert records[-1]["item_nll"] < records[0]["item_nll"]
  # Popularity of the training items is the floor a learning model must clear.
  counts = np.bincount(np.concatenate([s[:-2] for s in trainer.sequences]), minlength=30)
  top10 = np.argsort(-counts, kind="stable")[:10]
  pop_hit = np.mean([s[-1] in top10 for s in trainer.sequences])
  assert summary["test"]["hit@10"] > pop_hit


def _user_tokens(num_users):
  return (16 + np.arange(num_users) % 8).astype(np.int32)   # tokens 16..23: no item uses them


def _started_rows(batches):
  """Sorted (first input token, target stream) of every non-empty row."""
  out = []
  for b in batches:
    for first, target in zip(b["decoder_input_tokens"][:, 0], b["decoder_target_tokens"]):
      if target.any():
        out.append((int(first), tuple(target[target > 0])))
  return sorted(out)


def test_all_zero_user_tokens_train_exactly_as_none():
  plain, _ = _trainer(None)
  zeros, _ = _trainer(None, user_tokens=np.zeros(len(plain.sequences), np.int32))
  for a, b in zip(plain._batches(0), zeros._batches(0), strict=True):
    assert a.keys() == b.keys()
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  assert plain.train_epoch() == zeros.train_epoch()
  jax.tree_util.tree_map(np.testing.assert_array_equal, plain.state.params, zeros.state.params)


def test_user_tokens_start_each_users_stream_and_prompt():
  tokens_U = _user_tokens(80)
  trainer, _ = _trainer(None, user_tokens=tokens_U)
  expected = sorted((int(tokens_U[u]), tuple(s)) for u, s in enumerate(trainer.streams))
  assert _started_rows(trainer._batches(0)) == expected
  metrics = trainer.train_epoch()
  assert np.isfinite(metrics["loss"]) and np.isfinite(metrics["item_nll"])

  prompts = []

  def fake_topk(params, prompt, valid, trie_arrays):
    prompts.append((np.asarray(prompt), np.asarray(valid)))
    return np.zeros((prompt.shape[0], 10), np.int32), np.zeros((prompt.shape[0], 10), np.float32)
  trainer.topk_fn = fake_topk
  users = np.arange(3, 11)   # 8 users: 8 different tokens
  trainer.evaluate("valid", users)
  histories, _ = item_streams.held_out_histories(trainer.sequences, "valid", 8)
  got = []
  for prompt, valid in prompts:
    for row, mask in zip(prompt, valid):
      if row[mask][0] == item_streams.START_ID:   # a pad row of the last batch
        continue
      u = users[np.flatnonzero(tokens_U[users] == row[mask][0])[0]]
      plain, plain_mask = item_streams.prompt_batch([histories[u]], trainer.item_tokens,
                                                    eos_id=trainer.eos_id, multiple=1)
      np.testing.assert_array_equal(row[mask][1:], plain[plain_mask][1:])
      got.append(int(u))
  assert sorted(got) == list(users)


def test_user_tokens_follow_a_mixtures_drawn_users():
  drawn = np.array([3, 3, 10, 42, 42, 42, 7, 79])
  tokens_U = _user_tokens(80)
  trainer, _ = _trainer(None, user_tokens=tokens_U, epoch_users=lambda epoch: drawn)
  expected = sorted((int(tokens_U[u]), tuple(trainer.streams[u])) for u in drawn)
  assert _started_rows(trainer._batches(0)) == expected
