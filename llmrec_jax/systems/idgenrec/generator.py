"""Runs a T5 ID generator with diverse beam search over many texts in fixed-shape jit batches.

`T5IdGenerator.candidate_fn(texts)` is the `uniqueness.CandidateFn` of the assignment: for the
pending keys of one escalation level it decodes their texts with HF-style group beam search
(`decoding.diverse`, G groups of 1 beam, the level's diversity penalty and lengths) and returns
the G decoded strings per key, pooled best first (HF's `num_return_sequences` order).

Shapes are fixed per run: every call pads to `batch_size` rows of `S` input tokens, the
diversity penalty is a traced scalar, so one compilation serves every level with the same
lengths (one per length round).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from llmrec_jax import models, network
from llmrec_jax.decoding import diverse
from llmrec_jax.indexing import text_tokens
from llmrec_jax.indexing.uniqueness import CandidateFn, EscalationLevel

PyTree = Any


@dataclasses.dataclass(frozen=True)
class GeneratorOptions:
  """Attributes:
    batch_size: B texts per compiled call (the last call of a level is padded).
    num_groups: G diverse-beam groups (official 10), each with `beams_per_group` beams.
    beams_per_group: Kg (official 1).
    num_return: candidates per text (official 10 = G * Kg).
    max_input_tokens: right-truncation of the input text, EOS kept (official 256).
    ban_unk: never generate <unk> (the official code allows it; it decodes to nothing useful).
    extractive: only emit tokens that occur in the text's own (truncated) input, plus EOS: IDs are
      then made of the item's own pieces (not the official behaviour, which is unconstrained).
    hf_semantics: the group search's hypothesis pools (`diverse.HfSemantics`): 'per_group'
      (newer transformers: each group returns its own best beams) or '4.26' (transformers
      4.26.0, which the official code pins: one pool shared by all groups).
  """
  batch_size: int = 256
  num_groups: int = 10
  beams_per_group: int = 1
  num_return: int = 10
  max_input_tokens: int = 256
  ban_unk: bool = False
  extractive: bool = False
  hf_semantics: str = "per_group"

  def __post_init__(self):
    diverse.HfSemantics(self.hf_semantics)  # fails loudly on a typo
    for name in ("batch_size", "num_groups", "beams_per_group", "num_return", "max_input_tokens"):
      if getattr(self, name) < 1:
        raise ValueError(f"GeneratorOptions.{name} must be >= 1, got {getattr(self, name)}")
    if self.num_return > self.num_groups * self.beams_per_group:
      raise ValueError(f"GeneratorOptions.num_return={self.num_return} > num_groups * beams_per_group")
    if self.max_input_tokens < 2:
      raise ValueError("GeneratorOptions.max_input_tokens must be >= 2 (room for EOS)")


def allowed_tokens(vocab_size: int, num_pieces: int, ban_unk: bool = False) -> np.ndarray:
  """bool [V]: tokens the generator may emit: real pieces but pad (0) (and <unk> (2) if banned);
  ids >= num_pieces (T5's extra ids, padding rows of the embedding) cannot be decoded."""
  allowed_V = np.arange(vocab_size) < num_pieces
  allowed_V[text_tokens.PAD_ID] = False
  if ban_unk:
    allowed_V[2] = False
  return allowed_V


def generate_batch(params: PyTree, inputs_BxS: jax.Array, diversity_penalty: jax.Array, *,
                   model: models.EncoderDecoderModel, allowed_V: np.ndarray, num_groups: int,
                   beams_per_group: int, num_return: int, min_decode_len: int, max_decode_len: int,
                   extractive: bool = False,
                   hf_semantics: str = "per_group") -> tuple[jax.Array, jax.Array]:
  """Diverse beam search for a batch (pure; jit with the keyword args bound).

  Args:
    params: generator params.
    inputs_BxS: int32 encoder tokens (0 = pad).
    diversity_penalty: float32 scalar (HF Hamming penalty).
    model: wrapper whose `predict_batch_with_aux` builds the cache and runs the search.
    allowed_V: bool [V] of emittable tokens.
    num_groups, beams_per_group, num_return: G, Kg, R (R <= G * Kg).
    min_decode_len, max_decode_len: `diverse.group_beam_search` lengths.
    extractive: also forbid tokens absent from each row's input (EOS stays allowed).
    hf_semantics: `diverse.group_beam_search`'s.
  Returns:
    (sequences_BxRxL int32, scores_BxR float32), best first; L = max_decode_len.
  """
  allowed_1xV = jnp.asarray(allowed_V)[None, :]
  b, v = inputs_BxS.shape[0], allowed_V.shape[0]
  if extractive:
    in_text_BxV = jnp.zeros((b, v), jnp.bool_).at[jnp.arange(b)[:, None], inputs_BxS].set(True)
    in_text_BxV = in_text_BxV.at[:, text_tokens.EOS_ID].set(True)
    # Beams of one row are adjacent (predict_batch_with_aux repeats each row G*Kg times).
    allowed_BKxV = jnp.repeat(in_text_BxV & allowed_1xV, num_groups * beams_per_group, axis=0)

  def mask_fn(decoding_state):
    del decoding_state
    if extractive:
      return allowed_BKxV
    # [1, V] broadcasts against [B*G*Kg, V] log-probs; XLA fuses it, nothing [BK, V] is stored.
    return allowed_1xV

  def decode_fn(inputs, cache, tokens_to_logits, eos_id, num_decodes, cache_offset=0,
                decode_rng=None, **kwargs):
    del num_decodes, decode_rng
    result = diverse.group_beam_search(
        inputs, cache, tokens_to_logits, eos_id, cache_offset=cache_offset, logits_mask_fn=mask_fn,
        num_groups=num_groups, beams_per_group=beams_per_group, hf_semantics=hf_semantics,
        **kwargs)
    seqs_BxRxL, scores_BxR, _ = diverse.best_first(result, num_return)
    return seqs_BxRxL, scores_BxR

  search_model = models.EncoderDecoderModel(model.module, decode_fn=decode_fn)
  batch = {"encoder_input_tokens": inputs_BxS,
           "decoder_input_tokens": jnp.zeros((inputs_BxS.shape[0], max_decode_len), jnp.int32)}
  seqs, aux = search_model.predict_batch_with_aux(
      params, batch, num_decodes=num_groups * beams_per_group, return_all_decodes=True,
      decoder_params=dict(diversity_penalty=diversity_penalty, min_decode_len=min_decode_len,
                          max_decode_len=max_decode_len))
  return seqs, aux["scores"]


class T5IdGenerator:
  """Holds a generator's params, tokenizer and compiled search functions.

  Args:
    config: the network config (dropout is ignored: decoding runs without it).
    params: its params (host or device arrays).
    tokenizer: `text_tokens.Tokenizer` of the generator's vocabulary.
    options: batch size, groups, input length.
    progress: tqdm bars (rate, ETA) per level.
  """

  def __init__(self, config: network.T5Config, params: PyTree, tokenizer: text_tokens.Tokenizer,
               options: GeneratorOptions = GeneratorOptions(), *, progress: bool = False):
    self.config = config
    self.params = jax.device_put(params)
    self.tokenizer = tokenizer
    self.options = options
    self.progress = progress
    self._model = models.EncoderDecoderModel(network.Transformer(config))
    pieces = text_tokens.num_pieces(tokenizer)
    if pieces > config.vocab_size:
      raise ValueError(f"tokenizer has {pieces} pieces but the generator's vocab_size is {config.vocab_size}")
    self._allowed_V = allowed_tokens(config.vocab_size, pieces, options.ban_unk)
    self._compiled: dict[tuple[int, int], Any] = {}

  def input_length(self, texts: Sequence[str]) -> int:
    """S for these texts: their longest tokenization, bucketed, at most `max_input_tokens`."""
    longest = int(text_tokens.token_lengths(texts, self.tokenizer).max()) if len(texts) else 2
    return text_tokens.bucket_length(longest, self.options.max_input_tokens)

  def _search_fn(self, level: EscalationLevel):
    key = (level.min_length, level.max_new_tokens)
    if key not in self._compiled:
      o = self.options
      self._compiled[key] = jax.jit(functools.partial(
          generate_batch, model=self._model, allowed_V=self._allowed_V, num_groups=o.num_groups,
          beams_per_group=o.beams_per_group, num_return=o.num_return,
          min_decode_len=level.min_length, max_decode_len=level.max_new_tokens, extractive=o.extractive,
          hf_semantics=o.hf_semantics))
    return self._compiled[key]

  def generate(self, inputs_NxS: np.ndarray, level: EscalationLevel) -> tuple[np.ndarray, np.ndarray]:
    """Candidates of N encoded texts at one level, in fixed-shape batches.

    Returns:
      (sequences_NxRxL int32, scores_NxR float32), best first.
    """
    fn = self._search_fn(level)
    bsz = self.options.batch_size
    n = inputs_NxS.shape[0]
    dp = jnp.float32(level.diversity_penalty)
    seqs, scores = [], []
    starts = range(0, n, bsz)
    if self.progress:
      import tqdm  # pylint: disable=g-import-not-at-top
      starts = tqdm.tqdm(starts, desc=f"level {level.index} (dp {level.diversity_penalty:g}, "
                         f"len {level.min_length}-{level.max_length})", unit="batch", mininterval=2.0)
    pending = None
    for start in starts:
      chunk = inputs_NxS[start:start + bsz]
      rows = chunk.shape[0]
      if rows < bsz:  # pad with copies of the first row (an all-pad row would be a degenerate input)
        chunk = np.concatenate([chunk, np.repeat(chunk[:1], bsz - rows, axis=0)], axis=0)
      out = fn(self.params, jnp.asarray(chunk), dp)
      if pending is not None:  # fetch one batch late so the next one is already dispatched
        seqs.append(np.asarray(pending[0][:pending[2]]))
        scores.append(np.asarray(pending[1][:pending[2]]))
      pending = (out[0], out[1], rows)
    if pending is not None:
      seqs.append(np.asarray(pending[0][:pending[2]]))
      scores.append(np.asarray(pending[1][:pending[2]]))
    if not seqs:
      length = level.max_new_tokens
      return np.zeros((0, self.options.num_return, length), np.int32), np.zeros((0, self.options.num_return),
                                                                                  np.float32)
    return np.concatenate(seqs), np.concatenate(scores)

  def decode(self, sequences_NxRxL: np.ndarray, scores_NxR: np.ndarray) -> list[list[str]]:
    """Texts of the candidates, best first; -inf-scored (empty) slots are dropped."""
    out = []
    for seqs_RxL, scores_R in zip(sequences_NxRxL, scores_NxR):
      out.append([text_tokens.decode_ids(s, self.tokenizer)
                  for s, sc in zip(seqs_RxL, scores_R) if np.isfinite(sc)])
    return out

  def candidate_fn(self, texts: Sequence[str]) -> CandidateFn:
    """The `uniqueness.CandidateFn` over `texts` (encoded once, S fixed for the whole run)."""
    inputs_NxS = text_tokens.encode_texts(texts, self.tokenizer, self.input_length(texts))

    def fn(keys_P: np.ndarray, level: EscalationLevel) -> list[list[str]]:
      seqs, scores = self.generate(inputs_NxS[keys_P], level)
      return self.decode(seqs, scores)

    return fn
