"""A bad newest checkpoint is named, set aside (not deleted) and the one before it restored; a
checkpoint of other sizes is an error, not a fallback."""
import logging
import os

import jax.numpy as jnp
import numpy as np
import pytest

from llmrec_jax.checkpoints import fail_safe, orbax_t5x


def _tree(step, n=1000):
  return {"a": jnp.arange(float(n)) + step, "b": {"c": jnp.full((4, 4), float(step))}}


def _two_managers(tmp_path, steps=(10, 20)):
  out = {}
  for name in ("recommender", "generator"):
    m = orbax_t5x.CheckpointManager(str(tmp_path / name), keep=3)
    for s in steps:
      m.save(s, _tree(s), {"step": s, "name": name})
    out[name] = m
  return out


# Orbax leaves an async read of the truncated array unawaited (a warning, not an error).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("how", ["truncated_array", "garbage_metadata", "missing_state"])
def test_bad_newest_checkpoint_is_named_set_aside_and_the_previous_restored(tmp_path, caplog, how,
                                                                            corrupt_checkpoint):
  managers = _two_managers(tmp_path)
  bad = corrupt_checkpoint(managers["generator"].step_path(20), how)
  # A fresh process: managers that never saw the save.
  managers = {n: orbax_t5x.CheckpointManager(str(tmp_path / n), keep=3) for n in managers}
  with caplog.at_level(logging.WARNING):
    step, restored = fail_safe.restore_newest_good({n: (m, _tree(0)) for n, m in managers.items()})
  assert step == 10
  for name, (tree, meta) in restored.items():
    np.testing.assert_array_equal(tree["a"], np.arange(1000.0) + 10)
    assert meta == {"step": 10, "name": name}
  assert bad in caplog.text and "checkpoint_20.corrupt" in caplog.text
  for name in managers:  # both items of step 20 set aside, nothing deleted
    assert sorted(os.listdir(tmp_path / name)) == ["checkpoint_10", "checkpoint_20.corrupt"]
    assert managers[name].all_steps() == [10]
  managers["recommender"].save(20, _tree(21), {"step": 21})  # the run goes on: step 20 is free again
  assert managers["recommender"].all_steps() == [10, 20]


# Orbax leaves an async read of the truncated array unawaited (a warning, not an error).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_only_bad_checkpoints_fail_with_every_reason(tmp_path, corrupt_checkpoint):
  managers = _two_managers(tmp_path)
  bad = [corrupt_checkpoint(managers["recommender"].step_path(s), how)
         for s, how in ((10, "garbage_metadata"), (20, "truncated_array"))]
  with pytest.raises(fail_safe.NoGoodCheckpointError) as err:
    fail_safe.restore_newest_good({n: (m, _tree(0)) for n, m in managers.items()})
  for path in bad:
    assert path in str(err.value)


def test_other_sizes_are_an_error_not_a_fallback(tmp_path):
  managers = _two_managers(tmp_path)
  with pytest.raises(orbax_t5x.CheckpointMismatchError, match=r"\(1000,\) in the checkpoint but \(999,\)"):
    fail_safe.restore_newest_good({n: (m, _tree(0, n=999)) for n, m in managers.items()})
  assert sorted(os.listdir(tmp_path / "recommender")) == ["checkpoint_10", "checkpoint_20"]


def test_no_checkpoint_is_none(tmp_path):
  m = orbax_t5x.CheckpointManager(str(tmp_path / "empty"))
  assert fail_safe.restore_newest_good({"x": (m, _tree(0))}) is None
