"""A built-in toy seq2seq task (copy) for smoke tests, demos and benchmarks; no files needed."""
from __future__ import annotations

import numpy as np

from llmrec_jax.data.batching import shift_right

PAD_ID, EOS_ID, FIRST_TOKEN = 0, 1, 2


def copy_task_batch(rng: np.random.Generator, batch_size: int, max_len: int,
                    vocab_size: int) -> dict[str, np.ndarray]:
  """A batch in seqio `EncDecFeatureConverter` layout where the target copies the input.

  Inputs are random tokens in [2, vocab_size) of random length 1..max_len-1, then EOS, then 0s;
  the target is the same sequence. Decoder inputs are targets shifted right (BOS = 0).
  """
  if vocab_size <= FIRST_TOKEN or max_len < 2:
    raise ValueError(f"need vocab_size > 2 and max_len >= 2, got {vocab_size}, {max_len}")
  lengths_B = rng.integers(1, max_len, size=batch_size)
  tokens_BxL = rng.integers(FIRST_TOKEN, vocab_size, size=(batch_size, max_len))
  pos_L = np.arange(max_len)
  seq_BxL = np.where(pos_L[None, :] < lengths_B[:, None], tokens_BxL, PAD_ID)
  seq_BxL = np.where(pos_L[None, :] == lengths_B[:, None], EOS_ID, seq_BxL).astype(np.int32)
  return {
      "encoder_input_tokens": seq_BxL,
      "decoder_target_tokens": seq_BxL,
      "decoder_input_tokens": shift_right(seq_BxL),
      "decoder_loss_weights": (seq_BxL > 0).astype(np.float32),
  }

