"""One prompt, tokenized whole, with the soft slot of every token (the IDGenRec ID phase).

`tokenize_prompt` renders a template with a user ID and the history's textual IDs (joined by
`prompts.HISTORY_SEP`), tokenizes the whole string once with SentencePiece, appends EOS and marks
where each history ID's tokens landed: `slots[s] = h * C + t` when token s is token t of history
item h (h counts the items kept in the prompt, oldest first), -1 elsewhere.

Token ownership: token s belongs to item h when the piece starts inside the ID's characters or in
the whitespace just before them (SentencePiece attaches that space to the ID's first piece, as the
dummy prefix does when the ID is tokenized alone). Two ways to find them, same answer:
  * aligned (the common case): the whole prompt's ids equal the template text before `{history}`,
    each ID, the separator and the text after, each tokenized alone and concatenated; the item
    ranges then follow from the lengths (SentencePiece splits at whitespace, so templates that put
    spaces around `{history}` always align);
  * otherwise: the piece offsets of the whole prompt (`begin` of every piece) give the ranges.
Slots (teacher forcing): an item whose tokens inside the prompt equal the ID tokenized alone gets
slots h * C + t; an item whose tokens differ (e.g. `"items:{history}"` glues the first ID to the
colon, so its first piece loses its leading "▁") keeps its hard tokens (all -1) and is counted in
`misaligned`: splicing one-hot soft IDs then reproduces the rec-phase prompt token for token.
Free-running generation (`free_running_steps=F`): each kept item's tokens are replaced by F
placeholder tokens with slots h * C + 0..F-1 (C = F).
Truncation (`Truncation`), of a prompt longer than `input_len` tokens with EOS:
  * 'drop_oldest': the oldest history items are dropped until the prompt fits; one item that does
    not fit raises ValueError;
  * 'right' (HF `truncation=True`, the official collator): the first input_len - 1 tokens and EOS.
    The slots beyond the cut go with their tokens; the prompt holds the items with at least one
    token left (`end_item`), the last one possibly in part.
"""
from __future__ import annotations

import dataclasses
import enum
import functools
from typing import Optional, Sequence

from llmrec_jax.data.prompts import HISTORY_SEP, Template

PLACEHOLDER_ID = 2  # <unk>: any non-pad id, so the position is attended (mask = token > 0)


class Truncation(str, enum.Enum):
  """How a prompt longer than `input_len` is cut (module docstring)."""
  DROP_OLDEST = "drop_oldest"  # ours: whole history items, oldest first
  RIGHT = "right"  # the official HF collator: the first input_len - 1 tokens, then EOS


@dataclasses.dataclass(frozen=True)
class PromptTokens:
  """One tokenized prompt.

  Attributes:
    tokens: token ids, EOS last.
    slots: soft slot per token (h * C + t, or -1).
    first_item: the prompt holds `history[first_item:end_item]` (the older items were dropped
      to fit).
    misaligned: kept items whose tokens inside the prompt differ from the ID tokenized alone.
    end_item: None (to the end), or where the right truncation cut the history.
  """
  tokens: list[int]
  slots: list[int]
  first_item: int
  misaligned: int
  end_item: Optional[int] = None


def sentencepiece_of(tokenizer):
  """The `SentencePieceProcessor` of a seqio vocabulary (its `tokenizer`), or the processor itself."""
  return getattr(tokenizer, "tokenizer", tokenizer)


def render_with_spans(template: Template, *, user_id: str, history: Sequence[str], target: str = "",
                      sep: str = HISTORY_SEP) -> tuple[str, str, str, list[tuple[int, int]]]:
  """(prompt, text before the history, text after it, (start, end) characters of each history ID).

  The prompt equals `prompts.render_prompt(...)[0]` for the same arguments.
  """
  values = {"user_id": user_id, "target": target}
  before, after = template.input.split("{history}", 1)
  before, after = before.format_map(values), after.format_map(values)
  spans, pos = [], len(before)
  for h, item in enumerate(history):
    pos += len(sep) if h else 0
    spans.append((pos, pos + len(item)))
    pos += len(item)
  return before + sep.join(history) + after, before, after, spans


def _piece_begins(sp, text: str) -> list[int]:
  """Byte offset (in `text` as UTF-8) where each piece of `sp.encode(text)` starts."""
  from sentencepiece import sentencepiece_pb2  # pylint: disable=g-import-not-at-top
  proto = sentencepiece_pb2.SentencePieceText.FromString(sp.encode(text, out_type="serialized_proto"))
  return [p.begin for p in proto.pieces]


def _ranges_by_concat(ids, pre, id_tokens, sep_tokens, post):
  """Token ranges of the items when `ids` is the segment-by-segment concatenation, else None."""
  if len(ids) != (len(pre) + sum(map(len, id_tokens)) + len(sep_tokens) * (len(id_tokens) - 1)
                  + len(post)):
    return None
  expect, ranges = list(pre), []
  for h, toks in enumerate(id_tokens):
    if h:
      expect.extend(sep_tokens)
    ranges.append((len(expect), len(expect) + len(toks)))
    expect += toks
  return ranges if ids == expect + list(post) else None


def _ranges_by_offsets(sp, text, spans):
  """Token ranges of the items from the pieces' character offsets (see the module docstring)."""
  begins = _piece_begins(sp, text)
  at_byte = lambda char: len(text[:char].encode("utf-8"))  # SentencePiece offsets count bytes
  ranges, s = [], 0
  for start, end in spans:
    owned_from = len(text[:start].rstrip().encode("utf-8"))  # from the whitespace before the ID
    end = at_byte(end)
    while s < len(begins) and begins[s] < owned_from:
      s += 1
    a = s
    while s < len(begins) and begins[s] < end:
      s += 1
    ranges.append((a, s))
  return ranges


@functools.lru_cache(maxsize=4096)
def _encode_segment(sp, text: str) -> tuple[int, ...]:
  """Tokens of template text around the history, tokenized alone (cached: few distinct texts)."""
  return tuple(sp.encode(text.strip())) if text.strip() else ()


def _layout(sp, template, user_id, history, id_tokens, sep, sep_tokens):
  """(ids of the whole prompt without EOS, token range of each history item)."""
  text, before, after, spans = render_with_spans(template, user_id=user_id, history=history, sep=sep)
  ids = sp.encode(text)
  ranges = _ranges_by_concat(ids, _encode_segment(sp, before), id_tokens, sep_tokens,
                             _encode_segment(sp, after))
  return ids, (ranges if ranges is not None else _ranges_by_offsets(sp, text, spans))


def _assemble(ids, ranges, id_tokens, slot_stride, free_running_steps, placeholder_id, eos_id):
  """(tokens with EOS, slots, misaligned items) from the whole prompt's ids and item ranges."""
  tokens, slots, misaligned, s = [], [], 0, 0
  for h, ((a, b), alone) in enumerate(zip(ranges, id_tokens)):
    tokens += ids[s:a]
    slots += [-1] * (a - s)
    if free_running_steps is not None:
      tokens += [placeholder_id] * free_running_steps
      slots += [h * slot_stride + t for t in range(free_running_steps)]
    else:
      tokens += ids[a:b]
      same = ids[a:b] == list(alone)
      misaligned += not same
      slots += [h * slot_stride + t for t in range(b - a)] if same else [-1] * (b - a)
    s = b
  tokens += ids[s:] + [eos_id]
  slots += [-1] * (len(ids) - s + 1)
  return tokens, slots, misaligned


def tokenize_prompt(sp, template: Template, *, user_id: str, history: Sequence[str],
                    id_tokens: Sequence[Sequence[int]], input_len: int, slot_stride: int,
                    sep: str = HISTORY_SEP, eos_id: int = 1, free_running_steps: Optional[int] = None,
                    placeholder_id: int = PLACEHOLDER_ID,
                    truncation: Truncation | str = Truncation.DROP_OLDEST) -> PromptTokens:
  """Tokens and soft slots of one prompt (see the module docstring).

  Args:
    sp: a `SentencePieceProcessor` (or a seqio vocabulary: its `tokenizer` is used).
    template: fills `{user_id}` and `{history}` of `template.input`.
    user_id: the user's textual ID.
    history: the history items' textual IDs, oldest first (at least one).
    id_tokens: each history ID tokenized alone (`sp.encode(id)`), aligned with `history`.
    input_len: S, the most tokens (EOS included).
    slot_stride: C in h * C + t; at least the longest ID's token count (or `free_running_steps`).
    free_running_steps: None (teacher forcing) or F placeholder tokens per item.
    truncation: how a prompt over `input_len` is cut (`Truncation`).
  """
  truncation = Truncation(truncation)
  sp = sentencepiece_of(sp)
  if not history or len(history) != len(id_tokens):
    raise ValueError(f"tokenize_prompt: {len(history)} history IDs and {len(id_tokens)} token lists")
  sep_tokens = _encode_segment(sp, sep)

  def build(k):
    ids, ranges = _layout(sp, template, user_id, history[k:], id_tokens[k:], sep, sep_tokens)
    tokens, slots, bad = _assemble(ids, ranges, id_tokens[k:], slot_stride, free_running_steps,
                                   placeholder_id, eos_id)
    return PromptTokens(tokens, slots, k, bad), ranges

  out, ranges = build(0)
  if truncation is Truncation.RIGHT:
    return _cut_right(out, _item_starts(ranges, free_running_steps), input_len, eos_id)
  if len(out.tokens) > input_len and len(history) > 1:
    out = _drop_oldest(build, out, ranges, input_len, len(history), free_running_steps)
  if len(out.tokens) > input_len:
    raise ValueError(f"a prompt with one history item needs {len(out.tokens)} > input_len={input_len} "
                     f"tokens: {template.input!r}")
  return out


def _item_starts(ranges, free_running_steps):
  """Where each item's tokens start in the assembled prompt (placeholders replace the ID tokens
  in free-running generation)."""
  starts, shift = [], 0
  for a, b in ranges:
    starts.append(a + shift)
    if free_running_steps is not None:
      shift += free_running_steps - (b - a)
  return starts


def _cut_right(out: PromptTokens, starts, input_len: int, eos_id: int) -> PromptTokens:
  """`out` cut to its first input_len - 1 tokens and EOS when longer (HF's right truncation);
  it then holds the items that start before the cut."""
  if len(out.tokens) <= input_len:
    return out
  kept = sum(a < input_len - 1 for a in starts)
  return dataclasses.replace(out, tokens=out.tokens[:input_len - 1] + [eos_id],
                             slots=out.slots[:input_len - 1] + [-1], end_item=out.first_item + kept)


def _drop_oldest(build, full, ranges, input_len, n, free_running_steps):
  """The prompt of the fewest dropped oldest items that fits (`history[k:]`, k <= n - 1).

  Starts from the k the full prompt's item ranges predict (whole tokenization splits at
  whitespace, so dropping an item removes its tokens and the separator's), then checks by
  tokenizing: steps k up while it does not fit, down while k - 1 fits.
  """
  starts = _item_starts(ranges, free_running_steps)
  k = next((k for k in range(1, n) if len(full.tokens) - (starts[k] - starts[0]) <= input_len), n - 1)
  out, _ = build(k)
  while len(out.tokens) > input_len and k < n - 1:
    k += 1
    out, _ = build(k)
  while k > 1:
    prev, _ = build(k - 1)
    if len(prev.tokens) > input_len:
      break
    k, out = k - 1, prev
  return out
