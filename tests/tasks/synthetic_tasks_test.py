"""The default synthetic tasks registered by `llmrec_jax.tasks.synthetic`."""
import pytest

import seqio

from llmrec_jax.data.splits import leave_one_out  # noqa: E402
from llmrec_jax.tasks import synthetic  # noqa: E402

LENGTHS = {"inputs": 1024, "targets": 32}  # title IDs x 20 history items are long


def test_all_default_tasks_are_registered():
  names = set(seqio.TaskRegistry.names())
  for base in synthetic.DATA:
    assert {base, f"{base}_unseen", f"{base}_id"} <= names
  assert "llmrec_synthetic_mix" in seqio.MixtureRegistry.names()


@pytest.mark.parametrize("name", ["llmrec_synthetic", "llmrec_synthetic_b"])
def test_validation_split_decodes_to_current_ids(name):
  data, provider, vocab = synthetic.DATA[name], synthetic.PROVIDERS[name], synthetic.VOCAB
  rows = list(seqio.get_mixture_or_task(name).get_dataset(LENGTHS, split="validation", shuffle=False)
              .as_numpy_iterator())
  loo = leave_one_out(data, 20)["valid"]
  assert len(rows) == loo.num_examples == data.num_users
  for row, target in zip(rows, loo.target):
    assert vocab.decode(row["targets"].tolist()) == provider.item[data.item_ids[target]]
    assert vocab.decode(row["inputs"].tolist()) == row["inputs_pretokenized"].decode()
    assert vocab.unk_id not in row["inputs"].tolist()


def test_mixture_mixes_both_datasets():
  rows = list(seqio.get_mixture_or_task("llmrec_synthetic_mix").get_dataset(
      LENGTHS, split="train", shuffle=False, seed=0).take(60).as_numpy_iterator())
  targets = {synthetic.VOCAB.decode(r["targets"].tolist()) for r in rows}
  ids = {name: set(p.item.ids.values()) for name, p in synthetic.PROVIDERS.items()}
  assert ids["llmrec_synthetic"].isdisjoint(ids["llmrec_synthetic_b"])  # the two catalogues differ
  assert targets & ids["llmrec_synthetic"] and targets & ids["llmrec_synthetic_b"]
