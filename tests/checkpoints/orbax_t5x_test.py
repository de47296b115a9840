import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from llmrec_jax.checkpoints import orbax_t5x
from llmrec_jax.train_state import TrainState


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
