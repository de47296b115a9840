"""`encdec_batches` equals SeqIO's EncDecFeatureConverter(pack=False) + batch, feature for feature."""
import numpy as np
import pytest

import seqio
import tensorflow as tf

from llmrec_jax.data.batching import encdec_batches  # noqa: E402


def _examples(n=11, seed=0):
  rng = np.random.default_rng(seed)
  rows = []
  for i in range(n):
    x = rng.integers(2, 50, size=rng.integers(1, 9)).astype(np.int32)
    y = rng.integers(2, 50, size=rng.integers(1, 5)).astype(np.int32)
    rows.append({"inputs": np.append(x, 1), "targets": np.append(y, 1), "user_index": np.int32(i)})
  return tf.data.Dataset.from_generator(
      lambda: iter(rows), output_signature={"inputs": tf.TensorSpec([None], tf.int32),
                                            "targets": tf.TensorSpec([None], tf.int32),
                                            "user_index": tf.TensorSpec([], tf.int32)})


@pytest.mark.parametrize("drop_remainder", [True, False])
def test_matches_seqio_converter(drop_remainder):
  lengths = {"inputs": 10, "targets": 6}
  ours = list(encdec_batches(_examples(), lengths, 4, drop_remainder=drop_remainder,
                             passthrough=("user_index",)).as_numpy_iterator())
  ref_ds = seqio.EncDecFeatureConverter(pack=False)(_examples().map(
      lambda e: {"inputs": e["inputs"], "targets": e["targets"]}), lengths)
  ref = list(ref_ds.batch(4, drop_remainder=drop_remainder).as_numpy_iterator())
  assert len(ours) == len(ref) == (2 if drop_remainder else 3)
  for a, b in zip(ours, ref):
    assert set(a) == set(b) | {"user_index"}
    for k in b:
      assert a[k].dtype == b[k].dtype == np.int32
      np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  np.testing.assert_array_equal(np.concatenate([a["user_index"] for a in ours]),
                                np.arange(8 if drop_remainder else 11))
