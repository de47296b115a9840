"""Host-side prompt rendering (no SeqIO): rows, order and index features against a hand-built loop."""
import numpy as np
import pytest

from llmrec_jax.data import preprocessors as pp
from llmrec_jax.data.prompts import Template
from llmrec_jax.data.records import RecData
from llmrec_jax.data.splits import leave_one_out

TEMPLATES = (Template("u={user_id} h={history} ?", "{target}"), Template("{history} | {user_id}", "t {target}"))


@pytest.fixture(scope="module")
def data():
  seqs = ([0, 1, 2, 3, 4, 5], [5, 4, 3], [2, 0, 4, 1, 3])
  return RecData(name="tiny", user_ids=("ua", "ub", "uc"), item_ids=tuple(f"i{i}" for i in range(6)),
                 item_meta=tuple({} for _ in range(6)), sequences=tuple(np.array(s, np.int32) for s in seqs))


def test_rec_examples_rows_in_example_major_order(data):
  loo = leave_one_out(data, max_his=2)["train"]
  item_tids = [f"item {i}" for i in range(6)]
  user_tids = ["user a", "user b", "user c"]
  ids = np.array([[0, 1], [1, 1], [0, 0], [1, 0], [0, 1]], np.int32)[:loo.num_examples]
  rows = pp.rec_examples(loo, item_tids=item_tids, user_tids=user_tids, templates=TEMPLATES, template_ids_ExS=ids)
  expected = []
  for e in range(loo.num_examples):
    for t in ids[e]:
      hist = " ; ".join(item_tids[i] for i in loo.history[e])
      tmpl = TEMPLATES[t]
      expected.append((tmpl.input.format(user_id=user_tids[loo.user[e]], history=hist),
                       tmpl.output.format(target=item_tids[loo.target[e]]), loo.user[e], loo.target[e], t))
  assert len(rows["inputs"]) == 2 * loo.num_examples == len(expected)
  got = list(zip(rows["inputs"], rows["targets"], rows["user_index"], rows["target_index"], rows["template_id"]))
  assert got == expected
  # user "ua" (6 items): train targets are seq[:-2][1:] = 1, 2, 3 with at most 2 history items
  assert rows["inputs"][4] == "u=user a h=item 1 ; item 2 ?"


def test_id_phase_examples_use_text_and_keep_history_indices(data):
  loo = leave_one_out(data, max_his=4)["test"]
  texts = [f"Text of {i}" for i in range(6)]
  rows = pp.id_phase_examples(loo, item_texts=texts, item_tids=[f"id{i}" for i in range(6)],
                              user_tids=["a", "b", "c"], templates=TEMPLATES,
                              template_ids_ExS=np.zeros((3, 1), np.int32), num_his=2)
  # test histories: seq[:-1][-4:] -> last 2 of them
  assert rows["inputs"].tolist() == ["u=a h=Text of 3 ; Text of 4 ?", "u=b h=Text of 5 ; Text of 4 ?",
                                     "u=c h=Text of 4 ; Text of 1 ?"]
  assert rows["targets"].tolist() == ["id5", "id3", "id3"]
  np.testing.assert_array_equal(rows["history_indices"], [[3, 4], [5, 4], [4, 1]])
  short = pp.id_phase_examples(loo, item_texts=texts, item_tids=[f"id{i}" for i in range(6)],
                               user_tids=["a", "b", "c"], templates=TEMPLATES,
                               template_ids_ExS=np.zeros((3, 1), np.int32), num_his=5)
  np.testing.assert_array_equal(short["history_indices"][1], [-1, -1, -1, 5, 4])  # left-padded, oldest first


def test_bad_template_ids_fail_loudly(data):
  loo = leave_one_out(data, max_his=2)["valid"]
  kw = dict(item_tids=["x"] * 6, user_tids=["u"] * 3, templates=TEMPLATES)
  with pytest.raises(ValueError, match="not \\[E=3, S\\]"):
    pp.rec_examples(loo, template_ids_ExS=np.zeros((2, 1), np.int32), **kw)
  with pytest.raises(ValueError, match="outside"):
    pp.rec_examples(loo, template_ids_ExS=np.full((3, 1), 2, np.int32), **kw)


def test_to_tf_dataset_round_trip(data):
  loo = leave_one_out(data, max_his=2)["valid"]
  rows = pp.rec_examples(loo, item_tids=[f"é{i}" for i in range(6)], user_tids=["a", "b", "c"],
                         templates=TEMPLATES, template_ids_ExS=np.ones((3, 1), np.int32))
  out = list(pp.to_tf_dataset(rows).as_numpy_iterator())
  assert [o["inputs"].decode() for o in out] == rows["inputs"].tolist()     # non-ASCII survives
  assert [int(o["target_index"]) for o in out] == rows["target_index"].tolist()
  empty = {k: v[:0] for k, v in rows.items()}
  assert list(pp.to_tf_dataset(empty).as_numpy_iterator()) == []
