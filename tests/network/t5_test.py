"""Transformer properties: T5X param tree/axes, cached decoding, embeddings path, masks, dropout."""
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.linen import partitioning as nn_partitioning

from llmrec_jax.network import T5Config, Transformer

V, B, S, T = 61, 2, 7, 6


def _config(**overrides):
  kw = dict(vocab_size=V, emb_dim=32, num_heads=4, head_dim=8, num_encoder_layers=2,
            num_decoder_layers=2, mlp_dim=48, mlp_activations=("gelu", "linear"),
            dropout_rate=0.2, relative_attention_num_buckets=8, relative_attention_max_distance=6)
  kw.update(overrides)
  return T5Config(**kw)


def _init_shapes(model, s_len=S, t_len=T):
  """Abstract variables (no compile: real init compiles the RNG kernels, ~10 s on 2 busy cores)."""
  enc = jnp.ones((B, s_len), jnp.int32)
  dec = jnp.ones((B, t_len), jnp.int32)
  return jax.eval_shape(lambda: model.init({"params": jax.random.key(0)}, enc, dec, dec,
                                           enable_dropout=False))


def random_params(model, seed=0):
  """Numpy params with the init's scales: N(0, 1/fan_in) kernels, N(0, 1) embedding, ~1 norms."""
  rng = np.random.default_rng(seed)

  def fill(path, x):
    name = "/".join(k.key for k in path)
    if name.endswith("scale"):
      return (1.0 + 0.1 * rng.standard_normal(x.shape)).astype(np.float32)
    std = 1.0 if "embedding" in name else x.shape[0] ** -0.5
    return (std * rng.standard_normal(x.shape)).astype(np.float32)

  return jax.tree_util.tree_map_with_path(fill, _init_shapes(model)["params"])


@pytest.fixture(scope="module")
def setup():
  model = Transformer(_config())
  params = random_params(model)

  @jax.jit
  def forward(p, enc, dec_in, dec_tgt, enc_seg=None, dec_seg=None, emb=None):
    return model.apply({"params": p}, enc, dec_in, dec_tgt, encoder_segment_ids=enc_seg,
                       decoder_segment_ids=dec_seg, encoder_input_embeddings=emb,
                       enable_dropout=False)

  return model, params, forward


def _tokens(seed, shape, pad_from=None):
  toks = np.random.default_rng(seed).integers(1, V, size=shape).astype(np.int32)
  if pad_from is not None:
    for row, start in enumerate(pad_from):
      toks[row, start:] = 0
  return toks


def _expected_tree(cfg):
  """Independent listing of T5X's network.py param paths -> (shape, logical axes)."""
  d, hd, f = cfg.emb_dim, cfg.num_heads * cfg.head_dim, cfg.mlp_dim
  out = {"token_embedder/embedding": ((cfg.vocab_size, d), ("vocab", "embed"))}
  norm = ((d,), ("embed",))
  n_acts = len(cfg.mlp_activations)
  wis = ["wi"] if n_acts == 1 else [f"wi_{i}" for i in range(n_acts)]

  def attn(prefix):
    for n in ("query", "key", "value"):
      out[f"{prefix}/{n}/kernel"] = ((d, hd), ("embed", "joined_kv"))
    out[f"{prefix}/out/kernel"] = ((hd, d), ("joined_kv", "embed"))

  def mlp(prefix):
    for n in wis:
      out[f"{prefix}/mlp/{n}/kernel"] = ((d, f), ("embed", "mlp"))
    out[f"{prefix}/mlp/wo/kernel"] = ((f, d), ("mlp", "embed"))

  for stack in ("encoder", "decoder"):
    out[f"{stack}/relpos_bias/rel_embedding"] = (
        (cfg.num_heads, cfg.relative_attention_num_buckets), ("heads", "relpos_buckets"))
    out[f"{stack}/{stack}_norm/scale"] = norm
  for i in range(cfg.num_encoder_layers):
    p = f"encoder/layers_{i}"
    out[f"{p}/pre_attention_layer_norm/scale"] = norm
    out[f"{p}/pre_mlp_layer_norm/scale"] = norm
    attn(f"{p}/attention")
    mlp(p)
  for i in range(cfg.num_decoder_layers):
    p = f"decoder/layers_{i}"
    for n in ("pre_self_attention_layer_norm", "pre_cross_attention_layer_norm",
              "pre_mlp_layer_norm"):
      out[f"{p}/{n}/scale"] = norm
    attn(f"{p}/self_attention")
    attn(f"{p}/encoder_decoder_attention")
    mlp(p)
  if not cfg.logits_via_embedding:
    out["decoder/logits_dense/kernel"] = ((d, cfg.vocab_size), ("embed", "vocab"))
  return out


def _flatten(tree):
  is_leaf = lambda x: isinstance(x, nn_partitioning.AxisMetadata)  # noqa: E731
  flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)[0]
  return {"/".join(k.key for k in path): leaf for path, leaf in flat}


@pytest.mark.parametrize("cfg", [
    _config(),
    _config(mlp_activations=("relu",), logits_via_embedding=True, num_decoder_layers=3),
], ids=["v1.1", "v1.0"])
def test_param_tree_shapes_and_axes_match_t5x(cfg):
  variables = _init_shapes(Transformer(cfg))
  want = _expected_tree(cfg)
  params = _flatten(variables["params"])
  assert set(params) == set(want)
  for name, leaf in params.items():
    assert leaf.shape == want[name][0], name
    assert leaf.dtype == jnp.float32, name
  # params_axes mirrors params with a `<name>_axes` leaf holding the logical axis names.
  axes = _flatten(variables["params_axes"])
  assert {k.removesuffix("_axes") for k in axes} == set(want)
  for name, leaf in axes.items():
    assert tuple(leaf.names) == want[name.removesuffix("_axes")][1], name


def test_cached_decoding_equals_teacher_forcing(setup):
  model, params, forward = setup
  enc = _tokens(1, (B, S), pad_from=[S, 4])
  dec_in = _tokens(2, (B, T))
  dec_in[:, 0] = 0  # BOS = pad id, as the shifted-right decoder input has it
  full_BxTxV = forward(params, enc, dec_in, np.ones_like(dec_in))

  # T5X protocol: a decode=True call on full-length zeros only builds the cache.
  init_cache = jax.jit(lambda p, e, d: model.apply(
      {"params": p}, e, d, d, decode=True, enable_dropout=False, mutable=["cache"])[1]["cache"])
  cache = init_cache(params, enc, np.zeros_like(dec_in))
  key_cache = cache["decoder"]["layers_0"]["self_attention"]["cached_key"]
  assert key_cache.shape == (B, 4, 8, T)  # T5X layout [B, H, Dh, L]
  assert not np.any(key_cache)
  assert int(cache["decoder"]["layers_0"]["self_attention"]["cache_index"]) == 0
  encoded = jax.jit(lambda p, e: model.apply({"params": p}, e, enable_dropout=False,
                                             method=model.encode))(params, enc)

  @jax.jit
  def step(p, c, tok_Bx1):
    return model.apply({"params": p, "cache": c}, encoded, enc, tok_Bx1, tok_Bx1, decode=True,
                       max_decode_length=T, enable_dropout=False, mutable=["cache"],
                       method=model.decode)

  steps = []
  for t in range(T):
    logits_Bx1xV, new_vars = step(params, cache, dec_in[:, t:t + 1])
    cache = new_vars["cache"]
    steps.append(logits_Bx1xV[:, 0])
  np.testing.assert_allclose(np.stack(steps, axis=1), full_BxTxV, atol=1e-5, rtol=1e-5)
  assert int(cache["decoder"]["layers_1"]["self_attention"]["cache_index"]) == T

  def bad_step(tokens, **kw):
    return jax.eval_shape(lambda p, c: model.apply(
        {"params": p, "cache": c}, encoded, enc, tokens, tokens, decode=True,
        enable_dropout=False, mutable=["cache"], method=model.decode, **kw), params, cache)

  with pytest.raises(ValueError, match="pass max_decode_length=6"):
    bad_step(dec_in[:, :1])
  with pytest.raises(ValueError, match="one position per call"):
    bad_step(dec_in[:, :2], max_decode_length=T)


@pytest.mark.parametrize("tied", [True, False])
def test_cached_cross_kv_beams_equal_teacher_forcing_and_subset_logits(tied):
  """K beams per example stepping with encoded=None (cross K/V projected once, at batch B,
  attended without repeating the memory) give each beam's teacher-forced logits; the
  output_kernel columns equal those columns of the full logits."""
  k = 3
  model = Transformer(_config(logits_via_embedding=tied))
  params = random_params(model, seed=5)
  enc = _tokens(11, (B, S), pad_from=[S, 3])
  dec_in = _tokens(12, (B * k, T))
  dec_in[:, 0] = 0
  enc_rep = np.repeat(enc, k, axis=0)  # beams of one example adjacent
  full_BKxTxV = model.apply({"params": params}, enc_rep, dec_in, np.ones_like(dec_in),
                            enable_dropout=False)
  ids_U = jnp.array([1, 5, 9, 60], jnp.int32)

  @jax.jit
  def run(p):
    encoded = model.apply({"params": p}, enc, enable_dropout=False, method=model.encode)
    ones = jnp.ones((B, T), jnp.int32)
    cache = model.apply({"params": p}, encoded, enc, ones, ones, decode=True,
                        enable_dropout=False, mutable=["cache"], method=model.decode)[1]["cache"]
    assert cache["decoder"]["layers_0"]["encoder_decoder_attention"]["projected_key"].shape == (
        B, S, 4, 8)
    # Self-attention caches per beam; the projected memory stays at B.
    cache = jax.tree_util.tree_map_with_path(
        lambda path, x: x if x.ndim == 0 or path[-1].key.startswith("projected")
        else jnp.repeat(x, k, axis=0), cache)
    kernel = model.apply({"params": p}, ids_U, method=model.output_kernel)
    steps, subset = [], []
    for t in range(T):
      tok = dec_in[:, t:t + 1]
      logits, new = model.apply({"params": p, "cache": cache}, None, enc, tok, tok, decode=True,
                                max_decode_length=T, enable_dropout=False, mutable=["cache"],
                                method=model.decode)
      sub = model.apply({"params": p, "cache": cache}, None, enc, tok, tok, decode=True,
                        max_decode_length=T, enable_dropout=False, mutable=["cache"],
                        output_kernel_DxU=kernel, method=model.decode)[0]
      cache = new["cache"]
      steps.append(logits[:, 0])
      subset.append(sub[:, 0])
    return jnp.stack(steps, 1), jnp.stack(subset, 1)

  steps, subset = run(params)
  np.testing.assert_allclose(steps, full_BKxTxV, atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(subset, np.asarray(full_BKxTxV)[:, :, np.asarray(ids_U)], atol=1e-5,
                             rtol=1e-5)


def test_encoded_none_without_cached_memory_fails_loudly(setup):
  model, params, _ = setup
  enc = _tokens(1, (B, S))
  with pytest.raises(ValueError, match="inputs_kv=None"):
    jax.eval_shape(lambda p: model.apply({"params": p}, None, enc, enc[:, :T], enc[:, :T],
                                         enable_dropout=False, method=model.decode), params)


def test_decoder_is_causal(setup):
  _, params, forward = setup
  enc = _tokens(3, (B, S))
  dec_in = _tokens(4, (B, T))
  base = forward(params, enc, dec_in, np.ones_like(dec_in))
  changed = dec_in.copy()
  changed[:, 3] = (changed[:, 3] % (V - 1)) + 1
  out = forward(params, enc, changed, np.ones_like(dec_in))
  np.testing.assert_array_equal(out[:, :3], base[:, :3])
  assert np.abs(out[:, 3:] - base[:, 3:]).max() > 1e-4


def test_decoder_target_padding_only_touches_padded_positions(setup):
  _, params, forward = setup
  enc, dec = _tokens(5, (B, S)), _tokens(6, (B, T))
  tgt = _tokens(7, (B, T), pad_from=[4, T])
  base = forward(params, enc, dec, np.ones_like(dec))
  out = forward(params, enc, dec, tgt)
  np.testing.assert_allclose(out[0, :4], base[0, :4], atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(out[1], base[1], atol=1e-5, rtol=1e-5)


def test_embeddings_path_equals_token_path_and_pads_are_masked(setup):
  model, params, forward = setup
  enc = _tokens(8, (B, S), pad_from=[S, 4])
  dec = _tokens(9, (B, T))
  ones = np.ones_like(dec)
  by_tokens = forward(params, enc, dec, ones)
  emb_BxSxD = params["token_embedder"]["embedding"][enc]
  by_embeddings = forward(params, enc, dec, ones, emb=emb_BxSxD)
  np.testing.assert_allclose(by_embeddings, by_tokens, atol=1e-6, rtol=1e-6)
  # The mask still comes from the tokens: junk embeddings at pad positions (encoder
  # self-attention and cross-attention keys) change nothing.
  junk = emb_BxSxD.copy()
  junk[1, 4:] = np.random.default_rng(3).normal(size=(S - 4, 32)) * 10
  np.testing.assert_allclose(forward(params, enc, dec, ones, emb=junk), by_tokens,
                             atol=1e-5, rtol=1e-5)
  # ... while junk at a real token does change row 1 and only row 1.
  junk[1, 0] += 1.0
  moved = forward(params, enc, dec, ones, emb=junk)
  np.testing.assert_allclose(moved[0], by_tokens[0], atol=1e-6, rtol=1e-6)
  assert np.abs(moved[1] - by_tokens[1]).max() > 1e-4
  with pytest.raises(ValueError, match="encoder_input_embeddings shape"):
    model.apply({"params": params}, enc, dec, ones, encoder_input_embeddings=emb_BxSxD[:, :, :16],
                enable_dropout=False)


def test_packed_segments_equal_separate_examples(setup):
  _, params, forward = setup
  a_enc, b_enc = _tokens(10, (3,)), _tokens(11, (4,))
  a_dec, b_dec = _tokens(12, (2,)), _tokens(13, (4,))
  pad = lambda x, n: np.pad(x, (0, n - len(x)))  # noqa: E731
  sep_enc = np.stack([pad(a_enc, S), pad(b_enc, S)])
  sep_dec = np.stack([pad(a_dec, T), pad(b_dec, T)])
  ones_s, ones_t = np.ones((B, S), np.int32), np.ones((B, T), np.int32)
  separate = forward(params, sep_enc, sep_dec, sep_dec, ones_s, ones_t)
  packed_enc = np.stack([np.concatenate([a_enc, b_enc])] * B)
  packed_dec = np.stack([np.concatenate([a_dec, b_dec])] * B)
  enc_seg = np.array([[1] * 3 + [2] * 4] * B, np.int32)
  dec_seg = np.array([[1] * 2 + [2] * 4] * B, np.int32)
  packed = forward(params, packed_enc, packed_dec, packed_dec, enc_seg, dec_seg)
  np.testing.assert_allclose(packed[0, :2], separate[0, :2], atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(packed[0, 2:], separate[1, :4], atol=1e-5, rtol=1e-5)


def test_dropout_only_when_enabled():
  # 1+1 layers: dropout's RNG kernels dominate compile time.
  model = Transformer(_config(num_encoder_layers=1, num_decoder_layers=1))
  params = random_params(model)
  enc, dec = _tokens(14, (B, S)), _tokens(15, (B, T))

  def run(p, rng, enable_dropout):
    return model.apply({"params": p}, enc, dec, dec, enable_dropout=enable_dropout,
                       rngs={"dropout": rng})

  # 'rbg' keys: same semantics as threefry here, but they compile ~2x faster on CPU.
  key = lambda seed: jax.random.key(seed, impl="rbg")  # noqa: E731
  train = jax.jit(lambda p, rng: run(p, rng, True))
  evaluate = jax.jit(lambda p, rng: run(p, rng, False))
  a, a2, b = train(params, key(1)), train(params, key(1)), train(params, key(2))
  np.testing.assert_array_equal(a, a2)
  assert np.abs(a - b).max() > 1e-3
  e1, e2 = evaluate(params, key(1)), evaluate(params, key(2))
  np.testing.assert_array_equal(e1, e2)
  assert np.abs(a - e1).max() > 1e-3
  with pytest.raises(Exception, match="dropout"):  # dropout on without a 'dropout' rng
    jax.eval_shape(lambda p: model.apply({"params": p}, enc, dec, dec, enable_dropout=True), params)


def test_bf16_activations_keep_float32_logits(setup):
  _, params, forward = setup
  model = Transformer(_config(dtype="bfloat16", float32_attention_logits=True))
  enc, dec = _tokens(16, (B, S)), _tokens(17, (B, T))
  logits = jax.jit(lambda p: model.apply({"params": p}, enc, dec, dec,
                                         enable_dropout=False))(params)
  assert logits.dtype == jnp.float32 and logits.shape == (B, T, V)
  ref = forward(params, enc, dec, dec)
  assert np.abs(np.asarray(logits) - np.asarray(ref)).max() < 0.1 * np.abs(np.asarray(ref)).max()


def test_sharded_forward_equals_unsharded():
  """Params sharded by their logical axes on a 2x4 (data, model) mesh give the same logits."""
  from jax.sharding import Mesh, NamedSharding, PartitionSpec
  from flax import linen as nn
  model = Transformer(_config(vocab_size=64))
  params = random_params(model)
  enc, dec = _tokens(18, (B, S)) % 64, _tokens(19, (B, T)) % 64
  fwd = lambda p, e, d: model.apply({"params": p}, e, d, d, enable_dropout=False)  # noqa: E731
  want = jax.jit(fwd)(params, enc, dec)
  rules = (("batch", "data"), ("vocab", "model"), ("mlp", "model"), ("heads", "model"),
           ("joined_kv", "model"), ("embed", None), ("kv", None), ("length", None),
           ("relpos_buckets", None))
  mesh = Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("data", "model"))
  # get_axis_names returns a FrozenDict; params are plain dicts.
  logical = flax.core.unfreeze(nn_partitioning.get_axis_names(_init_shapes(model)["params_axes"]))
  shardings = nn.logical_to_mesh_sharding(logical, mesh, rules)
  wi_0 = shardings["decoder"]["layers_0"]["mlp"]["wi_0"]["kernel"]
  assert wi_0.spec == PartitionSpec(None, "model")
  batch_sharding = NamedSharding(mesh, PartitionSpec("data", None))
  with nn.logical_axis_rules(rules), jax.set_mesh(mesh):
    sharded = jax.jit(fwd, in_shardings=(shardings, batch_sharding, batch_sharding))
    got = sharded(jax.device_put(params, shardings), enc, dec)
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
