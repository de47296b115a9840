"""SentencePiece vocabularies for the SeqIO tasks: a local model file, or one trained on the dataset.

T5 conventions everywhere: pad 0, eos 1, unk 2, no bos. There is no `gs://` default: with no path we
train a unigram model on the dataset's own text (item texts, textual IDs, prompt words) and cache it on
disk under a hash of everything that went into it, so the second call (and every other process) reuses it.
`seqio` is imported inside the functions (it takes ~35 s cold here); this module is cheap to import.
"""
from __future__ import annotations

import hashlib
import io
import os
import pathlib
from typing import Iterable

from llmrec_jax.data.records import RecData

PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
T5_EXTRA_IDS = 100
# Where the library caches what it computes from a dataset (SentencePiece models here, item
# embeddings in `item_embeddings`); `LLMREC_JAX_CACHE` moves it.
CACHE_ROOT = pathlib.Path(os.environ.get("LLMREC_JAX_CACHE", pathlib.Path.home() / ".cache" / "llmrec_jax"))
DEFAULT_CACHE_DIR = CACHE_ROOT / "spm"
# Bump when the trainer settings below change, so old cache entries are not reused.
_TRAINER_VERSION = "unigram-v1"
# Always in the training text, so prompt punctuation (the " ; " history separator, "?", "->") and
# digits never become <unk>, whatever the dataset's own text contains.
_ALWAYS = ("; , . ? ! : -> ( ) [ ] { } / & - + = * % $ # @ < > ' \" _ |", "0 1 2 3 4 5 6 7 8 9")


def dataset_texts(data: RecData | None = None, id_tables: Iterable = (), extra_texts: Iterable[str] = ()
                  ) -> list[str]:
  """The sentences a dataset vocabulary is trained on, in a deterministic order.

  Args:
    data: item texts come from `render_item_text(meta)` per item (items without metadata give none).
    id_tables: `IdTable`s whose textual IDs are added, in sorted raw-id order.
    extra_texts: anything else that must tokenize well (prompt templates).
  Returns:
    non-empty strings; two fixed lines of punctuation and digits are always appended.
  """
  texts = []
  if data is not None:
    from llmrec_jax.data.item_text import render_item_text  # data-core module, imported when used
    texts.extend(render_item_text(meta) for meta in data.item_meta if meta)
  for table in id_tables:
    texts.extend(table.ids[k] for k in sorted(table.ids))
  texts.extend(extra_texts)
  texts.extend(_ALWAYS)
  return [t for t in texts if t and t.strip()]


def train_sentencepiece(texts: list[str], *, vocab_size: int, model_type: str = "unigram") -> bytes:
  """Train a T5-style SentencePiece model (pad 0, eos 1, unk 2, no bos) and return its serialized proto.

  `hard_vocab_limit=False` lets a small corpus give fewer pieces than `vocab_size` instead of failing.
  """
  import sentencepiece as spm
  if not texts:
    raise ValueError("train_sentencepiece: no text to train on")
  if vocab_size < 8:
    raise ValueError(f"train_sentencepiece: vocab_size {vocab_size} is too small")
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab_size, model_type=model_type,
      pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1, character_coverage=1.0,
      hard_vocab_limit=False, num_threads=1, minloglevel=2, input_sentence_size=2_000_000,
      shuffle_input_sentence=False)
  return model.getvalue()


def _cache_key(texts: list[str], vocab_size: int, model_type: str) -> str:
  h = hashlib.sha256(f"{_TRAINER_VERSION}|{model_type}|{vocab_size}\n".encode())
  for t in texts:
    h.update(t.encode("utf-8"))
    h.update(b"\n")
  return h.hexdigest()[:24]


def trained_vocab_path(texts: list[str], *, cache_dir: str | os.PathLike = DEFAULT_CACHE_DIR,
                       vocab_size: int = 8000, model_type: str = "unigram") -> pathlib.Path:
  """Path of the cached model for exactly these texts and settings; trains and writes it if missing."""
  cache_dir = pathlib.Path(cache_dir)
  path = cache_dir / f"spm_{model_type}_{vocab_size}_{_cache_key(texts, vocab_size, model_type)}.model"
  if not path.exists():
    proto = train_sentencepiece(texts, vocab_size=vocab_size, model_type=model_type)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(proto)
    os.replace(tmp, path)  # atomic: concurrent processes never read a half-written model
  return path


def get_vocabulary(vocab_path: str | os.PathLike | None = None, *, data: RecData | None = None,
                   id_tables: Iterable = (), extra_texts: Iterable[str] = (),
                   cache_dir: str | os.PathLike = DEFAULT_CACHE_DIR, vocab_size: int = 8000,
                   extra_ids: int | None = None):
  """A `seqio.SentencePieceVocabulary` from a local model file or trained on the dataset.

  Args:
    vocab_path: a local `.model` file, e.g. the T5 `spiece.model` (with the default `extra_ids=100`
      this gives T5's 32,100 ids). When None, a model is trained on `dataset_texts(data, id_tables,
      extra_texts)` and cached in `cache_dir`.
    data, id_tables, extra_texts: the training text (ignored when `vocab_path` is given).
    cache_dir: where trained models are kept, keyed by a hash of texts and settings.
    vocab_size: requested size of a trained model (a small corpus may give fewer pieces).
    extra_ids: sentinel ids appended at the end; default 100 for a given file (T5), 0 for a trained one.
  Returns:
    seqio.SentencePieceVocabulary with pad 0, eos 1, unk 2.
  """
  import seqio
  if vocab_path is not None:
    path = pathlib.Path(vocab_path)
    if str(vocab_path).startswith("gs://"):
      raise ValueError(f"{vocab_path}: remote vocabularies are not supported offline; give a local .model file")
    if not path.is_file():
      raise FileNotFoundError(f"{path}: SentencePiece model file not found")
    return seqio.SentencePieceVocabulary(str(path), extra_ids=T5_EXTRA_IDS if extra_ids is None else extra_ids)
  if data is None and not id_tables and not extra_texts:
    raise ValueError("get_vocabulary: give vocab_path, or data / id_tables / extra_texts to train on")
  texts = dataset_texts(data, id_tables, extra_texts)
  path = trained_vocab_path(texts, cache_dir=cache_dir, vocab_size=vocab_size)
  return seqio.SentencePieceVocabulary(str(path), extra_ids=extra_ids or 0)
