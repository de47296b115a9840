"""Entry points: a user error is one `error:` line (exit status 2), `--verbose` gives the
traceback, and nothing but warnings is logged by default."""
import logging
import os
import subprocess
import sys

import pytest
from absl import flags

from llmrec_jax import console
from llmrec_jax.data.errors import DataError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train(tmp_path, *args):
  cmd = [sys.executable, "-m", "llmrec_jax.train", "--gin_file=idgenrec_tiny.gin",
         f"--gin.MODEL_DIR='{tmp_path / 'run'}'", *args]
  return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300,
                        env={**os.environ, "PYTHONPATH": ROOT})


def test_cli_user_error_is_one_line_and_verbose_shows_the_traceback(tmp_path):
  out = _train(tmp_path, f"--gin.DATA_DIR='{tmp_path / 'nowhere'}'")
  assert out.returncode == 2 and out.stdout == ""
  assert out.stderr.strip().splitlines() == [
      f"python -m llmrec_jax.train: error: DataError: {tmp_path / 'nowhere'}: data folder does not exist "
      f"(working directory: {tmp_path})  (--verbose shows the traceback)"]
  verbose = _train(tmp_path, f"--gin.DATA_DIR='{tmp_path / 'nowhere'}'", "--verbose")
  assert verbose.returncode == 1 and "Traceback (most recent call last)" in verbose.stderr
  assert "data folder does not exist" in verbose.stderr


def test_a_bug_keeps_its_traceback():
  def main(argv):
    del argv
    raise TypeError("a bug, not a user error")
  with pytest.raises(TypeError):
    console.run_reporting_user_errors(main, [], flags.FlagValues())


def test_user_error_exits_2_with_the_message_on_stderr(capsys):
  def main(argv):
    del argv
    raise DataError("/data/user_sequence.txt", "no users", line=3)
  fv = flags.FlagValues()
  console.define_flags(fv)
  fv(["prog"])
  with pytest.raises(SystemExit) as exit_info:
    console.run_reporting_user_errors(main, [], fv)
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert "error: DataError: /data/user_sequence.txt, line 3: no users" in err and "\n" == err[-1]
  assert err.count("\n") == 1


def test_gin_call_suffix_is_dropped():
  error = ValueError("bad value\n  In call to configurable 'train' (<function train at 0x7f>)")
  assert console._one_line(error) == "bad value"


@pytest.fixture
def restore_log_levels():
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  verbosity = absl_logging.get_verbosity()
  levels = {n: logging.getLogger(n).level for n in ("", *console.NOISY_LOGGERS)}
  yield
  absl_logging.set_verbosity(verbosity)
  for name, level in levels.items():
    logging.getLogger(name).setLevel(level)


def test_quiet_logs_sets_warning_unless_verbosity_is_given(restore_log_levels):
  fv = flags.FlagValues()
  flags.DEFINE_integer("verbosity", 0, "", flag_values=fv)
  fv(["prog"])
  logging.getLogger("orbax").setLevel(logging.INFO)
  console.quiet_logs(keep_levels=console.verbosity_given(fv))
  assert logging.getLogger("orbax").level == logging.WARNING
  fv(["prog", "--verbosity=0"])
  logging.getLogger("orbax").setLevel(logging.INFO)
  console.quiet_logs(keep_levels=console.verbosity_given(fv))
  assert logging.getLogger("orbax").level == logging.INFO
