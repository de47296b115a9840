"""`DecoderOnlyModel`: T5X's decoder-only wrapper contract over `network.decoder_only`.

Batches use T5X's decoder-only feature names: `decoder_input_tokens` (start token 0, then the
stream shifted right), `decoder_target_tokens`, `decoder_loss_weights`. `loss_fn` is
teacher-forced cross-entropy at every weighted position (whole-sequence training);
`predict_topk` decodes the K best items after a left-padded prompt under a trie constraint,
prefilling the prompt once and stepping B*K beams against it.

Two likelihoods (`trie_softmax`):
* False: the usual softmax over the whole vocabulary at every target token (HF / T5X).
* True: the item trie's own distribution. At each target the softmax runs over the tokens the
  trie allows after the item's prefix, so P(item | history) is a proper distribution over the
  catalogue and a token with a single allowed child costs nothing (the model learns choices,
  not spelling). Only positions with two or more children are projected (`branch_*` batch
  keys from `data.item_streams`), over the U tokens that occur in items: exact, since every
  other token is masked anyway. Decoding then renormalises over the allowed tokens and ranks
  by the item log-probability (no length normalisation), the same quantity training fits.
"""
from __future__ import annotations

import functools
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp

from llmrec_jax import losses
from llmrec_jax.decoding import beam_search, beams, trie as trie_lib, trie_walk
from llmrec_jax.network import decoder_only

Array = jax.Array
PyTree = Any
Batch = Mapping[str, Array]


class DecoderOnlyModel:
  """loss_fn, eval_fn, score_batch, predict_topk, get_initial_variables (T5X names).

  Args:
    module: a `network.decoder_only.DecoderOnlyTransformer`.
    eos_id: the token that ends every item ID (the trie's EOS).
    label_smoothing, z_loss: see `losses.weighted_cross_entropy` (full softmax only).
    trie_softmax: the trie's distribution (see the module docstring); `loss_fn` then takes the
      `TrieArrays` after the rng.
  """

  def __init__(self, module: decoder_only.DecoderOnlyTransformer, *, eos_id: int = 1,
               label_smoothing: float = 0.0, z_loss: float = 0.0, trie_softmax: bool = False):
    self.module = module
    self.eos_id = eos_id
    self.trie_softmax = trie_softmax
    self._label_smoothing = label_smoothing
    self._z_loss = z_loss

  def get_initial_variables(self, rng: Array, input_shapes: Mapping[str, tuple[int, ...]]) -> PyTree:
    shape = input_shapes["decoder_input_tokens"]
    return jax.jit(self.module.init)({"params": rng, "dropout": rng}, jnp.ones(shape, jnp.int32))

  def _logits(self, params, batch: Batch, dropout_rng=None, input_embeddings=None) -> Array:
    rngs = {"dropout": dropout_rng} if dropout_rng is not None else None
    return self.module.apply({"params": params}, batch["decoder_input_tokens"],
                             batch["decoder_target_tokens"] > 0,
                             input_embeddings_BxLxD=input_embeddings,
                             enable_dropout=rngs is not None, rngs=rngs)

  def loss_from_logits(self, logits_BxLxV: Array, batch: Batch) -> tuple[Array, dict[str, Array]]:
    """Mean token cross-entropy over weighted targets, with per-item NLL (summed over an
    item's tokens, EOS included: comparable with the entropy of the item marginal)."""
    targets_BxL = batch["decoder_target_tokens"]
    weights_BxL = batch.get("decoder_loss_weights", (targets_BxL > 0).astype(jnp.float32))
    loss, z_loss, total = losses.weighted_cross_entropy(
        logits_BxLxV, targets_BxL, weights_BxL, label_smoothing=self._label_smoothing,
        z_loss=self._z_loss, loss_normalizing_factor="NUM_REAL_TARGET_TOKENS")
    items = jnp.sum((targets_BxL == self.eos_id) * weights_BxL)
    correct = (jnp.argmax(logits_BxLxV, -1) == targets_BxL) * weights_BxL
    return loss, {"loss": loss, "z_loss": z_loss, "cross_ent_loss": loss - z_loss,
                  "accuracy": jnp.sum(correct) / jnp.maximum(total, 1e-8),
                  "item_nll": (loss - z_loss) * total / jnp.maximum(items, 1.0),
                  "num_tokens": total, "num_items": items}

  def loss_fn(self, params, batch: Batch, dropout_rng,
              trie: Optional[trie_walk.TrieArrays] = None) -> tuple[Array, dict[str, Array]]:
    """Dropout is on iff `dropout_rng` is given (T5X semantics); `trie` with `trie_softmax`."""
    if self.trie_softmax:
      if trie is None:
        raise ValueError("trie_softmax=True: loss_fn needs the item TrieArrays")
      return self.trie_loss(params, batch, dropout_rng, trie)
    return self.loss_from_logits(self._logits(params, batch, dropout_rng), batch)

  def eval_fn(self, params, batch: Batch, trie: Optional[trie_walk.TrieArrays] = None):
    return self.loss_fn(params, batch, None, trie)

  def trie_loss(self, params, batch: Batch, dropout_rng, trie: trie_walk.TrieArrays,
                input_embeddings: Optional[Array] = None) -> tuple[Array, dict[str, Array]]:
    """Mean NLL of the trie's choices at the R branch rows of the batch.

    Batch keys beside the token ones: `branch_rows` int32 [R] (flat index into B*L),
    `branch_nodes` [R] (trie node of the prefix), `branch_targets` [R] (target column in
    `trie.token_ids_U`), `branch_weights` [R] (0 pads), `num_items` [] (items in the batch).
    """
    rngs = {"dropout": dropout_rng} if dropout_rng is not None else None

    def project(module, tokens, valid, rows_R, ids_U):
      y_BxLxD = module.hidden(tokens, valid, input_embeddings_BxLxD=input_embeddings,
                              enable_dropout=rngs is not None)
      y_RxD = y_BxLxD.reshape(-1, y_BxLxD.shape[-1])[rows_R]
      return module.logits(y_RxD, module.output_kernel(ids_U))

    logits_RxU = self.module.apply(
        {"params": params}, batch["decoder_input_tokens"], batch["decoder_target_tokens"] > 0,
        batch["branch_rows"], trie.token_ids_U, method=project, rngs=rngs)
    mask_RxU = trie_walk.allowed_mask(trie.compact, batch["branch_nodes"])
    logp_RxU = jax.nn.log_softmax(jnp.where(mask_RxU, logits_RxU, -1e9))
    nll_R = -jnp.take_along_axis(logp_RxU, batch["branch_targets"][:, None], -1)[:, 0]
    w_R = batch["branch_weights"]
    total = jnp.sum(w_R * nll_R)
    count = jnp.maximum(jnp.sum(w_R), 1.0)
    correct = jnp.sum(w_R * (jnp.argmax(logp_RxU, -1) == batch["branch_targets"]))
    items = jnp.maximum(batch["num_items"], 1.0)
    loss = total / count
    return loss, {"loss": loss, "cross_ent_loss": loss, "accuracy": correct / count,
                  "item_nll": total / items, "num_tokens": count, "num_items": items}

  def score_batch(self, params, batch: Batch) -> Array:
    """Sum of weighted target log-probabilities per row, [B]."""
    logp_BxLxV = jax.nn.log_softmax(self._logits(params, batch).astype(jnp.float32))
    targets_BxL = batch["decoder_target_tokens"]
    tok_BxL = jnp.take_along_axis(logp_BxLxV, targets_BxL[..., None], -1)[..., 0]
    weights_BxL = batch.get("decoder_loss_weights", (targets_BxL > 0).astype(jnp.float32))
    return jnp.sum(tok_BxL * weights_BxL, axis=-1)

  def predict_topk(self, params, prompt_BxP: Array, valid_BxP: Array,
                   trie: trie_lib.TrieArrays, *, num_beams: int, max_decode_len: int,
                   excluded_items: Optional[Array] = None,
                   length_normalization: str = "hf", length_penalty: float = 1.0,
                   alpha: float = 0.0) -> tuple[Array, Array]:
    """(items_BxK, scores_BxK), best first; -1 for a slot without a finished item.

    Beam search over the trie after the prompt: step 0 feeds the EOS that ends the prompt's last
    item, so the first ID token comes from the position after it, as in training.
    """
    b = prompt_BxP.shape[0]
    memory = self.module.apply({"params": params}, prompt_BxP, valid_BxP,
                               method=self.module.prefill)
    cache = self.module.init_cache(b, max_decode_len + 1)
    kernel, search_kwargs = None, {}
    if self.trie_softmax:
      # Logits of the item tokens only, renormalised over the trie's children: exact.
      kernel = self.module.apply({"params": params}, trie.token_ids_U,
                                 method=self.module.output_kernel)
      search_kwargs = dict(column_token_ids=trie.token_ids_U, renormalize=True)
      length_normalization = "none"
    eos = self.eos_id

    def tokens_to_logits(state: beams.DecodingState):
      # The memory stays per example: a step groups the K beams of an example against it.
      token = jnp.where(state.cur_index == 0, eos, state.cur_token)
      logits, new_cache = self.module.apply(
          {"params": params}, token, memory, state.cache, state.cur_index,
          max_decode_len + 1, kernel, method=self.module.step)
      return logits.astype(jnp.float32), new_cache

    seqs_BxKxT, scores_BxK = beam_search.constrained_beam_search(
        jnp.zeros((b, max_decode_len), jnp.int32), cache, tokens_to_logits, eos,
        num_decodes=num_beams, alpha=alpha, max_decode_len=max_decode_len,
        trie=trie.compact if self.trie_softmax else trie, excluded_items=excluded_items,
        length_normalization=length_normalization, length_penalty=length_penalty,
        **search_kwargs)
    items_BxK = trie_lib.items_from_sequences(trie, seqs_BxKxT)
    items_BxK = jnp.where(scores_BxK > beam_search.NEG_INF, items_BxK, -1)
    return items_BxK[:, ::-1], scores_BxK[:, ::-1]


def make_topk_fn(model: DecoderOnlyModel, *, num_beams: int, max_decode_len: int, **kwargs):
  """jit(params, prompt_BxP, valid_BxP, trie_arrays) -> (items_BxK, scores_BxK) best first."""
  return jax.jit(functools.partial(_topk, model=model, num_beams=num_beams,
                                   max_decode_len=max_decode_len, **kwargs))


def _topk(params, prompt_BxP, valid_BxP, trie, *, model: DecoderOnlyModel, **kwargs):
  return model.predict_topk(params, prompt_BxP, valid_BxP, trie, **kwargs)
