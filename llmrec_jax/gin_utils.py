"""T5X-style command-line flags and gin parsing for our entry points (the only library module that
touches gin's global configuration; entry points use it, library code never does: `model_sizes`
only reads the size files with gin's parser).

An entry point looks like::

  from llmrec_jax import gin_utils

  def train(*, model_dir, ...): ...

  def main(argv):
    gin_utils.setup_multihost_from_flags()
    gin.configurable(train)          # before parsing: a locked config refuses new configurables
    gin_utils.parse_gin_flags()
    gin_utils.write_operative_config(model_dir)
    ...

  if __name__ == "__main__":
    gin_utils.run(main)

Flags: `--gin_file` (repeatable), `--gin_bindings` (repeatable), `--gin.NAME=VALUE` (sugar for
`--gin_bindings='NAME = VALUE'`), `--gin_search_paths` (comma list; user paths first, then our
packaged `llmrec_jax.gin_configs`), `--tfds_data_dir`, and the multi-host flags
`--multiprocess_gpu --coordinator_address --process_count --process_index`.
"""
from __future__ import annotations

import difflib
import importlib.util
import os
from typing import Any, Callable, Iterable, Optional, Sequence

from absl import app
from absl import flags
from absl import logging
import gin

from llmrec_jax import gin_configs

GIN_PREFIX = "--gin."
MAIN_ALIAS = "train_script."  # T5X's `import __main__ as train_script` in gin files
OPERATIVE_CONFIG = "config.gin"


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines our entry-point flags on `flag_values` (once; later calls are no-ops)."""
  if "gin_file" in flag_values:
    return
  fv = flag_values
  flags.DEFINE_multi_string("gin_file", [], "Gin config file(s), resolved against "
                            "--gin_search_paths then the packaged gin_configs/.", flag_values=fv)
  flags.DEFINE_multi_string("gin_bindings", [], "Individual gin bindings, applied after the "
                            "files ('--gin.NAME=VALUE' is shorthand).", flag_values=fv)
  flags.DEFINE_list("gin_search_paths", ["."], "Comma-separated folders searched for gin files "
                    "and includes, before the packaged gin_configs/.", flag_values=fv)
  flags.DEFINE_string("tfds_data_dir", None, "Overrides the TFDS data dir of every seqio "
                      "TfdsDataSource.", flag_values=fv)
  flags.DEFINE_bool("multiprocess_gpu", False, "Multi-process GPU run: call "
                    "jax.distributed.initialize with the flags below.", flag_values=fv)
  flags.DEFINE_string("coordinator_address", None, "IP:port of process 0 "
                      "(--multiprocess_gpu).", flag_values=fv)
  flags.DEFINE_integer("process_count", None, "Number of processes (--multiprocess_gpu).",
                       flag_values=fv)
  flags.DEFINE_integer("process_index", None, "This process's index (--multiprocess_gpu).",
                       flag_values=fv)


define_flags()


def _package_file_exists(config_path: str) -> bool:
  """gin's check for an include inside a Python package (`pkg/sub/file.gin`), without its two
  traps: a folder in the working directory named like the include's first part (e.g. a `runs/`
  of run outputs beside `include 'runs/cpu_budget.gin'`) is a namespace package without a file
  and crashed gin with a TypeError; and every miss was logged at ERROR level although the next
  search path then finds the file."""
  head, filename = os.path.split(config_path)
  try:
    spec = importlib.util.find_spec(head.replace("/", ".")) if head else None
  except (ImportError, ValueError):
    return False
  if spec is None or spec.origin is None:
    return False
  return os.path.isfile(os.path.join(os.path.dirname(spec.origin), filename))


def _use_safe_package_reader() -> None:
  from gin import resource_reader  # pylint: disable=g-import-not-at-top
  readers = gin.config._FILE_READERS  # pylint: disable=protected-access  # no public way to replace one
  for i, (reader, exists) in enumerate(readers):
    if exists is resource_reader.system_path_file_exists:
      readers[i] = (reader, _package_file_exists)


_use_safe_package_reader()


def rewrite_gin_args(args: Sequence[str]) -> list[str]:
  """`--gin.NAME=VALUE` -> `--gin_bindings=NAME = VALUE`; arguments after a bare `--` are kept.

  Raises:
    ValueError: for `--gin.NAME` without `=VALUE`.
  """
  out, passthrough = [], False
  for arg in args:
    if passthrough or not arg.startswith(GIN_PREFIX):
      passthrough = passthrough or arg == "--"
      out.append(arg)
      continue
    name, sep, value = arg[len(GIN_PREFIX):].partition("=")
    if not sep or not name:
      raise ValueError(f"gin flag {arg!r} must look like --gin.NAME=VALUE")
    out.append(f"--gin_bindings={name} = {value}")
  return out


def search_paths(user_paths: Sequence[str] = ()) -> list[str]:
  """Gin search path: user folders first, then the packaged `llmrec_jax.gin_configs`."""
  paths = [os.path.abspath(os.path.expanduser(p)) for p in user_paths if p]
  if gin_configs.PATH not in paths:
    paths.append(gin_configs.PATH)
  return paths


def resolve_gin_file(name: str, paths: Sequence[str]) -> str:
  """`name` as given (absolute, relative to the cwd, or a URL), else the first `paths/name`.

  Raises:
    FileNotFoundError listing every place searched.
  """
  if "://" in name or os.path.isfile(name):
    return name
  tried = [os.path.abspath(name)]
  for folder in paths:
    candidate = os.path.join(folder, name)
    if os.path.isfile(candidate):
      return candidate
    tried.append(candidate)
  raise FileNotFoundError(f"gin file {name!r} not found; searched: {tried}")


def parse_gin_flags(gin_search_paths: Optional[Sequence[str]] = None,
                    gin_files: Optional[Sequence[str]] = None,
                    gin_bindings: Optional[Sequence[str]] = None,
                    skip_unknown: bool = False, finalize_config: bool = True,
                    strict_macros: bool = True,
                    flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Adds the search paths, then parses files and bindings (finalized: later edits and unknown
  names fail loudly; with `strict_macros`, so does a binding of a macro nothing uses, see
  `check_macro_bindings`). Arguments default to the parsed flags."""
  if gin_search_paths is None:
    gin_search_paths = flag_values.gin_search_paths
  if gin_files is None:
    gin_files = flag_values.gin_file
  if gin_bindings is None:
    gin_bindings = flag_values.gin_bindings
  paths = search_paths(gin_search_paths)
  for path in paths:  # for `include` statements inside the files
    gin.add_config_file_search_path(path)
  # Top-level files are resolved here so the order (cwd, user paths, packaged) holds even when
  # gin's global search list already has entries from an earlier call.
  files = [resolve_gin_file(f, paths) for f in gin_files]
  logging.info("gin files: %s; bindings: %s", files, list(gin_bindings))
  # The saved config.gin names the entry point as the gin files import it
  # (`import __main__ as train_script`); a command-line binding has no such import.
  gin_bindings = [b.strip()[len(MAIN_ALIAS):] if b.strip().startswith(MAIN_ALIAS) else b for b in gin_bindings]
  for binding in gin_bindings:
    check_binding_syntax(binding)
  gin.parse_config_files_and_bindings(files, list(gin_bindings),
                                      finalize_config=finalize_config, skip_unknown=skip_unknown)
  if strict_macros:
    check_macro_bindings(gin_bindings)


def check_binding_syntax(binding: str) -> None:
  """Parses one binding alone; a value gin cannot read gets a hint (an unquoted path or word is
  the usual cause: `--gin.DATA_DIR=../data` must be `--gin.DATA_DIR="'../data'"`)."""
  name, _, value = binding.partition("=")
  value = value.strip()
  if "\n" in binding.strip() or not value:
    return  # several statements, or no value: gin's own parse reports them
  try:
    with gin.unlock_config():
      gin.config.parse_value(value)
  except ValueError:
    return  # e.g. an unknown @configurable: gin's own parse names it
  except SyntaxError as e:
    hint = ""
    if value and value[0] not in "'\"[({%@" and not value[0].isdigit() and value not in ("True", "False", "None"):
      hint = (f"; strings need quotes inside the flag, e.g. --gin.{name.strip()}=\"'{value}'\" "
              f"(or {name.strip()} = '{value}' in a gin file)")
    raise ValueError(f"gin binding {binding.strip()!r}: cannot read the value {value!r} "
                     f"({str(e).splitlines()[0]}){hint}") from None


def _macro_refs(value: Any) -> Iterable[str]:
  """Names of the macros `value` refers to (`%NAME`), inside lists, tuples and dicts too."""
  if isinstance(value, gin.config.ConfigurableReference):
    scope, _, selector = value.scoped_selector.rpartition("/")
    if selector == "gin.macro":
      yield scope
  elif isinstance(value, (list, tuple)):
    for v in value:
      yield from _macro_refs(v)
  elif isinstance(value, dict):
    for v in value.values():
      yield from _macro_refs(v)


def check_macro_bindings(bindings: Sequence[str]) -> None:
  """Fails on a command-line binding of a macro that no gin file or binding uses.

  Gin accepts `--gin.REC_EPOCH=1.0` silently (it defines a new macro, read by nothing), so a
  typo would run the whole job with the file's value. Checked after parsing; the error names
  the nearest macro in use.
  """
  config = gin.config._CONFIG  # pylint: disable=protected-access  # gin has no public walk of bindings
  used = {name for params in config.values() for v in params.values() for name in _macro_refs(v)}
  for binding in bindings:
    name = binding.partition("=")[0].strip()
    if not name or "." in name or "/" in name or name in used or (name, "gin.macro") not in config:
      continue
    near = difflib.get_close_matches(name, sorted(used), n=1)
    hint = f"; did you mean {near[0]}?" if near else f"; macros in use: {', '.join(sorted(used))}"
    raise ValueError(f"gin binding {binding.strip()!r}: no gin file or binding uses the macro {name}{hint}")


T5X_UTILS = "utils"  # gin module name of T5X's config classes (`from t5x import utils`)


def register_t5x_configs() -> None:
  """Registers T5X's `utils` config classes (`DatasetConfig`, `SaveCheckpointConfig`,
  `RestoreCheckpointConfig`, `CheckpointConfig`; see `llmrec_jax.t5x_utils`) with gin under the
  module name `utils`, as T5X's names. Entry points call it before parsing; repeated calls are
  no-ops."""
  from llmrec_jax import t5x_utils  # pylint: disable=g-import-not-at-top
  for name in t5x_utils.__all__:
    if gin.config._REGISTRY.get_match(f"{T5X_UTILS}.{name}") is None:  # pylint: disable=protected-access
      gin.external_configurable(getattr(t5x_utils, name), name=name, module=T5X_UTILS)


def apply_tfds_data_dir(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Points every seqio `TfdsDataSource` at `--tfds_data_dir` (no-op when unset)."""
  if flag_values.tfds_data_dir:
    import seqio  # pylint: disable=g-import-not-at-top  # ~35 s cold: only when asked for
    seqio.set_tfds_data_dir_override(flag_values.tfds_data_dir)


def setup_multihost_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> bool:
  """Initializes jax.distributed from the multi-host flags (before any device use)."""
  from llmrec_jax import partitioning  # pylint: disable=g-import-not-at-top
  if not flag_values.multiprocess_gpu:
    return partitioning.initialize_distributed()  # auto-detects SLURM/MPI launches only
  return partitioning.initialize_distributed(
      coordinator_address=flag_values.coordinator_address,
      num_processes=flag_values.process_count, process_id=flag_values.process_index)


def write_operative_config(model_dir: str, filename: str = OPERATIVE_CONFIG) -> Optional[str]:
  """Writes gin's operative config (the values actually used) to `model_dir/config.gin`.

  Only process 0 writes; returns the path written, or None on other hosts. `model_dir` may be a
  local path or any path `etils.epath` understands (e.g. gs://).
  """
  import jax  # pylint: disable=g-import-not-at-top
  from etils import epath  # pylint: disable=g-import-not-at-top
  if jax.process_index() != 0:
    return None
  path = epath.Path(model_dir) / filename
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(gin.operative_config_str())
  return os.fspath(path)


def summarize_gin_config(model_dir: str, summary_writer: Any = None, step: int = 0) -> None:
  """T5X's `summarize_gin_config`: writes `config.gin` and, given a clu metric writer, the
  operative config as Markdown text (TensorBoard's Text tab). Host 0 only."""
  import jax  # pylint: disable=g-import-not-at-top
  write_operative_config(model_dir)
  if summary_writer is not None and jax.process_index() == 0:
    summary_writer.write_texts(step, {"config": gin.markdown(gin.operative_config_str())})
    summary_writer.flush()


def run(main: Callable[[Sequence[str]], None]) -> None:
  """`absl.app.run(main)` after rewriting `--gin.NAME=VALUE` arguments into `--gin_bindings`,
  with quiet logs and one-line user errors (`console`; `--verbosity`, `--verbose`)."""
  from llmrec_jax import console  # pylint: disable=g-import-not-at-top
  console.define_flags()

  def quiet_main(argv):
    console.quiet_logs(keep_levels=console.verbosity_given())
    console.run_reporting_user_errors(main, argv)
  app.run(quiet_main, flags_parser=lambda argv: app.parse_flags_with_usage(rewrite_gin_args(argv)))
