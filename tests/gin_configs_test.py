"""Every shipped gin file parses and binds only parameters that exist, with values the config
classes accept; the ablation files select their scheme and the CPU budget cannot undo it."""
import pathlib
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
