"""Exact log-probabilities of a token subset without materialising [N, V] logits.

A trie-constrained decode step only needs, per beam, the logits of the U tokens that occur in item
IDs and the log-sum-exp of all V logits (the softmax normaliser). `subset_logits_with_rest` gives
the U logits plus one "rest" column, the log-sum-exp of the other V - U logits, so a log_softmax
over the U + 1 columns equals the full-vocab log_softmax at the U tokens (Hugging Face's scores).

The rest column is computed by an online log-sum-exp over column chunks of the output kernel
(`lax.scan`): each step multiplies [N, D] by one [D, c] chunk and folds it into a running
(max, sum), so the largest temporary is [N, c] instead of [N, V] (at N = 2,560 beams and
V = 32,128 the full logits are 329 MB per step, written and read back from memory).

Shapes: N rows (beams), D model width, V vocab, U subset, C chunks of c columns (C * c >= V - U).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array

DEFAULT_CHUNK = 2048


class SplitKernel(NamedTuple):
  """The output kernel split into subset columns and chunked rest columns (see `split_kernel`)."""
  subset_DxU: Array
  rest_CxDxc: Array
  rest_bias_Cxc: Array  # 0 for real columns, -inf for the padding of the last chunk


def split_kernel(kernel_DxV: Array, token_ids_U: Array, chunk: int = DEFAULT_CHUNK) -> SplitKernel:
  """Gathers the subset columns and the other columns (in chunks of `chunk`) of `kernel_DxV`.

  `token_ids_U` must be distinct and in [0, V); it may be traced (U is static). Done once per
  batch, outside the decode loop.
  """
  d, v = kernel_DxV.shape
  u = token_ids_U.shape[0]
  if chunk < 1:
    raise ValueError(f"chunk must be >= 1, got {chunk}")
  subset_DxU = jnp.take(kernel_DxV, token_ids_U, axis=1)
  r = v - u  # with r = 0 one all-padding column makes the rest column -inf
  c = max(1, min(chunk, r))
  num_chunks = max(1, -(-r // c))
  in_subset_V = jnp.zeros((v,), jnp.bool_).at[token_ids_U].set(True)
  rest_R = jnp.nonzero(~in_subset_V, size=num_chunks * c, fill_value=0)[0]
  real_R = jnp.arange(num_chunks * c) < r
  rest_CxDxc = jnp.take(kernel_DxV, rest_R, axis=1).reshape(d, num_chunks, c).transpose(1, 0, 2)
  rest_bias_Cxc = jnp.where(real_R, 0.0, -jnp.inf).astype(jnp.float32).reshape(num_chunks, c)
  return SplitKernel(subset_DxU, rest_CxDxc, rest_bias_Cxc)


def chunked_logsumexp(y_NxD: Array, rest_CxDxc: Array, rest_bias_Cxc: Array,
                      scale: float = 1.0) -> Array:
  """[N]: logsumexp over all columns of (y @ kernel) * scale + bias, one chunk at a time."""
  y_NxD = y_NxD.astype(jnp.float32)
  n = y_NxD.shape[0]

  def fold(carry, chunk):
    m_N, s_N = carry
    k_Dxc, b_c = chunk
    z_Nxc = jnp.dot(y_NxD, k_Dxc.astype(jnp.float32)) * scale + b_c[None, :]
    m_new_N = jnp.maximum(m_N, jnp.max(z_Nxc, axis=-1))
    s_N = s_N * jnp.exp(m_N - m_new_N) + jnp.sum(jnp.exp(z_Nxc - m_new_N[:, None]), axis=-1)
    return (m_new_N, s_N), None

  # A finite start keeps exp(m - m_new) defined; a row whose columns are all -inf ends at -inf.
  init = (jnp.full((n,), jnp.finfo(jnp.float32).min), jnp.zeros((n,), jnp.float32))
  (m_N, s_N), _ = jax.lax.scan(fold, init, (rest_CxDxc, rest_bias_Cxc))
  return jnp.where(s_N > 0, m_N + jnp.log(s_N), -jnp.inf)


def subset_logits_with_rest(y_NxD: Array, kernel: SplitKernel, scale: float = 1.0) -> Array:
  """[N, U + 1]: the subset logits (y @ subset_DxU) * scale and, last, the rest column."""
  y_NxD = y_NxD.astype(jnp.float32)
  subset_NxU = jnp.dot(y_NxD, kernel.subset_DxU.astype(jnp.float32)) * scale
  rest_N = chunked_logsumexp(y_NxD, kernel.rest_CxDxc, kernel.rest_bias_Cxc, scale)
  return jnp.concatenate([subset_NxU, rest_N[:, None]], axis=1)
