"""The runs-directory layout: collection from hand-made JSONs, loud failures, run commands."""
import json
import sys

import pytest

from llmrec_jax.experiments import runs


def test_collect_reads_test_metrics_of_both_layouts(tmp_path, fake_runs):
  fake_runs.write_generative(tmp_path, "beauty", "ids_random", fake_runs.metrics(0.01))
  fake_runs.write_baseline(tmp_path, "beauty", "popularity", fake_runs.metrics(0.02))
  fake_runs.write_baseline(tmp_path, "toys", "sasrec_ce", {"hit@5": 0.03, "hit@10": 0.04})   # partial metrics
  (tmp_path / "toys" / "sasrec_ce.run.json").write_text(json.dumps(
      {"command": "python -m x", "wall_seconds": 60.0, "finished_utc": "2026-12-02 03:00 UTC"}), encoding="utf-8")
  fake_runs.write_baseline(tmp_path, "yelp", "popularity", fake_runs.metrics(0.05))   # a dataset not asked for
  got = runs.collect(tmp_path, ["beauty", "toys"], ["popularity", "sasrec_ce", "ids_random", "ids_title"])
  assert set(got) == {("beauty", "ids_random"), ("beauty", "popularity"), ("toys", "sasrec_ce")}
  assert got[("beauty", "ids_random")]["metrics"] == fake_runs.metrics(0.01)     # best.test, not valid
  assert got[("beauty", "popularity")]["metrics"] == fake_runs.metrics(0.02)     # test, not valid
  assert got[("toys", "sasrec_ce")]["metrics"] == {"hit@5": 0.03, "hit@10": 0.04}
  assert got[("toys", "sasrec_ce")]["provenance"]["command"] == "python -m x"
  assert "command" not in got[("beauty", "popularity")]["provenance"]
  assert got[("beauty", "popularity")]["provenance"]["finished_utc"].endswith("UTC")
  assert got[("beauty", "ids_random")]["test_users"] is None  # the file does not say


def test_collect_reads_how_many_users_were_tested(tmp_path, fake_runs):
  path = fake_runs.write_generative(tmp_path, "toys", "ids_title", fake_runs.metrics(0.01))
  doc = json.loads(path.read_text(encoding="utf-8"))
  doc["best"]["eval_users"] = {"valid": 500, "test": 5000}
  path.write_text(json.dumps(doc), encoding="utf-8")
  base = fake_runs.write_baseline(tmp_path, "toys", "popularity", fake_runs.metrics(0.02))
  doc = json.loads(base.read_text(encoding="utf-8"))
  base.write_text(json.dumps({**doc, "num_users": 19412}), encoding="utf-8")
  got = runs.collect(tmp_path, ["toys"], ["ids_title", "popularity"])
  assert got[("toys", "ids_title")]["test_users"] == 5000
  assert got[("toys", "popularity")]["test_users"] == 19412


def test_unfinished_or_broken_results_fail_naming_the_file(tmp_path, fake_runs):
  path = fake_runs.write_generative(tmp_path, "beauty", "ids_title", None)
  with pytest.raises(ValueError, match=r"ids_title/results.json: no 'best.test'"):
    runs.collect(tmp_path, ["beauty"], ["ids_title"])
  path.write_text("{oops", encoding="utf-8")
  with pytest.raises(ValueError, match=r"results.json:1: not valid JSON"):
    runs.collect(tmp_path, ["beauty"], ["ids_title"])


def test_keys_are_checked():
  assert runs.parse_keys("beauty, toys", runs.DATASETS, "dataset") == ["beauty", "toys"]
  with pytest.raises(ValueError, match=r"unknown model \['sasrec'\]"):
    runs.parse_keys("popularity,sasrec", runs.MODELS, "model")


def test_commands_produce_the_collected_layout(tmp_path):
  gen = runs.command("toys", "ids_sequential", runs_dir=tmp_path, data_root="/data")
  assert gen[:3] == [sys.executable, "-m", "llmrec_jax.train"]
  assert gen[3:6] == ["--gin_file=idgenrec.gin", "--gin_file=ablations/ids_sequential.gin",
                      "--gin_file=runs/cpu_budget.gin"]
  assert f"--gin.MODEL_DIR='{tmp_path / 'toys' / 'ids_sequential'}'" in gen
  assert "--gin.DATA_DIR='/data/amazon2014_toys'" in gen and not any("VOCAB_PATH" in a for a in gen)
  paper_scale = runs.command("toys", "ids_title", runs_dir=tmp_path, data_root="/data", run_gin=())
  assert [a for a in paper_scale if a.startswith("--gin_file")] == ["--gin_file=idgenrec.gin",
                                                                    "--gin_file=ablations/ids_title.gin"]
  assert runs.command("toys", "ids_title", runs_dir=tmp_path, data_root="/data",
                      vocab_path="/v/t5.model")[-1] == "--gin.VOCAB_PATH='/v/t5.model'"
  assert runs.result_path(tmp_path, "toys", "ids_sequential") == tmp_path / "toys" / "ids_sequential" / "results.json"
  base = runs.command("yelp", "sasrec_bce", runs_dir=tmp_path, data_root="/data", sasrec_minutes=5)
  assert base[3:] == ["--model", "sasrec", "--loss", "bce", "--epochs", "400", "--patience", "10", "--data_dir", "/data/yelp", "--json", "--no_progress",
                      "--time_budget_min", "5"]
  assert runs.skip_reason("sports", "ids_title") and not runs.skip_reason("beauty", "ids_title")
  for name in runs.MODELS:
    if runs.MODELS[name].kind == "generative":
      assert (runs.pathlib.Path(__file__).resolve().parents[2] / "gin_configs" / runs.MODELS[name].args[0]).is_file()


def test_run_one_writes_baseline_json_and_provenance(tmp_path, fake_runs):
  line = json.dumps({"test": fake_runs.metrics(0.07)})
  argv = [sys.executable, "-c", f"import sys; print('log line'); print({line!r}); print('err', file=sys.stderr)"]
  assert runs.run_one("beauty", "popularity", argv, runs_dir=tmp_path)
  got = runs.collect(tmp_path, ["beauty"], ["popularity"])
  assert got[("beauty", "popularity")]["metrics"] == fake_runs.metrics(0.07)
  prov = json.loads((tmp_path / "beauty" / "popularity.run.json").read_text(encoding="utf-8"))
  assert prov["returncode"] == 0 and prov["wall_seconds"] >= 0 and "print" in prov["command"]
  assert "err" in (tmp_path / "beauty" / "popularity.log").read_text(encoding="utf-8")
  assert not runs.run_one("beauty", "sasrec_ce", [sys.executable, "-c", "raise SystemExit(3)"], runs_dir=tmp_path)
  assert not (tmp_path / "beauty" / "sasrec_ce.json").exists()


def test_display_command_is_a_shell_line_that_round_trips(tmp_path):
  argv = runs.command("toys", "ids_title", runs_dir=tmp_path / "my runs", data_root="/data", vocab_path="/v/t5.model")
  line = runs.display_command(argv + ["it's", "a b", "$HOME"])
  assert runs.shlex.split(line) == argv + ["it's", "a b", "$HOME"]
  assert "--gin.VOCAB_PATH=\"'/v/t5.model'\"" in line
