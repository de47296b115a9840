"""Semantic-ID runs end to end on a tiny synthetic catalogue, through the gin files a user runs:
the codes are unique and are what the recommender trains and ranks on, `eval` reproduces the
run's test, a rerun reuses the codes, and a bad embeddings file fails before any work."""
import json
import os
import sys

import gin
import numpy as np
import pytest

from llmrec_jax import eval as eval_lib, gin_utils, train as train_lib
from llmrec_jax.checkpoints import layout, orbax_t5x
from llmrec_jax.data import synthetic
from llmrec_jax.indexing import code_tokens
from llmrec_jax.quantization import collisions
from llmrec_jax.systems.semantic_ids import codes as codes_lib

FILES = ["idgenrec.gin", "semantic_ids/{scheme}.gin", "runs/cpu_stream_table.gin"]
TINY = ["MODEL_DIR = '{model_dir}'", "DATA_DIR = '{data_dir}'",
        "semantic_ids.SemanticIds.embeddings = 'npy'",
        "semantic_ids.SemanticIds.embeddings_file = '{npy}'",
        "semantic_ids.SemanticIds.codebook_size = 4", "semantic_ids.SemanticIds.hidden_dims = (16,)",
        "semantic_ids.SemanticIds.latent_dim = 4", "semantic_ids.SemanticIds.rqvae_epochs = 30",
        "stream_training.StreamSchedule.epochs = 2", "stream_training.StreamSchedule.eval_every_epochs = 2",
        "stream_training.StreamSchedule.tokens_per_batch = 1024",
        "stream_training.StreamSchedule.max_items = 8", "stream_training.StreamSchedule.valid_users = None",
        "stream_training.StreamSchedule.test_users = None",
        "stream_training.StreamSchedule.eval_batch_size = 64"]


def _train(scheme, **values):
  gin.clear_config(clear_constants=True)
  sys.modules["__main__"].train = train_lib.train
  configured = gin.configurable(train_lib.train)
  try:
    gin_utils.parse_gin_flags(gin_search_paths=["."], gin_files=[f.format(scheme=scheme) for f in FILES],
                              gin_bindings=[t.format(**values) for t in TINY])
    return configured()
  finally:
    gin.clear_config(clear_constants=True)


def _catalogue(root):
  data = synthetic.make_synthetic(50, 36, seed=0, num_topics=6, max_len=10)
  # Content vectors: 6 tight clusters (by topic of the item index), so codes share prefixes.
  rng = np.random.default_rng(0)
  centers = rng.normal(size=(6, 12)) * 3
  x_NxD = (centers[np.arange(data.num_items) % 6] + 0.1 * rng.normal(size=(data.num_items, 12)))
  np.save(root / "emb.npy", x_NxD.astype(np.float32))
  return str(synthetic.write_p5(data, root / "shop")), str(root / "emb.npy"), data


@pytest.fixture(scope="module")
def tiger_run(tmp_path_factory):
  root = tmp_path_factory.mktemp("semantic")
  data_dir, npy, data = _catalogue(root)
  model_dir = str(root / "run")
  summary = _train("tiger", model_dir=model_dir, data_dir=data_dir, npy=npy)
  return dict(model_dir=model_dir, data_dir=data_dir, npy=npy, data=data, summary=summary)


def test_codes_are_unique_and_are_the_recommenders_item_ids(tiger_run):
  r = tiger_run
  with open(os.path.join(r["model_dir"], "semantic_ids.json"), encoding="utf-8") as f:
    saved = json.load(f)
  codes_NxL = np.asarray(saved["codes"])
  assert saved["item_ids"] == list(r["data"].item_ids)
  assert codes_NxL.shape == (r["data"].num_items, 4)  # 3 RQ-VAE levels + TIGER's extra level
  assert collisions.collision_rate(codes_NxL) == 0.0
  assert r["summary"]["semantic_ids"]["level_sizes"][:3] == [4, 4, 4]
  vocab = code_tokens.CodeVocabulary.load(r["model_dir"])
  root = layout.best_root(r["model_dir"])
  meta = orbax_t5x.restore_metadata(orbax_t5x.step_dir(root, orbax_t5x.CheckpointManager(root).latest_step()))
  assert [list(t) for t in meta["item_tokens"]] == vocab.item_tokens(codes_NxL)
  assert r["summary"]["best"]["test"]["users"] == r["data"].num_users


def test_eval_reproduces_the_runs_test_metrics(tiger_run):
  out = eval_lib.evaluate(model_dir=tiger_run["model_dir"], batch_size=64, splits=("test",))
  for k in ("hit@5", "ndcg@5", "hit@10", "ndcg@10"):
    assert out["test"][k] == pytest.approx(tiger_run["summary"]["best"]["test"][k], abs=1e-9)


def test_a_rerun_reuses_the_codes(tiger_run, monkeypatch):
  """What a resumed run reads before its first step: the saved codes, not a new RQ-VAE."""
  from llmrec_jax.systems.semantic_ids import run as run_lib

  def fail(*args, **kwargs):
    raise AssertionError("the codes were recomputed")
  monkeypatch.setattr(codes_lib, "quantize", fail)
  config = codes_lib.SemanticIds(embeddings="npy", embeddings_file=tiger_run["npy"], codebook_size=4,
                                 hidden_dims=(16,), latent_dim=4, rqvae_epochs=30)  # as TINY binds
  vocab, item_ids, stats = run_lib.semantic_item_ids(tiger_run["data"], config, tiger_run["model_dir"],
                                                     tiger_run["data_dir"])
  with open(os.path.join(tiger_run["model_dir"], "initial_ids.json"), encoding="utf-8") as f:
    assert item_ids == json.load(f)["item_ids"]
  assert stats == tiger_run["summary"]["semantic_ids"]
  assert vocab.vocab_size == code_tokens.CodeVocabulary.load(tiger_run["model_dir"]).vocab_size


@pytest.mark.parametrize("bad, message", [
    (lambda x: x[:-1], r"emb_bad\.npy: 35 rows but the catalogue has 36 items"),
    (lambda x: np.where(np.arange(36)[:, None] == 7, np.nan, x), r"emb_bad\.npy: 1 rows? contains? NaN"),
])
def test_a_bad_embeddings_file_fails_naming_it_before_any_work(tiger_run, tmp_path, bad, message):
  x = np.load(tiger_run["npy"])
  np.save(tmp_path / "emb_bad.npy", bad(x))
  model_dir = tmp_path / "run"
  with pytest.raises(ValueError, match=message):
    _train("lcrec", model_dir=str(model_dir), data_dir=tiger_run["data_dir"],
           npy=str(tmp_path / "emb_bad.npy"))
  assert not (model_dir / "semantic_ids.json").exists() and not (model_dir / "recommender").exists()


@pytest.mark.parametrize("scheme", ["tiger", "lcrec"])
def test_identical_embeddings_still_get_unique_codes(scheme):
  config = codes_lib.SemanticIds(codebook_size=4, hidden_dims=(8,), latent_dim=4, rqvae_epochs=2,
                                 collisions=scheme)
  codes_NxL, stats = codes_lib.quantize(np.ones((30, 6), np.float32), config)
  assert collisions.collision_rate(codes_NxL) == 0.0 and stats["collision_rate_after"] == 0.0
  assert stats["collision_rate"] == 1.0  # every item collided before the scheme's fix
  # LC-Rec keeps 3 levels (30 items > 4 codes: it spreads over the levels above); TIGER adds one.
  assert codes_NxL.shape[1] == (4 if scheme == "tiger" else 3)


def test_settings_a_semantic_run_cannot_honour_fail_naming_them(tmp_path):
  with pytest.raises(ValueError, match="rec_form='decoder_only'"):
    train_lib.train(model_dir=str(tmp_path), initial_ids="semantic",
                    semantic_ids=codes_lib.SemanticIds())
  with pytest.raises(ValueError, match="needs train.semantic_ids"):
    train_lib.train(model_dir=str(tmp_path), initial_ids="semantic", rec_form="decoder_only")
  with pytest.raises(ValueError, match="embeddings_file"):
    codes_lib.SemanticIds(embeddings="npy")
  with pytest.raises(FileNotFoundError, match="nowhere.npy"):
    train_lib.train(model_dir=str(tmp_path), initial_ids="semantic", rec_form="decoder_only",
                    semantic_ids=codes_lib.SemanticIds(embeddings="npy", embeddings_file="/nowhere.npy"))


def test_user_tokens_reach_the_stream_recommender_as_each_users_start_token(tiger_run, tmp_path,
                                                                            monkeypatch):
  from llmrec_jax.systems.idgenrec import stream_run
  from llmrec_jax.systems.semantic_ids import run as run_lib
  seen = {}

  def fake_train_stream(item_ids, data, vocab, vocab_size, **kwargs):
    seen.update(item_ids=item_ids, vocab=vocab, user_tokens=kwargs["user_tokens"])
    return {"best": None}
  monkeypatch.setattr(stream_run, "train_stream", fake_train_stream)
  config = codes_lib.SemanticIds(embeddings="npy", embeddings_file=tiger_run["npy"], codebook_size=4,
                                 hidden_dims=(8,), latent_dim=4, rqvae_epochs=2, user_tokens=5)
  saved = []
  run_lib.run(config, tiger_run["data"], tiger_run["data_dir"], str(tmp_path), lambda **kw: saved.append(kw)
              or type("R", (), {"save": lambda self, d: None})(), log_fn=None, rec_size="t5_tiny",
              dropout_rate=0.0, schedule=None)
  vocab, users = seen["vocab"], tiger_run["data"].user_ids
  assert saved[0]["vocab_size"] == vocab.vocab_size
  assert seen["user_tokens"].tolist() == [vocab.user_token(u) for u in users]
  first_user = vocab.vocab_size - 5
  assert set(seen["user_tokens"].tolist()) <= set(range(first_user, vocab.vocab_size))
  assert all(vocab.encode(i) for i in seen["item_ids"])   # every ID parses back into code tokens
