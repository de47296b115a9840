"""Decoder-only runs after training (`stream_inference`, through `eval` and `infer`): the run's own
dataset reproduces the trainer's metrics, an unseen catalogue is ranked zero-shot over its own
items alone with unique generated IDs, and what cannot work fails naming why."""
import dataclasses
import json
import shutil

import jax
import numpy as np
import optax
import pytest

from llmrec_jax import decoder_model, eval as eval_lib, infer as infer_lib, models, network
from llmrec_jax.checkpoints import layout, orbax_t5x
from llmrec_jax.data import synthetic
from llmrec_jax.data.errors import DataError
from llmrec_jax.network import T5Config, decoder_only
from llmrec_jax.systems.idgenrec import bootstrap, components as idgenrec, setup_cache
from llmrec_jax.systems.idgenrec import stream_inference, stream_training
from llmrec_jax.systems.idgenrec.run_record import VOCAB_FILE, RunRecord
from llmrec_jax.training.train_state import TrainState

TEXT_LEN = 16
MAX_ITEMS = 8
BATCH = 16


def _tiny(vocab_size: int) -> T5Config:
  return T5Config(vocab_size=vocab_size, emb_dim=32, num_heads=2, head_dim=16, num_encoder_layers=1,
                  num_decoder_layers=1, mlp_dim=64, dropout_rate=0.0, logits_via_embedding=True)


def _record(data_dir, vocab_size: int, **fields) -> RunRecord:
  return RunRecord(data_dir=str(data_dir), rec_size="t5_tiny", vocab_size=vocab_size,
                   template_set="llmrec_default", input_len=64, id_len=16, max_his=MAX_ITEMS,
                   synthetic_users=0, synthetic_items=0, seed=0, rec_form="decoder_only",
                   text_len=TEXT_LEN, **fields)


def _trainer(model_dir, sequences, item_tokens, vocab_size: int, epochs: int):
  model = decoder_model.DecoderOnlyModel(decoder_only.DecoderOnlyTransformer(_tiny(vocab_size)),
                                         trie_softmax=True)
  params = model.get_initial_variables(jax.random.PRNGKey(0), {"decoder_input_tokens": (2, 8)})["params"]
  schedule = stream_training.StreamSchedule(
      epochs=epochs, learning_rate=1e-2, warmup_steps=2, tokens_per_batch=2048, max_items=MAX_ITEMS,
      bucket_multiple=32, eval_every_epochs=2, valid_users=None, eval_batch_size=BATCH, seed=0)
  return stream_training.StreamTrainer(model, params, sequences, item_tokens, schedule,
                                       vocab_size=vocab_size, model_dir=str(model_dir))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A trained decoder-only run on catalogue A (title IDs) with an ID generator, and catalogue B
  (other items, other users) it never saw: (model_dir, dir A, dir B, B's data, trainer summary)."""
  root = tmp_path_factory.mktemp("stream_run")
  data_a = synthetic.make_synthetic(num_users=40, num_items=30, seed=0)
  data_b = synthetic.make_synthetic(num_users=20, num_items=24, seed=1)
  data_b = dataclasses.replace(data_b, item_ids=tuple("B" + i for i in data_b.item_ids))
  dir_a, dir_b = synthetic.write_p5(data_a, root / "a"), synthetic.write_p5(data_b, root / "b")
  tokenizer, vocab_size, spm_path = idgenrec.load_tokenizer(None, data_a, dataset_vocab_size=120)
  model_dir = root / "run"
  model_dir.mkdir()
  shutil.copyfile(spm_path, model_dir / VOCAB_FILE)
  ids = idgenrec.fixed_item_ids("title", data_a, str(dir_a), encode=tokenizer.encode)
  trainer = _trainer(model_dir, data_a.sequences, [tokenizer.encode(t) for t in ids], vocab_size, 2)
  summary = trainer.run()
  gen_cfg = _tiny(vocab_size)
  gen_params = models.EncoderDecoderModel(network.Transformer(gen_cfg)).get_initial_variables(
      jax.random.PRNGKey(1), {"encoder_input_tokens": (1, 8), "decoder_input_tokens": (1, 4)})["params"]
  manager = orbax_t5x.CheckpointManager(layout.generator_root(str(model_dir)), model_config=gen_cfg)
  manager.save(3, orbax_t5x.to_t5x_tree(TrainState.create(gen_params, optax.sgd(1.0))))
  _record(dir_a, vocab_size).save(str(model_dir))
  return model_dir, dir_a, dir_b, data_b, summary


def test_own_dataset_reproduces_the_trainers_metrics(run):
  model_dir, dir_a, _, _, summary = run
  out = eval_lib.evaluate(model_dir=str(model_dir), batch_size=BATCH)
  assert out["zero_shot"] is False and out["data_dir"] == str(dir_a)
  assert out["test"]["hit@10"] > 0  # something to compare
  assert out["test"] == summary["test"]
  assert out["valid"] == {k[len("valid/"):]: v for k, v in summary["best"].items()
                          if k.startswith("valid/")}
  # Another batch size (other padding, other batch cuts) ranks the same.
  again = eval_lib.evaluate(model_dir=str(model_dir), data_dir=str(dir_a), batch_size=5)
  assert again["test"] == pytest.approx(summary["test"], abs=1e-6)


def test_zero_shot_ranks_only_the_unseen_catalogue_with_unique_generated_ids(run, monkeypatch):
  model_dir, _, dir_b, data_b, _ = run
  r = stream_inference.restore(str(model_dir))
  cat = stream_inference.catalogue(r, str(dir_b))
  assert cat.zero_shot and cat.data.item_ids == data_b.item_ids
  assert len(set(cat.textual_ids)) == len(set(map(tuple, cat.item_tokens))) == data_b.num_items
  assert cat.item_tokens == [r.tokenizer.encode(t) for t in cat.textual_ids]
  with open(cat.id_stats["ids_file"], encoding="utf-8") as f:
    assert [line.rstrip("\n").split("\t") for line in f] == [
        [i, t] for i, t in zip(data_b.item_ids, cat.textual_ids)]
  # Written once: eval and infer below read them back (the generator does not run again).
  saved = json.loads((model_dir / "zero_shot" / "b" / "ids.json").read_text(encoding="utf-8"))
  assert saved["textual_ids"] == cat.textual_ids
  assert saved["key"]["generator"] == str(model_dir / "generator" / "checkpoint_3")
  histories = [s[:-1] for s in data_b.sequences]
  items, scores = stream_inference.recommend(r, cat, histories, top_k=10)
  assert items.shape == (data_b.num_users, 10)
  assert ((items >= 0) & (items < data_b.num_items)).all()
  assert all(len(set(row)) == 10 for row in items.tolist())
  assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first
  monkeypatch.setattr(idgenrec.GeneratorAssigner, "item_ids", None)
  out = eval_lib.evaluate(model_dir=str(model_dir), data_dir=str(dir_b), batch_size=BATCH)
  assert out["zero_shot"] is True and out["items"] == data_b.num_items
  assert out["test"]["users"] == data_b.num_users and 0.0 <= out["test"]["ndcg@10"] <= 1.0
  assert out["id_stats"]["unique"] == data_b.num_items
  # infer: the catalogue's own item ids and textual IDs, the same ranking as `recommend`.
  user = data_b.user_ids[3]
  [got] = infer_lib.infer(model_dir=str(model_dir), data_dir=str(dir_b), users=[user], top_k=5)
  want, _ = stream_inference.recommend(r, cat, [data_b.sequences[3]], top_k=5)
  assert got["zero_shot"] and [rec["item_id"] for rec in got["recommendations"]] == [
      data_b.item_ids[i] for i in want[0]]
  assert [rec["textual_id"] for rec in got["recommendations"]] == [cat.textual_ids[i] for i in want[0]]
  [seen] = infer_lib.infer(model_dir=str(model_dir), data_dir=str(dir_b), users=[user], top_k=5,
                           exclude_seen=True)
  history = set(data_b.item_ids[i] for i in data_b.sequences[3])
  assert not history & {rec["item_id"] for rec in seen["recommendations"]}


def _untrained_run(model_dir, record: RunRecord, item_tokens, sequences, spiece):
  """A run dir with an untrained best/ checkpoint of `item_tokens`, no generator."""
  model_dir.mkdir()
  _trainer(model_dir, sequences, item_tokens, record.vocab_size, 1).save()
  record.save(str(model_dir))
  shutil.copyfile(spiece, model_dir / VOCAB_FILE)
  return model_dir


def _tokens(num_items: int) -> list[list[int]]:
  return [[3 + i % 40, 50 + i // 40] for i in range(num_items)]


def test_mixture_dataset_gets_its_slice_of_the_checkpoints_ids(run, tmp_path):
  model_dir, dir_a, dir_b, data_b, _ = run
  data_a = synthetic.make_synthetic(num_users=40, num_items=30, seed=0)
  tokens = _tokens(data_a.num_items + data_b.num_items)
  vocab_size = RunRecord.load(str(model_dir)).vocab_size
  mixture = _untrained_run(tmp_path / "mix", _record(dir_a, vocab_size, data_dirs=[str(dir_a), str(dir_b)]),
                           tokens, data_a.sequences, model_dir / VOCAB_FILE)
  r = stream_inference.restore(str(mixture))
  cat = stream_inference.catalogue(r, str(dir_b))
  assert not cat.zero_shot and cat.item_tokens == tokens[data_a.num_items:]
  assert stream_inference.catalogue(r, str(dir_a)).item_tokens == tokens[:data_a.num_items]


def test_what_cannot_work_fails_naming_why(run, tmp_path):
  model_dir, dir_a, dir_b, _, _ = run
  data_a = synthetic.make_synthetic(num_users=40, num_items=30, seed=0)
  vocab_size = RunRecord.load(str(model_dir)).vocab_size
  # Recorded DATA_DIR B, a checkpoint of A's 30 items: not the run's dataset.
  wrong = _untrained_run(tmp_path / "wrong", _record(dir_b, vocab_size), _tokens(data_a.num_items),
                         data_a.sequences, model_dir / VOCAB_FILE)
  r = stream_inference.restore(str(wrong))
  with pytest.raises(ValueError) as e:
    stream_inference.catalogue(r)
  assert str(wrong / "best") in str(e.value) and f"{dir_b} (24 items)" in str(e.value)
  # Fixed IDs (no generator/, no bootstrap/): no IDs for a catalogue it never saw.
  with pytest.raises(FileNotFoundError, match="zero-shot needs a generator .*: this run used fixed IDs"):
    stream_inference.catalogue(r, str(dir_a))
  # No item text: fails first, naming items.jsonl.
  textless = tmp_path / "textless"
  textless.mkdir()
  shutil.copyfile(dir_b / "user_sequence.txt", textless / "user_sequence.txt")
  with pytest.raises(DataError, match="items.jsonl"):
    eval_lib.evaluate(model_dir=str(wrong), data_dir=str(textless))


def test_bootstrapped_generator_restores_with_the_recorded_size(tmp_path):
  """bootstrap/ holds params only: the network comes from the record's gen_size."""
  config, params = bootstrap.init_generator(64, bootstrap.BootstrapConfig(
      model_size="t5_tiny", max_input_tokens=TEXT_LEN))
  setup_cache.save_bootstrap(str(tmp_path), params, {"steps": 5}, {})
  got_config, got_params, path = stream_inference.restore_generator(
      str(tmp_path), _record("synthetic", 64))
  assert got_config == config and path == str(tmp_path / "bootstrap" / "checkpoint_5")
  jax.tree_util.tree_map(np.testing.assert_array_equal, got_params, params)
