"""Batch-level encoder-decoder conversion: the features of `seqio.EncDecFeatureConverter(pack=False)`, faster.

SeqIO's converter pads and shifts every example with its own `tf.data` map calls; on a 2-core host
those per-example maps dominate the input pipeline once tokenization is cached. Here examples are
only shuffled one by one, then `padded_batch` pads a whole batch at once and the decoder inputs and
loss weights are computed with one vectorized op per batch. The output equals SeqIO's converter
followed by `batch` (tests/data/batching_test.py checks it) and has static shapes [B, S] / [B, T].
TensorFlow is imported inside the function. `shift_right` is the same decoder-input rule on
NumPy batches built on the host.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def shift_right(targets_BxT: np.ndarray, bos_id: int = 0) -> np.ndarray:
  """Decoder inputs of teacher forcing: BOS, then the targets without their last position."""
  out_BxT = np.full_like(targets_BxT, bos_id)
  out_BxT[:, 1:] = targets_BxT[:, :-1]
  return out_BxT


def pad_rows(rows: Sequence[Sequence[int]], length: int, fill: int = 0) -> np.ndarray:
  """int32 [len(rows), length]: each row's first `length` values, then `fill`."""
  out_BxL = np.full((len(rows), length), fill, np.int32)
  for i, r in enumerate(rows):
    r = list(r)[:length]
    out_BxL[i, :len(r)] = r
  return out_BxL


def decoder_features(targets_BxT: np.ndarray) -> dict[str, np.ndarray]:
  """The decoder keys of an encoder-decoder batch for padded targets (0 = padding)."""
  return {"decoder_input_tokens": shift_right(targets_BxT), "decoder_target_tokens": targets_BxT,
          "decoder_loss_weights": (targets_BxT > 0).astype(np.float32)}


def encdec_batches(ds, task_feature_lengths: Mapping[str, int], batch_size: int, *, drop_remainder: bool = True,
                   passthrough: Sequence[str] = (), bos_id: int = 0):
  """Tokenized {'inputs', 'targets'} examples -> batches of unpacked encoder-decoder features.

  Args:
    ds: examples with int32 1-D `inputs` / `targets` (EOS already appended, at most the given lengths,
      e.g. `Task.get_dataset(task_feature_lengths, ...)`), plus any `passthrough` features.
    task_feature_lengths: {'inputs': S, 'targets': T}.
    batch_size: B.
    drop_remainder: drop a last partial batch (keeps shapes static for jit).
    passthrough: extra features copied into the batch as they are (scalars -> [B], vectors padded).
    bos_id: first decoder input token (T5: 0 = pad).
  Returns:
    tf.data.Dataset of {'encoder_input_tokens' [B, S], 'decoder_target_tokens' [B, T],
    'decoder_input_tokens' [B, T], 'decoder_loss_weights' [B, T]} int32, plus `passthrough`.
  """
  import tensorflow as tf
  s_len, t_len = int(task_feature_lengths["inputs"]), int(task_feature_lengths["targets"])
  keys = ("inputs", "targets", *passthrough)

  def select(ex):
    out = {k: ex[k] for k in keys}
    out["inputs"] = tf.cast(out["inputs"][:s_len], tf.int32)  # defensive: the task already trims
    out["targets"] = tf.cast(out["targets"][:t_len], tf.int32)
    return out

  shapes = {k: ds.element_spec[k].shape for k in passthrough}
  padded_shapes = {"inputs": [s_len], "targets": [t_len], **{k: shapes[k] for k in passthrough}}
  batched = ds.map(select).padded_batch(batch_size, padded_shapes=padded_shapes, drop_remainder=drop_remainder)

  def convert(b):
    targets_BxT = b["targets"]
    bos_Bx1 = tf.fill([tf.shape(targets_BxT)[0], 1], tf.constant(bos_id, tf.int32))
    out = {
        "encoder_input_tokens": b["inputs"],
        "decoder_target_tokens": targets_BxT,
        "decoder_input_tokens": tf.concat([bos_Bx1, targets_BxT[:, :-1]], axis=1),
        "decoder_loss_weights": tf.cast(tf.not_equal(targets_BxT, 0), tf.int32),
    }
    out.update({k: b[k] for k in passthrough})
    return out

  return batched.map(convert, num_parallel_calls=tf.data.AUTOTUNE)
