"""T5Config validation and the gin model configs."""
import dataclasses
import pathlib

import jax.numpy as jnp
import pytest

from llmrec_jax.network import T5Config

GIN_DIR = pathlib.Path(__file__).resolve().parents[2] / "gin_configs" / "models"


def test_defaults_are_t5x_names_and_values():
  cfg = T5Config(vocab_size=32128)
  assert (cfg.emb_dim, cfg.num_heads, cfg.head_dim, cfg.mlp_dim) == (512, 8, 64, 2048)
  assert (cfg.num_encoder_layers, cfg.num_decoder_layers) == (6, 6)
  assert cfg.mlp_activations == ("relu",) and cfg.dtype == jnp.float32
  assert (cfg.relative_attention_num_buckets, cfg.relative_attention_max_distance) == (32, 128)
  assert not cfg.logits_via_embedding and cfg.dropout_rate == 0.1
  hash(cfg)  # usable as a static jit argument
  with pytest.raises(dataclasses.FrozenInstanceError):
    cfg.emb_dim = 4


def test_normalises_gin_friendly_values():
  cfg = T5Config(vocab_size=10, mlp_activations=["gelu", "linear"], dtype="bfloat16")
  assert cfg.mlp_activations == ("gelu", "linear") and cfg.dtype == jnp.bfloat16


@pytest.mark.parametrize("kwargs,pattern", [
    (dict(vocab_size=0), "vocab_size must be a positive int"),
    (dict(vocab_size=10, num_heads=-1), "num_heads must be a positive int"),
    (dict(vocab_size=10, emb_dim=3.0), "emb_dim must be a positive int"),
    (dict(vocab_size=10, mlp_activations=("relu", "tanh")), r"unknown \['tanh'\]"),
    (dict(vocab_size=10, mlp_activations="relu"), "got the string 'relu'"),
    (dict(vocab_size=10, mlp_activations=()), "need >= 1"),
    (dict(vocab_size=10, dtype="int32"), "must be a float dtype"),
    (dict(vocab_size=10, dtype="float33"), "is not a dtype"),
    (dict(vocab_size=10, dropout_rate=1.0), r"dropout_rate must be in \[0, 1\)"),
    (dict(vocab_size=10, layer_norm_epsilon=0.0), "layer_norm_epsilon must be > 0"),
    (dict(vocab_size=10, relative_attention_num_buckets=2), "num_buckets must be >= 4"),
])
def test_invalid_values_fail_loudly(kwargs, pattern):
  with pytest.raises(ValueError, match=pattern):
    T5Config(**kwargs)


def test_unknown_field_is_a_type_error():
  with pytest.raises(TypeError, match="num_layers"):
    T5Config(vocab_size=10, num_layers=2)  # pylint: disable=unexpected-keyword-arg


@pytest.mark.parametrize("name,bindings,want", [
    ("t5_tiny.gin", [], dict(vocab_size=32128, emb_dim=128, num_heads=4, head_dim=32,
                             num_encoder_layers=2, num_decoder_layers=2, mlp_dim=512,
                             mlp_activations=("relu",), logits_via_embedding=True)),
    ("t5_tiny.gin", ["VOCAB_SIZE = 500"], dict(vocab_size=500, emb_dim=128)),
    ("t5_small.gin", [], dict(vocab_size=32128, emb_dim=512, num_heads=8, head_dim=64,
                              num_encoder_layers=6, num_decoder_layers=6, mlp_dim=2048,
                              mlp_activations=("relu",), logits_via_embedding=True)),
    ("t5_base.gin", [], dict(vocab_size=32128, emb_dim=768, num_heads=12, head_dim=64,
                             num_encoder_layers=12, num_decoder_layers=12, mlp_dim=3072,
                             mlp_activations=("relu",), logits_via_embedding=True)),
])
def test_gin_model_configs_build_expected_config(name, bindings, want):
  import gin  # pylint: disable=g-import-not-at-top
  from llmrec_jax import network
  gin.clear_config()
  try:
    gin.parse_config_files_and_bindings([str(GIN_DIR / name)], bindings)
    model = gin.get_configurable(network.Transformer)()
  finally:
    gin.clear_config()
  assert isinstance(model, network.Transformer)
  cfg = model.config
  assert cfg.dtype == jnp.float32 and cfg.dropout_rate == 0.1
  for field, value in want.items():
    assert getattr(cfg, field) == value, field
