"""The results table: our collected runs and the quoted rows, '-' wherever a number is missing."""
import shutil

import pytest

from llmrec_jax.experiments import published, runs, table

README = """## Published numbers on these splits (full ranking, HR@5 / NDCG@5 / HR@10 / NDCG@10)

| model | Beauty | Toys |
|---|---|---|
| TIGER | .0454 .0321 .0648 .0384 | - |
"""


def _rows(doc):
  """{label: cells} of the markdown table in `doc` (header and separator skipped)."""
  lines = [l for l in doc.splitlines() if l.startswith("| ")]
  header = [c.strip() for c in lines[0].strip("|").split("|")]
  return header, {cells[0]: cells[1:] for cells in ([c.strip() for c in l.strip("|").split("|")] for l in lines[1:])}


def test_cli_collects_fake_runs_and_marks_missing_entries(tmp_path, fake_runs):
  runs_dir = tmp_path / "runs"
  fake_runs.write_generative(runs_dir, "beauty", "ids_random", fake_runs.metrics(0.0123))
  pop = fake_runs.write_baseline(runs_dir, "toys", "popularity", {"hit@5": 0.02, "hit@10": 0.03})
  pop.write_text(pop.read_text(encoding="utf-8").replace('"model"', '"num_users": 19412, "model"'), encoding="utf-8")
  (tmp_path / "README.md").write_text(README, encoding="utf-8")
  out = tmp_path / "results.md"
  doc = table.main(["--datasets", "beauty,toys", "--models", "popularity,ids_random,ids_title",
                    "--runs_dir", str(runs_dir), "--readme", str(tmp_path / "README.md"), "--out", str(out)])
  assert out.read_text(encoding="utf-8") == doc
  header, rows = _rows(doc)
  assert header == ["model"] + [f"{ds} {m}" for ds in ("beauty", "toys") for m in table.COLUMNS]
  assert rows[runs.MODELS["ids_random"].label] == ["0.0123", "0.0062", "0.0246", "0.0123"] + ["-"] * 4
  assert rows[runs.MODELS["popularity"].label] == ["-"] * 4 + ["0.0200", "-", "0.0300", "-"]
  assert rows[runs.MODELS["ids_title"].label] == ["-"] * 8
  assert rows["TIGER (quoted)"] == ["0.0454", "0.0321", "0.0648", "0.0384"] + ["-"] * 4
  assert all(len(cells) == len(header) - 1 for cells in rows.values())
  assert "Provenance:" in doc and "beauty / ids_random: command unknown" in doc
  assert "test on 19,412 users" in doc and "beauty / ids_random: command unknown (collected, not run by " \
      "this tool), wall time unknown, finished" in doc
  assert "llmrec_jax.experiments.table" in doc


def test_dry_run_lists_only_missing_runs(tmp_path, capsys, fake_runs):
  runs_dir = tmp_path / "runs"
  fake_runs.write_baseline(runs_dir, "sports", "popularity", fake_runs.metrics(0.01))
  (tmp_path / "README.md").write_text(README, encoding="utf-8")
  table.main(["--datasets", "sports", "--models", "popularity,ids_title,ids_random", "--run", "--dry_run",
              "--runs_dir", str(runs_dir), "--readme", str(tmp_path / "README.md"), "--out", str(tmp_path / "r.md")])
  printed = [l for l in capsys.readouterr().out.splitlines() if "-m llmrec_jax" in l]
  assert len(printed) == 1 and "ablations/ids_random.gin" in printed[0]   # popularity exists, title skipped
  assert "ids_title needs item titles" in (tmp_path / "r.md").read_text(encoding="utf-8")


def test_a_changed_readme_stops_the_tool_before_any_run(tmp_path):
  (tmp_path / "README.md").write_text(README.replace("| - |", "| n/a |"), encoding="utf-8")
  with pytest.raises(ValueError, match=r"README.md:5: 'TIGER' / toys"):
    table.main(["--run", "--runs_dir", str(tmp_path / "runs"), "--readme", str(tmp_path / "README.md"),
                "--out", str(tmp_path / "r.md")])
  assert not (tmp_path / "runs").exists()


def test_real_readme_rows_are_quoted(tmp_path, shared_dir):
  shutil.copy(shared_dir / "data" / "README.md", tmp_path / "README.md")
  doc = table.main(["--datasets", "beauty,toys,yelp,sports", "--models", "popularity", "--runs_dir",
                    str(tmp_path / "runs"), "--data_root", str(shared_dir / "data"), "--out", str(tmp_path / "r.md")])
  header, rows = _rows(doc)
  quoted = published.parse_published(tmp_path / "README.md")
  assert [l for l in rows if l.endswith("(quoted)")] == [l + table.QUOTED for l in quoted]
  idgenrec = next(cells for l, cells in rows.items() if l.startswith("IDGenRec (paper"))
  beauty = header.index("beauty HR@5") - 1
  yelp = header.index("yelp HR@5") - 1
  assert idgenrec[beauty:beauty + 4] == ["0.0618", "0.0486", "0.0814", "0.0541"]
  assert idgenrec[yelp:yelp + 4] == ["-"] * 4     # the README quotes no Yelp numbers


def test_run_fills_missing_cells_and_notes_failures(tmp_path, monkeypatch, fake_runs):
  (tmp_path / "README.md").write_text(README, encoding="utf-8")
  line = '{"test": {"hit@5": 0.25, "ndcg@5": 0.125, "hit@10": 0.5, "ndcg@10": 0.25}}'
  ran = []

  def fake_command(ds, model, **kwargs):
    ran.append((ds, model))
    code = f"print({line!r})" if model == "popularity" else "raise SystemExit(2)"
    return [runs.sys.executable, "-c", code]
  monkeypatch.setattr(runs, "command", fake_command)
  fake_runs.write_baseline(tmp_path / "runs", "toys", "popularity", fake_runs.metrics(0.01))  # exists: not rerun
  doc = table.main(["--datasets", "beauty,toys", "--models", "popularity,sasrec_ce", "--run",
                    "--runs_dir", str(tmp_path / "runs"), "--readme", str(tmp_path / "README.md"),
                    "--out", str(tmp_path / "r.md")])
  assert ran == [("beauty", "popularity"), ("beauty", "sasrec_ce"), ("toys", "sasrec_ce")]
  _, rows = _rows(doc)
  assert rows[runs.MODELS["popularity"].label] == ["0.2500", "0.1250", "0.5000", "0.2500",
                                                   "0.0100", "0.0050", "0.0200", "0.0100"]
  assert rows[runs.MODELS["sasrec_ce"].label] == ["-"] * 8
  assert "beauty / sasrec_ce failed" in doc and "toys / sasrec_ce failed" in doc
