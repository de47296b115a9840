"""report: metrics.jsonl -> PNG with one panel per metric and round boundaries."""
import json
import subprocess
import sys

import numpy as np
import pytest
from matplotlib import image as mpimg

from llmrec_jax import report


def _fake_run(folder, n=12):
  lines = []
  for step in range(n):
    lines.append({"step": step, "train/loss": 3.0 / (step + 1), "round": step // 4})
    if step % 4 == 3:
      lines.append({"step": step, "eval/recall@10": 0.05 * step})
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "metrics.jsonl").write_text("\n".join(json.dumps(l) for l in lines) + "\n")
  return lines


def test_series_and_round_boundaries(tmp_path):
  lines = _fake_run(tmp_path)
  records = report.load_metrics(str(tmp_path / "metrics.jsonl"))
  assert records == lines
  series = report.metric_series(records)
  assert sorted(series) == ["eval/recall@10", "train/loss"]
  steps, values = series["eval/recall@10"]
  np.testing.assert_array_equal(steps, [3, 7, 11])
  np.testing.assert_allclose(values, [0.15, 0.35, 0.55])
  # Brute force: the last step of the round before each new round.
  want = [(s - 1, s // 4) for s in range(1, 12) if s // 4 != (s - 1) // 4]
  assert report.round_boundaries(records) == want == [(3, 1), (7, 2)]


def _alternating_records(rounds, id_steps, rec_steps):
  """metrics.jsonl records as `IdGenRecLoop.run` (schedule id_first) logs them through
  `train.py`'s log_fn (which drops `phase`): a train record every 50 steps of a phase and at its
  last step, then the phase-end record (valid/test after a rec phase) at that same step."""
  records, step = [], 0
  for rnd in range(rounds):
    for phase, total in (("id", id_steps), ("rec", rec_steps)):
      for step_in_phase in range(1, total + 1):
        step += 1
        if step_in_phase % 50 == 0 or step_in_phase == total:
          records.append({"round": rnd, "step": step, f"{phase}/loss": 1.0 / step})
      end = {"round": rnd, "step": step}
      if phase == "rec":
        end.update({"valid/hit@10": 0.01 * rnd, "test/hit@10": 0.01 * rnd})
      records.append(end)
  return records


def test_round_boundaries_sit_at_the_step_a_round_starts():
  """Rounds of 70 ID + 120 rec steps: round 1 starts after step 190 and round 2 after 380, though
  their first records come at steps 240 and 430."""
  records = _alternating_records(rounds=3, id_steps=70, rec_steps=120)
  firsts = {r: min(x["step"] for x in records if x["round"] == r) for r in (1, 2)}
  assert firsts == {1: 240, 2: 430}
  assert report.round_boundaries(records) == [(190, 1), (380, 2)]
  # File order does not matter (several writers append to one metrics.jsonl).
  assert report.round_boundaries(records[::-1]) == [(190, 1), (380, 2)]


def test_cli_writes_a_valid_png(tmp_path):
  _fake_run(tmp_path / "run")
  out = report.main([str(tmp_path / "run"), "--out", str(tmp_path / "plots" / "m.png")])
  img = mpimg.imread(out)
  assert img.ndim == 3 and img.shape[2] in (3, 4)
  assert img.shape[0] > 100 and img.shape[1] > 200
  assert img[..., :3].std() > 0.01  # not a blank canvas


def test_module_entry_point_default_output(tmp_path):
  _fake_run(tmp_path / "run")
  proc = subprocess.run([sys.executable, "-m", "llmrec_jax.report", str(tmp_path / "run")],
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert mpimg.imread(str(tmp_path / "run" / "metrics.png")).ndim == 3


def test_bad_lines_name_file_and_line(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 0, "loss": 1.0}\n\n{"step": 1, "loss": \n')
  with pytest.raises(ValueError, match=r"metrics.jsonl:3: not valid JSON"):
    report.load_metrics(str(path))
  path.write_text('{"step": 0, "loss": "high"}\n')
  with pytest.raises(ValueError, match=r"metrics.jsonl:1: non-numeric values for \['loss'\]"):
    report.load_metrics(str(path))
  path.write_text('{"loss": 1.0}\n')
  with pytest.raises(ValueError, match=r":1: expected a JSON object with an integer 'step'"):
    report.load_metrics(str(path))
  with pytest.raises(ValueError, match="no metrics"):
    report.plot_metrics([{"step": 0, "round": 1}], str(tmp_path / "x.png"))


def _curve_run(folder, slope):
  folder.mkdir(parents=True, exist_ok=True)
  lines = [{"step": 100 * e, "epoch": e, "minutes": 2.0 * e, "valid/hit@10": slope * e,
            "valid/ndcg@10": slope * e / 2}
           for e in range(1, 6)]
  (folder / "metrics.jsonl").write_text("\n".join(json.dumps(l) for l in lines) + "\n")


def test_several_runs_share_the_axes(tmp_path):
  _curve_run(tmp_path / "stream", 0.01)
  _curve_run(tmp_path / "sasrec", 0.02)
  out = report.main([str(tmp_path / "stream"), str(tmp_path / "sasrec"), "--out",
                     str(tmp_path / "curves.png")])
  img = mpimg.imread(out)
  # Two metric rows x (minutes, step) columns: taller than wide-ish, and drawn.
  assert img.shape[0] > 300 and img.shape[1] > 500
  assert img[..., :3].std() > 0.01
  with pytest.raises(ValueError, match="no run has any of"):
    report.main([str(tmp_path / "stream"), str(tmp_path / "sasrec"), "--metrics", "test/mrr",
                 "--out", str(tmp_path / "none.png")])
