import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from llmrec_jax.checkpoints import orbax_t5x
from llmrec_jax.training.train_state import TrainState


def _state(step):
  params = {"encoder": {"kernel": jnp.arange(12.0).reshape(3, 4) + step}, "bias": jnp.ones(5)}
  tx = optax.adamw(1e-3)
  return TrainState.create(params, tx).replace(step=jnp.int32(step))


def test_layout_keep_and_roundtrip(tmp_path):
  m = orbax_t5x.CheckpointManager(str(tmp_path), keep=2)
  for s in (1, 2, 3):
    m.save(s, orbax_t5x.to_t5x_tree(_state(s)), {"ids": {"B0001": "red lipstick"}, "epoch": s})
  assert m.all_steps() == [2, 3]
  assert sorted(os.listdir(tmp_path)) == ["checkpoint_2", "checkpoint_3"]
  assert os.path.isdir(tmp_path / "checkpoint_3" / "state")
  template = orbax_t5x.to_t5x_tree(_state(0))
  tree, meta = m.restore(template)
  assert jax.tree_util.tree_structure(tree) == jax.tree_util.tree_structure(template)
  restored = orbax_t5x.from_t5x_tree(tree)
  want = _state(3)
  jax.tree_util.tree_map(np.testing.assert_array_equal, restored.params, want.params)
  assert int(restored.step) == 3 and meta == {"ids": {"B0001": "red lipstick"}, "epoch": 3}
  older, _ = m.restore(template, step=2)
  assert int(older["state"]["step"]) == 2


def test_restore_without_checkpoint_fails_clearly(tmp_path):
  m = orbax_t5x.CheckpointManager(str(tmp_path / "empty"))
  with pytest.raises(FileNotFoundError, match="checkpoint_<step>"):
    m.restore(orbax_t5x.to_t5x_tree(_state(0)))


def test_step_functions_agree_with_the_manager_and_create_nothing(tmp_path):
  root = str(tmp_path / "run" / "recommender")
  assert orbax_t5x.all_steps(root) == [] and orbax_t5x.latest_step(root) is None
  assert not os.path.exists(root)
  m = orbax_t5x.CheckpointManager(root, keep=3)
  for s in (5, 12, 40):
    m.save(s, orbax_t5x.to_t5x_tree(_state(s)))
  os.rename(orbax_t5x.step_dir(root, 40), orbax_t5x.step_dir(root, 40) + ".corrupt")  # fail_safe's
  m.reload()
  assert orbax_t5x.all_steps(root) == m.all_steps() == [5, 12]
  assert orbax_t5x.latest_step(root) == m.latest_step() == 12
  assert orbax_t5x.step_dir(root, 12) == m.step_path(12) == os.path.join(root, "checkpoint_12")
  params = orbax_t5x.restore_params(orbax_t5x.step_dir(root, 12))
  jax.tree_util.tree_map(np.testing.assert_array_equal, params, _state(12).params)


def test_model_config_is_saved_with_every_step_and_read_back_equal(tmp_path):
  from llmrec_jax import model_sizes
  config = model_sizes.t5_config("t5_tiny", vocab_size=300, dropout_rate=0.0, dtype="bfloat16")
  m = orbax_t5x.CheckpointManager(str(tmp_path), model_config=config)
  m.save(1, orbax_t5x.to_t5x_tree(_state(1)), {"epoch": 1})
  _, meta = m.restore(orbax_t5x.to_t5x_tree(_state(0)))
  assert meta["epoch"] == 1
  path = orbax_t5x.step_dir(str(tmp_path), 1)
  assert orbax_t5x.restore_metadata(path) == meta
  for saved in (orbax_t5x.saved_model_config(path), orbax_t5x.saved_model_config(path, meta)):
    assert saved == config and hash(saved) == hash(config)
  plain = orbax_t5x.CheckpointManager(str(tmp_path / "plain"))
  plain.save(1, orbax_t5x.to_t5x_tree(_state(1)))
  assert orbax_t5x.saved_model_config(orbax_t5x.step_dir(str(tmp_path / "plain"), 1)) is None


def test_bad_saved_model_config_names_the_folder(tmp_path):
  with pytest.raises(orbax_t5x.CheckpointReadError, match=r"ckpt/metadata: model_config is not a T5Config"):
    orbax_t5x.saved_model_config(str(tmp_path / "ckpt"), {"model_config": {"vocab_size": 10, "depth": 2}})
  with pytest.raises(orbax_t5x.CheckpointReadError, match="model_config is a list"):
    orbax_t5x.saved_model_config(str(tmp_path / "ckpt"), {"model_config": [1]})
