"""CLI end to end on a tiny synthetic P5 folder: files, uniqueness, stats, generator round trip."""
import contextlib
import gzip
import io
import json

import numpy as np
import pytest
from absl import app
from absl import flags

from llmrec_jax.data import id_tables, synthetic, vocab
from llmrec_jax.data.sources import load_p5
from llmrec_jax.indexing import keywords, uniqueness
from llmrec_jax.systems.idgenrec import assign


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  root = tmp_path_factory.mktemp("assign")
  data = synthetic.make_synthetic(num_users=25, num_items=20, seed=5, max_len=6)
  synthetic.write_p5(data, root / "data")
  spm_path = root / "spm.model"
  spm_path.write_bytes(vocab.train_sentencepiece(vocab.dataset_texts(data), vocab_size=150))
  argv = ["--data_dir", str(root / "data"), "--out", str(root / "items.txt"), "--user_out",
          str(root / "users.txt.gz"), "--vocab", str(spm_path), "--id_vocab", str(spm_path),
          "--bootstrap", "tfidf", "--bootstrap_steps", "2", "--bootstrap_batch", "4", "--max_levels", "2",
          "--batch_size", "16", "--max_input_tokens", "32", "--save_generator", str(root / "gen"),
          "--no_progress"]
  return root, argv


@pytest.fixture(scope="module")
def assigned(run):
  """The CLI run once for the module (every test that reads its files gets it, in any order)."""
  root, argv = run
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    assert assign.main(argv) == 0
  return root, json.loads(out.getvalue())


def test_cli_writes_unique_tables_and_stats(assigned):
  root, stats = assigned
  data = load_p5(root / "data")
  items = id_tables.IdTable.load(root / "items.txt", kind="item")
  users = id_tables.IdTable.load(root / "users.txt.gz", kind="user")
  assert list(items.ids) == list(data.item_ids) and list(users.ids) == list(data.user_ids)
  items.validate_unique()
  users.validate_unique()
  for table in (items, users):
    assert all(t and id_tables.normalize_id(t, keep_case=True) == t for t in table.ids.values())
  s = stats["item_ids"]
  assert s["count"] == s["unique"] == s["unique_token_sequences"] == data.num_items
  assert sum(s["levels"].values()) == data.num_items and s["fallbacks"] == s["levels"].get("fallback", 0)
  assert s["max_words"] == max(len(t.split()) for t in items.ids.values())
  titles = [keywords.item_title(m) for m in data.item_meta]
  assert s["title_word_share"] == pytest.approx(keywords.title_word_share(list(items.ids.values()), titles))
  assert stats["user_ids"]["unique"] == data.num_users and stats["user_ids"]["leaky"] is False
  assert stats["seconds_bootstrap"] > 0 and stats["seconds_assign_items"] > 0
  assert (root / "gen" / "config.json").is_file() and (root / "gen" / assign.SPM_IN_CHECKPOINT).is_file()


def test_saved_generator_loads(assigned):
  root, _ = assigned
  cfg, params = assign.load_generator(str(root / "gen"))
  assert cfg.vocab_size == 256 and params["token_embedder"]["embedding"].shape == (256, cfg.emb_dim)
  tok, path = assign.generator_tokenizer(None, None, str(root / "gen"))
  assert path.name == assign.SPM_IN_CHECKPOINT and tok.get_piece_size() <= 150


def test_reference_bootstrap_targets(tmp_path):
  data = synthetic.make_synthetic(num_users=10, num_items=8, seed=6, num_topics=4, max_len=6)
  with gzip.open(tmp_path / id_tables.REFERENCE_IDS, "wt") as f:
    f.write(f"{data.item_ids[0]} ref words\n")
  targets = assign.bootstrap_targets("reference", data, str(tmp_path), [""] * data.num_items)
  assert targets[0] == "ref words" and targets[1:] == [""] * (data.num_items - 1)


def test_max_items_limits_assignment_not_bootstrap(run, capsys):
  root, argv = run
  i = argv.index("--user_out")
  argv = argv[:i] + argv[i + 2:] + ["--max_items", "5", "--bootstrap_holdout", "0.25", "--out",
                                    str(root / "items5.txt")]
  assert assign.main(argv) == 0
  stats = json.loads(capsys.readouterr().out)
  data = load_p5(root / "data")
  titles = [keywords.item_title(m) for m in data.item_meta]
  with_target = sum(bool(t) for t in assign.bootstrap_targets("tfidf", data, "", titles))
  assert stats["items"] == stats["item_ids"]["count"] == 5
  assert stats["bootstrap"]["examples"] == with_target - round(0.25 * with_target)   # all items but held-out
  assert stats["bootstrap"]["heldout"][-1]["step"] == 2


def test_bad_flags_fail_loudly(run):
  root, argv = run
  with pytest.raises(app.UsageError, match="--user_out needs IDs for every item"):
    assign.main(argv + ["--max_items", "3"])
  with pytest.raises(flags.IllegalFlagValueError, match="bootstrap"):
    assign.main(argv + ["--bootstrap", "titles"])
  with pytest.raises(flags.Error, match="max_items"):
    assign.main(argv + ["--max_items", "0"])


def test_id_stats_counts_token_collisions():
  result = uniqueness.AssignmentResult(ids=["a b", "ab"], levels=np.array([0, -1], np.int32))
  s = assign.id_stats(result.ids, result, token_key=lambda t: t.replace(" ", ""))
  assert s["unique"] == 2 and s["unique_token_sequences"] == 1 and s["levels"] == {"0": 1, "fallback": 1}


def _orbax_generator(folder, save_config=False):
  """(T5Config, params) of a t5_tiny generator saved as an Orbax root in `folder` (with its
  T5Config in the metadata when `save_config`)."""
  import optax
  from llmrec_jax.checkpoints import orbax_t5x
  from llmrec_jax.systems.idgenrec import bootstrap
  from llmrec_jax.training.train_state import TrainState
  cfg, params = bootstrap.init_generator(128, bootstrap.BootstrapConfig(max_input_tokens=8, max_target_tokens=4))
  mgr = orbax_t5x.CheckpointManager(str(folder), model_config=cfg if save_config else None)
  mgr.save(3, orbax_t5x.to_t5x_tree(TrainState.create(params, optax.sgd(0.1))))
  mgr.close()
  return cfg, params


def _assert_same_params(a, b):
  import jax
  assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_orbax_generator_checkpoint_without_its_config_loads_by_size_name(tmp_path, caplog):
  cfg, params = _orbax_generator(tmp_path / "ckpt")
  cfg2, params2 = assign.load_generator(str(tmp_path / "ckpt"), "t5_tiny")
  assert cfg2 == cfg
  assert "holds no model_config" in caplog.text and "'t5_tiny'" in caplog.text
  _assert_same_params(params, params2)
  with pytest.raises(FileNotFoundError):
    assign.load_generator(str(tmp_path / "empty"))


def test_orbax_generator_checkpoint_loads_its_saved_config_whatever_the_size_name(tmp_path, caplog):
  """The size name is ignored when the checkpoint holds its network: no shape error later."""
  import dataclasses
  from llmrec_jax.systems.idgenrec import components
  cfg, params = _orbax_generator(tmp_path / "ckpt", save_config=True)
  cfg2, params2 = assign.load_generator(str(tmp_path / "ckpt"), "t5_base")
  assert cfg2 == cfg and "holds no" not in caplog.text
  _assert_same_params(params, params2)
  model, params3 = components.init_model("t5_small", 999, dropout_rate=0.1, seed=0,
                                         checkpoint=str(tmp_path / "ckpt"))
  assert model.module.config == dataclasses.replace(cfg, dropout_rate=0.1)
  _assert_same_params(params, params3)


def test_item_by_item_with_a_real_generator_is_the_official_loop(assigned):
  """The saved generator's candidates, resolved item by item with case kept: equal to the official
  sequential loop run key by key on the same generator."""
  from llmrec_jax.systems.idgenrec.generator import GeneratorOptions, T5IdGenerator
  root, _ = assigned
  data = load_p5(root / "data")
  texts = assign.item_texts_and_titles(data)[0]
  cfg, params = assign.load_generator(str(root / "gen"))
  tok, _ = assign.generator_tokenizer(None, data, str(root / "gen"))
  gen = T5IdGenerator(cfg, params, tok, GeneratorOptions(batch_size=16, max_input_tokens=32))
  # One- and two-piece candidates: few to go round, so keys escalate and fall back.
  schedule = uniqueness.EscalationSchedule(num_penalties=2, length_step=1, window=2, max_levels=4)
  chosen = uniqueness.IdAssignment(resolution=uniqueness.ITEM_BY_ITEM, keep_case=True)
  got = assign.assign_ids(gen, texts, schedule, uniqueness.IdNamespace(), assignment=chosen)
  fn = gen.candidate_fn(texts)
  taken, want = set(), []
  for k in range(len(texts)):   # the official loop, one key and one level at a time
    for level in schedule.levels():
      free = [c for c in (id_tables.normalize_id(c, keep_case=True) for c in fn(np.array([k]), level)[0])
              if c and c not in taken]
      if free:
        want.append(free[0])
        break
    else:
      want.append(None)   # the fallback (our cap), checked below
    taken.add(want[-1] if want[-1] is not None else got.ids[k])
  assert [w if w is not None else t for w, t in zip(want, got.ids)] == got.ids
  assert [w is None for w in want] == (got.levels == uniqueness.FALLBACK_LEVEL).tolist()
  assert 0 < got.num_fallbacks < len(texts) and any(lvl > 0 for lvl in got.levels)   # it escalated


def test_cli_flags_select_the_assignment(run):
  from llmrec_jax import cli_flags
  _, argv = run
  args, _ = cli_flags.parse(assign.define_flags, argv + ["--resolution", "item_by_item", "--nokeep_case",
                                                         "--group_search", "4.26"])
  assert assign._assignment(args) == uniqueness.IdAssignment(  # pylint: disable=protected-access
      "item_by_item", keep_case=False, group_search="4.26")
  assert assign._assignment(cli_flags.parse(assign.define_flags, argv)[0]) == uniqueness.IdAssignment()  # pylint: disable=protected-access
  with pytest.raises(flags.IllegalFlagValueError, match="resolution"):
    cli_flags.parse(assign.define_flags, argv + ["--resolution", "greedy"])
