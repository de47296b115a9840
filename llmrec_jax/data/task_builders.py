"""SeqIO tasks for generative recommendation: (dataset, ID tables, templates, split) -> prompt / textual ID.

One `RecExamples` object per task renders its split inside the `FunctionDataSource` dataset_fn, reading
the ID tables from an `IdProvider` at that moment; IDGenRec regenerates IDs between training phases
in one process, so `provider.set(item=new_table)` changes every dataset built afterwards.

Task kinds (`TaskKind`):
  rec     train: every train position x `sample_num` templates sampled from `templates.train` (seeded);
          validation / test: template 0.
  unseen  as rec, but validation / test use the held-out `templates.unseen[0]`.
  id      the ID-phase data: history = plain text of the last `max_his // 2` items, plus
          `history_indices` for splicing soft IDs (train, validation and test as for rec).
Every example also carries `user_index`, `target_index`, `template_id` (int32 scalars). They survive
feature conversion with `passthrough_converter()` (unpacked); Mixtures keep only inputs / targets.
"""
from __future__ import annotations

import dataclasses
import enum
import functools
import logging
from typing import Callable, Sequence

import numpy as np

from llmrec_jax.data import item_catalogues, preprocessors, seqio_metrics
from llmrec_jax.data.id_tables import IdKind, IdTable
from llmrec_jax.data.item_text import render_item_text
from llmrec_jax.data.prompts import HISTORY_SEP, TemplateSet, sample_template_ids
from llmrec_jax.data.records import RecData
from llmrec_jax.data.splits import LooSplit, leave_one_out

log = logging.getLogger(__name__)

# SeqIO split name -> leave_one_out key.
SPLITS = {"train": "train", "validation": "valid", "test": "test"}
PASSTHROUGH_SCALARS = ("user_index", "target_index", "template_id")


class TaskKind(str, enum.Enum):
  REC = "rec"
  UNSEEN = "unseen"
  ID = "id"


class IdProvider:
  """The current item and user ID tables; mutable on purpose (tasks read it at dataset-build time)."""

  def __init__(self, item: IdTable, user: IdTable):
    self._item = self._user = None
    self.version = 0
    self.set(item=item, user=user)

  @property
  def item(self) -> IdTable:
    return self._item

  @property
  def user(self) -> IdTable:
    return self._user

  def set(self, *, item: IdTable | None = None, user: IdTable | None = None) -> None:
    """Replaces either table; datasets built from now on use them (already built ones do not change)."""
    for table, kind in ((item, IdKind.ITEM), (user, IdKind.USER)):
      if table is not None and table.kind != kind.value:
        raise ValueError(f"IdProvider: expected a {kind.value} table, got a {table.kind} table")
    if item is not None:
      item.validate_unique()  # a shared ID would make decoding ambiguous
      self._item = item
    if user is not None:
      self._user = user
    self.version += 1


def title_id_tables(data: RecData) -> tuple[IdTable, IdTable]:
  """Simple phase-0 tables for data without released IDs (synthetic, demos): not an ID scheme.

  Item ID = normalised title (`normalize_id`), made unique by appending the item index on a clash
  (or used alone when the item has no title); user ID = "user " + normalised raw user id.
  """
  from llmrec_jax.data.id_tables import normalize_id
  items, seen = {}, set()
  for i, (raw, meta) in enumerate(zip(data.item_ids, data.item_meta)):
    text = normalize_id(str(meta.get("title", ""))) or f"item {i}"
    if text in seen:
      text = f"{text} {i}"
    seen.add(text)
    items[raw] = text
  users = {raw: f"user {normalize_id(raw)}".strip() for raw in data.user_ids}
  return IdTable(kind="item", phase=0, ids=items), IdTable(kind="user", phase=0, ids=users)


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """How a task renders its examples (see the module docstring)."""
  templates: TemplateSet
  kind: TaskKind = TaskKind.REC
  sample_num: int = 3
  max_his: int = 20
  seed: int = 0
  sep: str = HISTORY_SEP
  item_text_fields: tuple[str, ...] = ("title", "brand", "categories")
  item_text_max_words: int = 64

  def __post_init__(self):
    object.__setattr__(self, "kind", TaskKind(self.kind))
    if self.sample_num < 1 or self.max_his < 1:
      raise ValueError(f"TaskSpec: sample_num and max_his must be >= 1: {self}")
    if self.kind == TaskKind.UNSEEN and not self.templates.unseen:
      raise ValueError(f"TaskSpec: template set {self.templates.name!r} has no unseen template")
    if self.kind == TaskKind.ID and self.max_his < 2:
      raise ValueError("TaskSpec: the ID-phase task keeps max_his // 2 items; max_his must be >= 2")

  @property
  def num_his_id_phase(self) -> int:
    return self.max_his // 2


class RecExamples:
  """Renders the examples of one task; `dataset_fn` is what the SeqIO source calls."""

  def __init__(self, data: RecData | Callable[[], RecData], provider: IdProvider, spec: TaskSpec):
    self._data = data
    self.provider = provider
    self.spec = spec

  @functools.cached_property
  def data(self) -> RecData:
    """The dataset; a callable given at construction is called once, on first use (lazy registration)."""
    return self._data if isinstance(self._data, RecData) else self._data()

  @functools.cached_property
  def splits(self) -> dict[str, LooSplit]:
    return leave_one_out(self.data, self.spec.max_his)

  @functools.cached_property
  def item_texts(self) -> list[str]:
    """Plain text per item (ID phase); an item without metadata falls back to its raw id."""
    texts = [render_item_text(m, self.spec.item_text_fields, self.spec.item_text_max_words) if m else ""
             for m in self.data.item_meta]
    missing = sum(not t for t in texts)
    if missing:
      log.warning("%s: %d of %d items have no text; their raw id is used in ID-phase prompts",
                  self.data.name, missing, len(texts))
    return [t or raw for t, raw in zip(texts, self.data.item_ids)]

  def template_ids(self, split: str) -> tuple[tuple, np.ndarray]:
    """(templates, int32 [E, S]) used by `split`: sampled for train, one fixed template otherwise."""
    loo = self.splits[SPLITS[split]]
    templates = self.spec.templates
    if split == "train":
      ids = sample_template_ids(loo.num_examples, len(templates.train), self.spec.sample_num, self.spec.seed)
      return templates.train, ids
    if self.spec.kind == TaskKind.UNSEEN:
      return templates.unseen, np.zeros((loo.num_examples, 1), np.int32)
    return templates.train, np.zeros((loo.num_examples, 1), np.int32)

  def num_examples(self, split: str) -> int:
    return self.splits[SPLITS[split]].num_examples * (self.spec.sample_num if split == "train" else 1)

  def examples(self, split: str) -> dict[str, np.ndarray]:
    """The rendered rows of `split` ('train' | 'validation' | 'test') with the current ID tables."""
    if split not in SPLITS:
      raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLITS)}")
    item_tids = self.provider.item.for_ids(self.data.item_ids)
    user_tids = self.provider.user.for_ids(self.data.user_ids)
    templates, ids_ExS = self.template_ids(split)
    common = dict(item_tids=item_tids, user_tids=user_tids, templates=templates, template_ids_ExS=ids_ExS,
                  sep=self.spec.sep)
    loo = self.splits[SPLITS[split]]
    if self.spec.kind == TaskKind.ID:
      return preprocessors.id_phase_examples(loo, item_texts=self.item_texts,
                                             num_his=self.spec.num_his_id_phase, **common)
    return preprocessors.rec_examples(loo, **common)

  def dataset_fn(self, split: str, shuffle_files: bool = False, seed: int | None = None):
    """SeqIO `FunctionDataSource` callback; rows come in a fixed order (Task.get_dataset shuffles)."""
    del shuffle_files, seed
    return preprocessors.to_tf_dataset(self.examples(split))


def passthrough_converter(kind: TaskKind | str = TaskKind.REC, num_his: int = 10):
  """An unpacked `seqio.EncDecFeatureConverter` that keeps the per-example index features.

  The output has the usual encoder/decoder features plus `user_index`, `target_index`, `template_id`
  (int32 [B]) and, for the ID-phase task, `history_indices` (int32 [B, num_his], num_his = max_his // 2).
  Lengths of these extra features are filled in when `task_feature_lengths` lacks them, so it works
  with `seqio.Evaluator` and `seqio.get_dataset` given only {'inputs': S, 'targets': T}.
  """
  import seqio
  import tensorflow as tf
  spec = {k: seqio.FeatureConverter.FeatureSpec(dtype=tf.int32, rank=0) for k in PASSTHROUGH_SCALARS}
  lengths = {k: 1 for k in PASSTHROUGH_SCALARS}  # nominal: rank-0 features have no length
  if TaskKind(kind) == TaskKind.ID:
    spec["history_indices"] = seqio.FeatureConverter.FeatureSpec(dtype=tf.int32, rank=1)
    lengths["history_indices"] = num_his
  return _passthrough_class()(pack=False, passthrough_features=spec, passthrough_lengths=lengths)


@functools.cache
def _passthrough_class():
  """The converter subclass, built on first use so that importing this module does not import seqio."""
  import seqio

  class EncDecPassthrough(seqio.EncDecFeatureConverter):
    """EncDecFeatureConverter that fills in passthrough lengths and never slices rank-0 passthroughs."""

    def __init__(self, *, passthrough_lengths: dict[str, int], **kwargs):
      super().__init__(**kwargs)
      self._passthrough_lengths = dict(passthrough_lengths)

    def __call__(self, ds, task_feature_lengths):
      return super().__call__(ds, {**self._passthrough_lengths, **task_feature_lengths})

    def _convert_features(self, ds, task_feature_lengths):
      keep = {k: v for k, v in task_feature_lengths.items()
              if k not in self._passthrough_features or self._passthrough_features[k].rank > 0}
      return super()._convert_features(ds, keep)

  return EncDecPassthrough


def item_catalogue(examples: RecExamples) -> item_catalogues.ItemCatalogue:
  """The items a task of `examples` names: the provider's current item IDs, read when asked."""
  return item_catalogues.ItemCatalogue(lambda: examples.provider.item.for_ids(examples.data.item_ids))


def output_features(vocab) -> dict:
  """{'inputs', 'targets'}: `seqio.Feature`s on `vocab` with EOS appended."""
  import seqio
  return {"inputs": seqio.Feature(vocab, add_eos=True, required=True),
          "targets": seqio.Feature(vocab, add_eos=True)}


def task_kwargs(name: str, examples: RecExamples, vocab, *, num_input_examples: dict | None = None,
                metric_ks: Sequence[int] = (5, 10), cacheable: bool = False) -> dict:
  """Keyword arguments of `seqio.TaskRegistry.add` for one task.

  `cacheable=True` adds a `CacheDatasetPlaceholder` after tokenization; only do that when the ID
  tables are fixed (offline caches do not see `IdProvider.set`), e.g. reference IDs.
  """
  import seqio
  source = seqio.FunctionDataSource(dataset_fn=examples.dataset_fn, splits=tuple(SPLITS),
                                    num_input_examples=num_input_examples, caching_permitted=cacheable)
  steps = [seqio.preprocessors.tokenize]
  if cacheable:
    steps.append(seqio.CacheDatasetPlaceholder())
  steps.append(seqio.preprocessors.append_eos_after_trim)
  return dict(name=name, source=source, output_features=output_features(vocab), preprocessors=steps,
              postprocess_fn=seqio_metrics.postprocess_textual_id,
              metric_fns=[seqio_metrics.make_hit_ndcg(metric_ks)])


def _add_task(kwargs: dict, overwrite: bool):
  import seqio
  if overwrite:
    seqio.TaskRegistry.remove(kwargs["name"])
  return seqio.TaskRegistry.add(**kwargs)


def register_idgenrec_tasks(name: str, data: RecData | Callable[[], RecData], vocab, id_provider: IdProvider,
                            template_set: TemplateSet, sample_num: int = 3, max_his: int = 20, seed: int = 0,
                            *, metric_ks: Sequence[int] = (5, 10), overwrite: bool = False,
                            count_examples: bool = True, id_phase_provider: IdProvider | None = None
                            ) -> dict[str, str]:
  """Registers the standard tasks of one dataset: `name` (rec), `name_unseen`, `name_id` (ID phase),
  each with its `item_catalogues` entry (the provider's item IDs).

  Args:
    name: task-name prefix, e.g. "beauty_reference".
    data: the dataset, or a zero-argument loader called on first use (keeps registration cheap).
    vocab: a seqio vocabulary (see `vocab.get_vocabulary`).
    id_provider: the ID tables the tasks read whenever a dataset is built.
    template_set, sample_num, max_his, seed: see `TaskSpec`.
    overwrite: replace tasks of the same names (otherwise SeqIO raises on duplicates).
    count_examples: give SeqIO the split sizes (loads `data` now when it is a loader).
    id_phase_provider: tables for the `_id` task; None = `id_provider`. The official code keeps its
      ID-phase loader on the phase-0 IDs forever: pass a provider that is never `set` to reproduce that.
  Returns:
    {TaskKind value: task name}.
  """
  names = {}
  for kind in TaskKind:
    if kind == TaskKind.UNSEEN and not template_set.unseen:
      continue
    spec = TaskSpec(templates=template_set, kind=kind, sample_num=sample_num, max_his=max_his, seed=seed)
    provider = id_phase_provider if kind == TaskKind.ID and id_phase_provider is not None else id_provider
    examples = RecExamples(data, provider, spec)
    counts = {s: examples.num_examples(s) for s in SPLITS} if count_examples else None
    task_name = name if kind == TaskKind.REC else f"{name}_{kind.value}"
    _add_task(task_kwargs(task_name, examples, vocab, num_input_examples=counts, metric_ks=metric_ks), overwrite)
    item_catalogues.register(task_name, item_catalogue(examples), overwrite=overwrite)
    names[kind.value] = task_name
  return names


def register_data_dir_tasks(name: str, data_dir, vocab, template_set: TemplateSet, *, sample_num: int = 3,
                            max_his: int = 20, seed: int = 0, overwrite: bool = False
                            ) -> tuple[dict[str, str], IdProvider]:
  """Loads a dataset folder and registers its standard tasks (never called at import time).

  Item IDs: the released `reference_textual_ids.txt.gz` when the folder has one, else `title_id_tables`.
  User IDs: `title_id_tables`' "user <raw id>" (the IDGenRec user IDs come from the ID generator;
  set them with `provider.set(user=...)` once generated).
  Returns:
    ({kind: task name}, the IdProvider the tasks read).
  """
  import pathlib

  from llmrec_jax.data.id_tables import REFERENCE_IDS, load_reference_ids
  from llmrec_jax.data.sources import load_dataset
  data = load_dataset(data_dir)
  item, user = title_id_tables(data)
  if (pathlib.Path(data_dir) / REFERENCE_IDS).is_file():
    item = load_reference_ids(data_dir)
  provider = IdProvider(item=item, user=user)
  names = register_idgenrec_tasks(name, data, vocab, provider, template_set, sample_num, max_his, seed,
                                  overwrite=overwrite)
  return names, provider


def register_mixture(name: str, task_names: Sequence[str], rates: Sequence[float] | None = None,
                     *, overwrite: bool = False):
  """A SeqIO Mixture of `task_names` (the foundation setting: several datasets in one model).

  Args:
    rates: mixing rate per task; None = proportional to each task's number of train examples
      (needs the tasks' `num_input_examples`, i.e. `count_examples=True`).
  """
  import seqio
  if overwrite:
    seqio.MixtureRegistry.remove(name)
  if rates is None:
    return seqio.MixtureRegistry.add(name, list(task_names), default_rate=seqio.mixing_rate_num_examples)
  if len(rates) != len(task_names):
    raise ValueError(f"register_mixture: {len(task_names)} tasks but {len(rates)} rates")
  return seqio.MixtureRegistry.add(name, list(zip(task_names, rates)))
