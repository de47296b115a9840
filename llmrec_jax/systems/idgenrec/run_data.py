"""A run's datasets: one folder (or the built-in synthetic catalogue), or a MIXTURE of folders.

`train` resolves DATA_DIR (a path or a list of paths), checks a mixture before any work (each
folder needs item text: its items' textual IDs are written from it), loads the data, and for a
mixture builds the union catalogue (`data.mixtures.union`) and registers its SeqIO Tasks and
Mixture (`tasks/foundation.py`), whose rates draw each epoch's users.
"""
from __future__ import annotations

import hashlib
import os
from typing import Optional, Sequence

from llmrec_jax.data import mixtures, shared_paths, sources
from llmrec_jax.systems.idgenrec import components as idgenrec


def resolve_paths(data_dir: str | Sequence[str], vocab_path: Optional[str], template_set: str):
  """(DATA_DIRs as a list, vocabulary, templates): the gin files' '../shared/...' paths, valid
  from any directory (relative to the checkout); a prompt file (`template_set` may also be a
  name) made absolute for run_config.json."""
  template_set = shared_paths.resolve(template_set)
  if os.path.isfile(template_set):
    template_set = os.path.abspath(template_set)
  dirs = [data_dir] if isinstance(data_dir, str) else list(data_dir)
  if not dirs:
    raise ValueError("DATA_DIR is an empty list: give a dataset folder, or a list of them for a mixture")
  return [shared_paths.resolve(d) for d in dirs], shared_paths.resolve(vocab_path), template_set


def check_mixture(data_dirs: Sequence[str], rec_form: str, initial_ids: str) -> None:
  """Fails before any work when a mixture asks for what it cannot have, or a dataset of it has no
  item text (its textual IDs are written from it), naming the folder and the missing file."""
  if len(data_dirs) < 2:
    return
  if rec_form != "decoder_only":
    raise ValueError(f"a mixture of {len(data_dirs)} datasets trains the whole-stream recommender: "
                     f"set rec_form='decoder_only' (got {rec_form!r})")
  if initial_ids == "reference":
    raise ValueError("initial_ids='reference' reads one dataset's released IDs; a mixture needs IDs "
                     "written from item text ('bootstrap', or the fixed 'title')")
  for d in data_dirs:
    if d == idgenrec.SYNTHETIC:
      raise ValueError("a mixture lists dataset folders; 'synthetic' is not one (write it out first)")
    if sources.find_file(d, sources.P5_SEQUENCES) and not sources.find_file(d, sources.P5_ITEMS):
      from llmrec_jax.data.errors import DataError  # pylint: disable=g-import-not-at-top
      raise DataError(d, f"has no {sources.P5_ITEMS}[.gz] (item text): a mixture's datasets need it, "
                         "since their items' textual IDs are written from it")


def load_data(data_dirs: Sequence[str], *, synthetic_users: int, synthetic_items: int, seed: int,
               initial_ids: str):
  """(data, item texts, catalogues): one dataset ([] catalogues), or the union of a mixture's
  (`mixtures.union`) with each dataset's item text rendered by its own fields."""
  datasets = []
  for d in data_dirs:
    data = idgenrec.load_data(d, synthetic_users=synthetic_users, synthetic_items=synthetic_items,
                              seed=seed)
    idgenrec.check_item_text(data, d, initial_ids)
    if len(data_dirs) > 1:
      mixtures.check_item_text(data, d)
    datasets.append(data)
  if len(datasets) == 1:
    return datasets[0], idgenrec.item_texts(datasets[0]), []
  union, catalogues = mixtures.union(datasets, mixtures.unique_names(data_dirs, [x.name for x in datasets]))
  return union, [t for x in datasets for t in idgenrec.item_texts(x)], catalogues


def mixture(model_dir: str, data, catalogues, rate: mixtures.MixingRate, seed: int):
  """(catalogues, epoch -> users) of a mixture, from its registered SeqIO Mixture's rates; None
  for one dataset."""
  if not catalogues:
    return None
  from llmrec_jax.tasks import foundation  # pylint: disable=g-import-not-at-top
  name = "llmrec_mix_" + hashlib.sha1(os.path.abspath(model_dir).encode()).hexdigest()[:12]
  mixture = foundation.register(name, data, catalogues, rate)
  rates = mixtures.mixture_rates(mixture)
  return catalogues, lambda epoch: mixtures.epoch_users(catalogues, rates, seed=seed, epoch=epoch,
                                                        maximum=rate.maximum)


def absolute_data_dir(data_dir: str | Sequence[str]) -> str | list[str]:
  """DATA_DIR independent of the working directory (the built-in 'synthetic' as it is)."""
  if not isinstance(data_dir, str):
    return [absolute_data_dir(d) for d in data_dir]
  return data_dir if data_dir == idgenrec.SYNTHETIC else os.path.abspath(data_dir)
