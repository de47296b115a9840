"""`make demo`'s own configuration beats popularity. A file of its own beside demo_test.py: it is
the suite's longest test, and pytest-xdist (`--dist loadfile`) can then run it on one worker
while the other runs the rest of the demo's tests. Marked slow (about 2 minutes on idle cores): `make
test` leaves it out to keep the suite under its 12 minutes, `make test-slow` runs it (and
`make demo` prints the same comparison)."""
import pytest

from llmrec_jax import demo


@pytest.mark.slow
def test_demo_beats_popularity(tmp_path):
  # One alternation round instead of the demo's two keeps this at CI cost; everything else is
  # the demo's own configuration (synthetic 300 users x 200 items, t5_tiny, full ranking).
  out = demo.run(str(tmp_path), rounds=1)
  ours, pop = out["idgenrec"], out["popularity"]
  assert ours["hit@10"] > pop["hit@10"] + 0.05, (ours, pop)
  assert ours["ndcg@10"] > pop["ndcg@10"], (ours, pop)
