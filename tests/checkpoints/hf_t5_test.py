"""HF T5 interop: logits parity with random-weight torch T5s, save/load round trips, bad files."""
import json
import os
import shutil

os.environ.setdefault("USE_TF", "0")  # keep transformers from importing TensorFlow (slow, unused)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402

from llmrec_jax.checkpoints import hf_t5, load_hf_t5, save_hf_t5  # noqa: E402
from llmrec_jax.network import T5Config, Transformer  # noqa: E402

import torch  # noqa: E402
import transformers  # noqa: E402

TOL = 1e-4
# name -> HF config kwargs. Tiny cases use few buckets / short max distance so that both the
# exact and the logarithmic relative-position buckets are exercised by short sequences.
CASES = {
    "tiny_v1_0": dict(vocab_size=101, d_model=32, d_kv=8, d_ff=64, num_layers=2,
                      num_decoder_layers=3, num_heads=4, feed_forward_proj="relu",
                      tie_word_embeddings=True, relative_attention_num_buckets=8,
                      relative_attention_max_distance=10),
    "t5_small_v1_0": dict(vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6,
                          num_decoder_layers=6, num_heads=8, feed_forward_proj="relu",
                          tie_word_embeddings=True),
    "tiny_v1_1": dict(vocab_size=101, d_model=32, d_kv=8, d_ff=48, num_layers=2,
                      num_decoder_layers=2, num_heads=4, feed_forward_proj="gated-gelu",
                      tie_word_embeddings=False, relative_attention_num_buckets=8,
                      relative_attention_max_distance=10),
}
B, S, T = 2, 12, 9


def _batch(vocab_size, seed=0):
  """Padded encoder ids, shifted-right decoder inputs and padded targets."""
  rng = np.random.default_rng(seed)
  enc = rng.integers(2, vocab_size, size=(B, S)).astype(np.int64)
  enc[1, 7:] = 0
  tgt = rng.integers(2, vocab_size, size=(B, T)).astype(np.int64)
  tgt[0, 6:] = 0
  dec_in = np.concatenate([np.zeros((B, 1), np.int64), tgt[:, :-1]], axis=1)
  return enc, dec_in, tgt


def _hf_logits(model, enc, dec_in):
  with torch.no_grad():
    return model(input_ids=torch.tensor(enc), attention_mask=torch.tensor(enc > 0),
                 decoder_input_ids=torch.tensor(dec_in)).logits.numpy()


def _max_diff_at_targets(a_BxTxV, b_BxTxV, tgt_BxT):
  keep = tgt_BxT > 0
  return float(np.abs(np.asarray(a_BxTxV)[keep] - np.asarray(b_BxTxV)[keep]).max())


@pytest.fixture(scope="module", params=list(CASES))
def case(request, tmp_path_factory):
  """(name, hf_model, folder saved by HF, our config, our params, our logits, batch)."""
  name = request.param
  torch.manual_seed(0)
  hf_model = transformers.T5ForConditionalGeneration(transformers.T5Config(**CASES[name])).eval()
  folder = tmp_path_factory.mktemp(name)
  hf_model.save_pretrained(folder, safe_serialization=True)
  cfg, params = load_hf_t5(folder)
  enc, dec_in, tgt = _batch(cfg.vocab_size)
  net = Transformer(cfg)
  ours = jax.jit(lambda p, e, d, t: net.apply({"params": p}, e, d, t, enable_dropout=False))(
      params, enc.astype(np.int32), dec_in.astype(np.int32), tgt.astype(np.int32))
  return name, hf_model, folder, cfg, params, np.asarray(ours), (enc, dec_in, tgt)


def test_loaded_config_matches_hf(case):
  name, _, _, cfg, _, _, _ = case
  hf = CASES[name]
  assert (cfg.vocab_size, cfg.emb_dim, cfg.head_dim, cfg.mlp_dim, cfg.num_heads) == (
      hf["vocab_size"], hf["d_model"], hf["d_kv"], hf["d_ff"], hf["num_heads"])
  assert (cfg.num_encoder_layers, cfg.num_decoder_layers) == (
      hf["num_layers"], hf["num_decoder_layers"])
  assert cfg.logits_via_embedding == hf["tie_word_embeddings"]
  assert cfg.mlp_activations == {"relu": ("relu",), "gated-gelu": ("gelu", "linear")}[
      hf["feed_forward_proj"]]


def test_logits_match_hf(case):
  name, hf_model, _, _, _, ours, (enc, dec_in, tgt) = case
  diff = _max_diff_at_targets(ours, _hf_logits(hf_model, enc, dec_in), tgt)
  print(f"\n[parity] {name}: max |ours - HF| at non-pad targets = {diff:.3g}")
  assert diff < TOL


def test_save_hf_t5_loads_in_hf_without_missing_keys(case, tmp_path):
  name, _, _, cfg, params, ours, (enc, dec_in, tgt) = case
  save_hf_t5(tmp_path, cfg, params)
  reloaded, info = transformers.T5ForConditionalGeneration.from_pretrained(
      tmp_path, output_loading_info=True)
  assert info["missing_keys"] == [] and info["unexpected_keys"] == []
  assert info["mismatched_keys"] == [] and info["error_msgs"] == []
  diff = _max_diff_at_targets(ours, _hf_logits(reloaded.eval(), enc, dec_in), tgt)
  print(f"\n[parity] {name} via save_hf_t5: max |ours - HF| = {diff:.3g}")
  assert diff < TOL
  # And back: our own loader reads what we wrote, bit for bit.
  cfg2, params2 = load_hf_t5(tmp_path)
  assert cfg2 == cfg
  jax.tree_util.tree_map(np.testing.assert_array_equal, params2, params)


def test_relative_position_bucket_matches_hf():
  from transformers.models.t5.modeling_t5 import T5Attention
  from llmrec_jax.network.layers import relative_position_bucket
  rel = np.arange(-300, 300)
  for bidirectional in (True, False):
    for buckets, distance in ((32, 128), (8, 10), (16, 64)):
      want = T5Attention._relative_position_bucket(
          torch.tensor(rel), bidirectional=bidirectional, num_buckets=buckets,
          max_distance=distance).numpy()
      np.testing.assert_array_equal(
          relative_position_bucket(rel, bidirectional, buckets, distance), want)


# ----------------------------------------------------------------------------- files on disk
@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
  torch.manual_seed(1)
  model = transformers.T5ForConditionalGeneration(transformers.T5Config(**CASES["tiny_v1_0"]))
  folder = tmp_path_factory.mktemp("tiny_single")
  model.save_pretrained(folder, safe_serialization=True)
  sharded = tmp_path_factory.mktemp("tiny_sharded")
  model.save_pretrained(sharded, safe_serialization=True, max_shard_size="40KB")
  return folder, sharded


def test_sharded_checkpoint_equals_single_file(tiny_folder):
  folder, sharded = tiny_folder
  assert (sharded / "model.safetensors.index.json").is_file()
  assert len(list(sharded.glob("model-*.safetensors"))) > 1
  cfg_a, params_a = load_hf_t5(folder)
  cfg_b, params_b = load_hf_t5(sharded)
  assert cfg_a == cfg_b
  jax.tree_util.tree_map(np.testing.assert_array_equal, params_a, params_b)


def _edited_copy(src, dst, edit_tensors=None, edit_config=None):
  shutil.copytree(src, dst)
  if edit_tensors:
    tensors = load_file(dst / "model.safetensors")
    edit_tensors(tensors)
    save_file(tensors, dst / "model.safetensors", metadata={"format": "pt"})
  if edit_config:
    config = json.loads((dst / "config.json").read_text())
    edit_config(config)
    (dst / "config.json").write_text(json.dumps(config))
  return dst


MISSING = "decoder.block.2.layer.2.DenseReluDense.wo.weight"


@pytest.mark.parametrize("edit_tensors,edit_config,pattern", [
    (lambda t: t.pop(MISSING), None, rf"model\.safetensors: missing key '{MISSING}'"),
    (lambda t: t.update({"encoder.block.5.layer.0.layer_norm.weight": np.ones(32, np.float32)}),
     None, r"model\.safetensors: unexpected key 'encoder\.block\.5\.layer\.0"),
    (lambda t: t.update({"shared.weight": np.ones((100, 32), np.float32)}), None,
     r"model\.safetensors: key 'shared\.weight' has shape \(100, 32\).*\(101, 32\)"),
    (lambda t: t.update({"lm_head.weight": np.ones((101, 32), np.float32)}), None,
     r"'lm_head\.weight' differs from shared\.weight"),
    (None, lambda c: c.update(feed_forward_proj="gated-tanh"), r"config\.json: feed_forward_proj"),
    (None, lambda c: c.update(model_type="bart"), r"config\.json: model_type='bart'"),
    (None, lambda c: c.pop("d_kv"), r"config\.json: required key 'd_kv'"),
    (None, lambda c: c.update(num_heads=0), r"config\.json: T5Config\.num_heads"),
], ids=["missing", "unexpected", "shape", "untied_lm_head", "activation", "model_type", "no_d_kv",
        "bad_value"])
def test_bad_checkpoints_raise_naming_file_and_key(tiny_folder, tmp_path, edit_tensors,
                                                   edit_config, pattern):
  folder = _edited_copy(tiny_folder[0], tmp_path / "bad", edit_tensors, edit_config)
  with pytest.raises(hf_t5.CheckpointError, match=pattern):
    load_hf_t5(folder)


def test_bfloat16_checkpoint_loads_as_float32(tmp_path):
  torch.manual_seed(2)
  model = transformers.T5ForConditionalGeneration(transformers.T5Config(**CASES["tiny_v1_1"]))
  model.to(torch.bfloat16).save_pretrained(tmp_path, safe_serialization=True)
  _, params = load_hf_t5(tmp_path)
  kernel = params["decoder"]["logits_dense"]["kernel"]
  assert kernel.dtype == np.float32
  np.testing.assert_array_equal(kernel, model.lm_head.weight.detach().float().numpy().T)


def test_missing_files_raise(tmp_path):
  with pytest.raises(hf_t5.CheckpointError, match="config.json: not found"):
    load_hf_t5(tmp_path)
  (tmp_path / "config.json").write_text(json.dumps(hf_t5.config_to_hf(T5Config(vocab_size=8))))
  with pytest.raises(hf_t5.CheckpointError, match="neither model.safetensors nor"):
    load_hf_t5(tmp_path)


def test_save_rejects_params_that_do_not_fit_config(tiny_folder, tmp_path):
  cfg, params = load_hf_t5(tiny_folder[0])
  broken = jax.tree_util.tree_map(lambda x: x, params)
  del broken["encoder"]["layers_1"]["mlp"]
  with pytest.raises(hf_t5.CheckpointError, match="params: missing encoder/layers_1/mlp"):
    save_hf_t5(tmp_path, cfg, broken)
  extra = jax.tree_util.tree_map(lambda x: x, params)
  extra["decoder"]["logits_dense"] = {"kernel": np.zeros((32, 101), np.float32)}
  with pytest.raises(hf_t5.CheckpointError, match="decoder/logits_dense/kernel"):
    save_hf_t5(tmp_path, cfg, extra)  # tied config has no logits_dense
  wide = jax.tree_util.tree_map(lambda x: x, params)
  wide["token_embedder"]["embedding"] = jnp.zeros((102, 32))
  with pytest.raises(hf_t5.CheckpointError,
                     match=r"token_embedder/embedding has shape \(102, 32\)"):
    save_hf_t5(tmp_path, cfg, wide)


@pytest.mark.parametrize("acts", [("relu",), ("relu", "linear"), ("gelu",), ("gelu", "linear"),
                                  ("gelu_exact",), ("silu",), ("silu", "linear")])
def test_config_round_trips_through_hf_json(acts):
  cfg = T5Config(vocab_size=77, emb_dim=24, num_heads=3, head_dim=5, num_encoder_layers=1,
                 num_decoder_layers=4, mlp_dim=40, mlp_activations=acts, dropout_rate=0.0,
                 logits_via_embedding=len(acts) == 1, relative_attention_num_buckets=16,
                 relative_attention_max_distance=50, layer_norm_epsilon=1e-5)
  hf_json = hf_t5.config_to_hf(cfg)
  assert hf_t5.config_from_hf(hf_json) == cfg
  hf_cfg = transformers.T5Config(**hf_json)  # HF accepts the activation spelling
  assert hf_cfg.is_gated_act == (len(acts) == 2)
  with pytest.raises(hf_t5.CheckpointError, match="no HF feed_forward_proj"):
    hf_t5.config_to_hf(T5Config(vocab_size=8, mlp_activations=("gelu_exact", "linear")))
