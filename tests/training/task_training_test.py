"""Single-model (fixed-ID) training on the synthetic SeqIO tasks: the loss falls, metrics land in
the summary, a resumed run equals an uninterrupted one, restore paths and Mixtures work, and the
T5X-style gin file runs through the train entry point. Tiny shapes shared by every run."""
import json
import os
import sys

import gin
import numpy as np
import pytest

from llmrec_jax import gin_utils
from llmrec_jax import train as train_lib
from llmrec_jax.checkpoints import orbax_t5x
from llmrec_jax.checkpoints.checkpoint_config import (CheckpointConfig, RestoreCheckpointConfig,
                                                      SaveCheckpointConfig)
from llmrec_jax.data import item_catalogues
from llmrec_jax.data.dataset_config import DatasetConfig
from llmrec_jax.training import task_training

LENGTHS = {"inputs": 64, "targets": 20}
OPTIONS = task_training.TaskTrainOptions(learning_rate=3e-3, seed=0, log_every=1, eval_batch_size=4,
                                         max_eval_examples=4)
MODULE = "llmrec_jax.tasks.synthetic"


def _data(name="llmrec_synthetic", lengths=None):
  return DatasetConfig(name, lengths or LENGTHS, "train", batch_size=4, shuffle=True, seed=42,
                       module=MODULE)


def _save(restore=None):
  return CheckpointConfig(save=SaveCheckpointConfig(period=None, keep=None), restore=restore)


def _params(model_dir, step):
  return orbax_t5x.restore_params(orbax_t5x.step_dir(str(model_dir), step))


def _assert_equal_trees(a, b):
  leaves_a, leaves_b = (sorted(orbax_t5x.jax.tree_util.tree_leaves_with_path(t), key=lambda x: str(x[0]))
                        for t in (a, b))
  assert [str(p) for p, _ in leaves_a] == [str(p) for p, _ in leaves_b]
  for (path, x), (_, y) in zip(leaves_a, leaves_b):
    assert np.array_equal(np.asarray(x), np.asarray(y)), path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """'a': 6 steps in one call; 'b': 3 steps, then the same call with 6 (a resume)."""
  root = tmp_path_factory.mktemp("task_training")
  losses = []
  a = task_training.train_on_task(model_dir=str(root / "a"), dataset_cfg=_data(), total_steps=6,
                                  checkpoint_cfg=_save(), options=OPTIONS,
                                  log_fn=lambda r: losses.append(r["train/loss"]))
  b_first = task_training.train_on_task(model_dir=str(root / "b"), dataset_cfg=_data(), total_steps=3,
                                        checkpoint_cfg=_save(), options=OPTIONS)
  b = task_training.train_on_task(model_dir=str(root / "b"), dataset_cfg=_data(), total_steps=6,
                                  checkpoint_cfg=_save(), options=OPTIONS)
  return {"root": root, "a": a, "b_first": b_first, "b": b, "losses": losses}


def test_loss_falls_and_ranking_metrics_are_reported(runs):
  losses = runs["losses"]
  assert len(losses) == 6 and np.mean(losses[-2:]) < np.mean(losses[:2]) - 0.1
  test = runs["a"]["test"]["llmrec_synthetic"]
  assert set(test) >= {"hit@5", "ndcg@5", "hit@10", "ndcg@10"} and test["examples"] == 4
  assert 0.0 <= test["ndcg@10"] <= test["hit@10"] <= 1.0 and test["unmatched_targets"] == 0
  assert runs["a"]["restored_from"] == "scratch" and runs["a"]["complete"]
  assert orbax_t5x.all_steps(str(runs["root"] / "a")) == [6]  # period None: the last step only


def test_resumed_run_equals_uninterrupted_one(runs):
  b = runs["b"]
  assert b["start_step"] == 3 and b["restored_from"].endswith("checkpoint_3")
  assert orbax_t5x.all_steps(str(runs["root"] / "b")) == [3, 6]
  _assert_equal_trees(_params(runs["root"] / "a", 6), _params(runs["root"] / "b", 6))


def test_restore_path_starts_from_another_runs_checkpoint(runs, tmp_path):
  whole = task_training.train_on_task(
      model_dir=str(tmp_path / "c"), dataset_cfg=_data(), total_steps=6, options=OPTIONS,
      checkpoint_cfg=_save(RestoreCheckpointConfig(path=str(runs["root"] / "b"))))
  assert whole["restored_from"] == orbax_t5x.step_dir(str(runs["root"] / "b"), 6)
  assert whole["start_step"] == 6 and whole["test"] == runs["b"]["test"]
  params_only = task_training.train_on_task(
      model_dir=str(tmp_path / "d"), dataset_cfg=_data(), total_steps=0, options=OPTIONS,
      checkpoint_cfg=_save(RestoreCheckpointConfig(
          path=orbax_t5x.step_dir(str(runs["root"] / "a"), 6), mode="specific", strict=False)))
  assert params_only["start_step"] == 0
  _assert_equal_trees(_params(tmp_path / "d", 0), _params(runs["root"] / "a", 6))
  with pytest.raises(FileNotFoundError, match="no checkpoint_<step>"):
    task_training.train_on_task(model_dir=str(tmp_path / "e"), dataset_cfg=_data(), total_steps=1,
                                options=OPTIONS,
                                checkpoint_cfg=_save(RestoreCheckpointConfig(path=str(tmp_path))))


def test_mixture_trains_and_ranks_each_task_with_a_catalogue(tmp_path, monkeypatch):
  _data().get_provider()  # registers the tasks and their catalogues
  monkeypatch.delitem(item_catalogues._CATALOGUES, "llmrec_synthetic_b")  # pylint: disable=protected-access
  out = task_training.train_on_task(model_dir=str(tmp_path), dataset_cfg=_data("llmrec_synthetic_mix"),
                                    total_steps=2, options=OPTIONS)
  assert out["steps"] == 2 and np.isfinite(out["train"]["loss"])
  assert list(out["test"]) == ["llmrec_synthetic"] and out["not_evaluated"] == ["llmrec_synthetic_b"]
  assert orbax_t5x.all_steps(str(tmp_path)) == []  # no SaveCheckpointConfig: nothing saved


def test_lengths_must_be_inputs_and_targets(tmp_path):
  with pytest.raises(ValueError, match="exactly"):
    task_training.train_on_task(model_dir=str(tmp_path), total_steps=1, options=OPTIONS,
                                dataset_cfg=_data(lengths={"inputs": 64, "target": 20}))


@pytest.fixture
def gin_env(monkeypatch):
  gin.clear_config(clear_constants=True)
  monkeypatch.setattr(sys.modules["__main__"], "train", train_lib.train, raising=False)
  configured = gin.configurable(train_lib.train)
  gin_utils.register_t5x_configs()
  yield configured
  gin.clear_config(clear_constants=True)


def test_t5x_gin_file_trains_through_the_entry_point(gin_env, tmp_path):
  """finetune_tiny.gin with T5X's macros, a submesh partitioner (4 x 2 over 8 CPU devices)."""
  gin_utils.parse_gin_flags(gin_search_paths=["."], gin_files=["t5x/finetune_tiny.gin"], gin_bindings=[
      f"MODEL_DIR = '{tmp_path}'", "TRAIN_STEPS = 2", f"TASK_FEATURE_LENGTHS = {LENGTHS}",
      "BATCH_SIZE = 4", "EVAL_EXAMPLES = 4", "SAVING_PERIOD = 1",
      "train_script.train.eval_batch_size = 4", "partitioning.PjitPartitioner.num_partitions = None",
      "partitioning.PjitPartitioner.model_parallel_submesh = (1, 1, 1, 2)"], finalize_config=False)
  summary = gin_env()
  with open(os.path.join(tmp_path, "results.json"), encoding="utf-8") as f:
    saved = json.load(f)
  assert saved["steps"] == 2 and saved["mixture_or_task_name"] == "llmrec_synthetic"
  assert saved["test"]["llmrec_synthetic"]["examples"] == 4 and summary["best"]["test"] == saved["test"]
  assert orbax_t5x.all_steps(str(tmp_path)) == [1, 2]
  assert os.path.isfile(os.path.join(tmp_path, "metrics.jsonl"))


def test_t5x_arguments_fail_loudly_in_idgenrec_runs(tmp_path):
  with pytest.raises(ValueError, match="total_steps"):
    train_lib.train(model_dir=str(tmp_path), total_steps=10)
  with pytest.raises(ValueError, match="restore"):
    train_lib.train(model_dir=str(tmp_path), checkpoint_cfg=_save(RestoreCheckpointConfig(path="/x")))


def test_idgenrec_runs_take_save_period_and_keep():
  import dataclasses  # pylint: disable=g-import-not-at-top
  from llmrec_jax.systems.idgenrec import alternating  # pylint: disable=g-import-not-at-top
  cfg = CheckpointConfig(save=SaveCheckpointConfig(period=50, keep=3))
  schedule, keep = train_lib._idgenrec_checkpoint_settings(  # pylint: disable=protected-access
      cfg, None, alternating.Schedule(), 2, "encoder_decoder")
  assert schedule == dataclasses.replace(alternating.Schedule(), checkpoint_every_steps=50) and keep == 3
  assert train_lib._idgenrec_checkpoint_settings(  # pylint: disable=protected-access
      None, None, alternating.Schedule(), 2, "encoder_decoder") == (alternating.Schedule(), 2)
