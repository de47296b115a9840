"""T5X's checkpoint configs: its defaults, and a loud failure for what we cannot honour."""
import gin
import pytest

from llmrec_jax import gin_utils
from llmrec_jax.checkpoints.checkpoint_config import (CheckpointConfig, RestoreCheckpointConfig,
                                                      SaveCheckpointConfig)


def test_defaults_are_t5x_s():
  save = SaveCheckpointConfig()
  assert (save.dtype, save.period, save.keep, save.save_dataset) == ("float32", None, None, False)
  restore = RestoreCheckpointConfig(path="/tmp/x")
  assert (restore.mode, restore.strict, restore.fallback_to_scratch, restore.dtype) == (
      "latest", True, False, None)
  assert CheckpointConfig() == CheckpointConfig(save=None, restore=None)


@pytest.mark.parametrize("kwargs", [
    {"dtype": "bfloat16"}, {"period": 0}, {"keep": -1}, {"period": 2.5}, {"save_dataset": True},
    {"keep_dataset_checkpoints": 1}, {"checkpointer_cls": object}, {"state_transformation_fns": [len]},
])
def test_save_refuses_what_it_cannot_honour(kwargs):
  with pytest.raises(ValueError, match=f"SaveCheckpointConfig.{next(iter(kwargs))}"):
    SaveCheckpointConfig(**kwargs)


@pytest.mark.parametrize("kwargs", [
    {"mode": "newest"}, {"dtype": "bfloat16"}, {"assignment_map": [("a", "b")]},
    {"fallback_to_scratch": True}, {"restore_dataset": True}, {"path": ""},
])
def test_restore_refuses_what_it_cannot_honour(kwargs):
  with pytest.raises(ValueError, match="RestoreCheckpointConfig"):
    RestoreCheckpointConfig(**{"path": "/tmp/x", **kwargs})


def test_training_restores_one_path_and_not_mode_all():
  assert RestoreCheckpointConfig(path=["/tmp/a"]).check_for_training() == "/tmp/a"
  assert RestoreCheckpointConfig(path=[]).check_for_training() is None  # from scratch
  with pytest.raises(ValueError, match="mode='all'"):
    RestoreCheckpointConfig(path="/tmp/a", mode="all").check_for_training()
  with pytest.raises(ValueError, match="one checkpoint"):
    RestoreCheckpointConfig(path=["/tmp/a", "/tmp/b"]).check_for_training()
  with pytest.raises(TypeError):
    CheckpointConfig(save=RestoreCheckpointConfig(path="/tmp/a"))


@pytest.fixture
def t5x_gin():
  gin.clear_config(clear_constants=True)
  gin_utils.register_t5x_configs()
  yield
  gin.clear_config(clear_constants=True)


def test_t5x_gin_names_bind_and_typos_fail(t5x_gin):
  del t5x_gin
  text = ("from __gin__ import dynamic_registration\n"
          "from llmrec_jax import t5x_utils as utils\n"
          "utils.CheckpointConfig.save = @utils.SaveCheckpointConfig()\n"
          "utils.SaveCheckpointConfig.period = 100\n")
  gin.parse_config(text)
  gin.parse_config("utils.SaveCheckpointConfig.keep = 3")  # a command-line binding: no import
  cfg = gin.get_configurable(CheckpointConfig)()
  assert cfg.save == SaveCheckpointConfig(period=100, keep=3)
  with pytest.raises(ValueError, match="perod"):
    gin.parse_config("utils.SaveCheckpointConfig.perod = 100")
