"""What the entry points print: their log level, third-party noise, and user errors.

By default the library and its dependencies log at WARNING (`--verbosity=0` or `-v 0` brings
back INFO, as absl's flag does everywhere); Orbax's, TensorFlow's and JAX's backend-probing INFO
lines are silenced with them. Progress bars (tqdm, on stderr) stay.

A user error (bad data, a bad config, a missing file or checkpoint: `USER_ERRORS`) ends the
program with its message on one `error:` line and exit status 2, without a traceback;
`--verbose` re-raises it with the full traceback.
"""
from __future__ import annotations

import contextlib
import logging as std_logging
import os
import re
import sys
from typing import Callable, Sequence

from absl import flags
from absl import logging

from llmrec_jax.checkpoints import fail_safe, orbax_t5x

# Exceptions whose message is the whole story for a user (ours carry the file, line or flag).
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
               PermissionError, orbax_t5x.CheckpointReadError, fail_safe.NoGoodCheckpointError)
NOISY_LOGGERS = ("absl", "orbax", "jax._src.xla_bridge", "jax._src.dispatch", "tensorflow")


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  if "verbose" not in flag_values:
    flags.DEFINE_bool("verbose", False, "Show the full traceback of a user error (bad data, "
                      "config, missing file) instead of one line.", flag_values=flag_values)


@contextlib.contextmanager
def _native_stderr_silenced():
  """Points file descriptor 2 at /dev/null for the block (C++ libraries write there directly)."""
  sys.stderr.flush()
  saved = os.dup(2)
  devnull = os.open(os.devnull, os.O_WRONLY)
  try:
    os.dup2(devnull, 2)
    yield
  finally:
    os.dup2(saved, 2)
    os.close(devnull)
    os.close(saved)


def verbosity_given(flag_values: flags.FlagValues = flags.FLAGS) -> bool:
  return "verbosity" in flag_values and flag_values["verbosity"].present


def quiet_logs(keep_levels: bool = False) -> None:
  """WARNING for absl and the noisy third-party loggers (unless `keep_levels`, e.g. when
  `--verbosity` was given); then imports TensorFlow (the metric writers' TensorBoard backend)
  with its native start-up lines (oneDNN, CUDA probing: written to stderr before any log setting
  applies) discarded."""
  if keep_levels:
    return
  logging.set_verbosity(logging.WARNING)
  for name in NOISY_LOGGERS:
    std_logging.getLogger(name).setLevel(std_logging.WARNING)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  with _native_stderr_silenced():
    import tensorflow  # pylint: disable=g-import-not-at-top,unused-import,import-outside-toplevel


def _one_line(error: BaseException) -> str:
  text = re.sub(r"\s*In call to configurable '[^']*' \(<[^>]*>\)", "", str(error))  # gin's suffix
  return " ".join(text.split()) or type(error).__name__


def _program() -> str:
  """'python -m llmrec_jax.train' as the user typed it ('train.py' from a plain path)."""
  spec = getattr(sys.modules.get("__main__"), "__spec__", None)
  return f"python -m {spec.name}" if spec is not None else os.path.basename(sys.argv[0] or "llmrec_jax")


def run_reporting_user_errors(main: Callable[[Sequence[str]], None], argv: Sequence[str],
                              flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Calls `main(argv)`; a `USER_ERRORS` exception becomes one `error:` line and exit status 2
  (re-raised as it is with `--verbose`)."""
  try:
    main(argv)
  except USER_ERRORS as e:
    if "verbose" in flag_values and flag_values.verbose:
      raise
    print(f"{_program()}: error: {type(e).__name__}: {_one_line(e)}  (--verbose shows the "
          "traceback)", file=sys.stderr)
    sys.exit(2)
