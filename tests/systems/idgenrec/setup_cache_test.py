"""A resumed run loads its bootstrapped generator and initial IDs from MODEL_DIR instead of
recomputing them; a cache made with other settings is ignored."""
import jax
import numpy as np
import pytest

from llmrec_jax import model_sizes, models, network
from llmrec_jax import train as train_lib
from llmrec_jax.data import prompt_token_tasks
from llmrec_jax.systems.idgenrec import bootstrap, phase_batches, seqio_batches
from llmrec_jax.systems.idgenrec import components as idgenrec, setup_cache


class _WordGenerator:
  """Stands in for `T5IdGenerator` (no decoding to compile): one candidate per text, unique by
  its key."""

  def __init__(self, config, params, tokenizer, options, progress=True):
    del config, params, tokenizer, options, progress

  def candidate_fn(self, texts):
    del texts
    return lambda keys_P, level: [[f"w{int(k)} x{level.index}"] for k in keys_P]


class _LoopStub:
  """Stands in for `IdGenRecLoop`: records the IDs it was given; the run is complete."""
  seen = []
  contexts = []

  def __init__(self, ctx):
    _LoopStub.seen.append((list(ctx.item_ids), list(ctx.user_ids), ctx.gen_params))
    _LoopStub.contexts.append(ctx)

  def maybe_restore(self):
    return False

  def run(self, **kwargs):
    del kwargs
    return {"phases": [], "best": None, "complete": True}


def _train(model_dir):
  return train_lib.train(model_dir=model_dir, initial_ids="bootstrap", bootstrap_steps=6,
                         dataset_vocab_size=120, synthetic_users=24, synthetic_items=24)


@pytest.fixture
def stubs(monkeypatch):
  _LoopStub.seen = []
  boots = []

  def params_of(vocab_size, fill):  # t5_tiny's shapes, no init to compile
    shapes = jax.eval_shape(lambda: bootstrap.init_generator(vocab_size, bootstrap.BootstrapConfig(model_size="t5_tiny"))[1])
    return jax.tree_util.tree_map(lambda s: np.full(s.shape, fill, s.dtype), shapes)

  def bootstrap_stub(data, texts, tokenizer, vocab_size, **kwargs):
    boots.append(kwargs["steps"])
    cfg = model_sizes.t5_config("t5_tiny", vocab_size=vocab_size, dropout_rate=0.0)
    return cfg, params_of(vocab_size, len(boots) / 10), {"steps": kwargs["steps"], "loss_last": 1.25}

  def init_model_stub(size, vocab_size, **kwargs):
    cfg = model_sizes.t5_config(size, vocab_size=vocab_size, dropout_rate=kwargs["dropout_rate"])
    return models.EncoderDecoderModel(network.Transformer(cfg)), params_of(vocab_size, 0.0)
  monkeypatch.setattr(idgenrec, "init_model", init_model_stub)
  monkeypatch.setattr(idgenrec, "T5IdGenerator", _WordGenerator)
  monkeypatch.setattr(idgenrec, "bootstrap_generator", bootstrap_stub)
  monkeypatch.setattr(train_lib.alternating, "IdGenRecLoop", _LoopStub)
  return boots


def test_restarted_run_reuses_its_bootstrap_and_initial_ids_from_any_directory(tmp_path, monkeypatch, stubs):
  """The second start in the same MODEL_DIR (from another working directory) neither bootstraps
  nor assigns IDs: the loop gets the first start's generator params and IDs."""
  first = _train(str(tmp_path))
  assert stubs == [6] and first["bootstrap"] == {"steps": 6, "loss_last": 1.25}

  def recompute(*args, **kwargs):
    raise AssertionError("a restarted run recomputed what MODEL_DIR holds")
  monkeypatch.setattr(idgenrec, "initial_ids", recompute)
  monkeypatch.setattr(idgenrec.GeneratorAssigner, "__call__", recompute)
  elsewhere = tmp_path / "another" / "directory"
  elsewhere.mkdir(parents=True)
  monkeypatch.chdir(elsewhere)
  second = _train(str(tmp_path))
  assert stubs == [6], "bootstrapped again"
  (items_a, users_a, gen_a), (items_b, users_b, gen_b) = _LoopStub.seen
  assert items_b == items_a and users_b == users_a and len(set(items_a)) == 24
  jax.tree_util.tree_map(np.testing.assert_array_equal, gen_a, gen_b)
  assert second["bootstrap"] == first["bootstrap"] and second["id_stats"] == first["id_stats"]


def test_the_loop_gets_the_runs_registered_whole_prompt_tasks(tmp_path, stubs):
  """`train` registers the run's SeqIO tasks (its own vocabulary, lengths and templates); the
  loop's phases and evaluations render every prompt through them."""
  del stubs
  _LoopStub.contexts = []
  _train(str(tmp_path / "run"))
  ctx = _LoopStub.contexts[-1]
  assert set(ctx.prompt_tasks) == {"rec", "id"}
  for kind, name in ctx.prompt_tasks.items():
    prep = prompt_token_tasks.tokenize_prompts_of(name)
    assert prep.spec.kind == kind and prep.spec.input_len == ctx.lengths["input_len"]
    assert prep.spec.templates == ctx.templates and prep.data is ctx.data
    assert prep.sp.encode("a title") == ctx.encode("a title")
  assert isinstance(phase_batches.source(ctx), seqio_batches.SeqioPromptBatches)


def test_other_settings_recompute(tmp_path, stubs):
  _train(str(tmp_path))
  train_lib.train(model_dir=str(tmp_path), initial_ids="bootstrap", bootstrap_steps=7,
                  dataset_vocab_size=120, synthetic_users=24, synthetic_items=24)
  assert stubs == [6, 7]


def test_bootstrap_cache_roundtrip_and_other_settings_are_ignored(tmp_path, caplog):
  _, params = bootstrap.init_generator(40, bootstrap.BootstrapConfig(model_size="t5_tiny"))
  key = {"bootstrap_steps": 300, "seed": 1}
  setup_cache.save_bootstrap(str(tmp_path), params, {"steps": 300, "loss_last": 1.5}, key)
  template = jax.tree_util.tree_map(np.zeros_like, params)
  got, stats = setup_cache.load_bootstrap(str(tmp_path), lambda: template, key)
  jax.tree_util.tree_map(np.testing.assert_array_equal, got, params)
  assert stats == {"steps": 300, "loss_last": 1.5}
  assert setup_cache.load_bootstrap(str(tmp_path), lambda: template, {**key, "seed": 2}) is None
  assert "recomputing" in caplog.text


def test_initial_ids_cache_roundtrip_key_and_bad_json(tmp_path):
  key = {"initial_ids": "bootstrap"}
  setup_cache.save_initial_ids(str(tmp_path), ["a b", "c"], ["u"], {"items": {"unique": 2}}, key)
  assert setup_cache.load_initial_ids(str(tmp_path), key) == {
      "item_ids": ["a b", "c"], "user_ids": ["u"], "stats": {"items": {"unique": 2}}, "key": key}
  assert setup_cache.load_initial_ids(str(tmp_path), {"initial_ids": "title"}) is None
  (tmp_path / setup_cache.INITIAL_IDS).write_text("{oops")
  with pytest.raises(ValueError, match="initial_ids.json: not valid JSON"):
    setup_cache.load_initial_ids(str(tmp_path), key)
