"""Named T5 sizes: the `network.T5Config` bindings of `gin_configs/models/<size>.gin`.

The gin files are the one source of a size's numbers: code paths without gin (demo, benchmarks,
tests, entry points that pick a size by name such as `rec_size='t5_tiny'`) read the same file
with gin's parser, without touching the global gin config. Adding a size is adding a file.
"""
from __future__ import annotations

import os
from typing import Any

from gin import config_parser

from llmrec_jax import gin_configs
from llmrec_jax.network import T5Config

MODELS_DIR = os.path.join(gin_configs.PATH, "models")
CONFIG_SELECTOR = "T5Config"  # `network.T5Config` (or any import path ending in it)


class _Macro:
  def __init__(self, name: str):
    self.name = name


class _Delegate(config_parser.ParserDelegate):
  """Keeps macros by name; configurable references (`@network.T5Config()`) are not needed."""

  def configurable_reference(self, scoped_configurable_name, evaluate):
    return None

  def macro(self, macro_name):
    return _Macro(macro_name)


def names() -> list[str]:
  """The sizes there are: the `.gin` files of `MODELS_DIR`, without the extension."""
  if not os.path.isdir(MODELS_DIR):
    return []
  return sorted(f[:-len(".gin")] for f in os.listdir(MODELS_DIR) if f.endswith(".gin"))


def gin_path(size: str) -> str:
  """`MODELS_DIR/<size>.gin`; an unknown size fails listing the files found."""
  path = os.path.join(MODELS_DIR, f"{size}.gin")
  if not os.path.isfile(path):
    found = ", ".join(f"{n}.gin" for n in names()) or "none"
    raise ValueError(f"unknown model size {size!r}: no {path}; model sizes are the files of "
                     f"{MODELS_DIR} (found: {found})")
  return path


def _bindings(path: str) -> dict[str, Any]:
  """{T5Config field: value} bound in the gin file `path`, macros replaced by their values there."""
  macros: dict[str, Any] = {}
  fields: dict[str, Any] = {}
  with open(path, encoding="utf-8") as f:
    for statement in config_parser.ConfigParser(f, _Delegate()):
      if isinstance(statement, config_parser.IncludeStatement):
        raise ValueError(f"{path}:{statement.location.line_num}: a model size file binds its "
                         "network.T5Config itself (includes are not read here)")
      if not isinstance(statement, config_parser.BindingStatement) or statement.scope:
        continue
      if not statement.arg_name:  # `NAME = value`: a macro
        macros[statement.selector] = statement.value
      elif statement.selector.split(".")[-1] == CONFIG_SELECTOR:
        fields[statement.arg_name] = statement.value
  for field, value in fields.items():
    seen = set()
    while isinstance(value, _Macro):
      if value.name not in macros or value.name in seen:
        raise ValueError(f"{path}: network.T5Config.{field} = %{value.name}, a macro the file "
                         "does not define")
      seen.add(value.name)
      value = macros[value.name]
    fields[field] = value
  return fields


def t5_config(size: str, vocab_size: int = 32128, **overrides: Any) -> T5Config:
  """The `T5Config` of `gin_configs/models/<size>.gin` with `vocab_size` and `overrides` (T5Config
  fields, e.g. `dropout_rate`) in place of the file's values; unknown sizes and fields fail."""
  return T5Config(**{**_bindings(gin_path(size)), "vocab_size": vocab_size, **overrides})
