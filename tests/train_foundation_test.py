"""The foundation setting end to end on tiny synthetic catalogues, through the gin files and flags a
user writes: a mixture of dataset folders (outside the repository) trains one generator and one
recommender, each dataset is evaluated over its own catalogue, an unseen one zero-shot; and a
mixture dataset without item text fails before any work."""
import json
import os
import sys

import gin
import numpy as np
import pytest

from llmrec_jax import eval as eval_lib, gin_utils, train as train_lib
from llmrec_jax.data import synthetic
from llmrec_jax.data.errors import DataError
from llmrec_jax.systems.idgenrec.run_record import RunRecord

TINY = ["MODEL_DIR = '{model_dir}'", "DATA_DIR = {data_dir}", "VOCAB_PATH = None",
        "train_script.train.dataset_vocab_size = 300", "train_script.train.bootstrap_steps = 30",
        "train_script.train.text_len = 24", "MIX_CAP = 40",
        "stream_training.StreamSchedule.epochs = 2", "stream_training.StreamSchedule.eval_every_epochs = 2",
        "stream_training.StreamSchedule.tokens_per_batch = 1024",
        "stream_training.StreamSchedule.max_items = 8", "stream_training.StreamSchedule.valid_users = None",
        "stream_training.StreamSchedule.test_users = None",
        "stream_training.StreamSchedule.eval_batch_size = 64"]


def _train(files, bindings):
  gin.clear_config(clear_constants=True)
  sys.modules["__main__"].train = train_lib.train
  configured = gin.configurable(train_lib.train)
  try:
    gin_utils.parse_gin_flags(gin_search_paths=["."], gin_files=files, gin_bindings=bindings)
    return configured()
  finally:
    gin.clear_config(clear_constants=True)


def _catalogue(root, name, users, items, seed):
  data = synthetic.make_synthetic(users, items, seed=seed, num_topics=6, max_len=10)
  return str(synthetic.write_p5(data, root / name)), data


@pytest.fixture(scope="module")
def mixture_run(tmp_path_factory):
  root = tmp_path_factory.mktemp("foundation")
  (dir_a, a), (dir_b, b), (dir_c, c) = (_catalogue(root, "shop_a", 60, 40, 0),
                                        _catalogue(root, "shop_b", 30, 30, 1),
                                        _catalogue(root, "unseen", 25, 24, 2))
  model_dir = str(root / "run")
  bindings = [t.format(model_dir=model_dir, data_dir=[dir_a, dir_b]) for t in TINY]
  summary = _train(["idgenrec_foundation.gin"], bindings)
  return dict(model_dir=model_dir, dirs=(dir_a, dir_b, dir_c), data=(a, b, c), summary=summary)


def test_the_mixture_records_its_datasets_and_tests_each_over_its_own_catalogue(mixture_run):
  r = mixture_run
  record = RunRecord.load(r["model_dir"])
  assert record.rec_form == "decoder_only" and record.data_dirs == list(r["dirs"][:2])
  test = r["summary"]["best"]["test"]
  for name, data in zip(("shop_a", "shop_b"), r["data"][:2]):
    assert test[f"{name}/users"] == data.num_users   # every test user of each dataset
  assert test["users"] == r["data"][0].num_users + r["data"][1].num_users
  weighted = sum(test[f"{n}/hit@10"] * test[f"{n}/users"] for n in ("shop_a", "shop_b"))
  assert test["hit@10"] == pytest.approx(weighted / test["users"])


def test_eval_of_one_mixture_dataset_reproduces_its_training_test_metrics(mixture_run):
  r = mixture_run
  out = eval_lib.evaluate(model_dir=r["model_dir"], data_dir=r["dirs"][1], batch_size=64)
  assert out["zero_shot"] is False
  test = r["summary"]["best"]["test"]
  for k in ("hit@5", "ndcg@5", "hit@10", "ndcg@10"):
    assert out["test"][k] == pytest.approx(test[f"shop_b/{k}"], abs=1e-9)


def test_zero_shot_ranks_the_unseen_catalogue_with_unique_generated_ids(mixture_run):
  r = mixture_run
  c = r["data"][2]
  out = eval_lib.evaluate(model_dir=r["model_dir"], data_dir=r["dirs"][2], batch_size=64)
  assert out["zero_shot"] is True and out["test"]["users"] == c.num_users
  with open(out["id_stats"]["ids_file"], encoding="utf-8") as f:
    rows = [line.rstrip("\n").split("\t") for line in f]
  assert [row[0] for row in rows] == list(c.item_ids)     # one ID per item of that catalogue
  assert len({row[1] for row in rows}) == len(rows)       # unique within it


def test_a_mixture_dataset_without_items_jsonl_fails_before_any_work(tmp_path):
  dir_a, _ = _catalogue(tmp_path, "shop_a", 30, 24, 0)
  dir_b, _ = _catalogue(tmp_path, "no_text", 30, 24, 1)
  os.remove(os.path.join(dir_b, "items.jsonl"))
  model_dir = str(tmp_path / "run")
  bindings = [t.format(model_dir=model_dir, data_dir=[dir_a, dir_b]) for t in TINY]
  with pytest.raises(DataError, match=r"no_text.*has no items\.jsonl\[\.gz\] \(item text\)"):
    _train(["idgenrec_foundation.gin"], bindings)
  assert not os.path.exists(model_dir)   # nothing was started


def test_a_dataset_folder_outside_the_repository_trains_and_evaluates_with_data_dir_only(tmp_path):
  dir_a, a = _catalogue(tmp_path, "my_shop", 40, 30, 3)
  model_dir = str(tmp_path / "run")
  bindings = [f"MODEL_DIR = '{model_dir}'", f"DATA_DIR = '{dir_a}'",
              # a smaller budget than the file's, and fixed title IDs, to keep the test short
              "train_script.train.initial_ids = 'title'", "stream_training.StreamSchedule.epochs = 2",
              "stream_id_phase.StreamIdSchedule.rounds = 1"]
  summary = _train(["idgenrec_stream_tiny.gin"], bindings)
  assert summary["best"]["test"]["users"] == a.num_users
  out = eval_lib.evaluate(model_dir=model_dir, batch_size=64)
  assert out["data_dir"] == dir_a and out["zero_shot"] is False
  for k in ("hit@10", "ndcg@10"):
    assert out["test"][k] == pytest.approx(summary["best"]["test"][k], abs=1e-9)
  with open(os.path.join(model_dir, "results.json"), encoding="utf-8") as f:
    assert json.load(f)["dataset"] == "my_shop"   # the folder's name
  # A title-ID run has no generator: an unseen catalogue gets title IDs by the same rule.
  dir_c, c = _catalogue(tmp_path, "other_shop", 20, 24, 4)
  zero = eval_lib.evaluate(model_dir=model_dir, data_dir=dir_c, batch_size=64)
  assert zero["zero_shot"] is True and zero["id_stats"]["scheme"] == "title"
  assert zero["test"]["users"] == c.num_users
  assert zero["id_stats"]["unique"] == zero["id_stats"]["items"] == c.num_items
