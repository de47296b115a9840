"""Run setup: the fixed ID schemes (title / reference / sequential / random) and when a run needs
an ID generator; plus one tiny `train()` with a fixed scheme that must train no generator."""
import gzip
import json

import numpy as np
import pytest

from llmrec_jax import model_sizes
from llmrec_jax import train as train_lib
from llmrec_jax.data import id_tables, records, synthetic
from llmrec_jax.data.errors import DataError
from llmrec_jax.indexing import id_schemes, uniqueness
from llmrec_jax.systems.idgenrec import alternating, components as idgenrec
from llmrec_jax.systems.idgenrec import bootstrap, setup_cache


def _data(**kw):
  return synthetic.make_synthetic(num_users=kw.pop("num_users", 40), num_items=kw.pop("num_items", 30), seed=0,
                                  num_topics=4, min_len=4, max_len=9, **kw)


def _seq(*items):
  return np.array(items, np.int32)


def _first_appearance_brute_force(data):
  order = []
  for part in ([s[:-2] for s in data.sequences] + [s[-2:] for s in data.sequences]):
    for item in part:
      if int(item) not in order:
        order.append(int(item))
  order += [n for n in range(data.num_items) if n not in order]
  return {item: rank for rank, item in enumerate(order)}


def test_sequential_numbers_items_by_first_training_appearance():
  data = _data()
  expected = _first_appearance_brute_force(data)
  ids = idgenrec.fixed_item_ids("sequential", data, "")
  assert ids == [str(expected[n] + 1) for n in range(data.num_items)]
  # Hand-made: item 2 is a held-out (test) item of user 0 and first seen in training by user 1.
  tiny = records.RecData(name="t", user_ids=("a", "b"), item_ids=("x", "y", "z", "w"), item_meta=({},) * 4,
                         sequences=(_seq(0, 1, 3, 2), _seq(2, 0, 1, 3)))
  # Training parts: a -> [0, 1], b -> [2, 0]; held out: [3, 2], [1, 3].
  assert idgenrec.fixed_item_ids("sequential", tiny, "") == ["1", "2", "3", "4"]
  assert id_schemes.first_appearance_rank(tiny).tolist() == [0, 1, 2, 3]


def test_random_is_a_seeded_permutation_of_the_sequential_numbers():
  data = _data()
  seq = idgenrec.fixed_item_ids("sequential", data, "")
  a = idgenrec.fixed_item_ids("random", data, "", seed=3)
  assert sorted(a, key=int) == sorted(seq, key=int)          # same numbers, so the same lengths
  assert a == idgenrec.fixed_item_ids("random", data, "", seed=3)  # reproducible
  assert a != idgenrec.fixed_item_ids("random", data, "", seed=4)
  assert a != seq


@pytest.mark.parametrize("kind", ["sequential", "random", "title"])
def test_fixed_ids_are_unique_token_sequences_under_a_lossy_tokenizer(kind):
  data = _data(num_items=60, num_users=80)
  # Merges digits 1/7 and 0/8 and drops every 'e': many strings share a token sequence.
  lossy = lambda text: [ord(c) for c in text.replace("7", "1").replace("8", "0").replace("e", "")]
  ids = idgenrec.fixed_item_ids(kind, data, "", encode=lossy, seed=0)
  keys = [tuple(lossy(i)) for i in ids]
  assert len(ids) == data.num_items and all(keys) and len(set(keys)) == len(ids)
  plain = idgenrec.fixed_item_ids(kind, data, "", seed=0)
  assert len(set(plain)) == len(plain) and all(plain)
  if kind != "title":
    assert any(a != b for a, b in zip(ids, plain))  # the lossy tokenizer forced suffixes


def test_title_ids_use_the_first_words_and_yelp_names():
  meta = ({"title": "Alpha Beta Gamma Delta"}, {"title": "alpha beta gamma zeta"}, {"name": "Sal&apos;s Pizza"},
          {}, {"title": "Alpha  BETA"})
  data = records.RecData(name="t", user_ids=("u1", "u2"), item_ids=tuple("abcde"), item_meta=meta,
                         sequences=(_seq(0, 1, 2, 3, 4), _seq(4, 3, 2, 1, 0)))
  ids = idgenrec.fixed_item_ids("title", data, "", title_words=2)
  assert ids == ["alpha beta", "alpha beta 2", "sal s", "item 3", "alpha beta 3"]


def _write_reference(tmp_path, lines):
  with gzip.open(tmp_path / "reference_textual_ids.txt.gz", "wt", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")


def test_reference_ids_fill_an_empty_id_and_reject_missing_items(tmp_path):
  data = records.RecData(name="t", user_ids=("u1",), item_ids=("a", "b", "c"), item_meta=({},) * 3,
                         sequences=(_seq(0, 1, 2),))
  _write_reference(tmp_path, ["a red lipstick", "b", "c blue pen"])
  assert idgenrec.fixed_item_ids("reference", data, str(tmp_path)) == ["red lipstick", "item 1", "blue pen"]
  items, users = idgenrec.initial_ids("reference", data, str(tmp_path))  # no assigner: fixed user IDs
  assert users == ["user 1"] and items[0] == "red lipstick"
  _write_reference(tmp_path, ["a red lipstick", "b x"])
  with pytest.raises(ValueError, match="no reference ID"):
    idgenrec.fixed_item_ids("reference", data, str(tmp_path))


def test_which_runs_need_a_generator():
  fixed = alternating.Schedule(id_epochs=0.0)
  alternating_ = alternating.Schedule(id_epochs=0.5)
  for kind in idgenrec.FIXED_IDS:
    assert not idgenrec.needs_generator(kind, fixed) and not idgenrec.needs_bootstrap(kind, fixed)
    assert idgenrec.needs_generator(kind, alternating_)
  assert idgenrec.needs_generator("bootstrap", fixed) and idgenrec.needs_bootstrap("bootstrap", fixed)
  assert idgenrec.needs_bootstrap("reference", alternating_)      # its user IDs come from the generator
  assert not idgenrec.needs_bootstrap("random", alternating_)     # starts from a random-init generator
  with pytest.raises(ValueError, match="initial_ids must be one of"):
    idgenrec.needs_generator("semantic", fixed)
  with pytest.raises(ValueError, match="needs the generator"):
    idgenrec.initial_ids("bootstrap", _data(), "")


def test_initial_ids_of_fixed_schemes_share_user_ids():
  data = _data()
  users = {kind: idgenrec.initial_ids(kind, data, "")[1] for kind in ("title", "random", "sequential")}
  assert users["title"] == users["random"] == users["sequential"] == [f"user {u}" for u in range(1, 41)]


# ------------------------------------------------------------------ one tiny run
def test_fixed_scheme_run_trains_no_generator(tmp_path, monkeypatch):
  def no_bootstrap(*args, **kwargs):
    raise AssertionError("a fixed-scheme run must not bootstrap a generator")
  monkeypatch.setattr(idgenrec, "bootstrap_generator", no_bootstrap)
  monkeypatch.setattr(idgenrec.GeneratorAssigner, "__call__", no_bootstrap)
  from llmrec_jax.evaluation import generative as evaluation  # pylint: disable=g-import-not-at-top
  summary = train_lib.train(
      model_dir=str(tmp_path), initial_ids="sequential", dataset_vocab_size=120,
      synthetic_users=24, synthetic_items=24, input_len=96, target_len=8, text_len=16, id_len=8,
      eval_batch_size=8, max_eval_examples=8,
      schedule=alternating.Schedule(rounds=1, rec_epochs=0.1, id_epochs=0.0, rec_batch_size=8, sample_num=1,
                                    max_his=4),
      decode=evaluation.DecodeOptions(num_beams=4, ks=(1, 4)))
  assert [(r["round"], r["phase"]) for r in summary["phases"]] == [(0, "rec")]
  assert summary["bootstrap"] == {} and summary["id_stats"] == {}
  with open(tmp_path / "results.json", encoding="utf-8") as f:
    assert json.load(f)["best"]["test"].keys() == {"hit@1", "ndcg@1", "hit@4", "ndcg@4"}


def test_title_and_generated_ids_get_a_vocabulary_that_spells_their_lowercase_words(tmp_path, monkeypatch):
  """IDs are lowercase words cut from cased item text: the dataset vocabulary of 'title' and
  'bootstrap' runs also learns the lowercase text, so an ID costs what its words cost."""
  from llmrec_jax.data import vocab
  monkeypatch.setattr(vocab, "DEFAULT_CACHE_DIR", tmp_path)
  monkeypatch.setattr(vocab.trained_vocab_path, "__kwdefaults__", {
      **vocab.trained_vocab_path.__kwdefaults__, "cache_dir": tmp_path})
  brands = ["Neosporin", "Sensibio", "Regenerist", "Cetaphil", "Aveeno", "Neutrogena"]
  meta = tuple({"title": f"{b} {w} Cream {n}", "brand": b, "categories": [["Beauty", "Skin Care"]]}
               for n, (b, w) in enumerate((b, w) for b in brands for w in ("Gentle", "Daily", "Night")))
  data = records.RecData(name="t", user_ids=("a",), item_ids=tuple(f"i{n}" for n in range(len(meta))),
                         item_meta=meta, sequences=(_seq(0, 1, 2),))
  texts = [f"{m['title']}. {m['brand']}" for m in meta]

  def cost(initial_ids, keep_case=False):
    tok, _ = train_lib._tokenizer(str(tmp_path / initial_ids), data, "", None, 120,
                                  initial_ids=initial_ids, item_texts=texts, keep_case=keep_case)
    return sum(len(tok.encode(b if keep_case else b.lower())) for b in brands)
  (tmp_path / "title").mkdir(), (tmp_path / "sequential").mkdir(), (tmp_path / "bootstrap").mkdir()
  assert cost("title") == cost("bootstrap") < cost("sequential")
  assert cost("title") <= 2 * len(brands)
  assert cost("title", keep_case=True) <= 2 * len(brands)   # case kept: the cased text is what IDs are cut from


def test_train_keeps_the_case_of_title_ids_when_asked(tmp_path, monkeypatch):
  """`id_assignment` reaches the round-0 IDs (and their cache key); lowercase IDs (the settings
  before the option existed) keep the old key, the default keeps case."""
  class _Stop(Exception):
    pass

  def stop(*args, **kwargs):
    raise _Stop()
  monkeypatch.setattr(train_lib, "_metric_logger", stop)   # the first step after the round-0 IDs
  for name, chosen in (("lower", uniqueness.IdAssignment(keep_case=False)), ("cased", uniqueness.IdAssignment())):
    with pytest.raises(_Stop):
      train_lib.train(model_dir=str(tmp_path / name), dataset_vocab_size=120, synthetic_users=24,
                      synthetic_items=24, initial_ids="title", id_assignment=chosen,
                      schedule=alternating.Schedule(id_epochs=0.0))
  saved = {name: json.loads((tmp_path / name / setup_cache.INITIAL_IDS).read_text())
           for name in ("lower", "cased")}
  lower, cased = saved["lower"]["item_ids"], saved["cased"]["item_ids"]
  assert [c.lower() for c in cased] == lower and cased != lower
  assert "id_assignment" not in saved["lower"]["key"] and saved["cased"]["key"]["id_assignment"]["keep_case"]


# ------------------------------------------------------------------ leak-free user IDs, every path
class _RecordingGenerator:
  """Stands in for `T5IdGenerator`: records the texts of every `candidate_fn` call and answers
  one candidate per text, unique by its key ("w<key>x<level>")."""
  calls: list[list[str]] = []

  def __init__(self, config, params, tokenizer, options, progress=True):
    del config, params, tokenizer, options, progress

  def candidate_fn(self, texts):
    _RecordingGenerator.calls.append(list(texts))
    return lambda keys_P, level: [[f"w{int(k)}x{level.index}"] for k in keys_P]


class _CharTokenizer:
  def encode(self, text):
    return [ord(c) for c in text]


def _user_texts_of_training_items(data, item_ids):
  return [" ".join(item_ids[i] for i in seq[:-2]) for seq in data.sequences]


@pytest.fixture
def recording(monkeypatch):
  _RecordingGenerator.calls = []
  monkeypatch.setattr(idgenrec, "T5IdGenerator", _RecordingGenerator)
  return _RecordingGenerator.calls


def _leaky_texts_differ(data, item_ids):
  """The test only means something when the held-out items would change the texts."""
  leaky = [" ".join(item_ids[i] for i in seq) for seq in data.sequences]
  assert leaky != _user_texts_of_training_items(data, item_ids)


def test_generated_user_ids_read_training_items_only_unless_leaky(recording):
  data = _data()
  texts = [f"item {n}" for n in range(data.num_items)]
  items, _ = idgenrec.GeneratorAssigner(None, _CharTokenizer(), data, texts, progress=False)(None)
  assert recording[0] == texts
  assert recording[1] == _user_texts_of_training_items(data, items)
  _leaky_texts_differ(data, items)
  recording.clear()
  idgenrec.GeneratorAssigner(None, _CharTokenizer(), data, texts, leaky_user_ids=True, progress=False)(None)
  assert recording[1] == [" ".join(items[i] for i in seq) for seq in data.sequences]


def test_reference_item_ids_get_leak_free_generated_user_ids(recording, tmp_path):
  data = _data()
  ref = [f"ref word {n}" for n in range(data.num_items)]
  id_tables.IdTable(kind="item", phase=0, ids=dict(zip(data.item_ids, ref))).save(
      tmp_path / id_tables.REFERENCE_IDS)
  assigner = idgenrec.GeneratorAssigner(None, _CharTokenizer(), data, ["t"] * data.num_items, progress=False)
  items, users = idgenrec.initial_ids("reference", data, str(tmp_path), assigner=assigner, gen_params=None)
  assert items == ref
  assert recording == [_user_texts_of_training_items(data, items)]
  _leaky_texts_differ(data, items)
  assert len(set(users)) == data.num_users


def test_train_writes_leak_free_user_ids_by_default(recording, tmp_path, monkeypatch):
  """`train()` with its defaults: the user IDs it assigns read the training items only."""
  class _Stop(Exception):
    pass

  def stop(*args, **kwargs):
    raise _Stop()
  def bootstrap_stub(data, texts, tokenizer, vocab_size, **kwargs):
    return bootstrap.init_generator(vocab_size, bootstrap.BootstrapConfig(model_size="t5_tiny")) + ({},)
  monkeypatch.setattr(idgenrec, "bootstrap_generator", bootstrap_stub)
  monkeypatch.setattr(train_lib.alternating, "IdGenRecLoop", stop)
  with pytest.raises(_Stop):
    train_lib.train(model_dir=str(tmp_path), dataset_vocab_size=120, synthetic_users=24, synthetic_items=24,
                    initial_ids="bootstrap")
  data = idgenrec.load_data(idgenrec.SYNTHETIC, synthetic_users=24, synthetic_items=24,
                            seed=alternating.Schedule().seed)
  items = [f"w{k}x0" for k in range(data.num_items)]
  assert recording[1] == _user_texts_of_training_items(data, items)


@pytest.mark.parametrize("initial_ids", ["title", "bootstrap"])
def test_ids_from_item_text_without_items_file_fail_before_any_training(tmp_path, initial_ids, monkeypatch):
  (tmp_path / "user_sequence.txt").write_text("u1 a b c\nu2 b c d\n", encoding="utf-8")

  def no_training(*args, **kwargs):
    raise AssertionError("reached training")
  monkeypatch.setattr(train_lib, "_tokenizer", no_training)
  with pytest.raises(DataError, match=r"items.jsonl\[.gz\]: missing or empty: initial_ids="):
    train_lib.train(model_dir=str(tmp_path / "run"), data_dir=str(tmp_path), initial_ids=initial_ids)
  idgenrec.check_item_text(idgenrec.load_data(str(tmp_path)), str(tmp_path), "sequential")  # fine


# ------------------------------------------------------------------ too short a bootstrap warns
class _CopyingGenerator(_RecordingGenerator):
  """Answers each text itself, lowercased: IDs made only of the item's own words."""

  def candidate_fn(self, texts):
    return lambda keys_P, level: [[texts[int(k)].lower()] for k in keys_P]


def _item_texts(data):
  return [f"Gadget{n} Deluxe Kit" for n in range(data.num_items)]


def _warnings(caplog):
  return [r.getMessage() for r in caplog.records if r.name == idgenrec.__name__ and r.levelname == "WARNING"]


def test_bootstrap_ids_without_text_words_warn_once_with_the_measured_share(recording, caplog):
  data = _data()
  assigner = idgenrec.GeneratorAssigner(None, _CharTokenizer(), data, _item_texts(data), progress=False,
                                        bootstrap_steps=200)
  with caplog.at_level("WARNING", logger=idgenrec.__name__):
    items, _ = idgenrec.initial_ids("bootstrap", data, "", assigner=assigner, gen_params=None)
  assert items[:2] == ["w0x0", "w1x0"]   # no word of "Gadget0 Deluxe Kit"
  [message] = _warnings(caplog)
  assert "0.0% of their words are words of the item's own text, below 50%" in message
  assert "100.0% of IDs have none (e.g. 'w0x0', 'w1x0', 'w2x0')" in message
  assert "after 200 bootstrap steps" in message and "bootstrap_steps=2000" in message
  assert assigner.stats["items"]["text_word_share"] == 0.0 and assigner.stats["items"]["no_text_word_ids"] == 1.0
  first = {"text_word_share": 0.0, "no_text_word_ids": 1.0, "min_text_word_share": 0.5, "bootstrap_steps": 200}
  assert assigner.stats["first_items"] == first
  caplog.clear()
  with caplog.at_level("WARNING", logger=idgenrec.__name__):
    assigner(None)   # a later (ID-phase) assignment: measured, not warned about
  assert _warnings(caplog) == [] and assigner.stats["first_items"] == first
  assert assigner.stats["items"]["text_word_share"] == 0.0


def test_bootstrap_word_ids_do_not_warn(monkeypatch, caplog):
  monkeypatch.setattr(idgenrec, "T5IdGenerator", _CopyingGenerator)
  data = _data()
  assigner = idgenrec.GeneratorAssigner(None, _CharTokenizer(), data, _item_texts(data), progress=False)
  with caplog.at_level("WARNING", logger=idgenrec.__name__):
    items = assigner.item_ids(None)   # the stream recommender's round-0 path
  assert items[0] == "gadget0 deluxe kit" and _warnings(caplog) == []
  assert assigner.stats["items"]["text_word_share"] == 1.0 and assigner.stats["items"]["no_text_word_ids"] == 0.0
  assert assigner.stats["first_items"] == {"text_word_share": 1.0, "no_text_word_ids": 0.0,
                                           "min_text_word_share": 0.5, "bootstrap_steps": None}


def test_the_threshold_is_an_argument(monkeypatch, caplog):
  monkeypatch.setattr(idgenrec, "T5IdGenerator", _CopyingGenerator)
  data = _data()
  assigner = idgenrec.GeneratorAssigner(None, _CharTokenizer(), data, _item_texts(data), progress=False,
                                        min_text_word_share=1.01)
  with caplog.at_level("WARNING", logger=idgenrec.__name__):
    assigner.item_ids(None)
  [message] = _warnings(caplog)
  assert "100.0% of their words are words of the item's own text, below 101%" in message
  assert "0.0% of IDs have none; bootstrap steps unknown" in message


def test_fixed_round0_ids_leave_the_first_generated_ids_unchecked(recording, tmp_path, caplog):
  data = _data()
  assigner = idgenrec.GeneratorAssigner(None, _CharTokenizer(), data, _item_texts(data), progress=False)
  with caplog.at_level("WARNING", logger=idgenrec.__name__):
    idgenrec.initial_ids("title", data, "", assigner=assigner, gen_params=None)
    assigner(None)   # first generated IDs, after an ID phase (not a bootstrap)
  assert _warnings(caplog) == [] and "first_items" not in assigner.stats
  assert assigner.stats["items"]["no_text_word_ids"] == 1.0


def test_word_share_warning_names_share_threshold_steps_and_fix():
  assert idgenrec.word_share_warning(0.5, 0.2, threshold=0.5) is None
  message = idgenrec.word_share_warning(0.125, 0.75, threshold=0.5, bootstrap_steps=200, examples=["oz", "ssss"])
  assert message == ("generated item IDs: 12.5% of their words are words of the item's own text, below 50%; "
                     "75.0% of IDs have none (e.g. 'oz', 'ssss'); after 200 bootstrap steps. The generator's "
                     "bootstrap was too short to teach it to copy text words: raise bootstrap_steps "
                     "(--gin.train_script.train.bootstrap_steps=2000, as idgenrec.gin)")
  assert "\n" not in message
