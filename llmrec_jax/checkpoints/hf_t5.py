"""Hugging Face T5 <-> llmrec_jax (T5X-layout) weights, with numpy and safetensors only (no torch).

`load_hf_t5(folder)` reads `config.json` plus `model.safetensors` or a sharded
`model.safetensors.index.json`; `save_hf_t5(folder, config, params)` writes a folder that
`transformers.T5ForConditionalGeneration.from_pretrained` loads with no missing/unexpected keys.

Mapping (HF Linear weights are [out, in], our kernels [in, out]: every `.T` is a transpose):
  shared.weight [V, D]                        -> token_embedder/embedding
  {enc|dec}.block.0.layer.0.SelfAttention.relative_attention_bias.weight [Nb, H]
                                              -> {encoder|decoder}/relpos_bias/rel_embedding (.T)
  encoder.block.i.layer.0.SelfAttention.{q,k,v,o}
                                              -> encoder/layers_i/attention/{query,key,value,out}
  decoder.block.i.layer.0.SelfAttention.*     -> decoder/layers_i/self_attention/* (.T)
  decoder.block.i.layer.1.EncDecAttention.*   -> decoder/layers_i/encoder_decoder_attention/* (.T)
  *.layer.{0,1,2}.layer_norm.weight           -> pre_{attention|self_attention|cross_attention|mlp}
                                                 _layer_norm/scale
  *.layer.{1|2}.DenseReluDense.{wi | wi_0, wi_1, wo}  -> mlp/{wi | wi_0, wi_1, wo}/kernel (.T)
  {encoder|decoder}.final_layer_norm.weight   -> {encoder_norm|decoder_norm}/scale
  lm_head.weight [V, D] (untied, v1.1 only)   -> decoder/logits_dense/kernel (.T)
"""
from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Mapping

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from llmrec_jax.network.config import T5Config

Params = dict[str, Any]
_SINGLE_FILE = "model.safetensors"
_INDEX_FILE = "model.safetensors.index.json"
# HF `feed_forward_proj` <-> our `mlp_activations`. HF runs "gated-gelu" with gelu_new (tanh).
_HF_TO_ACTS = {
    "relu": ("relu",), "gated-relu": ("relu", "linear"),
    "gelu": ("gelu_exact",), "gelu_new": ("gelu",),
    "gated-gelu": ("gelu", "linear"), "gated-gelu_new": ("gelu", "linear"),
    "silu": ("silu",), "swish": ("silu",),
    "gated-silu": ("silu", "linear"), "gated-swish": ("silu", "linear"),
}
_ACTS_TO_HF = {("relu",): "relu", ("relu", "linear"): "gated-relu", ("gelu_exact",): "gelu",
               ("gelu",): "gelu_new", ("gelu", "linear"): "gated-gelu", ("silu",): "silu",
               ("silu", "linear"): "gated-silu"}
# Tensors HF may store that duplicate `shared.weight` (tied); checked for equality, then dropped.
_TIED_COPIES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")


class CheckpointError(ValueError):
  """A Hugging Face checkpoint that is missing, unknown or inconsistent."""


# ----------------------------------------------------------------------------- config
def config_from_hf(hf: Mapping[str, Any], source: str = "config.json") -> T5Config:
  """T5Config from a parsed HF T5 `config.json` (errors name `source` and the key)."""
  model_type = hf.get("model_type")
  if model_type not in ("t5", "mt5"):
    raise CheckpointError(f"{source}: model_type={model_type!r}, expected 't5' or 'mt5'")
  for key in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads"):
    if key not in hf:
      raise CheckpointError(f"{source}: required key {key!r} is missing")
  proj = hf.get("feed_forward_proj", "relu")
  if proj not in _HF_TO_ACTS:
    raise CheckpointError(f"{source}: feed_forward_proj={proj!r} not supported; "
                          f"known: {sorted(_HF_TO_ACTS)}")
  num_decoder_layers = hf.get("num_decoder_layers")
  try:
    return T5Config(
        vocab_size=hf["vocab_size"], emb_dim=hf["d_model"], num_heads=hf["num_heads"],
        num_encoder_layers=hf["num_layers"],
        num_decoder_layers=hf["num_layers"] if num_decoder_layers is None else num_decoder_layers,
        head_dim=hf["d_kv"], mlp_dim=hf["d_ff"], mlp_activations=_HF_TO_ACTS[proj],
        dropout_rate=hf.get("dropout_rate", 0.1),
        logits_via_embedding=bool(hf.get("tie_word_embeddings", True)),
        relative_attention_num_buckets=hf.get("relative_attention_num_buckets", 32),
        relative_attention_max_distance=hf.get("relative_attention_max_distance", 128),
        layer_norm_epsilon=hf.get("layer_norm_epsilon", 1e-6))
  except ValueError as e:
    raise CheckpointError(f"{source}: {e}") from e


def config_to_hf(cfg: T5Config) -> dict[str, Any]:
  """HF `config.json` dict for `cfg` (T5ForConditionalGeneration, float32 weights)."""
  if cfg.mlp_activations not in _ACTS_TO_HF:
    raise CheckpointError(f"mlp_activations={cfg.mlp_activations} has no HF feed_forward_proj; "
                          f"representable: {sorted(_ACTS_TO_HF)}")
  return {
      "architectures": ["T5ForConditionalGeneration"], "model_type": "t5",
      "vocab_size": cfg.vocab_size, "d_model": cfg.emb_dim, "d_kv": cfg.head_dim,
      "d_ff": cfg.mlp_dim, "num_layers": cfg.num_encoder_layers,
      "num_decoder_layers": cfg.num_decoder_layers, "num_heads": cfg.num_heads,
      "relative_attention_num_buckets": cfg.relative_attention_num_buckets,
      "relative_attention_max_distance": cfg.relative_attention_max_distance,
      "dropout_rate": cfg.dropout_rate, "layer_norm_epsilon": cfg.layer_norm_epsilon,
      "initializer_factor": 1.0, "feed_forward_proj": _ACTS_TO_HF[cfg.mlp_activations],
      "tie_word_embeddings": cfg.logits_via_embedding, "is_encoder_decoder": True,
      "use_cache": True, "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0,
      "torch_dtype": "float32",
  }


# ----------------------------------------------------------------------------- key table
def _key_table(cfg: T5Config) -> dict[str, tuple[tuple[str, ...], bool, tuple[int, ...]]]:
  """HF key -> (our param path, transpose?, our shape) for every tensor the model needs."""
  d, v, f = cfg.emb_dim, cfg.vocab_size, cfg.mlp_dim
  hd = cfg.num_heads * cfg.head_dim
  table = {"shared.weight": (("token_embedder", "embedding"), False, (v, d))}
  wi_names = ["wi"] if len(cfg.mlp_activations) == 1 else [
      f"wi_{i}" for i in range(len(cfg.mlp_activations))]

  def attention(hf_prefix, ours):
    for hf_name, our_name in (("q", "query"), ("k", "key"), ("v", "value")):
      table[f"{hf_prefix}.{hf_name}.weight"] = (ours + (our_name, "kernel"), True, (d, hd))
    table[f"{hf_prefix}.o.weight"] = (ours + ("out", "kernel"), True, (hd, d))

  def mlp(hf_prefix, ours):
    for name in wi_names:
      table[f"{hf_prefix}.DenseReluDense.{name}.weight"] = (
          ours + ("mlp", name, "kernel"), True, (d, f))
    table[f"{hf_prefix}.DenseReluDense.wo.weight"] = (ours + ("mlp", "wo", "kernel"), True, (f, d))

  def norm(hf_key, ours):
    table[hf_key] = (ours + ("scale",), False, (d,))

  for stack, n_layers in (("encoder", cfg.num_encoder_layers), ("decoder", cfg.num_decoder_layers)):
    table[f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = (
        (stack, "relpos_bias", "rel_embedding"), True,
        (cfg.num_heads, cfg.relative_attention_num_buckets))
    for i in range(n_layers):
      hf, ours = f"{stack}.block.{i}.layer", (stack, f"layers_{i}")
      if stack == "encoder":
        norm(f"{hf}.0.layer_norm.weight", ours + ("pre_attention_layer_norm",))
        attention(f"{hf}.0.SelfAttention", ours + ("attention",))
        norm(f"{hf}.1.layer_norm.weight", ours + ("pre_mlp_layer_norm",))
        mlp(f"{hf}.1", ours)
      else:
        norm(f"{hf}.0.layer_norm.weight", ours + ("pre_self_attention_layer_norm",))
        attention(f"{hf}.0.SelfAttention", ours + ("self_attention",))
        norm(f"{hf}.1.layer_norm.weight", ours + ("pre_cross_attention_layer_norm",))
        attention(f"{hf}.1.EncDecAttention", ours + ("encoder_decoder_attention",))
        norm(f"{hf}.2.layer_norm.weight", ours + ("pre_mlp_layer_norm",))
        mlp(f"{hf}.2", ours)
    norm(f"{stack}.final_layer_norm.weight", (stack, f"{stack}_norm"))
  if not cfg.logits_via_embedding:
    table["lm_head.weight"] = (("decoder", "logits_dense", "kernel"), True, (d, v))
  return table


# ----------------------------------------------------------------------------- reading
def _tensor_files(folder: pathlib.Path) -> dict[str, pathlib.Path]:
  """HF key -> safetensors file holding it (single file or sharded index)."""
  index = folder / _INDEX_FILE
  single = folder / _SINGLE_FILE
  if index.is_file():
    try:
      weight_map = json.loads(index.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
      raise CheckpointError(f"{index}: not a safetensors index with a 'weight_map' ({e})") from e
    files = {key: folder / name for key, name in weight_map.items()}
    for key, path in files.items():
      if not path.is_file():
        raise CheckpointError(f"{index}: key {key!r} points to missing shard {path.name}")
    return files
  if single.is_file():
    with safe_open(str(single), framework="np") as fh:
      return {key: single for key in fh.keys()}
  raise CheckpointError(f"{folder}: neither {_SINGLE_FILE} nor {_INDEX_FILE} found "
                        "(only safetensors checkpoints are supported; no pytorch_model.bin)")


def _read_tensors(files: Mapping[str, pathlib.Path]) -> dict[str, np.ndarray]:
  by_file: dict[pathlib.Path, list[str]] = {}
  for key, path in files.items():
    by_file.setdefault(path, []).append(key)
  out = {}
  for path, keys in by_file.items():
    with safe_open(str(path), framework="np") as fh:
      present = set(fh.keys())
      for key in keys:
        if key not in present:
          raise CheckpointError(f"{path}: index lists key {key!r} but the file lacks it")
        out[key] = fh.get_tensor(key)
  return out


def _set(tree: dict, path: tuple[str, ...], value) -> None:
  for name in path[:-1]:
    tree = tree.setdefault(name, {})
  tree[path[-1]] = value


def load_hf_t5(path: str | os.PathLike) -> tuple[T5Config, Params]:
  """Reads a Hugging Face T5 folder.

  Args:
    path: folder with `config.json` and `model.safetensors` (or a sharded
      `model.safetensors.index.json` and its shards).
  Returns:
    (config, params): params is the nested dict of float32 numpy arrays in our (T5X) layout,
    e.g. params['token_embedder']['embedding'] [V, D].
  Raises:
    CheckpointError naming the file and key when a tensor is missing, unknown or mis-shaped.
  """
  folder = pathlib.Path(path)
  config_path = folder / "config.json"
  if not config_path.is_file():
    raise CheckpointError(f"{config_path}: not found")
  try:
    hf_config = json.loads(config_path.read_text())
  except json.JSONDecodeError as e:
    raise CheckpointError(f"{config_path}: invalid JSON at line {e.lineno}: {e.msg}") from e
  cfg = config_from_hf(hf_config, str(config_path))
  table = _key_table(cfg)
  files = _tensor_files(folder)
  tensors = _read_tensors(files)
  if "shared.weight" not in tensors and "encoder.embed_tokens.weight" in tensors:
    tensors["shared.weight"] = tensors["encoder.embed_tokens.weight"]
    files = {**files, "shared.weight": files["encoder.embed_tokens.weight"]}
  tied_extras = _TIED_COPIES + (("lm_head.weight",) if cfg.logits_via_embedding else ())
  params: Params = {}
  for key in sorted(tensors):
    if key in table:
      continue
    if key in tied_extras and "shared.weight" in tensors:
      if not np.array_equal(tensors[key], tensors["shared.weight"]):
        raise CheckpointError(f"{files[key]}: {key!r} differs from shared.weight although "
                              f"{config_path.name} ties them (tie_word_embeddings)")
      continue
    raise CheckpointError(f"{files[key]}: unexpected key {key!r} for this config "
                          f"({config_path.name}: {cfg.num_encoder_layers}+{cfg.num_decoder_layers} "
                          f"layers, mlp {cfg.mlp_activations}, tied={cfg.logits_via_embedding})")
  for key, (our_path, transpose, shape) in table.items():
    if key not in tensors:
      where = folder / (_INDEX_FILE if (folder / _INDEX_FILE).is_file() else _SINGLE_FILE)
      raise CheckpointError(f"{where}: missing key {key!r} required by {config_path.name}")
    array = np.asarray(tensors[key], dtype=np.float32)
    if transpose:
      array = array.T
    if array.shape != shape:
      hf_shape = shape[::-1] if transpose else shape
      raise CheckpointError(f"{files[key]}: key {key!r} has shape {tuple(tensors[key].shape)}, "
                            f"{config_path.name} implies {hf_shape}")
    _set(params, our_path, np.ascontiguousarray(array))
  return cfg, params


# ----------------------------------------------------------------------------- writing
def _get(tree: Mapping, path: tuple[str, ...]):
  for i, name in enumerate(path):
    if not isinstance(tree, Mapping) or name not in tree:
      raise CheckpointError(f"params: missing {'/'.join(path[:i + 1])}")
    tree = tree[name]
  return tree


def _flat_paths(tree: Mapping, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
  out = []
  for name, value in tree.items():
    if isinstance(value, Mapping):
      out.extend(_flat_paths(value, prefix + (name,)))
    else:
      out.append(prefix + (name,))
  return out


def save_hf_t5(path: str | os.PathLike, config: T5Config, params: Mapping[str, Any]) -> None:
  """Writes `config.json` and `model.safetensors` (float32) that HF T5 loads.

  Args:
    path: output folder (created if needed; existing files of the same name are overwritten).
    config: the network config; its activations must map to an HF `feed_forward_proj`.
    params: our param tree (e.g. `variables['params']`), arrays on host or device.
  Raises:
    CheckpointError when params do not match `config` (missing, extra or mis-shaped entries).
  """
  table = _key_table(config)
  expected_paths = {our_path for our_path, _, _ in table.values()}
  extra = sorted("/".join(p) for p in _flat_paths(params) if p not in expected_paths)
  if extra:
    raise CheckpointError(f"params: entries not in a T5 with this config: {extra[:5]}")
  state = {}
  for key, (our_path, transpose, shape) in table.items():
    array = np.asarray(_get(params, our_path), dtype=np.float32)
    if array.shape != shape:
      raise CheckpointError(f"params: {'/'.join(our_path)} has shape {array.shape}, config "
                            f"implies {shape}")
    state[key] = np.ascontiguousarray(array.T if transpose else array)
  folder = pathlib.Path(path)
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "config.json").write_text(json.dumps(config_to_hf(config), indent=2) + "\n")
  save_file(state, str(folder / _SINGLE_FILE), metadata={"format": "pt"})
