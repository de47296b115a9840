"""The published-numbers table of the data README is read exactly, and a changed format fails loudly."""
import pytest

from llmrec_jax.experiments import published

GOOD = """# Data

## Published numbers on these splits (full ranking, HR@5 / NDCG@5 / HR@10 / NDCG@10)

| model | Beauty | Sports |
|---|---|---|
| A | .0387 .0249 .0605 .0318 | - |
| B (recalled) | hit@5 .0634, hit@10 .0832 | |

Text after the table.
"""


def _write(tmp_path, text):
  path = tmp_path / "README.md"
  path.write_text(text, encoding="utf-8")
  return path


def test_parses_numbers_dashes_blanks_and_labelled_cells(tmp_path):
  got = published.parse_published(_write(tmp_path, GOOD))
  assert got == {"A": {"beauty": {"hit@5": .0387, "ndcg@5": .0249, "hit@10": .0605, "ndcg@10": .0318}},
                 "B (recalled)": {"beauty": {"hit@5": .0634, "hit@10": .0832}}}


@pytest.mark.parametrize("old, new, message", [
    ("| A | .0387 .0249 .0605 .0318 | - |", "| A | .0387 .0249 .0605 | - |", r"README.md:7: 'A' / beauty: cannot read"),
    ("| A | .0387 .0249 .0605 .0318 | - |", "| A | .0387 .0249 .0605 .0318 |", r"README.md:7: 2 cells"),
    ("| model | Beauty | Sports |", "| name | Beauty | Sports |", r"README.md:5: header"),
    ("HR@5 / NDCG@5 / HR@10 / NDCG@10", "HR@10 / NDCG@10 / HR@5 / NDCG@5", r"README.md:3: the heading"),
    ("## Published numbers on these splits", "## Numbers", r"no heading"),
    ("|---|---|---|", "| x | y | z |", r"README.md:6: expected the separator row"),
    ("|---|---|---|", "", r"README.md:3: expected a markdown table"),
    ("hit@5 .0634, hit@10 .0832", "hit@5 .0634; mrr .1", r"README.md:8: 'B \(recalled\)' / beauty"),
])
def test_malformed_tables_fail_naming_file_and_line(tmp_path, old, new, message):
  assert old in GOOD
  with pytest.raises(ValueError, match=message):
    published.parse_published(_write(tmp_path, GOOD.replace(old, new)))


def test_real_readme(shared_dir):
  got = published.parse_published(shared_dir / "data" / "README.md")
  labels = list(got)
  assert any(l.startswith("SASRec") for l in labels) and any(l.startswith("TIGER") for l in labels)
  idgenrec = next(v for l, v in got.items() if l.startswith("IDGenRec (paper"))
  assert set(idgenrec) == {"beauty", "sports", "toys"}
  for per_dataset in got.values():
    for metrics in per_dataset.values():
      assert set(metrics) <= set(published.METRICS) and all(0 < v < 1 for v in metrics.values())
      if {"hit@5", "hit@10"} <= set(metrics):
        assert metrics["hit@5"] <= metrics["hit@10"]
      for k in (5, 10):
        if {f"hit@{k}", f"ndcg@{k}"} <= set(metrics):
          assert metrics[f"ndcg@{k}"] <= metrics[f"hit@{k}"]
  assert all(len(v) == 4 for v in got[labels[0]].values())   # the first row reports all four metrics
