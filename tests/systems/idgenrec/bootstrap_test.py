"""Bootstrap training from random init: examples are well-formed and the loss goes down."""
import numpy as np
import pytest
import sentencepiece as spm

from llmrec_jax.data import item_text, synthetic, vocab
from llmrec_jax.indexing import keywords, text_tokens
from llmrec_jax.systems.idgenrec import bootstrap


@pytest.fixture(scope="module")
def catalogue():
  data = synthetic.make_synthetic(num_users=40, num_items=30, seed=4)
  texts = [item_text.render_item_text(m) for m in data.item_meta]
  titles = [keywords.item_title(m) for m in data.item_meta]
  tok = spm.SentencePieceProcessor(model_proto=vocab.train_sentencepiece(texts * 2, vocab_size=120))
  return texts, keywords.keyword_ids(titles), tok


def test_make_examples(catalogue):
  texts, targets, tok = catalogue
  targets = list(targets)
  targets[0] = ""   # dropped
  ex = bootstrap.make_examples(texts, targets, tok, max_input_tokens=24, max_target_tokens=6)
  n = len(texts) - 1
  assert ex["encoder_input_tokens"].shape[0] == n and ex["encoder_input_tokens"].shape[1] <= 24
  tgt = ex["decoder_target_tokens"]
  assert tgt.shape[1] <= 6 and tgt.shape[1] % 8 in (0, tgt.shape[1])
  assert ((tgt == text_tokens.EOS_ID).sum(axis=1) == 1).all()   # every target ends in EOS, none cut off
  np.testing.assert_array_equal(ex["decoder_input_tokens"][:, 1:], tgt[:, :-1])
  np.testing.assert_array_equal(ex["decoder_loss_weights"], tgt > 0)
  for row, full in zip(tgt, targets[1:]):
    words = tok.decode([t for t in row.tolist() if t > 1]).split()
    if len(words) > 1:
      assert words == full.split()[:len(words)]   # whole leading words of the target
    else:   # one word longer than the limit on its own is the only thing cut inside a word
      assert words and full.split()[0].startswith(words[0])
  with pytest.raises(ValueError, match="every target is empty"):
    bootstrap.make_examples(texts[:2], ["", " "], tok, 8, 8)


def test_fit_words(catalogue):
  _, _, tok = catalogue
  fitted = bootstrap.fit_words("kraimou stouzu bravo delta echo", tok, 5)
  assert len(tok.encode(fitted)) <= 5 or len(fitted.split()) == 1


def test_loss_decreases(catalogue):
  texts, targets, tok = catalogue
  cfg = bootstrap.BootstrapConfig(steps=40, batch_size=8, learning_rate=3e-3, warmup_steps=5,
                                  max_input_tokens=24, max_target_tokens=8)
  net_cfg, params, stats = bootstrap.train_generator(texts, targets, tok, 128, cfg, progress=False)
  assert stats["loss_last"] < 0.8 * stats["loss_first"]
  assert net_cfg.dropout_rate == 0.0 and net_cfg.vocab_size == 128
  assert params["token_embedder"]["embedding"].shape == (128, net_cfg.emb_dim)


def test_config_fails_loudly():
  with pytest.raises(ValueError, match="model_size"):
    bootstrap.BootstrapConfig(model_size="t5_huge")
  with pytest.raises(ValueError, match="steps"):
    bootstrap.BootstrapConfig(steps=0)


def test_init_params_must_match(catalogue):
  texts, targets, tok = catalogue
  _, params = bootstrap.init_generator(256, bootstrap.BootstrapConfig(max_input_tokens=8, max_target_tokens=4))
  cfg = bootstrap.BootstrapConfig(steps=1, batch_size=2, max_input_tokens=8, max_target_tokens=4)
  with pytest.raises(ValueError, match="init_params do not match"):
    bootstrap.train_generator(texts, targets, tok, 128, cfg, progress=False, init_params=params)


def test_split_holdout():
  train, held = bootstrap.split_holdout(200, 0.05, seed=3)
  assert held.size == 10 and train.size == 190
  np.testing.assert_array_equal(np.sort(np.concatenate([train, held])), np.arange(200))
  assert bootstrap.split_holdout(200, 0.0, seed=3)[1].size == 0
  assert bootstrap.split_holdout(1, 0.9, seed=3)[0].size == 1   # at least one item trains


def test_view_examples_copy_from_their_input(catalogue):
  texts, _, tok = catalogue
  titles = [t.split(". ")[0] for t in texts]
  targets = keywords.keyword_ids(titles, keep_case=True)
  cfg = bootstrap.BootstrapConfig(max_input_tokens=128, max_target_tokens=24, word_dropout=0.3, copy_rate=0.3,
                                  splice_rate=0.5)
  chunks = [bootstrap.augment.title_chunk_count(t, ti) for t, ti in zip(texts, titles)]
  idx = np.array([i for i, t in enumerate(targets) if t] * 3)
  ex = bootstrap.view_examples(idx, texts, targets, chunks, tok, cfg, np.random.default_rng(0), titles)
  assert ex["encoder_input_tokens"].shape == (idx.size, 128)   # fixed shapes: one compilation
  assert ex["decoder_target_tokens"].shape == (idx.size, 24)
  assert ((ex["decoder_target_tokens"] == text_tokens.EOS_ID).sum(axis=1) == 1).all()
  differ = 0
  for inp, tgt, i in zip(ex["encoder_input_tokens"], ex["decoder_target_tokens"], idx):
    view = tok.decode([t for t in inp.tolist() if t > 1])
    target = tok.decode([t for t in tgt.tolist() if t > 1])
    assert set(keywords.title_words(target)) <= set(keywords.title_words(view)), (view, target)
    differ += (view, target) != (texts[i], targets[i])
  assert differ > idx.size // 2   # most examples are fresh views


def test_heldout_accuracy_is_tracked(catalogue):
  texts, targets, tok = catalogue
  cfg = bootstrap.BootstrapConfig(steps=6, batch_size=4, max_input_tokens=24, max_target_tokens=8,
                                  holdout_fraction=0.2, eval_every=3)
  _, _, stats = bootstrap.train_generator(texts, targets, tok, 128, cfg, progress=False)
  assert [h["step"] for h in stats["heldout"]] == [3, 6]
  assert all(0 <= h["heldout_accuracy"] <= 1 and 0 <= h["train_accuracy"] <= 1 for h in stats["heldout"])
  assert stats["examples"] == sum(bool(t.strip()) for t in targets) - 6   # 20% of 30 items held out
