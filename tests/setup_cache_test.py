"""A resumed run loads its bootstrapped generator and initial IDs from MODEL_DIR instead of
recomputing them; a cache made with other settings is ignored."""
import jax
import numpy as np
import pytest

from llmrec_jax import alternating, evaluation, idgenrec, setup_cache
from llmrec_jax import train as train_lib
from llmrec_jax.indexing import bootstrap


def _train(model_dir, **kw):
  return train_lib.train(
      model_dir=model_dir, initial_ids="bootstrap", bootstrap_steps=6, dataset_vocab_size=120,
      synthetic_users=24, synthetic_items=24, input_len=512, target_len=24, text_len=16, id_len=24,
      id_batch_size=32, eval_batch_size=8, max_eval_examples=8,
      schedule=alternating.Schedule(rounds=1, rec_epochs=0.1, id_epochs=0.05, rec_batch_size=8,
                                    id_batch_size=4, sample_num=1, max_his=4, trailing_id_phase=True),
      decode=evaluation.DecodeOptions(num_beams=4, ks=(1, 4)), **kw)


def test_resumed_run_skips_the_bootstrap_and_the_id_assignment(tmp_path, monkeypatch):
  """Stopped after one step, then resumed from another working directory: it ends without
  bootstrapping or assigning IDs again."""
  first = _train(str(tmp_path), max_optimizer_steps=1)
  assert not first["complete"]
  saved = setup_cache.load_initial_ids(str(tmp_path), _key_of(tmp_path))
  assert saved is not None and len(saved["item_ids"]) == 24 and saved["stats"]["items"]["unique"] == 24

  def recompute(*args, **kwargs):
    raise AssertionError("a resumed run recomputed what MODEL_DIR holds")
  monkeypatch.setattr(idgenrec, "bootstrap_generator", recompute)
  monkeypatch.setattr(idgenrec, "initial_ids", recompute)
  monkeypatch.setattr(idgenrec.GeneratorAssigner, "item_ids", recompute)
  elsewhere = tmp_path / "another" / "directory"
  elsewhere.mkdir(parents=True)
  monkeypatch.chdir(elsewhere)   # resumed from another working directory
  second = _train(str(tmp_path))
  assert second["complete"] and second["bootstrap"] == first["bootstrap"]
  assert second["bootstrap"]["steps"] == 6


def _key_of(model_dir):
  import json  # pylint: disable=g-import-not-at-top
  with open(model_dir / setup_cache.INITIAL_IDS, encoding="utf-8") as f:
    return json.load(f)["key"]


def test_bootstrap_cache_roundtrip_and_other_settings_are_ignored(tmp_path, caplog):
  _, params = bootstrap.init_generator(40, bootstrap.BootstrapConfig(model_size="t5_tiny"))
  key = {"bootstrap_steps": 300, "seed": 1}
  setup_cache.save_bootstrap(str(tmp_path), params, {"steps": 300, "loss_last": 1.5}, key)
  template = jax.tree_util.tree_map(np.zeros_like, params)
  got, stats = setup_cache.load_bootstrap(str(tmp_path), template, key)
  jax.tree_util.tree_map(np.testing.assert_array_equal, got, params)
  assert stats == {"steps": 300, "loss_last": 1.5}
  assert setup_cache.load_bootstrap(str(tmp_path), template, {**key, "seed": 2}) is None
  assert "recomputing" in caplog.text


def test_initial_ids_cache_roundtrip_key_and_bad_json(tmp_path):
  key = {"initial_ids": "bootstrap"}
  setup_cache.save_initial_ids(str(tmp_path), ["a b", "c"], ["u"], {"items": {"unique": 2}}, key)
  assert setup_cache.load_initial_ids(str(tmp_path), key) == {
      "item_ids": ["a b", "c"], "user_ids": ["u"], "stats": {"items": {"unique": 2}}, "key": key}
  assert setup_cache.load_initial_ids(str(tmp_path), {"initial_ids": "title"}) is None
  (tmp_path / setup_cache.INITIAL_IDS).write_text("{oops")
  with pytest.raises(ValueError, match="initial_ids.json: not valid JSON"):
    setup_cache.load_initial_ids(str(tmp_path), key)
