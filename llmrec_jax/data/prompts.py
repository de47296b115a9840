"""Prompt templates for sequential recommendation: `Template`, `TemplateSet`, a registry, rendering.

A template has an input and an output with the fields `{user_id}`, `{history}` and `{target}`
(str.format syntax, no other fields). The history is the textual IDs of the history items, oldest
first, joined by " ; " (the IDGenRec default). Template sets are registered by name with
`@register_template_set(name)`; `load_idgenrec_prompts` reads the official IDGenRec prompt file.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import string
from typing import Callable

import numpy as np

from llmrec_jax.data.errors import DataError
from llmrec_jax.data.sources import read_lines

FIELDS = frozenset({"user_id", "history", "target"})
HISTORY_SEP = " ; "
IDGENREC_OFFICIAL = "idgenrec_official"


def template_fields(text: str) -> set[str]:
  """Field names used in a str.format string; raises ValueError on positional fields or format specs."""
  names = set()
  for _, name, spec, conversion in string.Formatter().parse(text):
    if name is None:
      continue
    if not name or spec or conversion:
      raise ValueError(f"template {text!r}: only plain named fields like {{history}} are allowed")
    names.add(name)
  return names


@dataclasses.dataclass(frozen=True)
class Template:
  """One (input, output) prompt pair; `input` must use {history}, `output` must use {target}."""
  input: str
  output: str

  def __post_init__(self):
    used_in, used_out = template_fields(self.input), template_fields(self.output)
    unknown = (used_in | used_out) - FIELDS
    if unknown:
      raise ValueError(f"template {self.input!r} -> {self.output!r}: unknown field(s) {sorted(unknown)}; "
                       f"allowed: {sorted(FIELDS)}")
    if "history" not in used_in:
      raise ValueError(f"template input {self.input!r} does not use {{history}}")
    if "target" not in used_out:
      raise ValueError(f"template output {self.output!r} does not use {{target}}")


@dataclasses.dataclass(frozen=True)
class TemplateSet:
  """Named templates: `train` ones are sampled for training (train[0] is the test prompt), `unseen` held out."""
  name: str
  train: tuple[Template, ...]
  unseen: tuple[Template, ...] = ()

  def __post_init__(self):
    if not self.train:
      raise ValueError(f"TemplateSet {self.name!r} has no training templates")
    for t in self.train + self.unseen:
      if not isinstance(t, Template):
        raise TypeError(f"TemplateSet {self.name!r}: {t!r} is not a Template")


def render_prompt(template: Template, *, user_id: str, history: list[str], target: str,
                  sep: str = HISTORY_SEP) -> tuple[str, str]:
  """(inputs, targets) text of one example.

  Args:
    template: the prompt.
    user_id: the user's textual ID (or raw id).
    history: textual IDs of the history items, oldest first.
    target: textual ID of the item to predict.
    sep: joins the history IDs.
  """
  if isinstance(history, str):
    raise TypeError("render_prompt: history must be a list of textual IDs, not one string")
  values = {"user_id": user_id, "history": sep.join(history), "target": target}
  return template.input.format_map(values), template.output.format_map(values)


def sample_template_ids(num_examples: int, num_templates: int, sample_num: int, seed: int) -> np.ndarray:
  """Template ids drawn uniformly with replacement, `sample_num` per example (IDGenRec's sample_prompt).

  Returns:
    int32 [E, sample_num] in [0, num_templates); the same for the same arguments.
  """
  if num_examples < 0 or num_templates < 1 or sample_num < 1:
    raise ValueError(f"sample_template_ids: bad sizes E={num_examples}, templates={num_templates}, "
                     f"sample_num={sample_num}")
  rng = np.random.default_rng(seed)
  return rng.integers(0, num_templates, size=(num_examples, sample_num), dtype=np.int32)


# ------------------------------------------------------------------------------------------ registry
_REGISTRY: dict[str, Callable[[], TemplateSet]] = {}


def register_template_set(name: str) -> Callable[[Callable[[], TemplateSet]], Callable[[], TemplateSet]]:
  """Decorator: registers a no-argument function returning the TemplateSet called `name`."""
  def wrap(fn: Callable[[], TemplateSet]) -> Callable[[], TemplateSet]:
    if name in _REGISTRY:
      raise ValueError(f"template set {name!r} is already registered")
    _REGISTRY[name] = fn
    return fn
  return wrap


def get_template_set(name: str) -> TemplateSet:
  """The registered TemplateSet `name`; KeyError listing the known names otherwise."""
  if name not in _REGISTRY:
    raise KeyError(f"unknown template set {name!r}; registered: {sorted(_REGISTRY)} "
                   f"(the official IDGenRec prompts are read with load_idgenrec_prompts(path))")
  result = _REGISTRY[name]()
  if result.name != name:
    raise ValueError(f"template set registered as {name!r} calls itself {result.name!r}")
  return result


def registered_template_sets() -> list[str]:
  return sorted(_REGISTRY)


@register_template_set("llmrec_default")
def llmrec_default() -> TemplateSet:
  """Our own wording: 10 training templates (0 is the test prompt) and 1 unseen one."""
  train = (
      "User {user_id} has interacted with these items in order: {history} . Which item comes next ?",
      "Purchase history of user {user_id} , oldest first : {history} . Predict the next item .",
      "Given the items {history} chosen by user {user_id} , what will the user choose next ?",
      "User {user_id} recently picked {history} . Recommend one more item for this user .",
      "Items seen so far by user {user_id} : {history} . What should we suggest next ?",
      "Here is what user {user_id} engaged with : {history} . Name the item they are most likely to want next .",
      "Following {history} , which item would user {user_id} pick up next ?",
      "Sequence of user {user_id} : {history} . Continue the sequence with one item .",
      "Based on the history {history} , suggest the next item for user {user_id} .",
      "User {user_id} : {history} -> next item ?",
  )
  unseen = ("Knowing that user {user_id} went through {history} , what is the best next recommendation ?",)
  return TemplateSet(name="llmrec_default", train=tuple(Template(t, "{target}") for t in train),
                     unseen=tuple(Template(t, "{target}") for t in unseen))


def load_idgenrec_prompts(path: str | os.PathLike) -> TemplateSet:
  """Reads the IDGenRec prompt file (`task; seen|unseen; input; output` a line); keeps `sequential` only.

  Returns:
    TemplateSet "idgenrec_official": `seen` lines as `train` (file order, so train[0] is the test
    prompt), `unseen` lines as `unseen`. Templates are kept verbatim.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise DataError(path, "missing file")
  train, unseen = [], []
  for lineno, line in read_lines(path):
    if not line.strip():
      continue
    parts = [p.strip() for p in line.split(";")]
    if len(parts) != 4:
      raise DataError(path, f"expected 4 ';'-separated fields (task; seen|unseen; input; output), got {len(parts)}",
                      lineno)
    task, split, inp, out = parts
    if task != "sequential":
      continue
    if split not in ("seen", "unseen"):
      raise DataError(path, f"second field must be 'seen' or 'unseen', got {split!r}", lineno)
    try:
      template = Template(inp, out)
    except ValueError as e:
      raise DataError(path, str(e), lineno) from None
    (train if split == "seen" else unseen).append(template)
  if not train:
    raise DataError(path, "no 'sequential; seen' templates")
  return TemplateSet(name=IDGENREC_OFFICIAL, train=tuple(train), unseen=tuple(unseen))
