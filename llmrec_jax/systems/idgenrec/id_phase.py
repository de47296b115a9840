"""The IDGenRec ID phase: the generator learns through the frozen recommender via soft IDs.

For each history item of a prompt, the ID generator reads the item's text and yields per-step
token distributions `W_NxCxV`; mixing them with the recommender's embedding table gives soft ID
embeddings `W @ E` that are spliced into the prompt embeddings at that item's positions. The
recommender (frozen) then scores the target item's textual ID, and only the generator is updated.

Two generator modes:
  * TEACHER_FORCED (our default): the generator is run on the item's *current* ID tokens, so
    each history item occupies exactly the positions its ID has in a rec-phase prompt; with
    one-hot weights the spliced prompt equals the rec-phase prompt token for token.
  * FREE_RUNNING_GREEDY (the official code): greedy decoding for a fixed number of steps with
    non-differentiable argmax choices; gradients flow through the step scores only.
Mixing weights: SOFTMAX (ours: a convex mix of embeddings) or LOG_SOFTMAX (the official code
feeds log-probabilities, which are all negative, as mixture weights).
"""
from __future__ import annotations

import dataclasses
import enum
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp

from llmrec_jax import models

Array = jax.Array


class Mixing(str, enum.Enum):
  SOFTMAX = "SOFTMAX"
  LOG_SOFTMAX = "LOG_SOFTMAX"


class GeneratorMode(str, enum.Enum):
  TEACHER_FORCED = "TEACHER_FORCED"
  FREE_RUNNING_GREEDY = "FREE_RUNNING_GREEDY"


@dataclasses.dataclass(frozen=True)
class IdPhaseOptions:
  """Switches between our corrected defaults and the official code's behaviour.

  Attributes:
    mixing: SOFTMAX (ours) or LOG_SOFTMAX (official).
    generator_mode: TEACHER_FORCED (ours) or FREE_RUNNING_GREEDY (official).
    free_running_steps: soft tokens per history item in FREE_RUNNING_GREEDY (official: <= 9).
    rec_dropout: dropout in the frozen recommender during the ID phase (official: on).
  """
  mixing: Mixing = Mixing.SOFTMAX
  generator_mode: GeneratorMode = GeneratorMode.TEACHER_FORCED
  free_running_steps: int = 9
  rec_dropout: bool = False

  def __post_init__(self):
    object.__setattr__(self, "mixing", Mixing(self.mixing))
    object.__setattr__(self, "generator_mode", GeneratorMode(self.generator_mode))
    if self.free_running_steps < 1:
      raise ValueError(f"free_running_steps must be >= 1, got {self.free_running_steps}")


def mixing_weights(logits_NxCxV: Array, mixing: Mixing) -> Array:
  """Per-step mixture weights over the vocabulary."""
  logits_NxCxV = logits_NxCxV.astype(jnp.float32)
  if mixing is Mixing.SOFTMAX:
    return jax.nn.softmax(logits_NxCxV, axis=-1)
  return jax.nn.log_softmax(logits_NxCxV, axis=-1)


def soft_embeddings(weights_NxCxV: Array, embedding_VxD: Array) -> Array:
  """Soft ID embeddings `W @ E`: [N, C, D]. Rows of E beyond W's vocab are ignored."""
  v = weights_NxCxV.shape[-1]
  return jnp.einsum("ncv,vd->ncd", weights_NxCxV, embedding_VxD[:v].astype(jnp.float32))


def splice(token_emb_BxSxD: Array, soft_BxMxD: Array, slot_BxS: Array) -> Array:
  """Replaces prompt positions with soft vectors: position s takes `soft[b, slot[b, s]]` when
  `slot[b, s] >= 0` and keeps its token embedding otherwise."""
  idx_BxS = jnp.maximum(slot_BxS, 0)
  gathered_BxSxD = jnp.take_along_axis(soft_BxMxD, idx_BxS[..., None], axis=1)
  return jnp.where((slot_BxS >= 0)[..., None], gathered_BxSxD, token_emb_BxSxD.astype(jnp.float32))


def generator_logits_teacher_forced(gen_model: models.EncoderDecoderModel, gen_params: Any,
                                    text_NxL: Array, id_inputs_NxC: Array, id_targets_NxC: Array,
                                    dropout_rng: Optional[Array]) -> Array:
  """Generator logits when fed each item's current ID (teacher forcing): [N, C, V]."""
  return gen_model.compute_logits(gen_params, {
      "encoder_input_tokens": text_NxL, "decoder_input_tokens": id_inputs_NxC,
      "decoder_target_tokens": id_targets_NxC}, dropout_rng)


def generator_logits_free_running(gen_model: models.EncoderDecoderModel, gen_params: Any,
                                  text_NxL: Array, steps: int, eos_id: int = 1
                                  ) -> tuple[Array, Array]:
  """Greedy decoding that keeps gradients of every step's logits (official `generate_with_grad`).

  EOS is forbidden at the first step (HF `min_length=1`). Returns (logits_NxTxV, tokens_NxT).
  """
  module = gen_model.module
  encoded_NxLxD = module.apply({"params": gen_params}, text_NxL, enable_dropout=False,
                               method=module.encode)
  n = text_NxL.shape[0]
  ones_NxT = jnp.ones((n, steps), jnp.int32)

  def step(tokens_NxT, t):
    inputs_NxT = jnp.concatenate([jnp.zeros((n, 1), jnp.int32), tokens_NxT[:, :-1]], axis=1)
    logits_NxTxV = module.apply({"params": gen_params}, encoded_NxLxD, text_NxL, inputs_NxT,
                                ones_NxT, enable_dropout=False, method=module.decode)
    logits_NxV = logits_NxTxV[:, t].astype(jnp.float32)
    logits_NxV = jnp.where((t == 0) & (jnp.arange(logits_NxV.shape[-1]) == eos_id)[None, :],
                           -1e9, logits_NxV)
    tok_N = jnp.argmax(jax.lax.stop_gradient(logits_NxV), axis=-1).astype(jnp.int32)
    return tokens_NxT.at[:, t].set(tok_N), logits_NxV

  tokens_NxT, logits_TxNxV = jax.lax.scan(step, jnp.zeros((n, steps), jnp.int32), jnp.arange(steps))
  return jnp.swapaxes(logits_TxNxV, 0, 1), tokens_NxT


def id_phase_loss(gen_params: Any, batch: Mapping[str, Array], dropout_rng: Optional[Array],
                  rec_params: Any, *, gen_model: models.EncoderDecoderModel,
                  rec_model: models.EncoderDecoderModel, options: IdPhaseOptions,
                  punct_token_ids: Optional[Array] = None) -> tuple[Array, dict[str, Array]]:
  """Recommender loss on prompts with spliced soft IDs; differentiate w.r.t. `gen_params` only.

  The argument order fits `trainer.train_step(state, batch, rng, rec_params)`: the frozen
  recommender's params are a jit argument, not a compile-time constant.

  Batch (see `prompt_batches.PromptBatcher.build`): `item_text_tokens` [B*H, L];
  `item_id_inputs` / `item_id_targets` [B*H, C] (teacher forcing); `encoder_input_tokens` and
  `soft_slot` [B, S]; `decoder_input_tokens`, `decoder_target_tokens`, `decoder_loss_weights` [B, T].
  """
  rec_params = jax.lax.stop_gradient(rec_params)  # the recommender is frozen in this phase
  gen_rng = rec_rng = None
  if dropout_rng is not None:
    gen_rng, rec_rng = jax.random.split(dropout_rng)
  text_NxL = batch["item_text_tokens"]
  if options.generator_mode is GeneratorMode.TEACHER_FORCED:
    logits_NxCxV = generator_logits_teacher_forced(
        gen_model, gen_params, text_NxL, batch["item_id_inputs"], batch["item_id_targets"], gen_rng)
    keep_NxC = None
  else:
    logits_NxCxV, tokens_NxC = generator_logits_free_running(
        gen_model, gen_params, text_NxL, options.free_running_steps)
    keep_NxC = None
    if punct_token_ids is not None:  # official: zero the soft vectors of punctuation tokens
      keep_NxC = ~jnp.isin(tokens_NxC, punct_token_ids)
  embedding_VxD = rec_params["token_embedder"]["embedding"]
  soft_NxCxD = soft_embeddings(mixing_weights(logits_NxCxV, options.mixing), embedding_VxD)
  if keep_NxC is not None:
    soft_NxCxD = soft_NxCxD * keep_NxC[..., None]
  tokens_BxS = batch["encoder_input_tokens"]
  b = tokens_BxS.shape[0]
  n, c, d = soft_NxCxD.shape
  soft_BxMxD = soft_NxCxD.reshape(b, (n // b) * c, d)
  prompt_BxSxD = splice(embedding_VxD[tokens_BxS], soft_BxMxD, batch["soft_slot"])
  logits_BxTxV = rec_model.compute_logits(
      rec_params, batch, rec_rng if options.rec_dropout else None,
      encoder_input_embeddings=prompt_BxSxD)
  return rec_model.loss_from_logits(logits_BxTxV, batch)
