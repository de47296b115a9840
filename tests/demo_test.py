"""`make demo` end to end (bootstrap IDs, alternation, constrained evaluation) beats popularity."""
import json

from llmrec_jax import demo


def test_demo_beats_popularity(tmp_path):
  # One alternation round instead of the demo's two keeps this at CI cost; everything else is
  # the demo's own configuration (synthetic 300 users x 200 items, t5_tiny, full ranking).
  out = demo.run(str(tmp_path), rounds=1)
  ours, pop = out["idgenrec"], out["popularity"]
  assert set(ours) >= {"hit@5", "ndcg@5", "hit@10", "ndcg@10"}
  assert ours["hit@10"] > pop["hit@10"] + 0.05, (ours, pop)
  assert ours["ndcg@10"] > pop["ndcg@10"], (ours, pop)
  saved = json.loads((tmp_path / "results.json").read_text())
  assert saved["best"]["test"] == ours and saved["complete"]
