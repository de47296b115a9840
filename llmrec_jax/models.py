"""`EncoderDecoderModel`: T5X's model-wrapper contract over our Flax T5.

Loss, scoring and decoding on top of a `network.Transformer`-like module (methods `__call__`,
`encode`, `decode` with T5X's signatures) and a T5X-compatible `decode_fn`. No optimizer lives
here: the trainer owns it. Batches use seqio `EncDecFeatureConverter` keys:
`encoder_input_tokens`, `decoder_input_tokens`, `decoder_target_tokens`, `decoder_loss_weights`
(+ optional `*_segment_ids` / `*_positions` when packed).
"""
from __future__ import annotations

import copy
import dataclasses
import enum
import functools
from typing import Any, Callable, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from llmrec_jax import losses
from llmrec_jax.network import output_subset

Array = jax.Array
PyTree = Any
Batch = Mapping[str, Array]


class OutputVocab(str, enum.Enum):
  """Which logits a decode step computes when the outputs are restricted to U tokens.

  FULL: all V (T5X). SUBSET_EXACT: the full projection, but the search sees the U subset
  columns plus one "rest" column holding the log-sum-exp of the other V - U logits (from the
  kernel's non-subset columns gathered once per batch, `network.output_subset`: no masking or
  gathering over [B*K, V] in the step), so its
  log_softmax over U + 1 columns equals the full-vocab log_softmax at the U tokens (HF
  `prefix_allowed_tokens_fn` scores; a trie never allows the rest column). SUBSET: only the
  U columns are projected (~V/U times cheaper output layer) and the softmax is over them, i.e.
  renormalised over the allowed-token set: scores, and so rankings, may differ from HF's.
  """
  FULL = "full"
  SUBSET_EXACT = "subset_exact"
  SUBSET = "subset"


REST_TOKEN = 0  # token id reported for the SUBSET_EXACT rest column (pad: never in an item)


def subset_column_token_ids(token_ids_U: Array, output_vocab: OutputVocab | str) -> Array:
  """The `column_token_ids` a decode_fn needs for the step logits of `output_vocab`."""
  if OutputVocab(output_vocab) == OutputVocab.SUBSET_EXACT:
    return jnp.concatenate([token_ids_U.astype(jnp.int32), jnp.array([REST_TOKEN], jnp.int32)])
  return token_ids_U.astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class DecoderParams:
  """Default decoding options (T5X's `DecoderParams`)."""
  return_all_decodes: bool = False
  num_decodes: int = 1


def _default_decode_fn(**kwargs):
  from llmrec_jax.decoding import beam_search  # pylint: disable=g-import-not-at-top
  return beam_search.beam_search(**kwargs)


class _LazySeqioConverter:
  """Class attribute that imports seqio only when read (a cold `import seqio` takes ~35 s)."""

  def __get__(self, obj, objtype=None):
    import seqio  # pylint: disable=g-import-not-at-top
    return seqio.EncDecFeatureConverter


class EncoderDecoderModel:
  """T5X `EncoderDecoderModel` contract: loss_fn, eval_fn, score_batch, predict_batch(_with_aux),
  get_initial_variables.

  Args:
    module: the Flax encoder-decoder (e.g. `network.Transformer(config)`).
    input_vocabulary / output_vocabulary: seqio vocabularies (only used by callers that detokenize).
    decode_fn: T5X-compatible decode function (default: our `decoding.beam_search.beam_search`).
      It is called with T5X's arguments (`inputs`, `cache`, `tokens_to_logits`, `eos_id`,
      `num_decodes`, `cache_offset`), `decode_rng` when an rng is given, `column_token_ids` with
      a subset output vocabulary, and the caller's `decoder_params`; nothing else (in particular
      no batch key) reaches it, so per-example inputs such as `excluded_items` are passed
      explicitly in `decoder_params` by the caller that chose the decode function.
    label_smoothing, z_loss, loss_normalizing_factor: see `losses.weighted_cross_entropy`;
      `loss_normalizing_factor="IDGENREC_OFFICIAL"` reproduces the official IDGenRec loss.
    default_decoder_params: default `num_decodes` / `return_all_decodes`.
    output_rest_chunk: vocab columns per step of the SUBSET_EXACT rest-of-vocab log-sum-exp.
  """
  FEATURE_CONVERTER_CLS = _LazySeqioConverter()

  def __init__(self, module: nn.Module, input_vocabulary=None, output_vocabulary=None,
               decode_fn: Optional[Callable[..., Any]] = None, label_smoothing: float = 0.0,
               z_loss: float = 0.0,
               loss_normalizing_factor: losses.NormalizingFactor = "NUM_REAL_TARGET_TOKENS",
               default_decoder_params: Optional[DecoderParams] = None,
               output_rest_chunk: int = output_subset.DEFAULT_CHUNK):
    if not 0.0 <= label_smoothing < 1.0:
      raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    self.module = module
    self.input_vocabulary = input_vocabulary
    self.output_vocabulary = output_vocabulary
    self._decode_fn = decode_fn or _default_decode_fn
    self._label_smoothing = label_smoothing
    self._z_loss = z_loss
    self._loss_normalizing_factor = losses.parse_normalization(loss_normalizing_factor)
    self._default_decoder_params = default_decoder_params or DecoderParams()
    if output_rest_chunk < 1:
      raise ValueError(f"output_rest_chunk must be >= 1, got {output_rest_chunk}")
    self.output_rest_chunk = output_rest_chunk

  # ----------------------------------------------------------------------------- init
  def get_initial_variables(self, rng: Array, input_shapes: Mapping[str, tuple[int, ...]],
                            input_types: Optional[Mapping[str, jnp.dtype]] = None) -> PyTree:
    """Initialises `params` (and `params_axes`) from feature shapes, as T5X does."""
    input_types = input_types or {}
    enc_shape = input_shapes["encoder_input_tokens"]
    dec_shape = input_shapes["decoder_input_tokens"]
    enc_type = input_types.get("encoder_input_tokens", jnp.int32)
    dec_type = input_types.get("decoder_input_tokens", jnp.int32)
    init = functools.partial(self.module.init, enable_dropout=False)
    return jax.jit(init)(
        {"params": rng, "dropout": rng},
        jnp.ones(enc_shape, enc_type), jnp.ones(dec_shape, dec_type), jnp.ones(dec_shape, dec_type))

  def with_decode_fn(self, decode_fn: Callable[..., Any]) -> "EncoderDecoderModel":
    """A copy of this wrapper (same module, vocabularies, loss and decoding settings) whose
    `predict_batch(_with_aux)` decodes with `decode_fn` (same contract as the constructor's)."""
    other = copy.copy(self)
    other._decode_fn = decode_fn  # pylint: disable=protected-access
    return other

  # ----------------------------------------------------------------------------- loss
  def compute_logits(self, params: PyTree, batch: Batch, dropout_rng: Optional[Array] = None,
                     encoder_input_embeddings: Optional[Array] = None) -> Array:
    """Teacher-forced decoder logits [B, T, V] of a batch (T5X's `_compute_logits`).

    Args:
      params: the model params.
      batch: `encoder_input_tokens`, `decoder_input_tokens`, `decoder_target_tokens` (+ optional
        `*_segment_ids` / `*_positions`); other keys are ignored.
      dropout_rng: dropout is on iff given (T5X semantics).
      encoder_input_embeddings: optional float [B, S, D] used by the encoder instead of the
        embeddings of `encoder_input_tokens` (which still give the padding mask), e.g. prompts
        with spliced soft IDs.
    """
    rngs = {"dropout": dropout_rng} if dropout_rng is not None else None
    kwargs = {}
    if encoder_input_embeddings is not None:
      kwargs["encoder_input_embeddings"] = encoder_input_embeddings
    return self.module.apply(
        {"params": params},
        batch["encoder_input_tokens"],
        batch["decoder_input_tokens"],
        batch["decoder_target_tokens"],
        encoder_segment_ids=batch.get("encoder_segment_ids"),
        decoder_segment_ids=batch.get("decoder_segment_ids"),
        encoder_positions=batch.get("encoder_positions"),
        decoder_positions=batch.get("decoder_positions"),
        enable_dropout=rngs is not None,
        rngs=rngs,
        **kwargs)

  def loss_from_logits(self, logits_BxTxV: Array, batch: Batch) -> tuple[Array, dict[str, Array]]:
    """The configured cross-entropy of `logits` against the batch targets, with T5X's metrics."""
    targets_BxT = batch["decoder_target_tokens"]
    weights_BxT = batch.get("decoder_loss_weights")
    loss, z_loss, total_weight = losses.weighted_cross_entropy(
        logits_BxTxV, targets_BxT, weights_BxT, label_smoothing=self._label_smoothing,
        z_loss=self._z_loss, loss_normalizing_factor=self._loss_normalizing_factor)
    if weights_BxT is None:
      weights_BxT = (targets_BxT > 0).astype(jnp.float32)
    correct = (jnp.argmax(logits_BxTxV, axis=-1) == targets_BxT).astype(jnp.float32)
    metrics = {
        "loss": loss,
        "z_loss": z_loss,
        "cross_ent_loss": loss - z_loss,
        "accuracy": jnp.sum(correct * weights_BxT) / jnp.maximum(total_weight, 1e-8),
        "num_tokens": total_weight,
        "num_examples": jnp.float32(targets_BxT.shape[0]),
    }
    return loss, metrics

  def loss_fn(self, params: PyTree, batch: Batch,
              dropout_rng: Optional[Array]) -> tuple[Array, dict[str, Array]]:
    """Loss and metrics; dropout is on iff `dropout_rng` is given (T5X semantics)."""
    return self.loss_from_logits(self.compute_logits(params, batch, dropout_rng), batch)

  def eval_fn(self, params: PyTree, batch: Batch) -> tuple[Array, dict[str, Array]]:
    return self.loss_fn(params, batch, dropout_rng=None)

  def score_batch(self, params: PyTree, batch: Batch, return_intermediates: bool = False) -> Array:
    """Sum of target log-probabilities per example, weighted by `decoder_loss_weights`. [B]."""
    if return_intermediates:
      raise NotImplementedError("return_intermediates is not supported")
    logits_BxTxV = self.compute_logits(params, batch).astype(jnp.float32)
    targets_BxT = batch["decoder_target_tokens"]
    weights_BxT = batch.get("decoder_loss_weights")
    if weights_BxT is None:
      weights_BxT = targets_BxT > 0
    logp_BxTxV = jax.nn.log_softmax(logits_BxTxV, axis=-1)
    token_logp_BxT = jnp.take_along_axis(logp_BxTxV, targets_BxT[..., None], axis=-1)[..., 0]
    return jnp.sum(token_logp_BxT * weights_BxT.astype(jnp.float32), axis=-1)

  # ----------------------------------------------------------------------------- decoding
  def _compute_logits_from_slice(self, decoding_state, params: PyTree, raw_inputs_BxS: Array,
                                 max_decode_length: int,
                                 output_kernel_DxU=None):
    """tokens_to_logits for the decode_fn: one cached decoder step for every beam.

    The B*K beams attend to the B examples' cross-attention keys/values cached at cache
    creation (`encoded=None`): nothing of size [B*K, S, ...] is built. With
    `output_kernel_DxU` (see `Transformer.output_kernel`) the logits cover its U columns, plus
    the exact rest-of-vocab column when it is an `output_subset.SplitKernel`.
    """
    logits_BKx1xV, new_vars = self.module.apply(
        {"params": params, "cache": decoding_state.cache},
        None,
        raw_inputs_BxS,
        decoding_state.cur_token,
        decoding_state.cur_token,
        enable_dropout=False,
        decode=True,
        max_decode_length=max_decode_length,
        output_kernel_DxU=output_kernel_DxU,
        mutable=["cache"],
        method=self.module.decode)
    logits_BKxV = logits_BKx1xV[:, 0, :].astype(jnp.float32)
    return logits_BKxV, new_vars["cache"]

  def predict_batch(self, params: PyTree, batch: Batch, rng: Optional[Array] = None, **kwargs) -> Array:
    return self.predict_batch_with_aux(params, batch, rng=rng, **kwargs)[0]

  def predict_batch_with_aux(self, params: PyTree, batch: Batch, rng: Optional[Array] = None,
                             decoder_params: Optional[Mapping[str, Any]] = None,
                             return_all_decodes: Optional[bool] = None,
                             num_decodes: Optional[int] = None,
                             prompt_with_targets: bool = False,
                             output_token_ids: Optional[Array] = None,
                             output_vocab: OutputVocab | str = OutputVocab.SUBSET_EXACT
                             ) -> tuple[Array, dict[str, Array]]:
    """Decodes with `decode_fn`; returns (decodes, {'scores': ...}).

    decodes are [B, T] (best beam) or, with `return_all_decodes`, [B, K, T] in ascending score
    order (T5X's: best last), with scores [B] or [B, K]. `decoder_params` are extra keyword
    arguments of the decode_fn (e.g. `trie`, `alpha`, `excluded_items` of
    `beam_search.constrained_beam_search`); only the feature keys of `batch` are read.

    `output_token_ids` (int32 [U], distinct; e.g. `ItemTrie.token_ids`) restricts the step
    logits to those tokens as `output_vocab` says (see `OutputVocab`); the decode_fn then gets
    `column_token_ids` (`subset_column_token_ids`) and its masks / trie must be over columns
    (`ItemTrie.compact()`). The decode cache is created from the encoder states, so each layer
    projects the encoder output to cross-attention keys/values once per batch, at batch B.
    """
    if prompt_with_targets:
      raise NotImplementedError("prompt_with_targets is for decoder-only models")
    if return_all_decodes is None:
      return_all_decodes = self._default_decoder_params.return_all_decodes
    if num_decodes is None:
      num_decodes = self._default_decoder_params.num_decodes
    output_vocab = OutputVocab(output_vocab)
    inputs_BxS = batch["encoder_input_tokens"]
    target_shape = batch["decoder_input_tokens"].shape
    cache = self._init_decode_cache(params, inputs_BxS, target_shape)
    step_kwargs, column_token_ids = self._step_output_kernel(params, output_token_ids,
                                                             output_vocab)
    tokens_ids_to_logits = functools.partial(
        self._compute_logits_from_slice, params=params, raw_inputs_BxS=inputs_BxS,
        max_decode_length=target_shape[1], **step_kwargs)
    decodes_BxKxT, scores_BxK = self._decode_fn(
        inputs=jnp.zeros(target_shape, inputs_BxS.dtype),
        cache=cache,
        tokens_to_logits=tokens_ids_to_logits,
        eos_id=_eos_id(self.output_vocabulary),
        num_decodes=num_decodes,
        cache_offset=0,
        **self._decode_fn_kwargs(decoder_params, column_token_ids, rng))
    if return_all_decodes:
      return decodes_BxKxT, {"scores": scores_BxK}
    return decodes_BxKxT[:, -1, :], {"scores": scores_BxK[:, -1]}

  def _init_decode_cache(self, params: PyTree, inputs_BxS: Array,
                         target_shape: tuple[int, ...]) -> PyTree:
    """The decode cache for batch B: the encoder runs once, then a decode=True call without a
    cache creates it (zero self-attention cache of the full decode length T) and stores every
    layer's cross-attention keys/values of the encoder states. Its logits are unused (XLA drops
    them)."""
    encoded_BxSxD = self.module.apply({"params": params}, inputs_BxS, enable_dropout=False,
                                      method=self.module.encode)
    ones_BxT = jnp.ones(target_shape, inputs_BxS.dtype)
    _, variables_with_cache = self.module.apply(
        {"params": params}, encoded_BxSxD, inputs_BxS, ones_BxT, ones_BxT, decode=True,
        enable_dropout=False, mutable=["cache"], method=self.module.decode)
    return variables_with_cache["cache"]

  def _step_output_kernel(self, params: PyTree, output_token_ids: Optional[Array],
                          output_vocab: OutputVocab) -> tuple[dict[str, Any], Optional[Array]]:
    """(keyword arguments of `_compute_logits_from_slice`, the decode_fn's `column_token_ids`):
    with `output_token_ids` and a subset `output_vocab`, the output kernel of those tokens,
    gathered once per batch outside the decode loop (SUBSET_EXACT also keeps the other columns,
    in chunks, for the exact rest-of-vocab log-sum-exp); else ({}, None)."""
    if output_token_ids is None or output_vocab == OutputVocab.FULL:
      return {}, None
    ids_U = jnp.asarray(output_token_ids, jnp.int32)
    rest_chunk = self.output_rest_chunk if output_vocab == OutputVocab.SUBSET_EXACT else None
    kernel = self.module.apply({"params": params}, ids_U, rest_chunk=rest_chunk,
                               method=self.module.output_kernel)
    return {"output_kernel_DxU": kernel}, subset_column_token_ids(ids_U, output_vocab)

  @staticmethod
  def _decode_fn_kwargs(decoder_params: Optional[Mapping[str, Any]],
                        column_token_ids: Optional[Array], rng: Optional[Array]) -> dict[str, Any]:
    """`decoder_params` plus `column_token_ids` and `decode_rng` (= rng) when given."""
    kwargs = dict(decoder_params or {})
    if column_token_ids is not None:
      kwargs["column_token_ids"] = column_token_ids
    if rng is not None:
      kwargs["decode_rng"] = rng
    return kwargs


def _eos_id(vocab) -> int:
  return 1 if vocab is None else int(vocab.eos_id)

