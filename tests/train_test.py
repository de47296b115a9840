"""The train entry point's gin files parse and bind what they say (no training here: the
loop itself is covered by alternating_test)."""
import sys

import gin
import pytest

import jax

from llmrec_jax import gin_utils, partitioning
from llmrec_jax import train as train_lib
from llmrec_jax.systems.idgenrec import alternating, id_phase


@pytest.fixture
def gin_env(monkeypatch):
  gin.clear_config(clear_constants=True)
  monkeypatch.setattr(sys.modules["__main__"], "train", train_lib.train, raising=False)
  configured = gin.configurable(train_lib.train)
  yield configured
  gin.clear_config(clear_constants=True)


def _bound(configured, files, bindings=()):
  del configured
  gin_utils.parse_gin_flags(gin_search_paths=["."], gin_files=files, gin_bindings=list(bindings),
                            finalize_config=False)
  return gin.get_bindings(train_lib.train, resolve_references=True)


def test_the_saved_configs_names_work_on_the_command_line(gin_env):
  """config.gin says `train_script.train.X` (the files' `import __main__ as train_script`)."""
  b = _bound(gin_env, ["idgenrec_tiny.gin"], ["MODEL_DIR = '/tmp/x'", "train_script.train.dataset_vocab_size = 321"])
  assert b["dataset_vocab_size"] == 321


def test_tiny_gin_binds_tiny_sizes(gin_env):
  b = _bound(gin_env, ["idgenrec_tiny.gin"], ["MODEL_DIR = '/tmp/x'"])
  assert b["model_dir"] == "/tmp/x" and b["rec_size"] == "t5_tiny" and b["data_dir"] == "synthetic"
  assert isinstance(b["schedule"], alternating.Schedule)
  assert b["schedule"].rounds == 2 and b["schedule"].alt_style is alternating.AltStyle.REC_FIRST
  assert b["id_options"].mixing is id_phase.Mixing.SOFTMAX and not b["leaky_user_ids"]


def test_cpu_gin_binds_the_decoder_only_stream_recommender(gin_env):
  from llmrec_jax.systems.idgenrec import stream_training
  b = _bound(gin_env, ["idgenrec_beauty_cpu.gin"], ["MODEL_DIR = '/tmp/x'"])
  assert b["rec_form"] == "decoder_only" and b["rec_size"] == "t5_tiny"
  assert b["data_dir"] == "../shared/data/amazon2014_beauty" and b["initial_ids"] == "reference"
  assert isinstance(b["stream"], stream_training.StreamSchedule)
  assert b["stream"].trie_softmax and b["stream"].test_users is None


def test_gin_partitioner_spans_all_devices_and_takes_num_partitions(gin_env):
  b = _bound(gin_env, ["idgenrec_tiny.gin"], ["MODEL_DIR = '/tmp/x'",
                                               "partitioning.PjitPartitioner.num_partitions = 2"])
  part = b["partitioner"]
  assert isinstance(part, partitioning.PjitPartitioner)
  assert dict(part.mesh.shape) == {"data": jax.device_count() // 2, "model": 2}


@pytest.mark.parametrize("name", ["beauty", "sports", "toys", "yelp", "beauty_tiny"])
def test_dataset_gin_files_point_at_their_data(gin_env, name):
  b = _bound(gin_env, [f"idgenrec_{name}.gin"], ["MODEL_DIR = '/tmp/x'"])
  folder = {"beauty": "amazon2014_beauty", "sports": "amazon2014_sports", "toys": "amazon2014_toys",
            "yelp": "yelp", "beauty_tiny": "amazon2014_beauty"}[name]
  assert b["data_dir"] == f"../shared/data/{folder}"
  assert b["rec_size"] == ("t5_tiny" if name.endswith("tiny") else "t5_small")


def test_official_run_gin_switches_every_documented_quirk(gin_env):
  b = _bound(gin_env, ["idgenrec.gin", "runs/official.gin"],
             ["MODEL_DIR = '/tmp/x'", "PROMPTS = '/tmp/prompts.txt'"])
  assert b["leaky_user_ids"] and b["loss_normalizing_factor"] == "IDGENREC_OFFICIAL"
  assert b["schedule"].alt_style is alternating.AltStyle.ID_FIRST and b["schedule"].id_lr == 1e-8
  assert b["id_options"].mixing is id_phase.Mixing.LOG_SOFTMAX
  assert b["id_options"].generator_mode is id_phase.GeneratorMode.FREE_RUNNING_GREEDY


def test_typo_in_a_binding_fails_loudly(gin_env):
  with pytest.raises(ValueError):
    _bound(gin_env, ["idgenrec_tiny.gin"], ["MODEL_DIR = '/tmp/x'", "alternating.Schedule.roundz = 3"])


def test_the_assigner_takes_the_id_assignment_and_its_group_search():
  from llmrec_jax.data.synthetic import make_synthetic  # pylint: disable=g-import-not-at-top
  from llmrec_jax.indexing import uniqueness  # pylint: disable=g-import-not-at-top
  data = make_synthetic(num_users=6, num_items=8, seed=0, num_topics=2, max_len=8)
  chosen = uniqueness.IdAssignment(resolution="item_by_item", group_search="4.26")
  a = train_lib._assigner(None, None, data, ["t"] * 8, False, 16, 32, chosen, None)  # pylint: disable=protected-access
  assert a.assignment == chosen and a.options.hf_semantics == "4.26" and a.options.batch_size == 16
