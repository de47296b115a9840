"""LC-Rec's tasks over semantic IDs: each task's examples are what its name says, built from the
training part of each user only; the Mixture holds all four; a run of another dataset fails."""
import json

import numpy as np
import pytest
import seqio

from llmrec_jax.data import item_catalogues, synthetic
from llmrec_jax.data import vocab as vocab_lib
from llmrec_jax.data.code_vocabulary import CodeExtendedVocabulary
from llmrec_jax.data.item_text import render_item_text
from llmrec_jax.data.splits import leave_one_out
from llmrec_jax.tasks import semantic_ids as sid_tasks

LEVELS = [8, 8, 8]
LENGTHS = {"inputs": 256, "targets": 32}
NAME = "sid_test"


def _write_codes(run_dir, item_ids, seed=0):
  """A fake semantic-ID run: unique random code tuples, one per item."""
  rng = np.random.default_rng(seed)
  flat = rng.choice(int(np.prod(LEVELS)), size=len(item_ids), replace=False)
  codes_NxL = np.stack([flat // 64, (flat // 8) % 8, flat % 8], axis=1)
  run_dir.mkdir(parents=True, exist_ok=True)
  with open(run_dir / sid_tasks.CODES_FILE, "w", encoding="utf-8") as f:
    json.dump({"item_ids": list(item_ids), "codes": codes_NxL.tolist(), "stats": {"level_sizes": LEVELS}}, f)
  return codes_NxL


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  root = tmp_path_factory.mktemp("sid_tasks")
  data = synthetic.make_synthetic(num_users=25, num_items=40, seed=4, max_len=8)
  data_dir = synthetic.write_p5(data, root / "data")
  codes_NxL = _write_codes(root / "run", data.item_ids)
  base = vocab_lib.get_vocabulary(data=data, extra_texts=list(sid_tasks.PREFIXES.values()), vocab_size=300,
                                  cache_dir=root / "spm")
  mixture = sid_tasks.register(NAME, str(data_dir), str(root / "run"), base, overwrite=True)
  vocab = CodeExtendedVocabulary(base, LEVELS)
  ids = [vocab.codes.id_text(c) for c in codes_NxL]
  return {"root": root, "data": data, "data_dir": data_dir, "vocab": vocab, "ids": ids, "mixture": mixture}


def _rows(task: str, split: str = "train") -> list[dict]:
  ds = seqio.get_mixture_or_task(f"{NAME}_{task}").get_dataset(LENGTHS, split=split, shuffle=False, num_epochs=1)
  return list(ds.as_numpy_iterator())


def _text(row, key: str) -> str:
  return row[f"{key}_pretokenized"].decode()


def test_the_mixture_holds_the_four_tasks_seqrec_weighted_most(run):
  mixture = run["mixture"]
  rates = {t.name: mixture.get_rate(t) for t in mixture.tasks}
  assert set(rates) == {f"{NAME}_{t}" for t in sid_tasks.PREFIXES}
  assert rates[f"{NAME}_seqrec"] > max(r for n, r in rates.items() if n != f"{NAME}_seqrec")
  assert [t.name for t in mixture.tasks if "validation" in t.splits] == [f"{NAME}_seqrec"]
  rows = list(mixture.get_dataset(LENGTHS, split="train", shuffle=False, seed=0).take(8).as_numpy_iterator())
  assert len(rows) == 8 and all(set(r) >= {"inputs", "targets"} for r in rows)


def test_seqrec_is_the_leave_one_out_split_over_codes(run):
  data, ids, vocab = run["data"], run["ids"], run["vocab"]
  loo = leave_one_out(data, 20)
  for split, key in (("train", "train"), ("validation", "valid"), ("test", "test")):
    rows = _rows("seqrec", split)
    assert len(rows) == loo[key].num_examples
    for row, user, history, target in zip(rows, loo[key].user, loo[key].history, loo[key].target):
      assert vocab.decode(row["targets"].tolist()) == ids[target] == _text(row, "targets")
      assert row["targets"].tolist() == vocab.encode(ids[target]) + [vocab.eos_id]
      assert _text(row, "inputs") == "history: " + " ; ".join(ids[i] for i in history)
      assert int(row["target_index"]) == target and int(row["user_index"]) == user
  for row in _rows("seqrec", "train"):     # a training target is never its user's valid / test item
    seq = data.sequences[int(row["user_index"])]
    assert int(row["target_index"]) in seq[:-2].tolist() and int(row["target_index"]) not in seq[-2:].tolist()
  assert list(item_catalogues.get(f"{NAME}_seqrec").item_ids()) == ids


def _training_items(data) -> set[int]:
  return {i for seq in data.sequences for i in seq[:-2].tolist()}


def test_item2code_maps_each_training_items_text_to_its_codes(run):
  data, ids, vocab = run["data"], run["ids"], run["vocab"]
  rows = _rows("item2code")
  items = [int(r["target_index"]) for r in rows]
  assert set(items) == _training_items(data) and len(items) == len(set(items))
  for row, item in zip(rows, items):
    assert _text(row, "inputs") == "item code of: " + render_item_text(data.item_meta[item])
    assert row["targets"].tolist() == [vocab.code_id(l, c) for l, c in enumerate(_codes(ids[item]))] + [1]


def _codes(text: str) -> list[int]:
  return [int(part.split("_")[1]) for part in text.strip("<>").split("><")]


def test_code2item_maps_each_training_items_codes_to_its_title(run):
  data, ids, vocab = run["data"], run["ids"], run["vocab"]
  rows = _rows("code2item")
  assert {int(r["target_index"]) for r in rows} == _training_items(data)
  for row in rows:
    item = int(row["target_index"])
    assert _text(row, "inputs") == "title of item: " + ids[item]
    assert vocab.decode(row["targets"].tolist()) == data.item_meta[item]["title"]


def test_history2title_is_the_training_examples_with_titles_as_targets(run):
  data, ids = run["data"], run["ids"]
  train = leave_one_out(data, 20)["train"]
  rows = _rows("history2title")
  assert len(rows) == train.num_examples
  for row, history, target in zip(rows, train.history, train.target):
    assert _text(row, "inputs") == "next title after: " + " ; ".join(ids[i] for i in history)
    assert _text(row, "targets") == data.item_meta[target]["title"]


def test_codes_of_another_dataset_fail_naming_the_file(run, tmp_path):
  other = synthetic.make_synthetic(num_users=25, num_items=40, seed=5, max_len=8)
  _write_codes(tmp_path, other.item_ids)
  with pytest.raises(ValueError, match=f"{tmp_path / sid_tasks.CODES_FILE}.*item ids"):
    sid_tasks.register("sid_bad", str(run["data_dir"]), str(tmp_path), run["vocab"].base)
  _write_codes(tmp_path, run["data"].item_ids)
  with open(tmp_path / sid_tasks.CODES_FILE, encoding="utf-8") as f:
    saved = json.load(f)
  saved["codes"][1] = saved["codes"][0]
  with open(tmp_path / sid_tasks.CODES_FILE, "w", encoding="utf-8") as f:
    json.dump(saved, f)
  with pytest.raises(ValueError, match=f"{tmp_path / sid_tasks.CODES_FILE}.*share a code"):
    sid_tasks.register("sid_bad", str(run["data_dir"]), str(tmp_path), run["vocab"].base)
  assert "sid_bad" not in seqio.MixtureRegistry.names()


def test_the_environment_hook_registers_and_needs_both_paths(run):
  env = {sid_tasks.ENV_RUN: str(run["root"] / "run"), sid_tasks.ENV_DATA: str(run["data_dir"]),
         sid_tasks.ENV_NAME: "sid_env", sid_tasks.ENV_VOCAB: run["vocab"].base.sentencepiece_model_file}
  with pytest.raises(ValueError, match=sid_tasks.ENV_DATA):
    sid_tasks.register_from_env({sid_tasks.ENV_RUN: env[sid_tasks.ENV_RUN]})
  assert sid_tasks.register_from_env({}) is None
  mixture = sid_tasks.register_from_env(env)
  assert mixture.name == "sid_env" and seqio.get_mixture_or_task("sid_env_seqrec") is not None


def test_the_codes_file_is_the_one_semantic_id_runs_write():
  from llmrec_jax.systems.semantic_ids import run as semantic_run  # pylint: disable=g-import-not-at-top
  assert sid_tasks.CODES_FILE == semantic_run.CODES_FILE
