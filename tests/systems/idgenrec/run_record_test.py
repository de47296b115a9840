"""run_config.json as a typed record: round trip, and errors naming the file and the field."""
import dataclasses
import json

import pytest

from llmrec_jax.systems.idgenrec.run_record import FILE_NAME, SCHEMA_VERSION, RunRecord, RunRecordError


def _record(**kw):
  fields = dict(data_dir="/data/beauty", rec_size="t5_tiny", vocab_size=2048, template_set="llmrec_default",
                input_len=96, id_len=8, max_his=20, synthetic_users=300, synthetic_items=200, seed=3)
  return RunRecord(**{**fields, **kw})


def test_save_load_round_trip(tmp_path):
  record = _record()
  path = record.save(str(tmp_path))
  assert path == str(tmp_path / FILE_NAME)
  assert RunRecord.load(str(tmp_path)) == record
  assert json.loads((tmp_path / FILE_NAME).read_text(encoding="utf-8")) == dataclasses.asdict(record)
  assert record.schema_version == SCHEMA_VERSION
  with pytest.raises(dataclasses.FrozenInstanceError):
    record.seed = 4  # pylint: disable=assigning-non-slot


def _write(tmp_path, content):
  (tmp_path / FILE_NAME).write_text(content if isinstance(content, str) else json.dumps(content),
                                    encoding="utf-8")
  return str(tmp_path / FILE_NAME)


@pytest.mark.parametrize("change,pattern", [
    (lambda d: d.pop("max_his"), "field 'max_his' is missing"),
    (lambda d: d.update(maxhis=20), "unknown field 'maxhis'"),
    (lambda d: d.update(vocab_size="2048"), "field 'vocab_size' is '2048', expected type int"),
    (lambda d: d.update(seed=True), "field 'seed' is True, expected type int"),
    (lambda d: d.update(schema_version=SCHEMA_VERSION + 1), "field 'schema_version' is 2"),
])
def test_bad_fields_fail_naming_file_and_field(tmp_path, change, pattern):
  fields = dataclasses.asdict(_record())
  change(fields)
  path = _write(tmp_path, fields)
  with pytest.raises(RunRecordError, match=pattern) as e:
    RunRecord.load(str(tmp_path))
  assert str(e.value).startswith(f"{path}: ")


def test_bad_json_and_missing_file_name_the_file(tmp_path):
  path = _write(tmp_path, '{"data_dir": ')
  with pytest.raises(RunRecordError, match="not valid JSON") as e:
    RunRecord.load(str(tmp_path))
  assert str(e.value).startswith(f"{path}: ")
  _write(tmp_path, "[1, 2]")
  with pytest.raises(RunRecordError, match="not an object"):
    RunRecord.load(str(tmp_path))
  with pytest.raises(FileNotFoundError, match="is .* a llmrec_jax.train model dir") as e:
    RunRecord.load(str(tmp_path / "nowhere"))
  assert str(tmp_path / "nowhere" / FILE_NAME) in str(e.value)


def test_construction_checks_types_too():
  with pytest.raises(RunRecordError, match="RunRecord: field 'input_len' is 9.5, expected type int"):
    _record(input_len=9.5)


def test_a_record_written_before_versions_loads_as_version_1(tmp_path):
  """run_config.json files of earlier runs hold the same fields without `schema_version`."""
  fields = dataclasses.asdict(_record())
  del fields["schema_version"]
  _write(tmp_path, fields)
  assert RunRecord.load(str(tmp_path)) == _record()


def test_truncation_round_trips_and_older_records_load_as_drop_oldest(tmp_path):
  record = _record(truncation="right")
  record.save(str(tmp_path))
  assert RunRecord.load(str(tmp_path)).truncation == "right"
  fields = dataclasses.asdict(_record())
  del fields["truncation"]   # written before the field existed: those runs dropped the oldest items
  _write(tmp_path, fields)
  assert RunRecord.load(str(tmp_path)) == _record() and _record().truncation == "drop_oldest"
