"""The IDGenRec ID phase: the generator learns through the frozen recommender via soft IDs.

For each history item of a prompt, the ID generator reads the item's text and yields per-step
token distributions `W_NxCxV`; mixing them with the recommender's embedding table gives soft ID
embeddings `W @ E` that are spliced into the prompt embeddings at that item's positions. The
recommender (frozen) then scores the target item's textual ID, and only the generator is updated.

Two generator modes:
  * TEACHER_FORCED (our default): the generator is run on the item's *current* ID tokens, so
    each history item occupies exactly the positions its ID has in a rec-phase prompt; with
    one-hot weights the spliced prompt equals the rec-phase prompt token for token.
  * FREE_RUNNING_GREEDY (the official code): greedy decoding with non-differentiable argmax
    choices; gradients flow through the step scores only. Its rules (`FreeRunningRules`):
    FIXED_STEPS, or HF426 = the official `generate_with_grad` under transformers 4.26.
Mixing weights: SOFTMAX (ours: a convex mix of embeddings) or LOG_SOFTMAX (the official code
feeds log-probabilities, which are all negative, as mixture weights).
"""
from __future__ import annotations

import dataclasses
import enum
from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp

from llmrec_jax import models

Array = jax.Array
NORM_EPS = 1e-6  # official attention mask over the spliced prompt: ||x_j|| > 1e-6


class Mixing(str, enum.Enum):
  SOFTMAX = "SOFTMAX"
  LOG_SOFTMAX = "LOG_SOFTMAX"


class GeneratorMode(str, enum.Enum):
  TEACHER_FORCED = "TEACHER_FORCED"
  FREE_RUNNING_GREEDY = "FREE_RUNNING_GREEDY"


class FreeRunningRules(str, enum.Enum):
  """How FREE_RUNNING_GREEDY decodes and splices.

  FIXED_STEPS: EOS is banned at the first step, every step feeds its argmax back, and every
    history item gets all `free_running_steps` soft tokens.
  HF426: transformers 4.26 `greedy_search` as the official code calls it (`max_length=10,
    min_length=1, renormalize_logits=True, output_scores=True`):
      - EOS is allowed at the first step (`MinLengthLogitsProcessor` bans it while
        `cur_len < min_length`, and cur_len counts the decoder start token: never);
      - the scores are `log_softmax(logits)` (`LogitNormalization`, the last processor) and the
        argmax is taken over them;
      - a finished sequence is fed pad (0) from the step after its EOS on, while its scores are
        still kept at every step;
      - the batch stops once every sequence has finished, or after `free_running_steps`: every
        item then gets T soft tokens, T = the step (1-based) at which the batch's last sequence
        finished (sequences = history rows `h < max_b n_b`, as the official collator pads
        histories to the batch's longest); the prompt is compacted to that layout
        (`compact_soft_steps`);
      - a soft token zeroed by the punctuation mask is masked out of attention (the official
        mask is ||x_j|| > 1e-6 over the spliced embeddings).
  """
  FIXED_STEPS = "FIXED_STEPS"
  HF426 = "HF426"


@dataclasses.dataclass(frozen=True)
class IdPhaseOptions:
  """Switches between our corrected defaults and the official code's behaviour.

  Attributes:
    mixing: SOFTMAX (ours) or LOG_SOFTMAX (official).
    generator_mode: TEACHER_FORCED (ours) or FREE_RUNNING_GREEDY (official).
    free_running_steps: F, the most soft tokens per history item in FREE_RUNNING_GREEDY
      (official: 9, i.e. `max_length=10` with the decoder start token).
    free_running_rules: FIXED_STEPS or HF426 (official), see `FreeRunningRules`.
    generator_dropout: FREE_RUNNING_GREEDY runs the generator with dropout (official: on, the
      generator is in train mode). TEACHER_FORCED always uses the step's dropout rng.
    rec_dropout: dropout in the frozen recommender during the ID phase (official: on).
  """
  mixing: Mixing = Mixing.SOFTMAX
  generator_mode: GeneratorMode = GeneratorMode.TEACHER_FORCED
  free_running_steps: int = 9
  free_running_rules: FreeRunningRules = FreeRunningRules.FIXED_STEPS
  generator_dropout: bool = False
  rec_dropout: bool = False

  def __post_init__(self):
    object.__setattr__(self, "mixing", Mixing(self.mixing))
    object.__setattr__(self, "generator_mode", GeneratorMode(self.generator_mode))
    object.__setattr__(self, "free_running_rules", FreeRunningRules(self.free_running_rules))
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


StepLogitsFn = Callable[[Array, Array], Array]  # (decoder inputs [N, F], step t) -> logits [N, V]


def generator_step_fn(gen_model: models.EncoderDecoderModel, gen_params: Any, text_NxL: Array,
                      steps: int, dropout_rng: Optional[Array] = None) -> StepLogitsFn:
  """The generator as a `StepLogitsFn`: the text is encoded once; step t runs the decoder on the
  F inputs and returns position t's logits (causal: only inputs 0..t matter).

  With `dropout_rng`, dropout is on: one key for the encoder and one for the decoder, the same
  at every step, so each position keeps the dropout mask it had when it was computed (as in a
  cached decoder, where a position's states are computed once).
  """
  module = gen_model.module
  enc_kw = dec_kw = {"enable_dropout": False}
  if dropout_rng is not None:
    enc_rng, dec_rng = jax.random.split(dropout_rng)
    enc_kw = {"enable_dropout": True, "rngs": {"dropout": enc_rng}}
    dec_kw = {"enable_dropout": True, "rngs": {"dropout": dec_rng}}
  encoded_NxLxD = module.apply({"params": gen_params}, text_NxL, method=module.encode, **enc_kw)
  ones_NxF = jnp.ones((text_NxL.shape[0], steps), jnp.int32)

  def step_logits(inputs_NxF: Array, t: Array) -> Array:
    logits_NxFxV = module.apply({"params": gen_params}, encoded_NxLxD, text_NxL, inputs_NxF,
                                ones_NxF, method=module.decode, **dec_kw)
    return logits_NxFxV[:, t].astype(jnp.float32)
  return step_logits


def greedy_decode(step_logits: StepLogitsFn, n: int, steps: int, rules: FreeRunningRules,
                  eos_id: int = 1, pad_id: int = 0) -> tuple[Array, Array, Array]:
  """Free-running greedy decoding of `steps` steps that keeps every step's logits (differentiable;
  the argmax choices are not). The decoder start token is 0.

  Returns (logits_NxFxV, tokens_NxF, finished_NxF): step t's logits (FIXED_STEPS: with EOS at
  -1e9 at step 0), the token appended at step t (HF426: pad once the row had finished, i.e. the
  official `sequences[:, 1:]`), and whether the row has emitted EOS by step t.
  """
  hf426 = FreeRunningRules(rules) is FreeRunningRules.HF426

  def step(carry, t):
    tokens_NxF, done_N = carry
    inputs_NxF = jnp.concatenate([jnp.zeros((n, 1), jnp.int32), tokens_NxF[:, :-1]], axis=1)
    logits_NxV = step_logits(inputs_NxF, t)
    if hf426:
      scores_NxV = jax.nn.log_softmax(jax.lax.stop_gradient(logits_NxV), axis=-1)
      tok_N = jnp.argmax(scores_NxV, axis=-1).astype(jnp.int32)
      tok_N = jnp.where(done_N, pad_id, tok_N)
    else:
      logits_NxV = jnp.where((t == 0) & (jnp.arange(logits_NxV.shape[-1]) == eos_id)[None, :],
                             -1e9, logits_NxV)
      tok_N = jnp.argmax(jax.lax.stop_gradient(logits_NxV), axis=-1).astype(jnp.int32)
    done_N = done_N | (tok_N == eos_id)
    return (tokens_NxF.at[:, t].set(tok_N), done_N), (logits_NxV, done_N)

  init = (jnp.zeros((n, steps), jnp.int32), jnp.zeros((n,), bool))
  (tokens_NxF, _), (logits_FxNxV, done_FxN) = jax.lax.scan(step, init, jnp.arange(steps))
  return jnp.swapaxes(logits_FxNxV, 0, 1), tokens_NxF, done_FxN.T


def generator_logits_free_running(gen_model: models.EncoderDecoderModel, gen_params: Any,
                                  text_NxL: Array, steps: int, eos_id: int = 1,
                                  rules: FreeRunningRules = FreeRunningRules.FIXED_STEPS,
                                  dropout_rng: Optional[Array] = None
                                  ) -> tuple[Array, Array, Array]:
  """The generator's free-running greedy decode (official `generate_with_grad`): see
  `greedy_decode`. Returns (logits_NxFxV, tokens_NxF, finished_NxF)."""
  step_logits = generator_step_fn(gen_model, gen_params, text_NxL, steps, dropout_rng)
  return greedy_decode(step_logits, text_NxL.shape[0], steps, rules, eos_id=eos_id)


def official_rows(history_BxH: Array) -> Array:
  """[B*H] bool: the generator rows the official batch holds (history rows h < max_b n_b: its
  collator pads every prompt's history to the batch's longest, not to H)."""
  n_B = jnp.sum(history_BxH >= 0, axis=1)
  h = history_BxH.shape[1]
  rows_BxH = jnp.broadcast_to(jnp.arange(h)[None, :] < jnp.max(n_B), history_BxH.shape)
  return rows_BxH.reshape(-1)


def stop_step(finished_NxF: Array, rows_N: Array) -> Array:
  """T: the number of steps HF's greedy loop runs, i.e. 1 + the first step at which every row of
  `rows_N` has finished, or F when some row never finishes."""
  all_done_F = jnp.all(finished_NxF | ~rows_N[:, None], axis=0)
  return jnp.where(jnp.any(all_done_F), jnp.argmax(all_done_F) + 1, finished_NxF.shape[1])


def compact_soft_steps(emb_BxSxD: Array, attend_BxS: Array, slot_BxS: Array, steps: int,
                       used: Array) -> tuple[Array, Array]:
  """The prompt with T = `used` soft tokens per item instead of F = `steps`.

  Soft positions of steps t >= T (slot = h * F + t) are removed and the rest shift left in
  order; the freed positions at the end are zero vectors and not attended. Positions that are
  not attended are zeroed too, so the result equals the prompt laid out with T slots per item.
  Returns (emb_BxSxD, attend_BxS).
  """
  drop_BxS = (slot_BxS >= 0) & (slot_BxS % steps >= used)
  order_BxS = jnp.argsort(drop_BxS.astype(jnp.int32), axis=1, stable=True)  # kept first
  emb_BxSxD = jnp.take_along_axis(emb_BxSxD, order_BxS[..., None], axis=1)
  attend_BxS = jnp.take_along_axis(attend_BxS, order_BxS, axis=1)
  kept_BxS = jnp.arange(slot_BxS.shape[1])[None, :] < jnp.sum(~drop_BxS, axis=1, keepdims=True)
  attend_BxS = attend_BxS & kept_BxS
  return jnp.where(attend_BxS[..., None], emb_BxSxD, 0.0), attend_BxS


def _hf426_prompt(batch: Mapping[str, Array], soft_NxFxD: Array, finished_NxF: Array,
                  embedding_VxD: Array) -> tuple[dict[str, Array], Array, Array]:
  """(batch whose `encoder_input_tokens` carry the attention mask, prompt embeddings, T) of the
  HF426 rules: splice, official mask (||x|| > 1e-6 on soft tokens), compaction to T steps."""
  tokens_BxS, slot_BxS = batch["encoder_input_tokens"], batch["soft_slot"]
  b = tokens_BxS.shape[0]
  n, f, d = soft_NxFxD.shape
  used = stop_step(finished_NxF, official_rows(batch["history_items"]))
  prompt_BxSxD = splice(embedding_VxD[tokens_BxS], soft_NxFxD.reshape(b, (n // b) * f, d), slot_BxS)
  norm_BxS = jnp.linalg.norm(jax.lax.stop_gradient(prompt_BxSxD), axis=-1)
  attend_BxS = jnp.where(slot_BxS >= 0, norm_BxS > NORM_EPS, tokens_BxS > 0)
  prompt_BxSxD, attend_BxS = compact_soft_steps(prompt_BxSxD, attend_BxS, slot_BxS, f, used)
  return {**batch, "encoder_input_tokens": attend_BxS.astype(jnp.int32)}, prompt_BxSxD, used


def id_phase_loss(gen_params: Any, batch: Mapping[str, Array], dropout_rng: Optional[Array],
                  rec_params: Any, *, gen_model: models.EncoderDecoderModel,
                  rec_model: models.EncoderDecoderModel, options: IdPhaseOptions,
                  punct_token_ids: Optional[Array] = None) -> tuple[Array, dict[str, Array]]:
  """Recommender loss on prompts with spliced soft IDs; differentiate w.r.t. `gen_params` only.

  The argument order fits `trainer.train_step(state, batch, rng, rec_params)`: the frozen
  recommender's params are a jit argument, not a compile-time constant.

  Batch (see `prompt_batches.PromptBatcher.build`): `item_text_tokens` [B*H, L];
  `item_id_inputs` / `item_id_targets` [B*H, C] (teacher forcing); `history_items` [B, H];
  `encoder_input_tokens` and `soft_slot` [B, S]; `decoder_input_tokens`,
  `decoder_target_tokens`, `decoder_loss_weights` [B, T]. With HF426 rules the metrics add
  `soft_steps` (T).
  """
  rec_params = jax.lax.stop_gradient(rec_params)  # the recommender is frozen in this phase
  gen_rng = rec_rng = None
  if dropout_rng is not None:
    gen_rng, rec_rng = jax.random.split(dropout_rng)
  text_NxL = batch["item_text_tokens"]
  hf426 = options.free_running_rules is FreeRunningRules.HF426
  if options.generator_mode is GeneratorMode.TEACHER_FORCED:
    logits_NxCxV = generator_logits_teacher_forced(
        gen_model, gen_params, text_NxL, batch["item_id_inputs"], batch["item_id_targets"], gen_rng)
    keep_NxC = None
  else:
    logits_NxCxV, tokens_NxC, finished_NxC = generator_logits_free_running(
        gen_model, gen_params, text_NxL, options.free_running_steps,
        rules=options.free_running_rules,
        dropout_rng=gen_rng if options.generator_dropout else None)
    keep_NxC = None
    if punct_token_ids is not None:  # official: zero the soft vectors of punctuation tokens
      keep_NxC = ~jnp.isin(tokens_NxC, punct_token_ids)
  embedding_VxD = rec_params["token_embedder"]["embedding"]
  soft_NxCxD = soft_embeddings(mixing_weights(logits_NxCxV, options.mixing), embedding_VxD)
  if keep_NxC is not None:
    soft_NxCxD = soft_NxCxD * keep_NxC[..., None]
  rec_rng = rec_rng if options.rec_dropout else None
  if options.generator_mode is GeneratorMode.FREE_RUNNING_GREEDY and hf426:
    rec_batch, prompt_BxSxD, used = _hf426_prompt(batch, soft_NxCxD, finished_NxC, embedding_VxD)
    logits_BxTxV = rec_model.compute_logits(rec_params, rec_batch, rec_rng,
                                            encoder_input_embeddings=prompt_BxSxD)
    loss, metrics = rec_model.loss_from_logits(logits_BxTxV, batch)
    return loss, {**metrics, "soft_steps": used.astype(jnp.float32)}
  tokens_BxS = batch["encoder_input_tokens"]
  b = tokens_BxS.shape[0]
  n, c, d = soft_NxCxD.shape
  soft_BxMxD = soft_NxCxD.reshape(b, (n // b) * c, d)
  prompt_BxSxD = splice(embedding_VxD[tokens_BxS], soft_BxMxD, batch["soft_slot"])
  logits_BxTxV = rec_model.compute_logits(rec_params, batch, rec_rng,
                                          encoder_input_embeddings=prompt_BxSxD)
  return rec_model.loss_from_logits(logits_BxTxV, batch)
