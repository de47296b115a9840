"""`make demo` end to end: the real schedule (bootstrapped generator, rec phase, ID phase, every
ID regenerated, rec phase, constrained evaluation) at a small size, and the demo's own size
beating popularity."""
import json

from llmrec_jax import demo
from llmrec_jax.systems.idgenrec import alternating


def test_demo_runs_bootstrap_rec_id_regeneration_rec(tmp_path, monkeypatch):
  regenerated = []
  original = alternating.IdGenRecLoop.regenerate_ids

  def spy(self):
    before = (list(self.ctx.item_ids), list(self.ctx.user_ids))
    original(self)
    regenerated.append((before, (list(self.ctx.item_ids), list(self.ctx.user_ids))))
  monkeypatch.setattr(alternating.IdGenRecLoop, "regenerate_ids", spy)
  out = demo.run(str(tmp_path), rounds=2, rec_epochs=0.5, id_epochs=0.2, users=60, items=40,
                 bootstrap_steps=30)
  saved = json.loads((tmp_path / "results.json").read_text())
  assert [(r["round"], r["phase"]) for r in saved["phases"]] == [(0, "rec"), (0, "id"), (1, "rec")]
  assert saved["complete"] and saved["bootstrap"]["steps"] == 30
  assert saved["phases"][1]["step"] > saved["phases"][0]["step"]  # the ID phase took optimizer steps
  ((items0, users0), (items1, users1)), = regenerated  # once, after the ID phase
  assert items1 != items0 and len(set(items1)) == 40 and len(set(users1)) == 60
  assert set(out["idgenrec"]) >= {"hit@5", "ndcg@5", "hit@10", "ndcg@10"}
  assert saved["best"]["test"] == out["idgenrec"]
