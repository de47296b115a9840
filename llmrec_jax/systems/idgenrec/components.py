"""Setting up an IDGenRec run: data, tokenizer, models, initial IDs and the ID assigner.

`llmrec_jax.train` calls these in order; each is a plain function so a notebook can too.
The recommender and the ID generator share one tokenizer (the ID phase mixes generator
distributions with the recommender's embedding table, so their vocabularies must agree).
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
import pathlib
from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np

from llmrec_jax import model_sizes, models, network
from llmrec_jax.data import id_tables, item_text, prompts, sources, synthetic
from llmrec_jax.data.records import RecData
from llmrec_jax.indexing import id_schemes, keywords, text_tokens, uniqueness, user_ids
from llmrec_jax.systems.idgenrec import alternating
from llmrec_jax.systems.idgenrec import assign, bootstrap
from llmrec_jax.systems.idgenrec.generator import GeneratorOptions, T5IdGenerator

log = logging.getLogger(__name__)

SYNTHETIC = "synthetic"
# Schemes whose item IDs need no generator (`indexing.id_schemes`); with `id_epochs = 0` they
# stay fixed (the ablations). 'bootstrap' IDs come from the (bootstrapped) generator.
FIXED_IDS = id_schemes.names()
INITIAL_IDS = ("bootstrap",) + FIXED_IDS
# Least share of a generator's first item-ID words that are words of the item's own text; below
# it the bootstrap was too short (`GeneratorAssigner`, `word_share_warning`). Bootstrap targets
# are all title words. Measured on round-0 IDs (t5_tiny, seed 2023, share / IDs without one):
# Beauty (first 1,000 items) 200 steps 0.12 / 89% ("s s s s s s", "fsssssssss"), 1,000 steps
# (runs/cpu_budget.gin) 0.57 / 37%; after 2,000 steps and an ID phase still 0.66 / 18%; the
# synthetic catalogue 0.60 / 31% at 50 steps, 1.00 / 0% at 200 and 300 (idgenrec_tiny.gin).
MIN_TEXT_WORD_SHARE = 0.5


def load_data(data_dir: str, *, synthetic_users: int = 300, synthetic_items: int = 200,
              seed: int = 0) -> RecData:
  """A dataset folder (P5 layout or MovieLens), or the built-in synthetic catalogue ('synthetic')."""
  if data_dir == SYNTHETIC:
    return synthetic.make_synthetic(num_users=synthetic_users, num_items=synthetic_items, seed=seed)
  return sources.load_dataset(data_dir)


def check_item_text(data: RecData, data_dir: str, initial_ids: str) -> None:
  """Fails early when `initial_ids` cuts IDs from item text ('title', 'bootstrap') and the
  catalogue has none (no items.jsonl: Sports ships only reference IDs), naming the file."""
  if initial_ids in ("title", "bootstrap") and data_dir != SYNTHETIC and not any(data.item_meta):
    from llmrec_jax.data.errors import DataError  # pylint: disable=g-import-not-at-top
    raise DataError(pathlib.Path(data_dir) / f"{sources.P5_ITEMS}[.gz]",
                    f"missing or empty: initial_ids={initial_ids!r} makes item IDs from item text; "
                    "without it use 'reference' (the released IDs) or 'sequential'")


def item_texts(data: RecData) -> list[str]:
  """The generator's input per item: Yelp's business fields, else the Amazon ones (MovieLens:
  title and genres, under the Amazon names)."""
  yelp = any("name" in m and "title" not in m for m in data.item_meta[:100])
  fields = item_text.YELP_FIELDS if yelp else item_text.DEFAULT_FIELDS
  return [item_text.render_item_text(m, fields=fields) for m in data.item_meta]


def load_tokenizer(vocab_path: Optional[str], data: RecData, *, dataset_vocab_size: int = 2000,
                   fixed_ids: Sequence[id_tables.IdTable] = (), extra_texts: Sequence[str] = ()):
  """(SentencePiece processor, model vocab size, model file). Without a path, a vocabulary
  trained on the dataset's own text, on `fixed_ids` (ID tables it must spell, e.g. the
  lowercase reference IDs) and on `extra_texts` (cached on disk); T5's file gives T5's 32,128
  embedding rows."""
  if vocab_path:
    path = pathlib.Path(vocab_path)
  else:
    from llmrec_jax.data import vocab  # pylint: disable=g-import-not-at-top
    path = vocab.trained_vocab_path(vocab.dataset_texts(data, id_tables=fixed_ids, extra_texts=extra_texts),
                                    vocab_size=dataset_vocab_size)
  tokenizer = text_tokens.load_sentencepiece(path)
  return tokenizer, assign.model_vocab_size(tokenizer, path), path


def load_templates(template_set: str) -> prompts.TemplateSet:
  """A registered template-set name, or a path to a prompt file in the official format."""
  if pathlib.Path(template_set).is_file():
    return prompts.load_idgenrec_prompts(template_set)
  return prompts.get_template_set(template_set)


def init_model(size: str, vocab_size: int, *, dropout_rate: float, seed: int,
               loss_normalizing_factor: str = "NUM_REAL_TARGET_TOKENS",
               checkpoint: Optional[str] = None) -> tuple[models.EncoderDecoderModel, Any]:
  """A T5 of a named size from random init, or from an HF folder / Orbax dir (`checkpoint`)."""
  if checkpoint:
    config, params = assign.load_generator(checkpoint, size)  # the network saved with it
    config = dataclasses.replace(config, dropout_rate=dropout_rate) \
        if not (pathlib.Path(checkpoint) / "config.json").is_file() else config
  else:
    config = model_sizes.t5_config(size, vocab_size=vocab_size, dropout_rate=dropout_rate)
    params = None
  model = models.EncoderDecoderModel(network.Transformer(config), loss_normalizing_factor=loss_normalizing_factor)
  if params is None:
    shapes = {"encoder_input_tokens": (1, 8), "decoder_input_tokens": (1, 4)}
    params = model.get_initial_variables(jax.random.PRNGKey(seed), shapes)["params"]
  return model, jax.device_get(params)


class GeneratorAssigner:
  """Unique item and user IDs from generator params (the `alternating.IdAssigner` protocol).

  `stats` describes the last assignment ("items", "users"; item stats add "text_word_share" and
  "no_text_word_ids", see `text_word_stats`) plus "first_items": those two shares of the first
  item IDs it wrote, `min_text_word_share` and `bootstrap_steps`. That first assignment is the
  round-0 IDs of `initial_ids='bootstrap'` (both recommender forms); when its share is below
  `min_text_word_share` one warning line (`word_share_warning`) says the bootstrap was too short.
  `check_words = False` before the first call skips the check (`initial_ids` does for the other
  schemes, whose first generated IDs follow an ID phase, not a bootstrap).
  """

  def __init__(self, config: network.T5Config, tokenizer, data: RecData, item_texts: Sequence[str], *,
               options: GeneratorOptions = GeneratorOptions(), max_levels: int = 18,
               leaky_user_ids: bool = False, progress: bool = True, bootstrap_steps: Optional[int] = None,
               min_text_word_share: float = MIN_TEXT_WORD_SHARE,
               assignment: uniqueness.IdAssignment = uniqueness.IdAssignment()):
    self.config, self.tokenizer, self.data = config, tokenizer, data
    self.item_texts = list(item_texts)
    self.options, self.leaky, self.progress = options, leaky_user_ids, progress
    self.schedule = uniqueness.EscalationSchedule(max_levels=max_levels)
    self.assignment = assignment  # resolution and case of every ID it writes
    self.bootstrap_steps, self.min_text_word_share = bootstrap_steps, min_text_word_share
    self.check_words = True
    self.first_items: dict[str, Any] = {}
    self.stats: dict[str, Any] = {}

  def item_ids(self, gen_params: Any) -> list[str]:
    """Unique item IDs only (a recommender that reads no user IDs needs no more)."""
    gen = T5IdGenerator(self.config, gen_params, self.tokenizer, self.options, progress=self.progress)
    key = assign.token_key_fn(self.tokenizer)
    items = assign.assign_ids(gen, self.item_texts, self.schedule, uniqueness.IdNamespace(key),
                              assignment=self.assignment)
    self.stats = {"items": self._item_stats(items, key)}
    self._add_first_items()
    return list(items.ids)

  def __call__(self, gen_params: Any, item_ids: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    gen = T5IdGenerator(self.config, gen_params, self.tokenizer, self.options, progress=self.progress)
    key = assign.token_key_fn(self.tokenizer)
    items = assign.assign_ids(gen, self.item_texts, self.schedule, uniqueness.IdNamespace(key),
                              assignment=self.assignment)
    item_stats = self._item_stats(items, key)
    texts = user_ids.user_history_texts(self.data, items.ids, leaky=self.leaky)
    users = assign.assign_ids(gen, texts, self.schedule, uniqueness.IdNamespace(key),
                              assignment=self.assignment)
    self.stats = {"items": item_stats, "users": assign.id_stats(users.ids, users, None, key)}
    self._add_first_items()
    return list(items.ids), list(users.ids)

  def _item_stats(self, items: uniqueness.AssignmentResult, key) -> dict[str, Any]:
    """`assign.id_stats` plus `text_word_stats`; on the first checked call, records them in
    `first_items` and logs `word_share_warning` when it has one."""
    stats = {**assign.id_stats(items.ids, items, None, key), **text_word_stats(items.ids, self.item_texts)}
    if self.check_words:
      self.check_words = False
      self.first_items = {"text_word_share": stats["text_word_share"],
                          "no_text_word_ids": stats["no_text_word_ids"],
                          "min_text_word_share": self.min_text_word_share, "bootstrap_steps": self.bootstrap_steps}
      if stats["text_word_share"] < self.min_text_word_share:
        log.warning(word_share_warning(
            stats["text_word_share"], stats["no_text_word_ids"], threshold=self.min_text_word_share,
            bootstrap_steps=self.bootstrap_steps, examples=_wordless_examples(items.ids, self.item_texts)))
    return stats

  def _add_first_items(self) -> None:
    if self.first_items:
      self.stats["first_items"] = self.first_items


def text_word_stats(ids: Sequence[str], texts: Sequence[str]) -> dict[str, float]:
  """{"text_word_share": share of all ID words that are words of their item's text,
  "no_text_word_ids": share of IDs with none} (`keywords.title_word_share` / `wordless_id_share`)."""
  return {"text_word_share": keywords.title_word_share(ids, texts),
          "no_text_word_ids": keywords.wordless_id_share(ids, texts)}


def word_share_warning(share: float, wordless: float, *, threshold: float = MIN_TEXT_WORD_SHARE,
                       bootstrap_steps: Optional[int] = None, examples: Sequence[str] = ()) -> Optional[str]:
  """The one-line warning for a generator's first item IDs whose words are mostly not words of
  their item's text (`share` < `threshold`; `wordless`: share of IDs with none of them), e.g.
  "oz" or "ssssssssss" after a 200-step bootstrap; None when `share` >= `threshold`."""
  if share >= threshold:
    return None
  steps = f"after {bootstrap_steps} bootstrap steps" if bootstrap_steps is not None else "bootstrap steps unknown"
  seen = f" (e.g. {', '.join(repr(e) for e in examples)})" if examples else ""
  return (f"generated item IDs: {share:.1%} of their words are words of the item's own text, below "
          f"{threshold:.0%}; {wordless:.1%} of IDs have none{seen}; {steps}. The generator's bootstrap "
          f"was too short to teach it to copy text words: raise bootstrap_steps "
          f"(--gin.train_script.train.bootstrap_steps=2000, as idgenrec.gin)")


def _wordless_examples(ids: Sequence[str], texts: Sequence[str], limit: int = 3) -> list[str]:
  """The first `limit` IDs with no word of their text."""
  wordless = (tid for tid, text in zip(ids, texts) if keywords.wordless_id_share([tid], [text]) == 1.0)
  return list(itertools.islice(wordless, limit))


def needs_generator(initial_ids: str, schedule: alternating.Schedule) -> bool:
  """Whether a run uses an ID generator at all: for the learned IDs ('bootstrap'), or because the
  schedule has ID phases (they train the generator and re-assign every ID with it). A fixed scheme
  (`FIXED_IDS`) with `id_epochs = 0` needs none: no generator training, no regeneration, and its
  user IDs are "user <index + 1>" (`fixed_user_ids`)."""
  _check_kind(initial_ids)
  return initial_ids == "bootstrap" or schedule.id_epochs > 0


def needs_bootstrap(initial_ids: str, schedule: alternating.Schedule) -> bool:
  """Whether a run without `gen_checkpoint` must first bootstrap its generator from random init
  (idgenrec.gin's 2,000 steps: ~11-14 min on Beauty at t5_tiny): it needs one and reads round-0
  IDs from it ('bootstrap' items, 'reference' users). 'title' / 'random' / 'sequential' with ID
  phases start from a random-init generator, as 'title' always did."""
  return needs_generator(initial_ids, schedule) and initial_ids in ("bootstrap", "reference")


def initial_ids(kind: str, data: RecData, data_dir: str, *, assigner: Optional[GeneratorAssigner] = None,
                gen_params: Any = None, encode: Optional[Callable[[str], Sequence[int]]] = None,
                seed: int = 0, keep_case: bool = False) -> tuple[list[str], list[str]]:
  """Item IDs per item index and user IDs per user index for round 0.

  bootstrap: from the (bootstrapped) generator. reference: the released IDs; users from the
  generator when `assigner` is given, else `fixed_user_ids`. title / random / sequential: see
  `fixed_item_ids`; users `fixed_user_ids`. With `encode` (text -> token ids), item IDs of the
  non-generator schemes are made unique as token sequences, not only as strings. Only
  'bootstrap' keeps the assigner's check of its first item IDs (`GeneratorAssigner.check_words`):
  with the other schemes its first item IDs come after an ID phase. `keep_case`: title IDs keep
  the title's case (generated IDs follow the assigner's `IdAssignment`)."""
  _check_kind(kind)
  if kind == "bootstrap":
    if assigner is None:
      raise ValueError("initial_ids='bootstrap' needs the generator (an assigner)")
    return assigner(gen_params)
  if assigner is not None:
    assigner.check_words = False
  items = fixed_item_ids(kind, data, data_dir, encode=encode, seed=seed, keep_case=keep_case)
  if kind != "reference" or assigner is None:
    return items, fixed_user_ids(data)
  gen = T5IdGenerator(assigner.config, gen_params, assigner.tokenizer, assigner.options,
                      progress=assigner.progress)
  texts = user_ids.user_history_texts(data, items, leaky=assigner.leaky)
  users = assign.assign_ids(gen, texts, assigner.schedule,
                            uniqueness.IdNamespace(assign.token_key_fn(assigner.tokenizer)),
                            assignment=assigner.assignment)
  return items, list(users.ids)


def fixed_user_ids(data: RecData) -> list[str]:
  """"user <index + 1>" per user index (P5's user numbers), the same for every fixed scheme so an
  ablation changes the item IDs only. Not the raw ids: Amazon's ("A1YJEY40YUW4SE") cost ~15 tokens
  of every prompt."""
  return [f"user {u + 1}" for u in range(data.num_users)]


def fixed_item_ids(kind: str, data: RecData, data_dir: str, *,
                   encode: Optional[Callable[[str], Sequence[int]]] = None, seed: int = 0,
                   title_words: int = id_schemes.TITLE_ID_WORDS, keep_case: bool = False) -> list[str]:
  """N unique, non-empty item IDs of a scheme that needs no generator (`FIXED_IDS`, built by
  `id_schemes.build`: title / reference / sequential / random), unique as token sequences under
  `encode` when given; title IDs keep case when `keep_case`."""
  _check_kind(kind)
  if kind not in FIXED_IDS:
    raise ValueError(f"initial_ids={kind!r} comes from the generator, not from a fixed scheme")
  return id_schemes.build(kind, data, data_dir, encode=encode, seed=seed, title_words=title_words,
                          keep_case=keep_case)


def _check_kind(kind: str) -> None:
  if kind not in INITIAL_IDS:
    raise ValueError(f"initial_ids must be one of {INITIAL_IDS}, got {kind!r}")


def bootstrap_generator(data: RecData, item_texts: Sequence[str], tokenizer, vocab_size: int, *,
                        size: str, steps: int, seed: int, targets: str = "tfidf", data_dir: str = "",
                        max_input_tokens: int = 64) -> tuple[network.T5Config, Any, dict[str, Any]]:
  """Trains the generator from random init to write keyword IDs (no pretrained T5 here)."""
  titles = [keywords.item_title(m) for m in data.item_meta]
  wanted = assign.bootstrap_targets(targets, data, data_dir, titles)
  # Splicing (made-up titles with their own keyword targets) only makes sense for TF-IDF targets.
  splice = bootstrap.BootstrapConfig.splice_rate if targets == "tfidf" else 0.0
  cfg = bootstrap.BootstrapConfig(model_size=size, steps=steps, seed=seed, max_input_tokens=max_input_tokens,
                                  splice_rate=splice)
  return bootstrap.train_generator(item_texts, wanted, tokenizer, vocab_size, cfg, titles=titles)


def punctuation_token_ids(tokenizer) -> np.ndarray:
  """First token of each punctuation character (the official ID-phase mask set)."""
  import string  # pylint: disable=g-import-not-at-top
  return np.unique([tokenizer.encode(p)[0] for p in string.punctuation if tokenizer.encode(p)]).astype(np.int32)
