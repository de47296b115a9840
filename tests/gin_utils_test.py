"""T5X-style flags: --gin.X=Y rewrite, search paths, loud typos, operative config."""
import os
import pathlib
import subprocess
import sys
import textwrap

from absl import flags
import gin
import pytest

from llmrec_jax import gin_configs, gin_utils


def fake_train(model_dir: str = "unset", steps: int = 1):
  return model_dir, steps


# Registered once for the module, as an entry point would (`gin.configurable(train)`).
fake_train = gin.external_configurable(fake_train, name="fake_train", module="gin_utils_test")


@pytest.fixture(autouse=True)
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


def test_rewrite_gin_args():
  args = ["prog", "--gin.fake_train.steps=3", "--gin_file=a.gin", "--gin.MODEL_DIR='/x=y'",
          "--", "--gin.kept=1"]
  assert gin_utils.rewrite_gin_args(args) == [
      "prog", "--gin_bindings=fake_train.steps = 3", "--gin_file=a.gin",
      "--gin_bindings=MODEL_DIR = '/x=y'", "--", "--gin.kept=1"]
  with pytest.raises(ValueError, match="--gin.NAME=VALUE"):
    gin_utils.rewrite_gin_args(["prog", "--gin.fake_train.steps"])


def test_flags_parse_repeatable_and_multihost():
  fv = flags.FlagValues()
  gin_utils.define_flags(fv)
  gin_utils.define_flags(fv)  # idempotent
  fv(gin_utils.rewrite_gin_args([
      "prog", "--gin_file=a.gin", "--gin_file=b.gin", "--gin.X=1", "--gin_bindings=Y = 2",
      "--gin_search_paths=/p1,/p2", "--tfds_data_dir=/tfds", "--multiprocess_gpu",
      "--coordinator_address=10.0.0.1:12345", "--process_count=4", "--process_index=3"]))
  assert fv.gin_file == ["a.gin", "b.gin"]
  assert fv.gin_bindings == ["X = 1", "Y = 2"]
  assert fv.gin_search_paths == ["/p1", "/p2"]
  assert fv.tfds_data_dir == "/tfds"
  assert (fv.multiprocess_gpu, fv.coordinator_address, fv.process_count, fv.process_index) == (
      True, "10.0.0.1:12345", 4, 3)


def test_tfds_dir_and_multihost_flags_are_applied(monkeypatch):
  import jax  # pylint: disable=g-import-not-at-top
  import types  # pylint: disable=g-import-not-at-top
  fv = flags.FlagValues()
  gin_utils.define_flags(fv)
  fv(["prog", "--tfds_data_dir=/data/tfds", "--multiprocess_gpu", "--coordinator_address=h:1",
      "--process_count=2", "--process_index=1"])
  seen = []
  # A stand-in seqio: the real import takes ~35 s cold.
  monkeypatch.setitem(sys.modules, "seqio", types.SimpleNamespace(
      set_tfds_data_dir_override=seen.append))
  gin_utils.apply_tfds_data_dir(fv)
  assert seen == ["/data/tfds"]
  calls = []
  monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
  assert gin_utils.setup_multihost_from_flags(fv)
  assert calls == [dict(coordinator_address="h:1", num_processes=2, process_id=1)]
  fv2 = flags.FlagValues()
  gin_utils.define_flags(fv2)
  fv2(["prog"])
  for var in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
    monkeypatch.delenv(var, raising=False)
  assert not gin_utils.setup_multihost_from_flags(fv2)
  assert len(calls) == 1


def test_search_paths_user_first_then_packaged(tmp_path):
  assert gin_utils.search_paths([str(tmp_path), "rel"]) == [
      str(tmp_path), os.path.abspath("rel"), gin_configs.PATH]
  assert gin_utils.search_paths() == [gin_configs.PATH]


def test_packaged_file_resolves_from_another_cwd(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert not (tmp_path / "models").exists()
  gin_utils.parse_gin_flags([], ["models/t5_tiny.gin"], ["DROPOUT_RATE = 0.0"])
  assert "emb_dim = 128" in gin.config_str()
  assert gin.query_parameter("%DROPOUT_RATE") == 0.0
  # `include` inside a user file also finds packaged files.
  gin.clear_config()
  (tmp_path / "exp.gin").write_text("include 'models/t5_tiny.gin'\nDROPOUT_RATE = 0.5\n")
  (tmp_path / "elsewhere").mkdir()
  monkeypatch.chdir(tmp_path / "elsewhere")
  gin_utils.parse_gin_flags([str(tmp_path)], ["exp.gin"], [])
  assert gin.query_parameter("%DROPOUT_RATE") == 0.5 and "emb_dim = 128" in gin.config_str()


def test_user_search_path_shadows_packaged(tmp_path, monkeypatch):
  user = tmp_path / "mine"
  (user / "models").mkdir(parents=True)
  (user / "models" / "t5_tiny.gin").write_text("gin_utils_test.fake_train.steps = 7\n")
  monkeypatch.chdir(tmp_path / "mine" / "models")
  gin_utils.parse_gin_flags([str(user)], ["models/t5_tiny.gin"], [])
  assert fake_train() == ("unset", 7)
  with pytest.raises(FileNotFoundError, match="nope.gin"):
    gin_utils.parse_gin_flags([str(user)], ["nope.gin"], [])


@pytest.mark.parametrize("binding,match", [
    ("gin_utils_test.fake_train.stpes = 3", "stpes"),  # parameter typo
    ("gin_utils_test.fake_trian.steps = 3", "fake_trian"),  # configurable typo
])
def test_binding_typo_fails_loudly(binding, match):
  with pytest.raises(ValueError, match=match):
    gin_utils.parse_gin_flags([], [], [binding])


def test_misspelled_macro_fails_with_the_nearest_used_name(tmp_path):
  (tmp_path / "run.gin").write_text("STEPS = 2\ngin_utils_test.fake_train.steps = %STEPS\n")
  with pytest.raises(ValueError, match=r"macro STEP\b.*did you mean STEPS\?"):
    gin_utils.parse_gin_flags([str(tmp_path)], ["run.gin"], ["STEP = 5"])
  gin.clear_config()
  gin_utils.parse_gin_flags([str(tmp_path)], ["run.gin"], ["STEPS = 5"])  # a used macro is fine
  assert gin.query_parameter("gin_utils_test.fake_train.steps") is not None
  assert fake_train() == ("unset", 5)


def test_include_survives_a_folder_of_the_same_name_on_the_python_path(tmp_path, monkeypatch):
  """`include 'runs/base.gin'` while a `runs/` folder (say, of run outputs) sits in a directory on
  sys.path: gin took the folder for a package and crashed with a TypeError."""
  gin_dir = tmp_path / "gin"
  (gin_dir / "runs").mkdir(parents=True)
  (gin_dir / "runs" / "base.gin").write_text("gin_utils_test.fake_train.steps = 7\n")
  (gin_dir / "top.gin").write_text("include 'runs/base.gin'\n")
  work = tmp_path / "work"
  (work / "runs" / "beauty").mkdir(parents=True)  # a namespace package named `runs`
  monkeypatch.syspath_prepend(str(work))
  monkeypatch.chdir(work)
  gin_utils.parse_gin_flags([str(gin_dir)], ["top.gin"], [])
  assert fake_train() == ("unset", 7)


@pytest.mark.parametrize("value", ["../shared/data/x", "decoder_only"])
def test_unquoted_string_gets_a_hint_to_quote_it(value):
  with pytest.raises(ValueError, match=r"strings need quotes inside the flag, e\.g\. --gin\.DATA_DIR=\"'"):
    gin_utils.parse_gin_flags([], [], [f"DATA_DIR = {value}"])


def test_config_is_finalized():
  gin_utils.parse_gin_flags([], [], ["gin_utils_test.fake_train.steps = 3"])
  assert gin.config_is_locked()
  with pytest.raises(RuntimeError):
    gin.bind_parameter("gin_utils_test.fake_train.steps", 4)


def test_operative_config_written(tmp_path):
  gin_utils.parse_gin_flags([], [], ["gin_utils_test.fake_train.model_dir = 'run1'",
                                     "gin_utils_test.fake_train.steps = 5"])
  assert fake_train() == ("run1", 5)
  path = gin_utils.write_operative_config(str(tmp_path / "model"))
  assert path == str(tmp_path / "model" / "config.gin")
  text = pathlib.Path(path).read_text()
  assert "fake_train.model_dir = 'run1'" in text and "fake_train.steps = 5" in text
  # The operative config parses back to the same values.
  gin.clear_config()
  gin.parse_config_file(path)
  assert fake_train() == ("run1", 5)


def test_summarize_gin_config_writes_text(tmp_path):
  class Recorder:
    def __init__(self):
      self.texts = []

    def write_texts(self, step, texts):
      self.texts.append((step, texts))

    def flush(self):
      pass
  gin_utils.parse_gin_flags([], [], ["gin_utils_test.fake_train.steps = 9"])
  fake_train()
  rec = Recorder()
  gin_utils.summarize_gin_config(str(tmp_path), rec, step=3)
  assert "fake_train.steps = 9" in (tmp_path / "config.gin").read_text()
  ((step, texts),) = rec.texts
  assert step == 3 and "fake_train.steps = 9" in texts["config"]


_ENTRY = textwrap.dedent("""
    import gin
    from absl import flags
    from llmrec_jax import gin_utils

    def train(model_dir='unset', dropout=-1.0):
      return model_dir, dropout

    def main(argv):
      del argv
      configured = gin.configurable(train)
      gin_utils.parse_gin_flags()
      model_dir, dropout = configured()
      gin_utils.write_operative_config(model_dir)
      print('RESULT', model_dir, dropout, gin.query_parameter('%DROPOUT_RATE'))

    if __name__ == '__main__':
      gin_utils.run(main)
    """)


def test_run_entry_point_end_to_end(tmp_path):
  """`run` rewrites --gin.X sugar, the packaged gin file resolves, config.gin is written."""
  script = tmp_path / "entry.py"
  script.write_text(_ENTRY)
  model_dir = tmp_path / "out"
  cmd = [sys.executable, str(script), "--gin_file=models/t5_tiny.gin",
         f"--gin.train.model_dir='{model_dir}'", "--gin.DROPOUT_RATE=0.25",
         "--gin_bindings=train.dropout = %DROPOUT_RATE"]
  proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert f"RESULT {model_dir} 0.25 0.25" in proc.stdout
  operative = (model_dir / "config.gin").read_text()
  assert "train.dropout = %DROPOUT_RATE" in operative and "DROPOUT_RATE = 0.25" in operative
  bad = subprocess.run(cmd + ["--gin.train.modeldir='x'"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert bad.returncode != 0 and "modeldir" in bad.stderr
