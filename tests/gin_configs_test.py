"""Every shipped gin file parses and binds only parameters that exist, with values the config
classes accept; the ablation files select their scheme and the CPU budget cannot undo it."""
import pathlib
import re
import sys

import gin
import pytest

from llmrec_jax import gin_utils
from llmrec_jax import train as train_lib
from llmrec_jax.systems.idgenrec import alternating

GIN_DIR = pathlib.Path(__file__).resolve().parents[1] / "gin_configs"
ALL_GIN = sorted(str(p.relative_to(GIN_DIR)) for p in GIN_DIR.rglob("*.gin"))
# Overlays are parsed after the file they extend.
BASE = {"runs/": ["idgenrec.gin"], "ablations/": ["idgenrec.gin"]}
REQUIRED = ["MODEL_DIR = '/tmp/x'", "PROMPTS = '/tmp/prompts.txt'"]
SCHEMES = {"random": "random", "sequential": "sequential", "title": "title", "reference": "reference",
           "learned": "bootstrap"}


@pytest.fixture
def gin_env(monkeypatch):
  gin.clear_config(clear_constants=True)
  monkeypatch.setattr(sys.modules["__main__"], "train", train_lib.train, raising=False)
  gin.configurable(train_lib.train)
  yield
  gin.clear_config(clear_constants=True)


def _parse(files, bindings=()):
  # REQUIRED binds every file's required macros, used or not (official.gin's PROMPTS): not strict.
  gin_utils.parse_gin_flags(gin_search_paths=[str(GIN_DIR)], gin_files=files,
                            gin_bindings=REQUIRED + list(bindings), finalize_config=False,
                            strict_macros=False)


def test_the_listing_covers_every_kind_of_file():
  assert {"idgenrec.gin", "models/t5_tiny.gin", "runs/cpu_budget.gin"} <= set(ALL_GIN)
  assert {f"ablations/ids_{s}.gin" for s in SCHEMES} <= set(ALL_GIN)


@pytest.mark.parametrize("name", ALL_GIN)
def test_gin_file_parses_and_binds_only_real_parameters(gin_env, name):
  del gin_env
  text = (GIN_DIR / name).read_text(encoding="utf-8")
  assert text.startswith("#"), f"{name} must open with a comment (command, time, what it measures)"
  base = next((b for prefix, b in BASE.items() if name.startswith(prefix)), [])
  _parse(base + [name])
  # Unknown parameters fail at parse time; resolving builds every bound object (Schedule etc.),
  # so out-of-range values fail here too.
  bound = gin.get_bindings(train_lib.train, resolve_references=True)
  for value in bound.values():
    assert not isinstance(value, gin.config.ConfigurableReference)


def test_a_misspelt_parameter_in_a_file_fails(gin_env, tmp_path):
  del gin_env
  bad = tmp_path / "bad.gin"
  bad.write_text("include 'idgenrec.gin'\nalternating.Schedule.rec_epoch = 1.0\n", encoding="utf-8")
  with pytest.raises(ValueError, match="rec_epoch"):
    _parse([str(bad)])


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_ablation_with_cpu_budget(gin_env, scheme):
  del gin_env
  _parse(["idgenrec.gin", f"ablations/ids_{scheme}.gin", "runs/cpu_budget.gin"])
  b = gin.get_bindings(train_lib.train, resolve_references=True)
  schedule = b["schedule"]
  assert b["initial_ids"] == SCHEMES[scheme]
  assert b["rec_size"] == b["gen_size"] == "t5_tiny" and b["vocab_path"].endswith("t5_spiece.model")
  assert b["max_eval_examples"] is None                    # every user is evaluated
  assert schedule.id_epochs == 0.0 and schedule.rounds == 1 and schedule.max_his == 20
  from llmrec_jax.systems.idgenrec import components as idgenrec  # pylint: disable=g-import-not-at-top
  assert idgenrec.needs_generator(b["initial_ids"], schedule) == (scheme == "learned")
  assert not any(p == "id" for _, p in schedule.phases())


@pytest.mark.parametrize("scheme", ["random", "reference"])
def test_fixed_ablation_keeps_id_phase_off_at_paper_scale(gin_env, scheme):
  del gin_env
  _parse(["idgenrec.gin", f"ablations/ids_{scheme}.gin"])
  schedule = gin.get_bindings(train_lib.train, resolve_references=True)["schedule"]
  assert isinstance(schedule, alternating.Schedule) and schedule.rounds == 3
  assert schedule.id_epochs == 0.0 and not schedule.regenerate_ids


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_an_ablation_after_the_tiny_file_keeps_the_tiny_sizes(gin_env, scheme):
  """An ablation file sets only its scheme: layered after idgenrec_tiny.gin it keeps t5_tiny and
  the tiny budget (it used to re-include idgenrec.gin and silently return to paper scale)."""
  del gin_env
  _parse(["idgenrec_tiny.gin", f"ablations/ids_{scheme}.gin"])
  b = gin.get_bindings(train_lib.train, resolve_references=True)
  assert b["initial_ids"] == SCHEMES[scheme]
  assert b["rec_size"] == b["gen_size"] == "t5_tiny" and b["data_dir"] == "synthetic"
  assert b["schedule"].rounds == 2 and b["schedule"].rec_epochs == 3.0


def _value(x):
  return x.value if hasattr(x, "value") else x


# (the bound value's path in train()'s arguments, a regex whose group 1 is the official value in
# ../shared/notes/idgenrec_reference.md, converter of that text to our value). The values come
# from the note, not from this file: a wrong official.gin or a note that says otherwise fails.
OFFICIAL_FROM_NOTE = [
    ("schedule.rounds", r"--rounds (\d+)", int),
    ("schedule.id_batch_size", r"--id_batch_size (\d+)", int),
    ("schedule.rec_batch_size", r"--rec_batch_size (\d+)", int),
    ("schedule.sample_num", r"--sample_num (\d+)", int),
    ("schedule.max_his", r"--max_his (\d+)", int),
    ("schedule.rec_lr", r"--rec_lr (\S+)", float),
    ("schedule.id_lr", r"--id_lr (\S+)", float),
    ("schedule.id_epochs", r"--id_epochs (\d+)", float),
    ("schedule.rec_epochs", r"--rec_epochs (\d+)", float),
    ("schedule.alt_style", r"--alt_style (\w+)", str),
    ("schedule.replicas", r"--gpu ([\d,]+)", lambda s: len(s.split(","))),
    ("schedule.warmup_prop", r"`warmup_prop=([\d.]+)`", float),
    ("schedule.weight_decay", r"`weight_decay=([\d.]+)`", float),
    ("schedule.clip_norm", r"`clip=([\d.]+)`", float),
    ("schedule.seed", r"`seed=(\d+)`", int),
    ("schedule.select_best", r"`valid_select=(\d)`", lambda s: bool(int(s))),
    ("exclude_seen", r"`test_filtered=(\d)`", lambda s: bool(int(s))),
    ("input_len", r"`truncation=True, max_length=(\d+)`", int),
    ("schedule.truncation", r"`(truncation)=True, max_length=\d+`", lambda s: "right"),
    ("text_len", r"tokenized with `max_length=(\d+), truncation=True`", int),
    ("id_options.free_running_steps", r"greedy \(num_beams=1\), max_length=(\d+)", lambda s: int(s) - 1),
    ("id_options.mixing", r"`soft_weights=\{(\w+)\(ref\)", str.upper),
    ("decode.num_beams", r"`generate\(num_beams=(\d+), num_return_sequences", int),
    ("decode.length_penalty", r"default length_penalty ([\d.]+)", float),
]
# Official behaviours the note states in words: (path, our value for it, the note's words).
OFFICIAL_IN_WORDS = [
    ("leaky_user_ids", True, "This is the data-leakage bug"),
    ("loss_normalizing_factor", "IDGENREC_OFFICIAL", "pad id 0 NOT replaced by -100"),
    ("initial_ids", "reference", "`item_generative_indexing_phase_0.txt`"),
    ("id_options.generator_mode", "FREE_RUNNING_GREEDY", "NO teacher forcing"),
    ("id_options.free_running_rules", "HF426", "greedy (num_beams=1), max_length=10, min_length=1"),
    ("id_options.rec_dropout", True, "so rec\n     dropout is ON"),
    ("id_options.generator_dropout", True, "both models in train mode"),
    ("schedule.id_phase_ids", "initial", "never rebuilt (the new one is assigned to a local)"),
    ("schedule.weight_decay_mask", "ALL_BUT_RELPOS_BIAS", "only matches `relative_attention_bias`"),
    ("id_assignment.resolution", "item_by_item", "one item at a time, in file order"),
    ("id_assignment.keep_case", True, 'regex_findall(r"\\b\\w+\\b", decode(o, skip_special_tokens))'),
    ("id_assignment.group_search", "4.26", "num_beam_groups=10 (1 beam/group)"),
    ("decode.search", "hf", "`generate(num_beams=10, num_return_sequences=10, max_length=50)`"),
]


def _bound(b, path):
  first, *rest = path.split(".")
  value = b[first]
  for name in rest:
    value = getattr(value, name)
  return _value(value)


def test_official_gin_holds_every_official_value_of_the_reference_note(gin_env, shared_dir):
  del gin_env
  note = (shared_dir / "notes" / "idgenrec_reference.md").read_text(encoding="utf-8")
  _parse(["idgenrec.gin", "runs/official.gin"])
  b = gin.get_bindings(train_lib.train, resolve_references=True)
  for path, pattern, convert in OFFICIAL_FROM_NOTE:
    found = re.search(pattern, note)
    assert found, f"the note no longer says {pattern!r}"
    assert _bound(b, path) == convert(found.group(1)), path
  for path, ours, words in OFFICIAL_IN_WORDS:
    assert words in note, f"the note no longer says {words!r}"
    assert _bound(b, path) == ours, path
  assert b["vocab_path"].endswith("t5_spiece.model")
  # The header's table names every switch it sets.
  header = (GIN_DIR / "runs" / "official.gin").read_text(encoding="utf-8").split("from __gin__")[0]
  for path, *_ in OFFICIAL_FROM_NOTE + OFFICIAL_IN_WORDS:
    assert path.split(".")[-1] in header, path
