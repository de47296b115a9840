"""SeqIO tasks whose prompts are tokenized whole by `prompt_tokens` (IDGenRec's training prompts).

Source (`index_rows`): a leave-one-out split as index rows, no text: `example_index`, `template_id`,
`user_index`, `target_index` (int32 scalars) and `history` (int32 [H]: the last H history items,
oldest first, -1 padded at the end).
Preprocessor (`TokenizePrompts`): reads the ID tables from the `IdProvider` when the dataset is
built (IDs change between training phases), renders and tokenizes each row with
`prompt_tokens.tokenize_prompt` (its `input_len` is `sequence_length['inputs']`, else the spec's;
a longer prompt is cut as the spec's `truncation` says) and adds
  inputs          int32 [<= S]  the whole prompt's tokens, EOS last
  targets         int32 [n]     the rendered output tokenized, EOS last
  soft_slot       int32 [len(inputs)]  h * C + t at token t of kept history item h, else -1
                  (pad it with -1: seqio's converters pad passthrough features with 0)
  history_items   int32 [H]     the items kept in the prompt, oldest first, -1 padded at the end
  inputs_pretokenized, targets_pretokenized  the strings.
`TokenizePrompts.rows` is the same computation on NumPy rows (no tf.data), for callers that choose
their own rows (the IDGenRec loop: `systems/idgenrec/seqio_batches.py`).
Kinds: "rec" keeps `max_his` history items, "id" `max_his // 2` (the official split); C is the
spec's `id_len` (which every current ID + EOS must fit, or grows to fit with `grow_lengths`), or
`free_running_steps`.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping, Optional

import numpy as np

from llmrec_jax.data import prompt_tokens, seqio_metrics
from llmrec_jax.data.prompts import HISTORY_SEP, TemplateSet, render_prompt, sample_template_ids
from llmrec_jax.data.records import RecData
from llmrec_jax.data.splits import LooSplit, leave_one_out


SPLITS = {"train": "train", "validation": "valid", "test": "test"}
KINDS = ("rec", "id")


@dataclasses.dataclass(frozen=True)
class PromptTokenSpec:
  """How one task renders and tokenizes its prompts (lengths as `PromptBatcher`'s)."""
  templates: TemplateSet
  kind: str = "rec"
  max_his: int = 20
  input_len: int = 256
  id_len: int = 16
  target_len: int = 16
  sample_num: int = 3
  seed: int = 0
  sep: str = HISTORY_SEP
  eos_id: int = 1
  free_running_steps: Optional[int] = None
  # IDs longer than id_len / target_len allow grow both to fit (`ItemTokens.fit_length`) instead
  # of raising: for IDs a generator lengthens.
  grow_lengths: bool = False
  truncation: prompt_tokens.Truncation = prompt_tokens.Truncation.DROP_OLDEST

  def __post_init__(self):
    object.__setattr__(self, "truncation", prompt_tokens.Truncation(self.truncation))
    if self.kind not in KINDS or self.max_his < 2 or self.sample_num < 1:
      raise ValueError(f"PromptTokenSpec: kind in {KINDS}, max_his >= 2, sample_num >= 1: {self}")
    if self.free_running_steps is not None and self.kind != "id":
      raise ValueError("PromptTokenSpec: free_running_steps is for the ID phase only")

  @property
  def num_history(self) -> int:
    return self.max_his if self.kind == "rec" else self.max_his // 2


@dataclasses.dataclass(frozen=True)
class IdSnapshot:
  """The ID tables of one `IdProvider.version`, per item / user index, with the ID tokens
  (`ItemTokens`) and the lengths they need."""
  version: int
  item_ids: list[str]
  user_ids: list[str]
  item_tokens: Any
  id_len: int
  target_len: int


def index_rows(split: LooSplit, example_idx, template_idx, num_history: int) -> dict[str, np.ndarray]:
  """The source features of rows (example index, template index) of `split` (module docstring)."""
  ex = np.asarray(example_idx, np.int64)
  history_RxH = np.full((len(ex), num_history), -1, np.int32)
  for r, e in enumerate(ex.tolist()):
    h = split.history[e][-num_history:]
    history_RxH[r, :len(h)] = h
  return {"example_index": ex.astype(np.int32), "template_id": np.asarray(template_idx, np.int32),
          "user_index": split.user[ex].astype(np.int32), "target_index": split.target[ex].astype(np.int32),
          "history": history_RxH}


class TokenizePrompts:
  """The task's preprocessor (module docstring); `rows` is the NumPy form."""

  def __init__(self, data: RecData | Callable[[], RecData], provider, vocab, spec: PromptTokenSpec):
    self._data = data
    self.provider = provider
    self.sp = prompt_tokens.sentencepiece_of(vocab)
    self.spec = spec
    self._snapshot: Optional[IdSnapshot] = None
    self.misaligned = 0  # history items so far whose in-prompt tokens differ from the ID alone

  @functools.cached_property
  def data(self) -> RecData:
    return self._data if isinstance(self._data, RecData) else self._data()

  def snapshot(self) -> IdSnapshot:
    """The provider's current tables (recomputed when `provider.version` changes)."""
    if self._snapshot is None or self._snapshot.version != self.provider.version:
      from llmrec_jax.indexing.item_tokens import ItemTokens  # pylint: disable=g-import-not-at-top
      spec, items = self.spec, self.provider.item.for_ids(self.data.item_ids)
      tokens = ItemTokens.encode(items, self.sp.encode, eos_id=spec.eos_id)
      self._snapshot = IdSnapshot(
          self.provider.version, items, self.provider.user.for_ids(self.data.user_ids), tokens,
          *(tokens.fit_length(getattr(spec, n), name=n, grow=spec.grow_lengths)
            for n in ("id_len", "target_len")))
    return self._snapshot

  def slot_stride(self, snap: IdSnapshot) -> int:
    return self.spec.free_running_steps or snap.id_len

  def row(self, snap: IdSnapshot, template_id: int, user_index: int, target_index: int,
          history_H: np.ndarray, input_len: int) -> dict[str, np.ndarray]:
    """The added features of one row."""
    hist = [int(i) for i in history_H if i >= 0]
    template = self.spec.templates.train[template_id]
    names = [snap.item_ids[i] for i in hist]
    out = prompt_tokens.tokenize_prompt(
        self.sp, template, user_id=snap.user_ids[user_index], history=names,
        id_tokens=[snap.item_tokens.tokens(i) for i in hist], input_len=input_len,
        slot_stride=self.slot_stride(snap), sep=self.spec.sep, eos_id=self.spec.eos_id,
        free_running_steps=self.spec.free_running_steps, truncation=self.spec.truncation)
    self.misaligned += out.misaligned
    kept = hist[out.first_item:out.end_item]
    kept_H = np.full(len(history_H), -1, np.int32)
    kept_H[:len(kept)] = kept
    x, y = render_prompt(template, user_id=snap.user_ids[user_index], history=names[out.first_item:],
                         target=snap.item_ids[target_index], sep=self.spec.sep)
    target_tokens = (snap.item_tokens.tokens(target_index) if template.output == "{target}"
                     else self.sp.encode(y))
    return {"inputs": np.asarray(out.tokens, np.int32), "soft_slot": np.asarray(out.slots, np.int32),
            "targets": np.asarray(target_tokens + [self.spec.eos_id], np.int32),
            "history_items": kept_H, "inputs_pretokenized": x, "targets_pretokenized": y}

  def rows(self, rows: Mapping[str, np.ndarray], input_len: Optional[int] = None) -> list[dict]:
    """`row` of every row of `index_rows(...)`-style arrays, in order, on the current tables."""
    snap = self.snapshot()
    input_len = input_len or self.spec.input_len
    return [self.row(snap, t, u, g, h, input_len) for t, u, g, h in zip(
        rows["template_id"].tolist(), rows["user_index"].tolist(), rows["target_index"].tolist(),
        rows["history"])]

  def __call__(self, dataset, sequence_length: Optional[Mapping[str, int]] = None):
    """SeqIO preprocessor: adds the features above to every source row."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    snap = self.snapshot()  # the tables at dataset-build time
    input_len = (sequence_length or {}).get("inputs") or self.spec.input_len
    keys = ("inputs", "targets", "soft_slot", "history_items", "inputs_pretokenized",
            "targets_pretokenized")

    def py(template_id, user_index, target_index, history_H):
      f = self.row(snap, int(template_id), int(user_index), int(target_index), history_H, input_len)
      return tuple(np.bytes_(f[k].encode("utf-8")) if k.endswith("_pretokenized") else f[k] for k in keys)

    def fn(ex):
      out = tf.numpy_function(py, [ex["template_id"], ex["user_index"], ex["target_index"], ex["history"]],
                              [tf.int32] * 4 + [tf.string] * 2, stateful=False)
      shapes = ([None], [None], [None], ex["history"].shape, [], [])
      feats = {k: tf.ensure_shape(v, s) for k, v, s in zip(keys, out, shapes)}
      return {**ex, **feats}

    return dataset.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


class IndexSource:
  """The task's `FunctionDataSource` callback: `index_rows` of a split (train templates sampled)."""

  def __init__(self, prep: TokenizePrompts):
    self.prep = prep

  @functools.cached_property
  def splits(self) -> dict[str, LooSplit]:
    return leave_one_out(self.prep.data, self.prep.spec.max_his)

  def rows(self, split: str) -> dict[str, np.ndarray]:
    spec, loo = self.prep.spec, self.splits[SPLITS[split]]
    if split == "train":
      ids_ExS = sample_template_ids(loo.num_examples, len(spec.templates.train), spec.sample_num, spec.seed)
    else:
      ids_ExS = np.zeros((loo.num_examples, 1), np.int32)
    ex = np.repeat(np.arange(loo.num_examples), ids_ExS.shape[1])  # example-major, sample-minor
    return index_rows(loo, ex, ids_ExS.reshape(-1), spec.num_history)

  def num_examples(self, split: str) -> int:
    return len(self.rows(split)["example_index"])

  def __call__(self, split: str, shuffle_files: bool = False, seed: Optional[int] = None):
    del shuffle_files, seed
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    return tf.data.Dataset.from_tensor_slices(self.rows(split))


def task_kwargs(name: str, prep: TokenizePrompts, vocab, *, metric_ks=(5, 10)) -> dict:
  """Keyword arguments of `seqio.TaskRegistry.add` for one whole-prompt task (never cached: the
  tables change between phases)."""
  import seqio  # pylint: disable=g-import-not-at-top
  source = seqio.FunctionDataSource(dataset_fn=IndexSource(prep), splits=tuple(SPLITS),
                                    caching_permitted=False)
  features = {"inputs": seqio.Feature(vocab, add_eos=False, required=True),  # EOS: tokenize_prompt
              "targets": seqio.Feature(vocab, add_eos=False)}
  return dict(name=name, source=source, output_features=features, preprocessors=[prep],
              postprocess_fn=seqio_metrics.postprocess_textual_id,
              metric_fns=[seqio_metrics.make_hit_ndcg(metric_ks)])


def register_prompt_token_tasks(name: str, data, vocab, provider, templates: TemplateSet, *,
                                overwrite: bool = False, **spec) -> dict[str, str]:
  """Registers `{name}_rec_tokens` and `{name}_id_tokens` (spec: `PromptTokenSpec` fields;
  `free_running_steps` applies to the ID task only).

  Returns:
    {kind: task name}.
  """
  import seqio  # pylint: disable=g-import-not-at-top
  names = {}
  for kind in KINDS:
    task_name = f"{name}_{kind}_tokens"
    if overwrite:
      seqio.TaskRegistry.remove(task_name)
    kw = {k: v for k, v in spec.items() if kind == "id" or k != "free_running_steps"}
    prep = TokenizePrompts(data, provider, vocab, PromptTokenSpec(templates=templates, kind=kind, **kw))
    seqio.TaskRegistry.add(**task_kwargs(task_name, prep, vocab))
    names[kind] = task_name
  return names


def tokenize_prompts_of(task) -> TokenizePrompts:
  """The `TokenizePrompts` preprocessor of a registered task (or task name)."""
  import seqio  # pylint: disable=g-import-not-at-top
  task = seqio.get_mixture_or_task(task) if isinstance(task, str) else task
  found = [p for p in task.preprocessors if isinstance(p, TokenizePrompts)]
  if len(found) != 1:
    raise ValueError(f"task {task.name!r} has no TokenizePrompts preprocessor")
  return found[0]
