"""`llmrec_jax.infer` finds a run's dataset: the recorded DATA_DIR or its `data_dir` override.

The run dirs are hand-written (run_config.json and a checkpoint's ID tables): every check
here fails before params are read. `eval_test.py` restores a trained run the same way.
"""
import json

import numpy as np
import pytest

from llmrec_jax import infer as infer_lib
from llmrec_jax.checkpoints import orbax_t5x
from llmrec_jax.systems.idgenrec.run_record import RunRecord


def _run_dir(model_dir, data_dir: str, num_items: int):
  """run_config.json recording `data_dir`, and a checkpoint whose ID tables have `num_items` items."""
  model_dir.mkdir()
  RunRecord(data_dir=data_dir, rec_size="t5_tiny", vocab_size=128, template_set="llmrec_default",
            input_len=32, id_len=8, max_his=4, synthetic_users=2, synthetic_items=num_items,
            seed=0).save(str(model_dir))
  manager = orbax_t5x.CheckpointManager(str(model_dir / "recommender"))
  manager.save(7, {"target": {"w": np.zeros(2, np.float32)}, "state": {"step": np.int32(7)}},
               {"item_ids": [f"id {i}" for i in range(num_items)], "user_ids": ["user 1", "user 2"]})
  manager.close()


def _dataset(folder, items: str):
  """A P5 folder (user_sequence.txt, items.jsonl) of two users over the one-letter `items`."""
  folder.mkdir()
  (folder / "user_sequence.txt").write_text(f"u1 {' '.join(items)}\nu2 {' '.join(items[::-1])}\n",
                                            encoding="utf-8")
  (folder / "items.jsonl").write_text(
      "".join(json.dumps({"item_id": i, "title": f"item {i}"}) + "\n" for i in items), encoding="utf-8")
  return folder


def test_missing_recorded_data_dir_fails_naming_run_config_and_the_flag(tmp_path):
  _run_dir(tmp_path / "run", str(tmp_path / "moved_away"), num_items=4)
  with pytest.raises(FileNotFoundError) as e:
    infer_lib.infer(model_dir=str(tmp_path / "run"), users=["u1"])
  message = str(e.value)
  assert str(tmp_path / "run" / "run_config.json") in message
  assert str(tmp_path / "moved_away") in message
  assert "--gin.infer.data_dir=" in message


def test_data_dir_replaces_the_recorded_one_and_must_match_the_run(tmp_path, monkeypatch):
  """A relative model_dir and data_dir, from the folder that holds them."""
  _run_dir(tmp_path / "run", str(tmp_path / "moved_away"), num_items=4)
  _dataset(tmp_path / "other", "abc")
  monkeypatch.chdir(tmp_path)
  with pytest.raises(ValueError) as e:
    infer_lib.infer(model_dir="run", data_dir="other", users=["u1"])
  message = str(e.value)
  assert f"dataset {tmp_path / 'other'} has 3 items" in message
  assert str(tmp_path / "run" / "recommender" / "checkpoint_7") in message
  assert "has 4 in its ID table" in message
