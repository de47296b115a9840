"""Test-wide JAX settings: CPU only, 8 simulated devices for sharding tests, strict ranks."""
import glob
import os
import pathlib
import shutil

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import jax  # noqa: E402
import pytest  # noqa: E402

# 8 CPU devices so mesh tests (8x1, 4x2, 2x4) can run; unsharded code uses device 0.
jax.config.update("jax_num_cpu_devices", 8)
# Catch accidental broadcasting between arrays of different rank.
jax.config.update("jax_numpy_rank_promotion", "raise")

REPO = pathlib.Path(__file__).resolve().parents[1]
# Tests build the same tiny models many times (fresh loops, restored runs); XLA's persistent
# cache turns every repeat compilation into a disk read. Kept in the (git-ignored) repo .cache.
jax.config.update("jax_compilation_cache_dir", str(REPO / ".cache" / "jax_compilation"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
SHARED = (REPO / ".." / "shared").resolve()


@pytest.fixture(scope="session")
def shared_dir() -> pathlib.Path:
  """../shared beside the checkout (CI has it); tests that need it skip loudly without it."""
  if not (SHARED / "data").is_dir():
    pytest.skip(f"{SHARED} not found: real-data tests need ../shared beside the checkout")
  return SHARED


# The longest test files (warm-cache seconds, `pytest --durations=0`, 2026-12-06), run first: with
# `-n 2 --dist loadfile` xdist hands out files in collection order, and a long file handed out
# last leaves the other worker idle until it ends (longest first keeps both busy to the end).
LONGEST_FILES = ("demo_quality_test.py", "alternating_test.py", "demo_test.py", "launch_test.py",
                 "decoder_model_test.py", "models_test.py", "decoder_only_test.py",
                 "stream_id_phase_test.py", "id_phase_test.py", "stream_training_test.py",
                 "train_foundation_test.py", "run_test.py")


def pytest_configure(config):
  config.addinivalue_line(
      "markers", "slow: minutes of CPU; `make test` deselects them (-m 'not slow'), `make test-slow` runs them")


def pytest_collection_modifyitems(session, config, items):
  """Moves the tests of `LONGEST_FILES` to the front, in that order (stable otherwise)."""
  del session, config
  rank = {name: i for i, name in enumerate(LONGEST_FILES)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def pytest_sessionfinish(session, exitstatus):
  """With ../shared present nothing may skip: a skip there means a broken install or a missing
  file, so the run fails (the skip reasons are in the summary: `make test` passes `-rs`)."""
  reporter = session.config.pluginmanager.get_plugin("terminalreporter")
  skipped = reporter.stats.get("skipped", []) if reporter is not None else []
  if skipped and (SHARED / "data").is_dir() and exitstatus == 0:
    reporter.write_line(f"{len(skipped)} test(s) skipped although {SHARED} is present: a failure here",
                        red=True, bold=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _corrupt(step_dir: str, how: str) -> str:
  """Breaks one checkpoint folder the way a full disk or a killed copy would; returns the path a
  message must name."""
  if how == "truncated_array":
    files = glob.glob(os.path.join(step_dir, "state", "ocdbt.process_0", "d", "*"))
    biggest = max(files, key=os.path.getsize)
    with open(biggest, "r+b") as f:
      f.truncate(os.path.getsize(biggest) // 2)
    return os.path.join(step_dir, "state")
  if how == "garbage_metadata":
    with open(os.path.join(step_dir, "metadata", "metadata"), "w", encoding="utf-8") as f:
      f.write("{not json")
    return os.path.join(step_dir, "metadata")
  if how == "missing_state":
    shutil.rmtree(os.path.join(step_dir, "state"))
    return os.path.join(step_dir, "state")
  raise ValueError(how)


@pytest.fixture
def corrupt_checkpoint():
  """`(checkpoint_<step> folder, how) -> the path a message must name`; how: 'truncated_array',
  'garbage_metadata' or 'missing_state'."""
  return _corrupt
