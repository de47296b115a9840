"""Decoder-only T5 stack: causality, and prefill + cached steps equal the full forward pass."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llmrec_jax.network import T5Config
from llmrec_jax.network import decoder_only

V = 37


def _model(**overrides):
  kw = dict(vocab_size=V, emb_dim=32, num_heads=4, head_dim=8, num_encoder_layers=1,
            num_decoder_layers=2, mlp_dim=48, dropout_rate=0.0, logits_via_embedding=True,
            relative_attention_num_buckets=8, relative_attention_max_distance=12)
  kw.update(overrides)
  module = decoder_only.DecoderOnlyTransformer(T5Config(**kw))
  params = module.init(jax.random.PRNGKey(0), jnp.ones((2, 8), jnp.int32))["params"]
  return module, params


def test_param_tree_has_t5x_decoder_names():
  _, params = _model(logits_via_embedding=False)
  layer = params["decoder"]["layers_0"]
  assert set(layer) == {"pre_self_attention_layer_norm", "self_attention", "pre_mlp_layer_norm",
                        "mlp"}
  assert set(layer["self_attention"]) == {"query", "key", "value", "out"}
  assert {"relpos_bias", "decoder_norm", "logits_dense"} <= set(params["decoder"])
  assert params["token_embedder"]["embedding"].shape == (V, 32)


def test_causal_future_tokens_do_not_change_earlier_logits():
  module, params = _model()
  tokens = np.random.default_rng(0).integers(2, V, size=(2, 9)).astype(np.int32)
  changed = tokens.copy()
  changed[:, 5:] = (changed[:, 5:] + 3) % V
  a = module.apply({"params": params}, jnp.asarray(tokens))
  b = module.apply({"params": params}, jnp.asarray(changed))
  np.testing.assert_allclose(a[:, :5], b[:, :5], atol=1e-5)
  assert np.abs(np.asarray(a[:, 5:] - b[:, 5:])).max() > 1e-3


@pytest.mark.parametrize("beams", [1, 3])
def test_prefill_and_steps_equal_full_forward(beams):
  """Left-padded prompts of different lengths, then cached steps for K beams per example."""
  module, params = _model()
  rng = np.random.default_rng(1)
  seqs = rng.integers(2, V, size=(2, 11)).astype(np.int32)
  prompt_lens = [6, 4]
  p = 8
  prompt = np.zeros((2, p), np.int32)
  valid = np.zeros((2, p), bool)
  for b, n in enumerate(prompt_lens):
    prompt[b, p - n:] = seqs[b, :n]
    valid[b, p - n:] = True
  memory = module.apply({"params": params}, jnp.asarray(prompt), jnp.asarray(valid),
                        method=module.prefill)
  cache = jax.tree_util.tree_map(lambda x: jnp.repeat(x, beams, 0), module.init_cache(2, 5))
  for t in range(4):
    # Beam 0 of each example follows the true sequence; other beams feed other tokens.
    tok = np.array([[seqs[b, n + t] if k == 0 else (k + t) % V]
                    for b, n in enumerate(prompt_lens) for k in range(beams)], np.int32)
    logits, cache = module.apply({"params": params}, jnp.asarray(tok), memory, cache,
                                 jnp.int32(t), 5, method=module.step)
    for b, n in enumerate(prompt_lens):
      full = module.apply({"params": params}, jnp.asarray(seqs[b:b + 1, :n + t + 1]))
      np.testing.assert_allclose(logits[b * beams], full[0, -1], atol=2e-5)


def test_output_kernel_logits_are_columns_of_the_full_logits():
  module, params = _model()
  tokens = jnp.asarray(np.arange(2, 18, dtype=np.int32).reshape(2, 8))
  full = module.apply({"params": params}, tokens)
  ids = jnp.array([1, 5, 9, 30], jnp.int32)

  def sub(m, x):
    return m.logits(m.hidden(x), m.output_kernel(ids))

  part = module.apply({"params": params}, tokens, method=sub)
  np.testing.assert_allclose(part, full[..., ids], atol=1e-5)
