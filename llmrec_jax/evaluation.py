"""Full-ranking evaluation of a generative recommender: trie-constrained top-K decoding.

For every (history, target) example the recommender decodes K item IDs under a prefix-trie
mask over all items (so each decode is a real item), and the target's position among them gives
HR@k / NDCG@k (leave-one-out, one target per user). Optionally each user's seen items are
excluded at the trie leaves.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Iterable, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from llmrec_jax import models
from llmrec_jax.decoding import beam_search, trie as trie_lib
from llmrec_jax.metrics import ranking


def build_item_trie(id_tokens: Iterable[list[int]], *, eos_id: int = 1, vocab_size: Optional[int] = None,
                    source: str = "<current item IDs>") -> trie_lib.ItemTrie:
  """Trie over every item's ID tokens + EOS; item index = position in `id_tokens`."""
  return trie_lib.ItemTrie.from_sequences([list(t) + [eos_id] for t in id_tokens], eos_id=eos_id,
                                          vocab_size=vocab_size, source=source)


@dataclasses.dataclass(frozen=True)
class DecodeOptions:
  """Constrained decoding options. Defaults reproduce the official IDGenRec evaluation
  (HF beam search, 10 beams, score = sum log p / length).

  `output_vocab` (a `models.OutputVocab` name) sets which logits each step computes:
  'subset_exact' (default) projects onto the full vocab but masks, normalises and ranks only the
  trie's tokens plus one rest-of-vocab column: scores equal the full-vocab path's (HF's
  log_softmax over all V, then the trie mask) up to float rounding. 'subset' projects onto the
  trie's tokens only (cheaper output layer) and normalises over them: an approximation of the
  official scores whose rankings may differ. 'full' is the plain full-vocab path.
  """
  num_beams: int = 10
  length_normalization: str = "hf"
  length_penalty: float = 1.0
  alpha: float = 0.0
  ks: tuple[int, ...] = (5, 10)
  output_vocab: str = "subset_exact"

  def __post_init__(self):
    if max(self.ks) > self.num_beams:
      raise ValueError(f"metrics @{max(self.ks)} need num_beams >= {max(self.ks)}, got {self.num_beams}")
    models.OutputVocab(self.output_vocab)  # fails loudly on a typo


def make_topk_fn(model: models.EncoderDecoderModel, options: DecodeOptions) -> Callable[..., Any]:
  """jit(params, batch, trie_arrays) -> (items_BxK best first, scores_BxK best first).

  `trie_arrays` is `ItemTrie.arrays` (full vocab); the subset output modes use its `compact`
  view and `token_ids_U` themselves.
  """
  decode_fn = functools.partial(
      beam_search.constrained_beam_search, length_normalization=options.length_normalization,
      length_penalty=options.length_penalty)
  m = models.EncoderDecoderModel(model.module, decode_fn=decode_fn,
                                 output_vocabulary=model.output_vocabulary,
                                 output_rest_chunk=model.output_rest_chunk)
  output_vocab = models.OutputVocab(options.output_vocab)

  def topk(params, batch, trie_arrays):
    subset = {}
    search_trie = trie_arrays
    if output_vocab != models.OutputVocab.FULL:
      subset = {"output_token_ids": trie_arrays.token_ids_U, "output_vocab": output_vocab}
      search_trie = trie_arrays.compact
    decodes_BxKxT, aux = m.predict_batch_with_aux(
        params, batch, return_all_decodes=True, num_decodes=options.num_beams,
        decoder_params={"trie": search_trie, "alpha": options.alpha}, **subset)
    scores_BxK = aux["scores"]
    items_BxK = trie_lib.items_from_sequences(trie_arrays, decodes_BxKxT)
    items_BxK = jnp.where(scores_BxK > beam_search.NEG_INF, items_BxK, -1)
    return items_BxK[:, ::-1], scores_BxK[:, ::-1]

  return jax.jit(topk)


def evaluate(topk_fn: Callable[..., Any], params: Any, trie: trie_lib.ItemTrie,
             batches: Iterable[Mapping[str, np.ndarray]], targets_E: np.ndarray, *,
             ks: tuple[int, ...] = (5, 10), num_batches: Optional[int] = None,
             desc: str = "evaluate") -> tuple[dict[str, float], np.ndarray]:
  """Runs `topk_fn` over `batches` (padded to a fixed batch size; rows beyond the targets are
  dropped) and returns (metrics, top-K item indices [E, K])."""
  arrays = trie.arrays
  tops = []
  for batch in tqdm.tqdm(batches, total=num_batches, desc=desc, unit="batch", leave=False):
    items_BxK, _ = topk_fn(params, {k: jnp.asarray(v) for k, v in batch.items()}, arrays)
    tops.append(np.asarray(items_BxK))
  topk_ExK = np.concatenate(tops)[:len(targets_E)]
  ranks_E = ranking.ranks_from_topk(topk_ExK, np.asarray(targets_E))
  return ranking.ranking_metrics(ranks_E, ks), topk_ExK
