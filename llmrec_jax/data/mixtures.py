"""Several datasets as one: the union catalogue and the SeqIO Mixture that sets their rates.

The foundation setting trains one recommender on several platforms. Here a mixture is:
  - `union(datasets)`: one `RecData` whose items and users are those of every dataset in order
    (raw ids prefixed `<dataset>/`, item indices offset), with a `Catalogue` per dataset saying
    which item and user indices are its own. Each dataset keeps its own catalogue for
    evaluation (decoding runs over one catalogue's items alone);
  - one SeqIO Task per dataset (`user_task`: each example is one user, `targets` = the user's
    item indices) and a `seqio.Mixture` of them with SeqIO's examples-proportional rate
    (`seqio.mixing_rate_num_examples`, `temperature` and `maximum` = the cap);
  - `epoch_users(...)`: the users of one training epoch drawn by those rates. An epoch holds
    sum(min(users, cap)) user streams, each dataset's share proportional to its rate; a
    dataset whose share exceeds its users repeats them (all of them, then a random rest), one
    whose share is smaller gets a fresh random subset every epoch. Temperature 1 without a cap
    gives every user exactly once.
No JAX here.
"""
from __future__ import annotations

import dataclasses
import functools
import pathlib
import re
from typing import Optional, Sequence

import numpy as np

from llmrec_jax.data.errors import DataError
from llmrec_jax.data.records import RecData

ID_SEP = "/"  # between a dataset's name and an item's or user's raw id in the union


@dataclasses.dataclass(frozen=True)
class Catalogue:
  """One dataset's share of a union: items [item_start, item_stop), users [user_start, user_stop)."""
  name: str
  item_start: int
  item_stop: int
  user_start: int
  user_stop: int

  @property
  def num_items(self) -> int:
    return self.item_stop - self.item_start

  @property
  def num_users(self) -> int:
    return self.user_stop - self.user_start


@dataclasses.dataclass(frozen=True)
class MixingRate:
  """SeqIO's examples-proportional rate (gin: `mixtures.MixingRate`): a dataset of n users has
  rate min(n, maximum) ** (1 / temperature); `maximum` None = no cap."""
  temperature: float = 1.0
  maximum: Optional[int] = None

  def __post_init__(self):
    if self.temperature <= 0:
      raise ValueError(f"MixingRate.temperature must be > 0, got {self.temperature}")
    if self.maximum is not None and self.maximum < 1:
      raise ValueError(f"MixingRate.maximum must be >= 1 or None, got {self.maximum}")

  def seqio_rate(self):
    """The rate function a `seqio.Mixture` calls on each task."""
    import seqio  # pylint: disable=g-import-not-at-top
    return functools.partial(seqio.mixing_rate_num_examples, maximum=self.maximum,
                             temperature=self.temperature)


def unique_names(data_dirs: Sequence[str], names: Sequence[str]) -> list[str]:
  """Dataset names for a mixture: the datasets' own, made unique with the folder's parent when
  two agree; an error when a folder is given twice."""
  resolved = [str(pathlib.Path(d).resolve()) for d in data_dirs]
  for i, d in enumerate(resolved):
    if d in resolved[:i]:
      raise DataError(data_dirs[i], "is given twice in the mixture's DATA_DIR list")
  out = []
  for name, d in zip(names, resolved):
    out.append(name if list(names).count(name) == 1 else f"{pathlib.Path(d).parent.name}_{name}")
  return out


def union(datasets: Sequence[RecData], names: Optional[Sequence[str]] = None
          ) -> tuple[RecData, list[Catalogue]]:
  """(one RecData of every dataset's users and items in order, a `Catalogue` per dataset)."""
  if not datasets:
    raise ValueError("a mixture needs at least one dataset")
  names = list(names or [d.name for d in datasets])
  user_ids, item_ids, meta, sequences, catalogues = [], [], [], [], []
  for name, data in zip(names, datasets):
    start, ustart = len(item_ids), len(user_ids)
    item_ids += [f"{name}{ID_SEP}{i}" for i in data.item_ids]
    user_ids += [f"{name}{ID_SEP}{u}" for u in data.user_ids]
    meta += list(data.item_meta)
    sequences += [(s + start).astype(np.int32) for s in data.sequences]
    catalogues.append(Catalogue(name, start, len(item_ids), ustart, len(user_ids)))
  joined = RecData("+".join(names), tuple(user_ids), tuple(item_ids), tuple(meta), tuple(sequences),
                   dropped_users=sum(d.dropped_users for d in datasets))
  return joined, catalogues


def catalogue_sequences(data: RecData, catalogue: Catalogue) -> list[np.ndarray]:
  """The catalogue's users' sequences in its own item indices (0 .. num_items - 1)."""
  return [s - catalogue.item_start for s in data.sequences[catalogue.user_start:catalogue.user_stop]]


def catalogue_data(data: RecData, catalogue: Catalogue) -> RecData:
  """The catalogue's dataset on its own (raw ids without the union's prefix)."""
  cut = len(catalogue.name) + len(ID_SEP)
  items = slice(catalogue.item_start, catalogue.item_stop)
  return RecData(catalogue.name, tuple(u[cut:] for u in data.user_ids[catalogue.user_start:catalogue.user_stop]),
                 tuple(i[cut:] for i in data.item_ids[items]), tuple(data.item_meta[items]),
                 tuple(s.astype(np.int32) for s in catalogue_sequences(data, catalogue)))


def check_item_text(data: RecData, data_dir: str, items_file: str = "items.jsonl") -> None:
  """DataError naming the folder when a mixture's dataset has no item text (no textual IDs)."""
  if not any(data.item_meta):
    raise DataError(pathlib.Path(data_dir),
                    f"has no item text ({items_file}[.gz] is missing or empty): a mixture's "
                    "datasets need it, since their items' textual IDs are written from it")


# ----------------------------------------------------------------------------- SeqIO
def user_task(name: str, data: RecData, vocab_size: Optional[int] = None):
  """A SeqIO Task over `data`'s users (split 'train': every user): `targets` = the user's item
  indices (int32, a pass-through vocabulary of `vocab_size` >= its items: one size for every task
  of a Mixture), `user_index` = the user. Registered by `register_mixture`."""
  import seqio  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  sequences = [np.asarray(s, np.int32) for s in data.sequences]

  def dataset_fn(split, shuffle_files, seed=None):
    del split, shuffle_files, seed
    def gen():
      for u, seq in enumerate(sequences):
        yield {"targets": seq, "user_index": np.int32(u)}
    return tf.data.Dataset.from_generator(gen, output_signature={
        "targets": tf.TensorSpec([None], tf.int32), "user_index": tf.TensorSpec([], tf.int32)})

  vocab = seqio.PassThroughVocabulary(size=max(vocab_size or data.num_items, 1))
  return seqio.Task(name, seqio.FunctionDataSource(dataset_fn, splits=["train"],
                                                   num_input_examples={"train": data.num_users}),
                    output_features={"targets": seqio.Feature(vocab, add_eos=False, dtype=tf.int32)},
                    preprocessors=[])


def register_mixture(name: str, tasks: dict[str, RecData], rate: MixingRate = MixingRate()):
  """Registers (replacing) one Task per dataset (`<name>:<dataset>`) and their Mixture `name`;
  returns the Mixture."""
  import seqio  # pylint: disable=g-import-not-at-top
  task_names, vocab_size = [], max(d.num_items for d in tasks.values())
  for dataset, data in tasks.items():
    task_name = f"{name}:{_task_safe(dataset)}"
    seqio.TaskRegistry.remove(task_name)
    seqio.TaskRegistry.add_provider(task_name, user_task(task_name, data, vocab_size))
    task_names.append(task_name)
  seqio.MixtureRegistry.remove(name)
  return seqio.MixtureRegistry.add(name, task_names, default_rate=rate.seqio_rate())


def _task_safe(name: str) -> str:
  """`name` in the characters SeqIO allows in a task name (others become '_')."""
  return re.sub(r"[^\w.:#]", "_", name)


def mixture_rates(mixture) -> list[float]:
  """The rate of each of the Mixture's tasks, in its task order."""
  return [float(mixture.get_rate(t)) for t in mixture.tasks]


# ----------------------------------------------------------------------------- epochs
def epoch_counts(num_users: Sequence[int], rates: Sequence[float], maximum: Optional[int] = None
                 ) -> np.ndarray:
  """Streams per dataset in one epoch: sum(min(n, maximum)) split in proportion to `rates`
  (largest remainders, so the counts add up exactly)."""
  n = np.asarray(num_users, np.int64)
  total = int(np.minimum(n, maximum).sum() if maximum else n.sum())
  share = np.asarray(rates, np.float64) / float(np.sum(rates)) * total
  counts = np.floor(share).astype(np.int64)
  rest = total - int(counts.sum())
  counts[np.argsort(-(share - counts), kind="stable")[:rest]] += 1
  return counts


def epoch_users(catalogues: Sequence[Catalogue], rates: Sequence[float], *, seed: int, epoch: int,
                maximum: Optional[int] = None) -> np.ndarray:
  """The union user indices of one epoch (sorted; a user may repeat), drawn per `epoch_counts`;
  the same for the same (seed, epoch)."""
  counts = epoch_counts([c.num_users for c in catalogues], rates, maximum)
  rng = np.random.default_rng([seed, epoch, 11])
  users = []
  for c, k in zip(catalogues, counts):
    whole, rest = divmod(int(k), c.num_users)
    picked = np.concatenate([np.tile(np.arange(c.num_users), whole),
                             rng.choice(c.num_users, rest, replace=False)])
    users.append(picked + c.user_start)
  return np.sort(np.concatenate(users)).astype(np.int64)
