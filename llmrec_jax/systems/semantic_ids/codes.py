"""Semantic IDs of a catalogue: item embeddings -> RQ-VAE codes -> unique code tuples.

TIGER (Rajput et al., 2023) and LC-Rec (Zheng et al., 2024) name an item by the codes a
residual-quantizing autoencoder (`quantization.rqvae`) gives its content embedding: items with
similar content share code prefixes, so the recommender's choices at the first levels are between
groups of similar items. Two items can get the same tuple; the collision schemes
(`quantization.collisions`) make every tuple unique:
  - 'tiger': TIGER's extra level (the item's index within its group of identical tuples);
  - 'lcrec': LC-Rec's uniform semantic mapping (the colliding items' last-level codes are
    reassigned by a Sinkhorn-Knopp plan so no two items of a prefix share one).

Embedding sources (`SemanticIds.embeddings`): 'glove' (GloVe 6B 50-d pooled over title, brand and
categories: `data.item_embeddings`), 'sasrec' (the item table of a SASRec trained on the training
items: collaborative, not content), 'npy' (a file the user supplies, e.g. Sentence-T5 vectors as
TIGER uses; checked against the catalogue before any work).
"""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Optional

import numpy as np

from llmrec_jax.data.records import RecData
from llmrec_jax.quantization import collisions, rqvae, rqvae_training

log = logging.getLogger(__name__)

EMBEDDINGS = ("glove", "sasrec", "npy")
COLLISIONS = ("tiger", "lcrec")


@dataclasses.dataclass(frozen=True)
class SemanticIds:
  """How a run's semantic IDs are made (gin `semantic_ids.SemanticIds`; TIGER's sizes by default).

  Attributes:
    embeddings: 'glove', 'sasrec' or 'npy' (see the module doc).
    pooling: GloVe pooling over an item's words, 'mean' or 'tfidf'.
    embeddings_file: the `.npy` of `embeddings='npy'` ([num_items, D], item-index order).
    sasrec_epochs: epochs of the SASRec whose item table `embeddings='sasrec'` quantizes.
    collisions: 'tiger' (an extra level) or 'lcrec' (uniform last-level mapping).
    num_levels, codebook_size, latent_dim, hidden_dims, commitment_weight: the RQ-VAE.
    rqvae_epochs, rqvae_batch_size, rqvae_lr: its training.
    user_tokens: TIGER's hashed user token buckets (0: none).
    seed: RQ-VAE init, k-means and batch order.
  """
  embeddings: str = "glove"
  pooling: str = "mean"
  embeddings_file: Optional[str] = None
  sasrec_epochs: int = 10
  collisions: str = "tiger"
  num_levels: int = 3
  codebook_size: int = 256
  latent_dim: int = 32
  hidden_dims: tuple[int, ...] = (512, 256, 128)
  commitment_weight: float = 0.25
  rqvae_epochs: int = 200
  rqvae_batch_size: int = 1024
  rqvae_lr: float = 1e-3
  user_tokens: int = 0
  seed: int = 0

  def __post_init__(self):
    if self.embeddings not in EMBEDDINGS:
      raise ValueError(f"SemanticIds.embeddings={self.embeddings!r}: use one of {EMBEDDINGS}")
    if self.collisions not in COLLISIONS:
      raise ValueError(f"SemanticIds.collisions={self.collisions!r}: use one of {COLLISIONS}")
    if (self.embeddings == "npy") != (self.embeddings_file is not None):
      raise ValueError("SemanticIds.embeddings_file is the file of embeddings='npy' (give both or "
                       f"neither); got embeddings={self.embeddings!r}, "
                       f"embeddings_file={self.embeddings_file!r}")
    object.__setattr__(self, "hidden_dims", tuple(self.hidden_dims))


def item_embeddings(data: RecData, config: SemanticIds) -> np.ndarray:
  """float32 [N, D]: the content (or collaborative) vector of every item, per `config`."""
  from llmrec_jax.data import item_embeddings as emb  # pylint: disable=g-import-not-at-top
  if config.embeddings == "npy":
    return emb.load_npy(config.embeddings_file, data.num_items)
  if config.embeddings == "glove":
    return emb.cached_glove_embeddings(data, config.pooling)
  from llmrec_jax.systems.sasrec import embeddings as sasrec_emb  # pylint: disable=g-import-not-at-top
  key = emb.embedding_key("sasrec", data, epochs=config.sasrec_epochs, seed=config.seed)
  return emb.cached(key, lambda: sasrec_emb.collaborative_embeddings(
      data, epochs=config.sasrec_epochs, seed=config.seed))


def quantize(x_NxD: np.ndarray, config: SemanticIds, log_fn=None) -> tuple[np.ndarray, dict[str, Any]]:
  """(unique codes [N, L or L + 1], stats): the RQ-VAE trained on `x_NxD`, its codes, and the
  collision scheme's fix. Stats: the RQ-VAE's (losses, utilisation, collision rate before the
  fix), the level sizes, and the collision rate after it (0)."""
  model_config = rqvae.RQVAEConfig(
      input_dim=x_NxD.shape[1], hidden_dims=config.hidden_dims, latent_dim=config.latent_dim,
      num_levels=config.num_levels, codebook_size=config.codebook_size,
      commitment_weight=config.commitment_weight)
  train_config = rqvae_training.RQVAETrainConfig(
      epochs=config.rqvae_epochs, batch_size=config.rqvae_batch_size,
      learning_rate=config.rqvae_lr, seed=config.seed)
  start = time.time()
  record_fn = None if log_fn is None else (lambda step, m: log_fn({"step": step, **m}))
  params, stats = rqvae_training.train_rqvae(x_NxD, model_config, train_config, log_fn=record_fn)
  codes_NxL = np.asarray(rqvae.encode_codes(params, x_NxD))
  level_sizes = [config.codebook_size] * config.num_levels
  if config.collisions == "tiger":
    codes_NxL, extra = collisions.tiger_extra_level(codes_NxL)
    level_sizes.append(int(extra))
  else:  # LC-Rec's mapping at the last level; a prefix with more than K items climbs a level
    distances_NxK = np.asarray(rqvae.last_level_distances(params, x_NxD))
    codes_NxL = collisions.lcrec_unique(codes_NxL, [None] * (config.num_levels - 1) + [distances_NxK],
                                        codebook_sizes=level_sizes)
  stats = {**_plain(stats), "level_sizes": level_sizes, "seconds": round(time.time() - start, 1),
           "collision_rate_after": float(collisions.collision_rate(codes_NxL))}
  if stats["collision_rate_after"] > 0:
    raise AssertionError(f"{config.collisions}: {stats['collision_rate_after']:.4f} of items still "
                         "share a code tuple")
  return codes_NxL.astype(np.int64), stats


def _plain(stats: dict[str, Any]) -> dict[str, Any]:
  """`stats` with numpy scalars and arrays as JSON-ready Python values."""
  out = {}
  for k, v in stats.items():
    if isinstance(v, np.ndarray):
      v = v.tolist()
    elif isinstance(v, np.generic):
      v = v.item()
    elif isinstance(v, (list, tuple)):
      v = [x.item() if isinstance(x, np.generic) else x for x in v]
    out[k] = v
  return out
