"""Prompts: template validation, registry, official file, seeded sampling, and a real Beauty test prompt."""
import gzip

import numpy as np
import pytest

from llmrec_jax.data import id_tables, prompts, sources, splits
from llmrec_jax.data.errors import DataError


def test_default_set_shape():
  ts = prompts.get_template_set("llmrec_default")
  assert ts.name == "llmrec_default" and len(ts.train) == 10 and len(ts.unseen) == 1
  assert len(set(ts.train + ts.unseen)) == 11
  for t in ts.train + ts.unseen:
    assert "{history}" in t.input and "{user_id}" in t.input and t.output == "{target}"


def test_render_prompt_fills_every_field():
  t = prompts.Template("u {user_id} saw {history} , next ?", "{target} !")
  inputs, targets = prompts.render_prompt(t, user_id="alice x", history=["a b", "c", "d {x}"], target="e f")
  assert inputs == "u alice x saw a b ; c ; d {x} , next ?" and targets == "e f !"
  assert prompts.render_prompt(t, user_id="u", history=["a", "b"], target="t", sep=" | ")[0] == "u u saw a | b , next ?"
  with pytest.raises(TypeError):
    prompts.render_prompt(t, user_id="u", history="a b", target="t")


@pytest.mark.parametrize("inp,out", [("{history} {dataset}", "{target}"), ("no history", "{target}"),
                                     ("{history}", "no target"), ("{history} {0}", "{target}"),
                                     ("{history:>5}", "{target}"), ("{history", "{target}")])
def test_bad_templates(inp, out):
  with pytest.raises(ValueError):
    prompts.Template(inp, out)


def test_registry():
  with pytest.raises(KeyError, match="llmrec_default"):
    prompts.get_template_set("llmrec_defualt")
  with pytest.raises(ValueError, match="already registered"):
    prompts.register_template_set("llmrec_default")(prompts.llmrec_default)
  assert "llmrec_default" in prompts.registered_template_sets()


def test_sampling_is_seeded_and_uniform():
  a = prompts.sample_template_ids(5000, 10, 3, seed=7)
  assert a.shape == (5000, 3) and a.dtype == np.int32
  assert np.array_equal(a, prompts.sample_template_ids(5000, 10, 3, seed=7))
  assert not np.array_equal(a, prompts.sample_template_ids(5000, 10, 3, seed=8))
  counts = np.bincount(a.ravel(), minlength=10)
  assert a.min() == 0 and a.max() == 9
  assert np.all(np.abs(counts - 1500) < 5 * np.sqrt(1500))  # ~5 sigma
  with pytest.raises(ValueError):
    prompts.sample_template_ids(3, 0, 1, seed=0)


def test_load_idgenrec_prompts_errors(tmp_path):
  p = tmp_path / "p.txt"
  p.write_text("sequential; seen; a {history}; {target}\nsequential; maybe; b {history}; {target}\n")
  with pytest.raises(DataError, match=r"p.txt, line 2: second field"):
    prompts.load_idgenrec_prompts(p)
  p.write_text("sequential; seen; a {history}; {target}\nsequential; seen; b {history}\n")
  with pytest.raises(DataError, match=r"p.txt, line 2: expected 4"):
    prompts.load_idgenrec_prompts(p)
  p.write_text("sequential; seen; a {history} {dataset}; {target}\n")
  with pytest.raises(DataError, match=r"p.txt, line 1: .*dataset"):
    prompts.load_idgenrec_prompts(p)
  with pytest.raises(DataError, match="missing file"):
    prompts.load_idgenrec_prompts(tmp_path / "nope.txt")


def official_sequential_lines(path):
  """(seen, unseen) template (input, output) pairs straight from the file."""
  seen, unseen = [], []
  for line in path.read_text().splitlines():
    task, split, inp, out = [x.strip() for x in line.split(";")]
    if task == "sequential":
      (seen if split == "seen" else unseen).append((inp, out))
  return seen, unseen


def test_official_prompts_file(shared_dir):
  path = shared_dir / "data" / "idgenrec_prompts.txt"
  ts = prompts.load_idgenrec_prompts(path)
  seen, unseen = official_sequential_lines(path)
  assert ts.name == "idgenrec_official" and len(ts.train) == 10 and len(ts.unseen) == 1
  assert [(t.input, t.output) for t in ts.train] == seen and [(t.input, t.output) for t in ts.unseen] == unseen


@pytest.mark.parametrize("pick", ["first_user", "first_long_user"])
def test_beauty_test_prompt(shared_dir, pick):
  folder = shared_dir / "data" / "amazon2014_beauty"
  # Expectation from the raw files, independently of the code under test.
  with gzip.open(folder / "user_sequence.txt.gz", "rt") as f:
    lines = [line.split() for line in f]
  row = lines[0] if pick == "first_user" else next(r for r in lines if len(r) - 1 > 22)
  user, items = row[0], row[1:]
  if pick == "first_user":
    assert user == "A1YJEY40YUW4SE"
  with gzip.open(folder / "reference_textual_ids.txt.gz", "rt") as f:
    ref = dict((line.rstrip("\n").split(" ", 1) + [""])[:2] for line in f)
  seen, _ = official_sequential_lines(shared_dir / "data" / "idgenrec_prompts.txt")
  history_raw = items[:-1][-20:]   # oldest first, last 20, includes the validation item items[-2]
  want_in = seen[0][0].replace("{user_id}", user).replace("{history}", " ; ".join(ref[i] for i in history_raw))
  want_out = seen[0][1].replace("{target}", ref[items[-1]])

  data = sources.load_p5(folder)
  test = splits.leave_one_out(data, max_his=20)["test"]
  table = id_tables.load_reference_ids(folder)
  template = prompts.load_idgenrec_prompts(shared_dir / "data" / "idgenrec_prompts.txt").train[0]
  u = data.user_index[user]
  got_in, got_out = prompts.render_prompt(
      template, user_id=data.user_ids[test.user[u]],
      history=table.for_ids([data.item_ids[i] for i in test.history[u]]),
      target=table[data.item_ids[test.target[u]]])
  assert got_in == want_in and got_out == want_out
  assert len(history_raw) == min(20, len(items) - 1) and history_raw[-1] == items[-2]
