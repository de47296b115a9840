"""Setting up an IDGenRec run: data, tokenizer, models, initial IDs and the ID assigner.

`llmrec_jax.train` calls these in order; each is a plain function so a notebook can too.
The recommender and the ID generator share one tokenizer (the ID phase mixes generator
distributions with the recommender's embedding table, so their vocabularies must agree).
"""
from __future__ import annotations

import logging
import pathlib
from typing import Any, Optional, Sequence

import jax
import numpy as np

from llmrec_jax import model_sizes, models, network
from llmrec_jax.data import id_tables, prompts, sources, synthetic, task_builders
from llmrec_jax.data.records import RecData
from llmrec_jax.indexing import assign, bootstrap, keywords, text_tokens, uniqueness, user_ids
from llmrec_jax.indexing.generator import GeneratorOptions, T5IdGenerator

log = logging.getLogger(__name__)

SYNTHETIC = "synthetic"
INITIAL_IDS = ("bootstrap", "reference", "title")


def load_data(data_dir: str, *, synthetic_users: int = 300, synthetic_items: int = 200,
              seed: int = 0) -> RecData:
  """A dataset folder (P5 layout or MovieLens), or the built-in synthetic catalogue ('synthetic')."""
  if data_dir == SYNTHETIC:
    return synthetic.make_synthetic(num_users=synthetic_users, num_items=synthetic_items, seed=seed)
  return sources.load_dataset(data_dir)


def load_tokenizer(vocab_path: Optional[str], data: RecData, *, dataset_vocab_size: int = 2000):
  """(SentencePiece processor, model vocab size, model file). Without a path, a vocabulary
  trained on the dataset's own text (cached on disk); T5's file gives T5's 32,128 embedding rows."""
  if vocab_path:
    path = pathlib.Path(vocab_path)
  else:
    from llmrec_jax.data import vocab  # pylint: disable=g-import-not-at-top
    path = vocab.trained_vocab_path(vocab.dataset_texts(data), vocab_size=dataset_vocab_size)
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
    config, params = assign.load_generator(checkpoint, size)
    config = model_sizes.t5_config(size, vocab_size=config.vocab_size, dropout_rate=dropout_rate) \
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
  """Unique item and user IDs from generator params (the `alternating.IdAssigner` protocol)."""

  def __init__(self, config: network.T5Config, tokenizer, data: RecData, item_texts: Sequence[str], *,
               options: GeneratorOptions = GeneratorOptions(), max_levels: int = 18,
               leaky_user_ids: bool = False, progress: bool = True):
    self.config, self.tokenizer, self.data = config, tokenizer, data
    self.item_texts = list(item_texts)
    self.options, self.leaky, self.progress = options, leaky_user_ids, progress
    self.schedule = uniqueness.EscalationSchedule(max_levels=max_levels)
    self.stats: dict[str, Any] = {}

  def __call__(self, gen_params: Any, item_ids: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    gen = T5IdGenerator(self.config, gen_params, self.tokenizer, self.options, progress=self.progress)
    key = assign.token_key_fn(self.tokenizer)
    items = assign.assign_ids(gen, self.item_texts, self.schedule, uniqueness.IdNamespace(key))
    texts = user_ids.user_history_texts(self.data, items.ids, leaky=self.leaky)
    users = assign.assign_ids(gen, texts, self.schedule, uniqueness.IdNamespace(key))
    self.stats = {"items": assign.id_stats(items.ids, items, None, key),
                  "users": assign.id_stats(users.ids, users, None, key)}
    return list(items.ids), list(users.ids)


def initial_ids(kind: str, data: RecData, data_dir: str, *, assigner: Optional[GeneratorAssigner] = None,
                gen_params: Any = None) -> tuple[list[str], list[str]]:
  """Item IDs per item index and user IDs per user index for round 0.

  bootstrap: from the (bootstrapped) generator; reference: the released IDs, users from the
  generator; title: normalised titles made unique, users "user <raw id>" (ablations, demos)."""
  if kind not in INITIAL_IDS:
    raise ValueError(f"initial_ids must be one of {INITIAL_IDS}, got {kind!r}")
  if kind == "title":
    item_tab, user_tab = task_builders.title_id_tables(data)
    return [item_tab.ids[i] for i in data.item_ids], [user_tab.ids[u] for u in data.user_ids]
  if assigner is None:
    raise ValueError(f"initial_ids={kind!r} needs the generator")
  if kind == "bootstrap":
    return assigner(gen_params)
  ref = id_tables.load_reference_ids(data_dir)
  missing = [i for i in data.item_ids if not ref.ids.get(i)]
  if missing:
    raise ValueError(f"{data_dir}: {len(missing)} items have no (or an empty) reference ID, e.g. {missing[0]}")
  items = [ref.ids[i] for i in data.item_ids]
  gen = T5IdGenerator(assigner.config, gen_params, assigner.tokenizer, assigner.options, progress=assigner.progress)
  texts = user_ids.user_history_texts(data, items, leaky=assigner.leaky)
  users = assign.assign_ids(gen, texts, assigner.schedule, uniqueness.IdNamespace(assign.token_key_fn(assigner.tokenizer)))
  return items, list(users.ids)


def bootstrap_generator(data: RecData, item_texts: Sequence[str], tokenizer, vocab_size: int, *,
                        size: str, steps: int, seed: int, targets: str = "tfidf", data_dir: str = "",
                        max_input_tokens: int = 64) -> tuple[network.T5Config, Any, dict[str, Any]]:
  """Trains the generator from random init to write keyword IDs (no pretrained T5 here)."""
  titles = [keywords.item_title(m) for m in data.item_meta]
  wanted = assign.bootstrap_targets(targets, data, data_dir, titles)
  cfg = bootstrap.BootstrapConfig(model_size=size, steps=steps, seed=seed, max_input_tokens=max_input_tokens)
  return bootstrap.train_generator(item_texts, wanted, tokenizer, vocab_size, cfg)


def punctuation_token_ids(tokenizer) -> np.ndarray:
  """First token of each punctuation character (the official ID-phase mask set)."""
  import string  # pylint: disable=g-import-not-at-top
  return np.unique([tokenizer.encode(p)[0] for p in string.punctuation if tokenizer.encode(p)]).astype(np.int32)
