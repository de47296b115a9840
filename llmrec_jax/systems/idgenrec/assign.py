"""Textual item and user IDs from a T5 generator: library entry points and CLI.

  python -m llmrec_jax.systems.idgenrec.assign --data_dir DIR --out ids.txt [--user_out users.txt]
      [--generator_checkpoint DIR] [--bootstrap {tfidf,reference,none}] [--bootstrap_steps N]
      [--bootstrap_holdout F] [--max_items N] [--batch_size B] [--vocab PATH|dataset:N]
      [--save_generator DIR] [--resolution {level_by_level,item_by_item}] [--[no]keep_case]
      [--group_search {per_group,4.26}]

Without `--generator_checkpoint` the generator is first bootstrapped from random init on every
item (`bootstrap.py`), then every item (the first `--max_items`) gets a unique ID by escalating
diverse beam search (`uniqueness.py`), then (with `--user_out`) every user gets one from the IDs of its training items
(`user_ids.py`). Writes `IdTable` files and prints a stats JSON on stdout.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import shutil
import time
from typing import Optional, Sequence

import numpy as np

from absl import app
from absl import flags

from llmrec_jax import cli_flags
from llmrec_jax.data import id_tables, item_text, sources
from llmrec_jax.data.records import RecData
from llmrec_jax.indexing import keywords, text_tokens, uniqueness, user_ids
from llmrec_jax.systems.idgenrec.generator import GeneratorOptions, T5IdGenerator

log = logging.getLogger(__name__)

T5_SPM = (pathlib.Path(__file__).resolve().parents[3] / ".." / "shared" / "vocab" / "t5_spiece.model").resolve()
T5_VOCAB_SIZE = 32128  # T5's embedding rows: 32,000 pieces + 100 extra ids, padded to a multiple of 128
SPM_IN_CHECKPOINT = "spiece.model"  # the generator's vocab, saved beside its weights


def token_key_fn(tokenizer: text_tokens.Tokenizer):
  """ID string -> its token ids as a tuple (the uniqueness key seen by the recommender)."""
  return lambda text: tuple(tokenizer.encode(text))


def assign_ids(generator: T5IdGenerator, texts: Sequence[str], schedule: uniqueness.EscalationSchedule,
               namespace: uniqueness.IdNamespace, fallback_texts: Optional[Sequence[str]] = None,
               assignment: uniqueness.IdAssignment = uniqueness.IdAssignment()
               ) -> uniqueness.AssignmentResult:
  """Unique IDs for `texts` (one per key, in order) with `generator`'s escalating diverse search,
  resolved and normalised per `assignment`."""
  def on_level(level, tried, resolved):
    log.info("level %d (dp %g, length %d-%d): %d of %d resolved", level.index, level.diversity_penalty,
             level.min_length, level.max_length, resolved, tried)
  return uniqueness.assign_unique(len(texts), generator.candidate_fn(texts), schedule, namespace,
                                  fallback_texts=fallback_texts if fallback_texts is not None else texts,
                                  on_level=on_level, resolution=assignment.resolution,
                                  keep_case=assignment.keep_case)


def item_texts_and_titles(data: RecData) -> tuple[list[str], list[str]]:
  """Generator inputs (`render_item_text`, Yelp fields when items have a `name` but no `title`) and titles."""
  yelp = any("name" in m and "title" not in m for m in data.item_meta[:100])
  fields = item_text.YELP_FIELDS if yelp else item_text.DEFAULT_FIELDS
  return ([item_text.render_item_text(m, fields=fields) for m in data.item_meta],
          [keywords.item_title(m) for m in data.item_meta])


def id_stats(ids: Sequence[str], result: uniqueness.AssignmentResult, titles: Optional[Sequence[str]] = None,
             token_key=None) -> dict:
  """Counts for the stats JSON: size, uniqueness (strings and token sequences), lengths, levels."""
  words = np.array([len(t.split()) for t in ids]) if ids else np.zeros((1,))
  stats = {"count": len(ids), "unique": len(set(ids)), "empty": sum(not t for t in ids),
           "mean_words": float(words.mean()), "max_words": int(words.max()),
           "levels": result.level_histogram(), "fallbacks": result.num_fallbacks}
  if token_key is not None:
    stats["unique_token_sequences"] = len({token_key(t) for t in ids})
  if titles is not None:
    stats["title_word_share"] = keywords.title_word_share(ids, titles)
  return stats


# ----------------------------------------------------------------------------- CLI plumbing
def generator_tokenizer(spec: Optional[str], data: RecData, checkpoint: Optional[str]):
  """(tokenizer, path): `--vocab` PATH, `dataset:N` (SentencePiece trained on the item texts, cached),
  or default: the checkpoint's own `spiece.model`, else the T5 vocab."""
  if spec is None and checkpoint and (pathlib.Path(checkpoint) / SPM_IN_CHECKPOINT).is_file():
    spec = str(pathlib.Path(checkpoint) / SPM_IN_CHECKPOINT)
  if spec is None or spec == "t5":
    spec = str(T5_SPM)
  if spec.startswith("dataset:"):
    from llmrec_jax.data import vocab  # pylint: disable=g-import-not-at-top
    size = int(spec.split(":", 1)[1])
    path = vocab.trained_vocab_path(vocab.dataset_texts(data), vocab_size=size)
  else:
    path = pathlib.Path(spec)
  return text_tokens.load_sentencepiece(path), pathlib.Path(path)


def model_vocab_size(tokenizer, spm_path: pathlib.Path) -> int:
  """Embedding rows for a generator over this vocab: T5's 32128, else pieces rounded up to 128."""
  if spm_path.resolve() == T5_SPM:
    return T5_VOCAB_SIZE
  return -(-text_tokens.num_pieces(tokenizer) // 128) * 128


def load_generator(path: str, size: str = "t5_tiny"):
  """(T5Config, params) from an HF folder (`config.json`) or the latest step of an Orbax
  checkpoint root (e.g. MODEL_DIR/generator). An Orbax checkpoint's network is the T5Config
  saved with it (dropout off); `size` (a `model_sizes` name) builds it only for a checkpoint
  saved without one, with a warning."""
  folder = pathlib.Path(path)
  if (folder / "config.json").is_file():
    from llmrec_jax.checkpoints import load_hf_t5  # pylint: disable=g-import-not-at-top
    return load_hf_t5(folder)
  from llmrec_jax import model_sizes  # pylint: disable=g-import-not-at-top
  from llmrec_jax.checkpoints import orbax_t5x  # pylint: disable=g-import-not-at-top
  step = orbax_t5x.latest_step(str(folder))
  if step is None:
    raise FileNotFoundError(f"{folder}: neither an HF folder (config.json) nor an Orbax checkpoint dir")
  step_path = orbax_t5x.step_dir(str(folder), step)
  params = orbax_t5x.restore_params(step_path)
  config = orbax_t5x.saved_model_config(step_path)
  if config is not None:
    return dataclasses.replace(config, dropout_rate=0.0), params
  vocab = int(np.shape(params["token_embedder"]["embedding"])[0])
  log.warning("%s holds no %s: building the generator from the size name %r", step_path,
              orbax_t5x.MODEL_CONFIG, size)
  return model_sizes.t5_config(size, vocab_size=vocab, dropout_rate=0.0), params


def bootstrap_targets(kind: str, data: RecData, data_dir: str, titles: Sequence[str]) -> list[str]:
  """Bootstrap target per item: "tfidf" keyword IDs cased as in the title (a token copy of the
  generator's input; the IDs it writes are lowercased by `normalize_id` afterwards unless
  `IdAssignment.keep_case`) or the "reference" IDs."""
  if kind == "tfidf":
    return keywords.keyword_ids(titles, keep_case=True)
  if kind == "reference":
    ref = id_tables.load_reference_ids(data_dir)
    return [ref.ids.get(item, "") for item in data.item_ids]
  raise ValueError(f"unknown bootstrap kind {kind!r}")


def bootstrap_defaults():
  from llmrec_jax.systems.idgenrec import bootstrap  # pylint: disable=g-import-not-at-top
  return bootstrap.BootstrapConfig()


def define_flags(fv: flags.FlagValues) -> list[flags.FlagHolder]:
  """The CLI's flags on `fv` (see the module doc)."""
  boot = bootstrap_defaults()
  return [
      flags.DEFINE_string("data_dir", None, "P5-layout dataset folder.", required=True, flag_values=fv),
      flags.DEFINE_string("out", None, "Item ID table to write (IdTable format).", required=True, flag_values=fv),
      flags.DEFINE_string("user_out", None, "User ID table to write.", flag_values=fv),
      flags.DEFINE_string("generator_checkpoint", None, "HF folder or Orbax dir; skips bootstrapping.",
                          flag_values=fv),
      flags.DEFINE_string("bootstrap_from", None, "HF folder or Orbax dir to continue bootstrap training from.",
                          flag_values=fv),
      flags.DEFINE_string("generator_size", "t5_tiny", "Model size (bootstrap; Orbax restore of a checkpoint "
                          "saved without its config).", flag_values=fv),
      flags.DEFINE_enum("bootstrap", "tfidf", ("tfidf", "reference", "none"),
                        "Bootstrap targets; 'none' = random-init generator (tests only).", flag_values=fv),
      flags.DEFINE_integer("bootstrap_steps", boot.steps, "Bootstrap optimizer steps.", flag_values=fv),
      flags.DEFINE_integer("bootstrap_batch", boot.batch_size, "Bootstrap batch size.", flag_values=fv),
      flags.DEFINE_float("bootstrap_lr", boot.learning_rate, "Peak AdamW learning rate.", flag_values=fv),
      flags.DEFINE_float("bootstrap_word_dropout", boot.word_dropout,
                         "Per-chunk drop probability of the training views (augment.py).", flag_values=fv),
      flags.DEFINE_float("bootstrap_copy_rate", boot.copy_rate,
                         "Share of training targets that are contiguous title-word runs.", flag_values=fv),
      flags.DEFINE_float("bootstrap_splice_rate", boot.splice_rate,
                         "Share of training items spliced with another title (tfidf targets only).",
                         flag_values=fv),
      flags.DEFINE_float("bootstrap_holdout", boot.holdout_fraction,
                         "Fraction of items left out of bootstrap training to measure copying.", flag_values=fv),
      flags.DEFINE_string("vocab", None, "Generator SentencePiece: PATH, 't5' (default) or dataset:N.",
                          flag_values=fv),
      flags.DEFINE_string("id_vocab", str(T5_SPM), "Recommender vocab for token-level uniqueness.",
                          flag_values=fv),
      flags.DEFINE_integer("max_items", None, "IDs for the first N items only (quick runs; bootstrap trains "
                           "on all; no user IDs).", lower_bound=1, flag_values=fv),
      flags.DEFINE_integer("batch_size", 256, "Texts per compiled search call.", flag_values=fv),
      flags.DEFINE_integer("max_input_tokens", boot.max_input_tokens,
                           "Generator input truncation (official 256); also used for bootstrap training.",
                           flag_values=fv),
      flags.DEFINE_integer("max_levels", 18, "Escalation levels before the fallback.", flag_values=fv),
      flags.DEFINE_enum("resolution", uniqueness.LEVEL_BY_LEVEL, uniqueness.RESOLUTIONS,
                        "How taken candidates escalate: all pending keys a level at a time, or "
                        "item_by_item (the official loop's result).", flag_values=fv),
      flags.DEFINE_enum("group_search", "per_group", uniqueness.GROUP_SEARCHES,
                        "Diverse beam search pools: per_group (newer transformers) or 4.26 (one "
                        "pool per item, the official code's transformers).", flag_values=fv),
      flags.DEFINE_bool("keep_case", True, "Keep the case of generated IDs (the official "
                        "normalisation); --nokeep_case lowercases them.", flag_values=fv),
      flags.DEFINE_bool("extractive", False, "Generate only tokens of the item's own input text (not "
                        "official; see GeneratorOptions).", flag_values=fv),
      flags.DEFINE_bool("leaky_user_ids", False, "Official leaky user IDs (comparison only).", flag_values=fv),
      flags.DEFINE_string("save_generator", None, "Write the generator as an HF folder (+ spiece.model).",
                          flag_values=fv),
      flags.DEFINE_integer("seed", 0, "Bootstrap seed.", flag_values=fv),
      flags.DEFINE_bool("no_progress", False, "No progress bars.", flag_values=fv),
  ]


def _generator(args, data, all_texts, all_titles, tokenizer, spm_path, stats: dict):
  """(network config, params) of the generator: a checkpoint, or bootstrapped here per the flags."""
  from llmrec_jax.systems.idgenrec import bootstrap  # pylint: disable=g-import-not-at-top
  if args.generator_checkpoint:
    stats["bootstrap"] = {"checkpoint": args.generator_checkpoint}
    return load_generator(args.generator_checkpoint, args.generator_size)
  cfg = bootstrap.BootstrapConfig(model_size=args.generator_size, steps=args.bootstrap_steps,
                                  batch_size=args.bootstrap_batch, learning_rate=args.bootstrap_lr,
                                  seed=args.seed, max_input_tokens=args.max_input_tokens,
                                  word_dropout=args.bootstrap_word_dropout, copy_rate=args.bootstrap_copy_rate,
                                  holdout_fraction=args.bootstrap_holdout,
                                  # a spliced title's target is its TF-IDF keyword ID: tfidf only
                                  splice_rate=args.bootstrap_splice_rate if args.bootstrap == "tfidf" else 0.0)
  vocab_size = model_vocab_size(tokenizer, spm_path)
  if args.bootstrap == "none":
    log.warning("--bootstrap none: the generator is random-init (its IDs are noise)")
    stats["bootstrap"] = {"kind": "none"}
    return bootstrap.init_generator(vocab_size, cfg)
  targets = bootstrap_targets(args.bootstrap, data, args.data_dir, all_titles)
  init = load_generator(args.bootstrap_from, args.generator_size)[1] if args.bootstrap_from else None
  config, params, boot = bootstrap.train_generator(all_texts, targets, tokenizer, vocab_size, cfg,
                                                   progress=not args.no_progress, init_params=init,
                                                   titles=all_titles)
  stats["bootstrap"] = {"kind": args.bootstrap, **boot}
  return config, params


def _assign_users(args, data, generator, item_ids, schedule, token_key, stats: dict) -> None:
  """Writes `--user_out`: a unique ID per user from the IDs of its (training) items."""
  t2 = time.time()
  user_texts = user_ids.user_history_texts(data, item_ids, leaky=args.leaky_user_ids)
  user_result = assign_ids(generator, user_texts, schedule, uniqueness.IdNamespace(token_key),
                           assignment=_assignment(args))
  users = id_tables.IdTable(kind="user", phase=0, ids=dict(zip(data.user_ids, user_result.ids)))
  users.validate_unique()
  users.save(args.user_out)
  stats["seconds_assign_users"] = time.time() - t2
  stats["user_ids"] = {**id_stats(user_result.ids, user_result, None, token_key), "leaky": args.leaky_user_ids}


def _assignment(args) -> uniqueness.IdAssignment:
  return uniqueness.IdAssignment(resolution=args.resolution, keep_case=args.keep_case,
                                 group_search=args.group_search)


def run(args, positional: Sequence[str] = ()) -> int:
  """The CLI's program on parsed flag values; prints the stats JSON."""
  del positional
  if args.max_items is not None and args.user_out:
    raise app.UsageError("--user_out needs IDs for every item: drop --max_items")
  data = sources.load_p5(args.data_dir)
  all_texts, all_titles = item_texts_and_titles(data)
  n = len(all_texts) if args.max_items is None else args.max_items
  texts, titles, item_keys = all_texts[:n], all_titles[:n], list(data.item_ids)[:n]
  tokenizer, spm_path = generator_tokenizer(args.vocab, data, args.generator_checkpoint or args.bootstrap_from)
  token_key = token_key_fn(text_tokens.load_sentencepiece(args.id_vocab))
  stats: dict = {"dataset": data.name, "items": len(item_keys), "generator_vocab": str(spm_path)}
  t0 = time.time()
  config, params = _generator(args, data, all_texts, all_titles, tokenizer, spm_path, stats)
  stats["seconds_bootstrap"] = time.time() - t0
  if args.save_generator:
    from llmrec_jax.checkpoints import save_hf_t5  # pylint: disable=g-import-not-at-top
    save_hf_t5(args.save_generator, config, params)
    shutil.copyfile(spm_path, pathlib.Path(args.save_generator) / SPM_IN_CHECKPOINT)
  options = GeneratorOptions(batch_size=args.batch_size, max_input_tokens=args.max_input_tokens,
                             extractive=args.extractive, hf_semantics=args.group_search)
  generator = T5IdGenerator(config, params, tokenizer, options, progress=not args.no_progress)
  schedule = uniqueness.EscalationSchedule(max_levels=args.max_levels)
  t1 = time.time()
  result = assign_ids(generator, texts, schedule, uniqueness.IdNamespace(token_key),
                      assignment=_assignment(args))
  stats["seconds_assign_items"] = time.time() - t1
  stats["items_per_second"] = len(texts) / max(stats["seconds_assign_items"], 1e-9)
  table = id_tables.IdTable(kind="item", phase=0, ids=dict(zip(item_keys, result.ids)))
  table.validate_unique()
  table.save(args.out)
  stats["item_ids"] = id_stats(result.ids, result, titles, token_key)
  log.info("item IDs: %s", json.dumps(stats["item_ids"]))
  if args.user_out:
    _assign_users(args, data, generator, result.ids, schedule, token_key, stats)
  print(json.dumps(stats, indent=1, sort_keys=True))
  return 0


def main(argv: Sequence[str]) -> int:
  """From Python: `argv` without the program name (flags parsed into a fresh set)."""
  return run(*cli_flags.parse(define_flags, argv))


if __name__ == "__main__":
  cli_flags.run_main(define_flags, run)
