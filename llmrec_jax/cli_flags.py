"""absl flags for the tools that are not gin entry points (`baselines`, `report`, `systems.idgenrec.assign`,
`experiments.table`, `data.stats`): one command-line style with `train` / `eval` / `infer`.

A tool declares its flags, each with help text, in `define_flags(flag_values)` (returning their
holders) and its program as a function of the flag values and the positional arguments.
From the shell (`python -m <tool>`), `run_main` defines the flags on absl's global FLAGS and
runs the program through `absl.app.run`: `--help` prints the tool's module docstring and its
flags, `--flagfile` works, and a user error (bad data, a missing file: `console.USER_ERRORS`)
ends in one `error:` line with exit status 2 (`--verbose` shows the traceback). From Python
(tests, scripts), `parse` reads an argument list into a fresh FlagValues: tools share flag
names (--json, --out), and a fresh set keeps no value from an earlier call.
"""
from __future__ import annotations

import types
from typing import Any, Callable, Sequence

from absl import app
from absl import flags

DefineFlags = Callable[[flags.FlagValues], Sequence[flags.FlagHolder]]


def _values(holders: Sequence[flags.FlagHolder]) -> types.SimpleNamespace:
  return types.SimpleNamespace(**{h.name: h.value for h in holders})


def _positional(args: Sequence[str], takes_positional: bool) -> list[str]:
  if args and not takes_positional:
    raise app.UsageError(f"unexpected arguments {list(args)}: this tool takes flags only")
  return list(args)


def parse(define_flags: DefineFlags, argv: Sequence[str], *, takes_positional: bool = False
          ) -> tuple[types.SimpleNamespace, list[str]]:
  """(flag values by name, positional arguments) of `argv` (without the program name).

  Raises:
    flags.Error: an unknown flag, a bad value or a missing required flag.
    app.UsageError: positional arguments for a tool that takes none.
  """
  flag_values = flags.FlagValues()
  holders = define_flags(flag_values)
  rest = flag_values(["", *argv])
  return _values(holders), _positional(rest[1:], takes_positional)


def run_main(define_flags: DefineFlags, program: Callable[[types.SimpleNamespace, list[str]], Any],
             *, takes_positional: bool = False) -> None:
  """`python -m <tool>`: `program(flag values, positional arguments)` under `absl.app.run`, with
  user errors on one line (`console.run_reporting_user_errors`). Its return value is dropped
  (exit status 0)."""
  from llmrec_jax import console  # pylint: disable=g-import-not-at-top
  holders = define_flags(flags.FLAGS)
  console.define_flags()

  def main(argv: Sequence[str]) -> None:
    console.run_reporting_user_errors(
        lambda args: program(_values(holders), _positional(args[1:], takes_positional)), argv)
  app.run(main)
