"""What an IDGenRec training run records for `eval` and `infer`: `MODEL_DIR/run_config.json`.

`train` saves a `RunRecord` once the run's data and tokenizer are settled; `inference.restore`
loads it to rebuild the same data, tokenizer, prompts and recommender. The file is one JSON
object holding every field and `schema_version`. Loading fails, naming the file and the field,
for a missing file, bad JSON, a missing, unknown or mistyped field, or another schema version.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

FILE_NAME = "run_config.json"
VOCAB_FILE = "spiece.model"  # the run's SentencePiece model, copied beside the record
SCHEMA_VERSION = 1


class RunRecordError(ValueError):
  """A run_config.json that cannot be read as a `RunRecord`; the message names file and field."""


@dataclasses.dataclass(frozen=True)
class RunRecord:
  """The settings `eval` / `infer` need from a finished (or running) training run.

  Attributes:
    data_dir: DATA_DIR, absolute (or 'synthetic'), so a loader works from any directory.
    rec_size: the recommender's size name (`model_sizes`), for checkpoints saved without
      their network config.
    vocab_size: V, embedding rows of the recommender.
    template_set: prompt template-set name, or an absolute path to a prompt file.
    input_len: prompt tokens per example.
    id_len: tokens per textual ID.
    max_his: history items per prompt.
    synthetic_users: users of the built-in synthetic dataset (data_dir 'synthetic').
    synthetic_items: items of the built-in synthetic dataset.
    seed: the run's seed (the synthetic dataset depends on it).
    truncation: how a prompt over `input_len` is cut (`prompt_tokens.Truncation` value); records
      written before it existed load as 'drop_oldest', what those runs did.
    schema_version: the file's layout; `SCHEMA_VERSION` is the one this code writes and reads.
  """
  data_dir: str
  rec_size: str
  vocab_size: int
  template_set: str
  input_len: int
  id_len: int
  max_his: int
  synthetic_users: int
  synthetic_items: int
  seed: int
  truncation: str = "drop_oldest"
  schema_version: int = SCHEMA_VERSION

  def __post_init__(self):
    _check_fields(dataclasses.asdict(self), "RunRecord")

  def save(self, model_dir: str) -> str:
    """Writes `model_dir/run_config.json` atomically (a temporary file renamed over it)."""
    path = os.path.join(model_dir, FILE_NAME)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
      json.dump(dataclasses.asdict(self), f, indent=1)
    os.replace(path + ".tmp", path)
    return path

  @classmethod
  def load(cls, model_dir: str) -> RunRecord:
    """The record in `model_dir/run_config.json`.

    Raises:
      FileNotFoundError: there is no such file.
      RunRecordError: it is not a JSON object of exactly this schema's fields and types.
    """
    path = os.path.join(model_dir, FILE_NAME)
    if not os.path.isfile(path):
      raise FileNotFoundError(f"{path} not found: is {model_dir} a llmrec_jax.train model dir?")
    with open(path, encoding="utf-8") as f:
      try:
        fields = json.load(f)
      except json.JSONDecodeError as e:
        raise RunRecordError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(fields, dict):
      raise RunRecordError(f"{path}: a JSON {type(fields).__name__}, not an object of RunRecord fields")
    _check_fields(fields, path)
    return cls(**fields)


_TYPES = {"str": str, "int": int}
_FIELDS = {f.name: _TYPES[f.type] for f in dataclasses.fields(RunRecord)}


def _check_fields(fields: dict[str, Any], where: str) -> None:
  """RunRecordError naming `where` and the first field that is missing, unknown or mistyped."""
  # Records written before versions existed hold exactly version 1's other fields.
  version = fields.setdefault("schema_version", 1)
  fields.setdefault("truncation", "drop_oldest")  # added later, within version 1
  if version != SCHEMA_VERSION:
    raise RunRecordError(f"{where}: field 'schema_version' is {version!r}; this code reads "
                         f"version {SCHEMA_VERSION}")
  for name in fields:
    if name not in _FIELDS:
      raise RunRecordError(f"{where}: unknown field {name!r} (fields: {sorted(_FIELDS)})")
  for name, kind in _FIELDS.items():
    if name not in fields:
      raise RunRecordError(f"{where}: field {name!r} is missing")
    value = fields[name]
    if isinstance(value, bool) or not isinstance(value, kind):
      raise RunRecordError(f"{where}: field {name!r} is {value!r}, expected type {kind.__name__}")
