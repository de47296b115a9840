"""Model sizes come from the gin files `gin_configs/models/<size>.gin` alone."""
import shutil

import pytest

from llmrec_jax import model_sizes
from llmrec_jax.network import T5Config

# The sizes as the Python table stated them before the gin files became their only source.
PREVIOUS = {
    "t5_tiny": dict(emb_dim=128, num_heads=4, head_dim=32, num_encoder_layers=2,
                    num_decoder_layers=2, mlp_dim=512, mlp_activations=("relu",),
                    logits_via_embedding=True),
    "t5_small": dict(emb_dim=512, num_heads=8, head_dim=64, num_encoder_layers=6,
                     num_decoder_layers=6, mlp_dim=2048, mlp_activations=("relu",),
                     logits_via_embedding=True),
    "t5_base": dict(emb_dim=768, num_heads=12, head_dim=64, num_encoder_layers=12,
                    num_decoder_layers=12, mlp_dim=3072, mlp_activations=("relu",),
                    logits_via_embedding=True),
}


@pytest.mark.parametrize("size", sorted(PREVIOUS))
@pytest.mark.parametrize("vocab_size,overrides", [(32128, {}), (500, {"dropout_rate": 0.0})])
def test_gin_sizes_equal_the_previous_table(size, vocab_size, overrides):
  got = model_sizes.t5_config(size, vocab_size=vocab_size, **overrides)
  want = T5Config(vocab_size=vocab_size, **{**PREVIOUS[size], **overrides})
  assert got == want and hash(got) == hash(want)  # the same static jit argument


def test_names_are_the_gin_files():
  assert set(PREVIOUS) <= set(model_sizes.names())


def test_a_new_gin_file_is_a_new_size(tmp_path, monkeypatch):
  for name in model_sizes.names():
    shutil.copy(model_sizes.gin_path(name), tmp_path / f"{name}.gin")
  text = (tmp_path / "t5_tiny.gin").read_text(encoding="utf-8")
  (tmp_path / "t5_mini.gin").write_text(
      text.replace("emb_dim = 128", "emb_dim = 64").replace("DROPOUT_RATE = 0.1", "DROPOUT_RATE = 0.2"),
      encoding="utf-8")
  monkeypatch.setattr(model_sizes, "MODELS_DIR", str(tmp_path))
  assert "t5_mini" in model_sizes.names()
  cfg = model_sizes.t5_config("t5_mini", vocab_size=256)
  assert cfg == T5Config(vocab_size=256, **{**PREVIOUS["t5_tiny"], "emb_dim": 64, "dropout_rate": 0.2})


def test_unknown_size_lists_the_files_found():
  with pytest.raises(ValueError, match=r"unknown model size 't5_huge'.*found: .*t5_small\.gin"):
    model_sizes.t5_config("t5_huge")


def test_unknown_field_and_undefined_macro_fail(tmp_path, monkeypatch):
  monkeypatch.setattr(model_sizes, "MODELS_DIR", str(tmp_path))
  (tmp_path / "bad_field.gin").write_text("network.T5Config.num_layers = 2\n", encoding="utf-8")
  with pytest.raises(TypeError, match="num_layers"):
    model_sizes.t5_config("bad_field")
  (tmp_path / "bad_macro.gin").write_text("network.T5Config.dtype = %DTYPE\n", encoding="utf-8")
  with pytest.raises(ValueError, match=r"bad_macro\.gin: network\.T5Config\.dtype = %DTYPE"):
    model_sizes.t5_config("bad_macro")
