"""RQ-VAE: an MLP autoencoder whose latent is quantized into L codes per item (TIGER's semantic IDs).

  x_NxD -> encoder MLP (ReLU) -> z_NxZ -> L levels of residual quantization -> decoder MLP -> x_hat_NxD

Level l receives the residual r_l (r_0 = z), picks the code e_l = codebook_l[c_l] nearest to r_l in
squared Euclidean distance (ties: the lowest index) and passes r_{l+1} = r_l - sg[e_l] on. The
decoder reads z + sg[sum_l e_l - z]: the value of the sum of the codes, the gradient of z (the
straight-through estimator). The loss (TIGER's, every square a mean over the vector's entries,
then a mean over items):

  mean_D (x - x_hat)^2 + sum_l [ mean_Z (sg[r_l] - e_l)^2 + beta * mean_Z (r_l - sg[e_l])^2 ]

The codebook term moves the codes only, the commitment term the encoder (through r_l, the earlier
codes held fixed), the reconstruction term the encoder and the decoder.

Letters: N items (B in a batch), D input dim, Z latent dim, L levels, K codes per codebook.
The functions taking `params` alone (`encode_codes`, `last_level_distances`, ...) read the
architecture off the parameter shapes (`config_from_params`).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class RQVAEConfig:
  """Architecture and loss weight of an RQ-VAE (defaults: TIGER's)."""
  input_dim: int  # D, the content embedding size
  hidden_dims: tuple[int, ...] = (512, 256, 128)  # encoder widths; the decoder mirrors them
  latent_dim: int = 32  # Z
  num_levels: int = 3  # L, codes per item
  codebook_size: int = 256  # K, codes per level
  commitment_weight: float = 0.25  # beta

  def __post_init__(self):
    if isinstance(self.hidden_dims, list):
      object.__setattr__(self, "hidden_dims", tuple(self.hidden_dims))
    if not isinstance(self.hidden_dims, tuple) or any(
        not isinstance(h, int) or h < 1 for h in self.hidden_dims):
      raise ValueError(f"RQVAEConfig.hidden_dims must be a tuple of positive ints, got {self.hidden_dims!r}")
    for name in ("input_dim", "latent_dim", "num_levels", "codebook_size"):
      value = getattr(self, name)
      if not isinstance(value, int) or value < 1:
        raise ValueError(f"RQVAEConfig.{name} must be a positive int, got {value!r}")
    if not self.commitment_weight >= 0:
      raise ValueError(f"RQVAEConfig.commitment_weight must be >= 0, got {self.commitment_weight!r}")


class MLP(nn.Module):
  """Dense layers of the given widths, ReLU between them (none after the last)."""
  features: tuple[int, ...]

  @nn.compact
  def __call__(self, x):
    for i, width in enumerate(self.features):
      x = nn.Dense(width, name=f"dense_{i}")(x)
      if i < len(self.features) - 1:
        x = nn.relu(x)
    return x


@flax.struct.dataclass
class Quantized:
  """Residual quantization of latents.

  Attributes:
    codes_NxL: int32, the code picked at each level.
    chosen_LxNxZ: e_l, the picked codes (differentiable w.r.t. the codebooks).
    residuals_LxNxZ: r_l, the residual each level quantizes (r_0 = the latent).
  """
  codes_NxL: jax.Array
  chosen_LxNxZ: jax.Array
  residuals_LxNxZ: jax.Array


def squared_distances(residual_NxZ: jax.Array, codebook_KxZ: jax.Array) -> jax.Array:
  """[N, K] squared Euclidean distances, as sums of squared differences (no cancellation)."""
  diff_NxKxZ = residual_NxZ[:, None, :] - codebook_KxZ[None, :, :]
  return jnp.sum(jnp.square(diff_NxKxZ), axis=-1)


def nearest_codes(residual_NxZ: jax.Array, codebook_KxZ: jax.Array) -> jax.Array:
  """int32 [N]: the index of the nearest code (the lowest on ties); no gradient."""
  distances_NxK = squared_distances(jax.lax.stop_gradient(residual_NxZ), jax.lax.stop_gradient(codebook_KxZ))
  return jnp.argmin(distances_NxK, axis=-1).astype(jnp.int32)


def residual_quantize(latent_NxZ: jax.Array, codebooks: Sequence[jax.Array]) -> Quantized:
  """Level by level: pick the code nearest to the residual, subtract it (held fixed) from it."""
  residual_NxZ = latent_NxZ
  codes, chosen, residuals = [], [], []
  for codebook_KxZ in codebooks:
    codes_N = nearest_codes(residual_NxZ, codebook_KxZ)
    chosen_NxZ = codebook_KxZ[codes_N]
    codes.append(codes_N)
    chosen.append(chosen_NxZ)
    residuals.append(residual_NxZ)
    residual_NxZ = residual_NxZ - jax.lax.stop_gradient(chosen_NxZ)
  return Quantized(jnp.stack(codes, axis=1), jnp.stack(chosen), jnp.stack(residuals))


def straight_through(latent_NxZ: jax.Array, quantized_NxZ: jax.Array) -> jax.Array:
  """The value of `quantized_NxZ` with the gradient of `latent_NxZ`."""
  return latent_NxZ + jax.lax.stop_gradient(quantized_NxZ - latent_NxZ)


class RQVAE(nn.Module):
  """Encoder, L codebooks `codebook_l` [K, Z] (params) and decoder; see the module doc."""
  config: RQVAEConfig

  def setup(self):
    c = self.config
    self.encoder = MLP(c.hidden_dims + (c.latent_dim,))
    self.decoder = MLP(tuple(reversed(c.hidden_dims)) + (c.input_dim,))
    # N(0, 1) codes; training normally replaces them by k-means of the first batch's residuals.
    self.codebooks = [self.param(f"codebook_{l}", nn.initializers.normal(1.0), (c.codebook_size, c.latent_dim))
                      for l in range(c.num_levels)]

  def encode(self, x_NxD):
    return self.encoder(x_NxD)

  def decode(self, z_NxZ):
    return self.decoder(z_NxZ)

  def __call__(self, x_NxD) -> tuple[jax.Array, jax.Array, Quantized]:
    """Returns (x_hat_NxD, latent_NxZ, quantization of the latent)."""
    latent_NxZ = self.encode(x_NxD)
    q = residual_quantize(latent_NxZ, self.codebooks)
    x_hat_NxD = self.decode(straight_through(latent_NxZ, jnp.sum(q.chosen_LxNxZ, axis=0)))
    return x_hat_NxD, latent_NxZ, q


def init_params(config: RQVAEConfig, seed: int) -> Any:
  """Fresh parameters {"encoder", "decoder", "codebook_0", ...}."""
  return RQVAE(config).init(jax.random.key(seed), jnp.zeros((1, config.input_dim), jnp.float32))["params"]


def item_losses(params: Any, x_NxD: jax.Array, config: RQVAEConfig) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Per-item losses (see the module doc).

  Returns:
    reconstruction_N, quantization_N (sum over levels of codebook + beta * commitment), codes_NxL.
  """
  x_hat_NxD, _, q = RQVAE(config).apply({"params": params}, x_NxD)
  reconstruction_N = jnp.mean(jnp.square(x_hat_NxD - x_NxD), axis=-1)
  sg = jax.lax.stop_gradient
  codebook_LxN = jnp.mean(jnp.square(sg(q.residuals_LxNxZ) - q.chosen_LxNxZ), axis=-1)
  commitment_LxN = jnp.mean(jnp.square(q.residuals_LxNxZ - sg(q.chosen_LxNxZ)), axis=-1)
  quantization_N = jnp.sum(codebook_LxN + config.commitment_weight * commitment_LxN, axis=0)
  return reconstruction_N, quantization_N, q.codes_NxL


def rqvae_loss(params: Any, x_BxD: jax.Array,
               config: RQVAEConfig) -> tuple[jax.Array, tuple[dict[str, jax.Array], jax.Array]]:
  """Pure training loss.

  Returns:
    (loss, (metrics {"loss", "reconstruction", "quantization"}, codes_BxL int32)).
  """
  reconstruction_B, quantization_B, codes_BxL = item_losses(params, x_BxD, config)
  reconstruction, quantization = jnp.mean(reconstruction_B), jnp.mean(quantization_B)
  loss = reconstruction + quantization
  return loss, ({"loss": loss, "reconstruction": reconstruction, "quantization": quantization}, codes_BxL)


# ----------------------------------------------------------------------------- params-only API


def _dense_widths(mlp_params: Any) -> tuple[int, list[int]]:
  """(input width, output widths in layer order) of an `MLP`'s params."""
  kernels = [mlp_params[f"dense_{i}"]["kernel"] for i in range(len(mlp_params))]
  return kernels[0].shape[0], [k.shape[1] for k in kernels]


def codebooks_of(params: Any) -> list[jax.Array]:
  """[codebook_0, codebook_1, ...], each [K, Z]."""
  return [params[f"codebook_{l}"] for l in range(sum(k.startswith("codebook_") for k in params))]


def replace_codebooks(params: Any, codebooks: Sequence[Any]) -> dict:
  """A copy of `params` with codebook l replaced by `codebooks[l]` (same shapes)."""
  old = codebooks_of(params)
  if len(codebooks) != len(old):
    raise ValueError(f"{len(codebooks)} codebooks given, the params hold {len(old)}")
  out = dict(params)
  for l, (new, current) in enumerate(zip(codebooks, old)):
    if tuple(new.shape) != tuple(current.shape):
      raise ValueError(f"codebook_{l}: shape {tuple(new.shape)}, expected {tuple(current.shape)}")
    out[f"codebook_{l}"] = jnp.asarray(new, current.dtype)
  return out


def config_from_params(params: Any, commitment_weight: float = 0.25) -> RQVAEConfig:
  """The architecture the parameter shapes describe (the loss weight is not in them)."""
  input_dim, encoder_widths = _dense_widths(params["encoder"])
  codebooks = codebooks_of(params)
  return RQVAEConfig(input_dim=input_dim, hidden_dims=tuple(encoder_widths[:-1]), latent_dim=encoder_widths[-1],
                     num_levels=len(codebooks), codebook_size=codebooks[0].shape[0],
                     commitment_weight=commitment_weight)


@jax.jit
def encode_latent(params: Any, x_NxD: jax.Array) -> jax.Array:
  """[N, Z] encoder output."""
  return RQVAE(config_from_params(params)).apply({"params": params}, x_NxD, method=RQVAE.encode)


@jax.jit
def encode_residuals(params: Any, x_NxD: jax.Array) -> Quantized:
  """The residual quantization of the items' latents."""
  return residual_quantize(encode_latent(params, x_NxD), codebooks_of(params))


@jax.jit
def encode_codes(params: Any, x_NxD: jax.Array) -> jax.Array:
  """int32 [N, L]: each item's code at each level (its semantic ID before collision handling)."""
  return encode_residuals(params, x_NxD).codes_NxL


@jax.jit
def last_level_distances(params: Any, x_NxD: jax.Array) -> jax.Array:
  """[N, K] squared Euclidean distances of each item's last-level residual r_{L-1} (its latent
  minus its codes of levels 0..L-2) to every code of the last codebook."""
  q = encode_residuals(params, x_NxD)
  return squared_distances(q.residuals_LxNxZ[-1], codebooks_of(params)[-1])
