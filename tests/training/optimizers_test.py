"""AdamW's weight-decay masks on our T5 param tree: which leaves each decays (brute force over
the leaf names), and that optax applies exactly those (one step with zero gradients)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from llmrec_jax import model_sizes, models, network
from llmrec_jax.training import optimizers

Mask = optimizers.WeightDecayMask


@pytest.fixture(scope="module")
def params():
  """A tiny T5's params (shapes of the real tree), every value 2."""
  cfg = model_sizes.t5_config("t5_tiny", vocab_size=64, num_encoder_layers=2, num_decoder_layers=2)
  model = models.EncoderDecoderModel(network.Transformer(cfg))
  shapes = jax.eval_shape(lambda: model.get_initial_variables(
      jax.random.PRNGKey(0), {"encoder_input_tokens": (1, 8), "decoder_input_tokens": (1, 4)}))["params"]
  return jax.tree_util.tree_map(lambda s: jnp.full(s.shape, 2.0, s.dtype), shapes)


def _names(params) -> list[str]:
  """Every leaf's full name ('encoder/layers_0/attention/query/kernel'), in leaf order."""
  return ["/".join(k.key for k in path) for path, _ in jax.tree_util.tree_leaves_with_path(params)]


def _expected(name: str, mask: Mask) -> bool:
  """Brute force, from the leaf's full name."""
  if mask is Mask.ALL:
    return True
  if mask is Mask.ALL_BUT_RELPOS_BIAS:   # transformers' rule: no decay if "bias" or "LayerNorm.weight" in the name
    return not any(nd in name for nd in ("bias", "LayerNorm.weight"))
  last = name.split("/")[-1]
  return last not in ("scale", "rel_embedding")


@pytest.mark.parametrize("mask", list(Mask))
def test_each_mask_decays_exactly_its_leaves(params, mask):
  names = _names(params)
  got = dict(zip(names, jax.tree_util.tree_leaves(optimizers.decay_mask_of(params, mask))))
  assert got == {n: _expected(n, mask) for n in names}
  skipped = sorted(n for n, d in got.items() if not d)
  norms = [n for n in names if n.endswith("scale")]
  relpos = [n for n in names if n.endswith("rel_embedding")]
  assert len(norms) == 2 * 2 + 3 * 2 + 2 and len(relpos) == 2  # 2 enc + 2 dec layers, final norms
  assert skipped == {Mask.ALL: [], Mask.ALL_BUT_RELPOS_BIAS: sorted(relpos),
                     Mask.NO_NORMS_OR_BIASES: sorted(norms + relpos)}[mask]


@pytest.mark.parametrize("mask", list(Mask))
def test_optax_decays_the_masked_leaves_only(params, mask):
  """Zero gradients: Adam's step is 0, so a decayed leaf becomes p * (1 - lr * wd) and every
  other leaf stays bit-identical."""
  lr, wd = 0.5, 0.1
  tx = optimizers.adamw(lr, weight_decay=wd, decay_mask=mask)
  zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  new = optax.apply_updates(params, updates)
  decayed = jax.tree_util.tree_leaves(optimizers.decay_mask_of(params, mask))
  for d, before, after in zip(decayed, jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(new)):
    if d:
      np.testing.assert_allclose(after, before * (1 - lr * wd), rtol=1e-6)
    else:
      np.testing.assert_array_equal(after, before)
