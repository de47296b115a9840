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
    rec_form: 'encoder_decoder' or 'decoder_only' (whole streams; `max_his` is then the stream's
      `max_items`).
    data_dirs: the datasets of a mixture run (absolute), `data_dir` being the first; [] for a
      single dataset.
    gen_size, text_len, keep_case: the ID generator's size name, its input tokens per item and
      whether its IDs keep case: what writing IDs for a new catalogue (zero-shot) needs.
    trie_softmax: the decoder-only recommender's distribution (`DecoderOnlyModel`).
    initial_ids: the run's first item IDs (`train.initial_ids`): a title-ID run writes the IDs
      of a new catalogue by the same rule (zero-shot without a generator).
    extractive: the generator writes IDs from the item's own text pieces only
      (`uniqueness.IdAssignment.extractive`).
    stream_seed: the decoder-only run's `StreamSchedule.seed` (its validation and test users are
      sampled with it and it + 1).
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
  rec_form: str = "encoder_decoder"
  data_dirs: list = dataclasses.field(default_factory=list)
  gen_size: str = "t5_tiny"
  text_len: int = 64
  keep_case: bool = False
  trie_softmax: bool = True
  stream_seed: int = 0
  extractive: bool = False
  initial_ids: str = "bootstrap"
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


_TYPES = {"str": str, "int": int, "list": list, "bool": bool}
_FIELDS = {f.name: _TYPES[f.type] for f in dataclasses.fields(RunRecord)}
# What a record written before these fields existed meant: the runs of those versions.
_ADDED_IN_VERSION_1 = {"truncation": "drop_oldest", "rec_form": "encoder_decoder", "data_dirs": [],
                       "gen_size": "t5_tiny", "text_len": 64, "keep_case": False,
                       "trie_softmax": True, "stream_seed": 0,
                       "extractive": False, "initial_ids": "bootstrap"}


def _check_fields(fields: dict[str, Any], where: str) -> None:
  """RunRecordError naming `where` and the first field that is missing, unknown or mistyped."""
  # Records written before versions existed hold exactly version 1's other fields.
  version = fields.setdefault("schema_version", 1)
  for name, default in _ADDED_IN_VERSION_1.items():  # fields added later, within version 1
    fields.setdefault(name, default)
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
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
      raise RunRecordError(f"{where}: field {name!r} is {value!r}, expected type {kind.__name__}")
