"""Stats: library numbers against brute force on synthetic data, and the CLI in both output modes."""
import json
import subprocess
import sys

from absl import app
from absl import flags
import numpy as np
import pytest

from llmrec_jax.data import stats, synthetic


@pytest.fixture(scope="module")
def syn_dir(tmp_path_factory):
  data = synthetic.make_synthetic(num_users=50, num_items=40, num_topics=4, seed=2)
  meta = list(data.item_meta)
  meta[0] = {k: v for k, v in meta[0].items() if k != "brand"}   # one item without brand
  meta[1] = {**meta[1], "brand": ""}                               # one with an empty brand
  data = type(data)(name=data.name, user_ids=data.user_ids, item_ids=data.item_ids, item_meta=tuple(meta),
                    sequences=data.sequences)
  return data, synthetic.write_p5(data, tmp_path_factory.mktemp("syn"))


def test_stats_match_brute_force(syn_dir):
  data, _ = syn_dir
  s = stats.dataset_stats(data, max_his=5)
  lens = [len(x) for x in data.sequences]
  assert (s["users"], s["items"], s["interactions"]) == (len(lens), len(data.item_ids), sum(lens))
  assert s["examples"] == {"train": sum(n - 3 for n in lens), "valid": len(lens), "test": len(lens)}
  assert s["sequence_length"]["min"] == min(lens) and s["sequence_length"]["max"] == max(lens)
  assert s["sequence_length"]["p50"] == float(np.median(lens))
  assert s["sequence_length"]["min"] <= s["sequence_length"]["p90"] <= s["sequence_length"]["p99"] <= max(lens)
  n = len(data.item_ids)
  assert s["metadata_coverage"] == {"brand": (n - 2) / n, "categories": 1.0, "title": 1.0, "topic": 1.0}


def test_cli_json_and_text(syn_dir, capsys):
  data, folder = syn_dir
  assert stats.main([str(folder), "--json", "--max_his", "5"]) == 0
  out = json.loads(capsys.readouterr().out)
  want = stats.dataset_stats(data, max_his=5)
  assert out == {**want, "name": folder.name}
  assert stats.main([str(folder)]) == 0
  text = capsys.readouterr().out
  assert f"users         {data.num_users:,}" in text and "brand" in text and "train" in text
  with pytest.raises(flags.UnrecognizedFlagError, match="max-his"):
    stats.main([str(folder), "--max-his", "5"])
  with pytest.raises(app.UsageError, match="one DATA_DIR"):
    stats.main([str(folder), str(folder)])


def test_module_entry_point_help_and_user_error(tmp_path):
  """`--help` shows the docstring's usage and every flag's help; a missing folder is one error line."""
  run = lambda *a: subprocess.run([sys.executable, "-m", "llmrec_jax.data.stats", *a],  # noqa: E731
                                  capture_output=True, text=True, timeout=120)
  shown = run("--help")
  assert "python -m llmrec_jax.data.stats DATA_DIR" in shown.stdout
  for flag in ("json", "max_his", "drop_bad_users"):
    assert f"--{flag}" in shown.stdout or f"--[no]{flag}" in shown.stdout, flag
  failed = run(str(tmp_path / "missing"))
  assert failed.returncode == 2
  assert failed.stderr.strip().splitlines()[-1].startswith("python -m llmrec_jax.data.stats: error: ")
