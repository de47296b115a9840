"""The foundation setting's SeqIO registrations: one Task per dataset of a mixture, and the Mixture.

`llmrec_jax.train` calls `register` for a run whose DATA_DIR is a list of dataset folders (the
folders come from gin); each Task's examples are one dataset's users (`data.mixtures.user_task`)
and the Mixture's examples-proportional rates (`mixtures.MixingRate`: temperature, cap) set how
many of each dataset's users every training epoch draws. Inspect one with
`seqio.get_mixture_or_task(name).get_dataset(split='train', sequence_length=None)`.
"""
from __future__ import annotations

from typing import Sequence

from llmrec_jax.data import mixtures
from llmrec_jax.data.records import RecData


def register(name: str, data: RecData, catalogues: Sequence[mixtures.Catalogue],
             rate: mixtures.MixingRate = mixtures.MixingRate()):
  """Registers (replacing) the Tasks `<name>/<dataset>` of the union `data` and the Mixture `name`."""
  return mixtures.register_mixture(
      name, {c.name: mixtures.catalogue_data(data, c) for c in catalogues}, rate)
