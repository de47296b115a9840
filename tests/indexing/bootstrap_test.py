"""Bootstrap training from random init: examples are well-formed and the loss goes down."""
import numpy as np
import pytest
import sentencepiece as spm

from llmrec_jax.data import item_text, synthetic, vocab
from llmrec_jax.indexing import bootstrap, keywords, text_tokens


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
