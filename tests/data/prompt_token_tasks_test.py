"""Whole-prompt SeqIO tasks: get_dataset equals the NumPy preprocessor, IDs are read when built."""
import numpy as np
import pytest

import seqio

from llmrec_jax.data import prompt_token_tasks as ptt  # noqa: E402
from llmrec_jax.data import prompt_tokens  # noqa: E402
from llmrec_jax.data import task_builders as tb  # noqa: E402
from llmrec_jax.data import vocab as vocab_lib  # noqa: E402
from llmrec_jax.data.id_tables import IdTable  # noqa: E402
from llmrec_jax.data.prompts import get_template_set  # noqa: E402
from llmrec_jax.data.synthetic import make_synthetic  # noqa: E402

LENGTHS = {"inputs": 160, "targets": 32}
MAX_HIS = 6


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  templates = get_template_set("llmrec_default")
  data = make_synthetic(num_users=8, num_items=30, seed=0, num_topics=3, min_len=5, max_len=9)
  provider = tb.IdProvider(*tb.title_id_tables(data))
  vocab = vocab_lib.get_vocabulary(
      data=data, id_tables=[provider.item, provider.user], extra_texts=[t.input for t in templates.train],
      cache_dir=tmp_path_factory.mktemp("spm"), vocab_size=400)
  names = ptt.register_prompt_token_tasks("test_ptt", data, vocab, provider, templates, overwrite=True,
                                          max_his=MAX_HIS, input_len=LENGTHS["inputs"], id_len=20,
                                          target_len=20, grow_lengths=True, sample_num=2, seed=3)
  return data, provider, vocab, names


def _dataset_rows(name, split):
  ds = seqio.get_mixture_or_task(name).get_dataset(LENGTHS, split=split, shuffle=False)
  return list(ds.as_numpy_iterator())


@pytest.mark.parametrize("kind,split", [("rec", "train"), ("id", "validation")])
def test_get_dataset_equals_the_numpy_preprocessor_on_the_task_rows(setup, kind, split):
  _, _, _, names = setup
  prep = ptt.tokenize_prompts_of(names[kind])
  source = ptt.IndexSource(prep)
  got = _dataset_rows(names[kind], split)
  expected = prep.rows(source.rows(split), input_len=LENGTHS["inputs"])
  assert len(got) == len(expected) == source.num_examples(split)
  for g, e in zip(got, expected):
    for k in ("inputs", "targets", "soft_slot", "history_items"):
      np.testing.assert_array_equal(g[k], e[k])
    assert g["inputs_pretokenized"].decode() == e["inputs_pretokenized"]
    assert len(g["soft_slot"]) == len(g["inputs"]) <= LENGTHS["inputs"]
  assert all(r["history_items"].shape == (prep.spec.num_history,) for r in got)
  assert prep.spec.num_history == (MAX_HIS if kind == "rec" else MAX_HIS // 2)


def test_prompts_decode_to_the_rendered_text_with_slots_on_the_ids(setup):
  data, provider, vocab, names = setup
  prep = ptt.tokenize_prompts_of(names["id"])
  c = prep.slot_stride(prep.snapshot())
  for row in _dataset_rows(names["id"], "test"):
    assert vocab.decode(row["inputs"].tolist()) == row["inputs_pretokenized"].decode()
    kept = [i for i in row["history_items"].tolist() if i >= 0]
    for h, item in enumerate(kept):
      at = row["soft_slot"] // c == h
      assert vocab.decode(row["inputs"][at & (row["soft_slot"] >= 0)].tolist()) == \
          provider.item[data.item_ids[item]]


def test_datasets_built_after_set_use_the_new_ids(setup):
  data, provider, vocab, names = setup
  old = provider.item
  new = IdTable("item", 1, {raw: " ".join(t.split()[1:] + t.split()[:1]) for raw, t in old.ids.items()})
  before = _dataset_rows(names["rec"], "validation")
  try:
    provider.set(item=new)
    after = _dataset_rows(names["rec"], "validation")
  finally:
    provider.set(item=old)
  loo = ptt.IndexSource(ptt.tokenize_prompts_of(names["rec"])).splits["valid"]
  for b, a, target in zip(before, after, loo.target):
    assert vocab.decode(b["targets"].tolist()) == old[data.item_ids[target]]
    assert vocab.decode(a["targets"].tolist()) == new[data.item_ids[target]]
    assert a["inputs_pretokenized"] != b["inputs_pretokenized"]


def test_sentencepiece_of_reads_the_seqio_vocabulary(setup):
  _, _, vocab, _ = setup
  assert prompt_tokens.sentencepiece_of(vocab) is vocab.tokenizer
