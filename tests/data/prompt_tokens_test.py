"""Whole-prompt tokenization: rendering, slots on the ID tokens, misaligned IDs, truncation."""
import numpy as np
import pytest
import sentencepiece as spm

from llmrec_jax.data import prompt_tokens as pt
from llmrec_jax.data import task_builders as tb
from llmrec_jax.data import vocab as vocab_lib
from llmrec_jax.data.prompts import HISTORY_SEP, Template, get_template_set, render_prompt
from llmrec_jax.data.synthetic import make_synthetic

C = 20
TEMPLATES = get_template_set("llmrec_default")


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
  data = make_synthetic(num_users=12, num_items=30, seed=0, num_topics=3, min_len=5, max_len=9)
  item, user = tb.title_id_tables(data)
  texts = vocab_lib.dataset_texts(data, [item, user], [t.input for t in TEMPLATES.train])
  sp = spm.SentencePieceProcessor(model_file=str(vocab_lib.trained_vocab_path(
      texts, cache_dir=tmp_path_factory.mktemp("spm"), vocab_size=400)))
  ids = [item[r] for r in data.item_ids]
  return sp, ids, [user[r] for r in data.user_ids]


def _prompt(parts, template, n=6, input_len=1000, **kw):
  sp, ids, users = parts
  history = ids[:n]
  return history, pt.tokenize_prompt(sp, template, user_id=users[0], history=history,
                                     id_tokens=[sp.encode(i) for i in history], input_len=input_len,
                                     slot_stride=C, **kw)


def _segments(sp, template, user_id, history, eos_id=1):
  """Brute force: each segment tokenized alone (template text stripped), concatenated."""
  before, after = template.input.split("{history}", 1)
  enc = lambda s: sp.encode(s.format(user_id=user_id).strip()) if s.strip() else []
  tokens, slots = enc(before), [-1] * len(enc(before))
  for h, item in enumerate(history):
    if h:
      tokens += sp.encode(HISTORY_SEP.strip())
      slots += [-1] * len(sp.encode(HISTORY_SEP.strip()))
    tokens += sp.encode(item)
    slots += [h * C + t for t in range(len(sp.encode(item)))]
  return tokens + enc(after) + [eos_id], slots + [-1] * (len(enc(after)) + 1)


def _slotted_tokens(out, c=C):
  """{(h, t): token} at every slotted position."""
  return {divmod(s, c): tok for tok, s in zip(out.tokens, out.slots) if s >= 0}


@pytest.mark.parametrize("template", TEMPLATES.train + TEMPLATES.unseen)
def test_render_matches_render_prompt_and_spans_cut_out_the_ids(parts, template):
  _, ids, users = parts
  text, _, _, spans = pt.render_with_spans(template, user_id=users[1], history=ids[:4], target=ids[5])
  assert text == render_prompt(template, user_id=users[1], history=ids[:4], target=ids[5])[0]
  assert [text[a:b] for a, b in spans] == ids[:4]


@pytest.mark.parametrize("template", TEMPLATES.train)
def test_spaced_templates_tokenize_whole_as_segment_by_segment(parts, template):
  sp, _, users = parts
  history, out = _prompt(parts, template)
  tokens, slots = _segments(sp, template, users[0], history)
  assert (out.tokens, out.slots, out.first_item, out.misaligned) == (tokens, slots, 0, 0)
  text, _ = render_prompt(template, user_id=users[0], history=history, target="")
  assert out.tokens == sp.encode(text) + [1]


@pytest.mark.parametrize("template", TEMPLATES.train[:3])
def test_piece_offsets_find_the_same_items_as_the_concatenation(parts, template):
  sp, ids, users = parts
  text, before, after, spans = pt.render_with_spans(template, user_id=users[0], history=ids[:5])
  id_tokens = [sp.encode(i) for i in ids[:5]]
  by_concat = pt._ranges_by_concat(sp.encode(text), pt._encode_segment(sp, before), id_tokens,
                                   pt._encode_segment(sp, HISTORY_SEP), pt._encode_segment(sp, after))
  assert by_concat is not None and by_concat == pt._ranges_by_offsets(sp, text, spans)


def test_punctuation_glued_after_history_keeps_slots_on_the_id_tokens(parts):
  sp, _, users = parts
  template = Template("User {user_id} bought {history}, predict the next item .", "{target}")
  history, out = _prompt(parts, template)
  segment_tokens, _ = _segments(sp, template, users[0], history)
  assert len(out.tokens) == len(segment_tokens) - 1  # "▁," alone, "," glued to the last ID
  assert out.misaligned == 0
  assert _slotted_tokens(out) == {(h, t): tok for h, i in enumerate(history)
                                  for t, tok in enumerate(sp.encode(i))}


def test_an_id_glued_to_text_keeps_its_hard_tokens(parts):
  sp, _, users = parts
  template = Template("items:{history} . next ?", "{target}")
  history, out = _prompt(parts, template)
  whole = sp.encode(render_prompt(template, user_id=users[0], history=history, target="")[0])
  assert out.tokens == whole + [1] and out.misaligned == 1
  expected = {(h, t): tok for h, i in enumerate(history) if h for t, tok in enumerate(sp.encode(i))}
  assert _slotted_tokens(out) == expected  # item 0 (after "items:") is not spliced


def test_offsets_count_bytes_of_non_ascii_text(parts):
  sp, ids, users = parts
  template = Template("café ☕ items:{history} . next ?", "{target}")
  history = [f"é{i}" if h % 2 else i for h, i in enumerate(ids[:5])]
  out = pt.tokenize_prompt(sp, template, user_id=users[0], history=history, input_len=1000,
                           slot_stride=64, id_tokens=[sp.encode(i) for i in history])
  text, _ = render_prompt(template, user_id=users[0], history=history, target="")
  assert out.tokens == sp.encode(text) + [1] and out.misaligned == 1
  expected = {(h, t): tok for h, i in enumerate(history) if h for t, tok in enumerate(sp.encode(i))}
  assert _slotted_tokens(out, 64) == expected


def test_free_running_replaces_each_id_by_placeholders(parts):
  template = TEMPLATES.train[2]
  _, forced = _prompt(parts, template)
  history, out = _prompt(parts, template, free_running_steps=3)
  tokens, slots = [], []
  for tok, s in zip(forced.tokens, forced.slots):
    if s < 0:
      tokens.append(tok)
      slots.append(-1)
    elif s % C == 0:  # the first token of item s // C: its 3 placeholders
      tokens += [pt.PLACEHOLDER_ID] * 3
      slots += [s + t for t in range(3)]
  assert (out.tokens, out.slots) == (tokens, slots)
  assert {s // C for s in out.slots if s >= 0} == set(range(len(history)))


@pytest.mark.parametrize("template", [TEMPLATES.train[0], TEMPLATES.train[6],
                                      Template("{history}, predict", "{target}")])
@pytest.mark.parametrize("free_running_steps", [None, 4])
def test_truncation_drops_the_fewest_oldest_items_that_fit(parts, template, free_running_steps):
  sp, ids, users = parts
  history = ids[:12]
  kw = dict(user_id=users[0], slot_stride=C, free_running_steps=free_running_steps)
  full = lambda k: pt.tokenize_prompt(sp, template, history=history[k:], input_len=10_000,
                                      id_tokens=[sp.encode(i) for i in history[k:]], **kw)
  lengths = [len(full(k).tokens) for k in range(len(history))]
  for input_len in sorted({lengths[0], lengths[0] - 1, lengths[3] + 1, lengths[7], lengths[-1]}):
    out = pt.tokenize_prompt(sp, template, history=history, input_len=input_len,
                             id_tokens=[sp.encode(i) for i in history], **kw)
    k = next(k for k, n in enumerate(lengths) if n <= input_len)  # brute force: drop one at a time
    assert out.first_item == k
    assert (out.tokens, out.slots) == (full(k).tokens, full(k).slots)
  with pytest.raises(ValueError, match="one history item"):
    pt.tokenize_prompt(sp, template, history=history, input_len=lengths[-1] - 1,
                       id_tokens=[sp.encode(i) for i in history], **kw)


@pytest.fixture(scope="module")
def official(shared_dir):
  """T5's SentencePiece, the official prompt file and Beauty's reference item IDs."""
  from llmrec_jax.data import id_tables, prompts
  sp = spm.SentencePieceProcessor(model_file=str(shared_dir / "vocab" / "t5_spiece.model"))
  templates = prompts.load_idgenrec_prompts(shared_dir / "data" / "idgenrec_prompts.txt")
  table = id_tables.load_reference_ids(shared_dir / "data" / "amazon2014_beauty")
  return sp, templates, list(table.ids.values())


@pytest.mark.parametrize("t", range(11))
def test_every_official_template_tokenizes_as_the_whole_rendered_prompt(official, t):
  """Whole-string SentencePiece encoding, and the soft slots (the ID phase's) sit on exactly the
  hard ID tokens (the rec phase's), for each of the 10 + 1 official templates with real IDs."""
  sp, templates, ids = official
  template = (templates.train + templates.unseen)[t]
  rng = np.random.default_rng(t)
  for trial in range(5):
    history = [ids[i] for i in rng.choice(len(ids), size=int(rng.integers(1, 21)), replace=False)]
    user = ids[int(rng.integers(len(ids)))]  # a textual user ID is words too
    id_tokens = [sp.encode(i) for i in history]
    out = pt.tokenize_prompt(sp, template, user_id=user, history=history, id_tokens=id_tokens,
                             input_len=4096, slot_stride=64)
    whole = sp.encode(render_prompt(template, user_id=user, history=history, target="")[0])
    assert out.tokens == whole + [1], (t, trial)
    assert out.misaligned == 0
    assert _slotted_tokens(out, 64) == {(h, k): tok for h, toks in enumerate(id_tokens)
                                        for k, tok in enumerate(toks)}, (t, trial)


@pytest.mark.parametrize("free_running_steps", [None, 4])
def test_right_truncation_keeps_the_first_tokens_and_the_items_they_reach(parts, free_running_steps):
  """'right' = the untruncated prompt's first input_len - 1 tokens (and slots) + EOS; the prompt
  then holds the items that start before the cut (brute force from the full prompt's slots)."""
  sp, ids, users = parts
  template = TEMPLATES.train[0]
  history = ids[:12]
  kw = dict(user_id=users[0], history=history, id_tokens=[sp.encode(i) for i in history],
            slot_stride=C, free_running_steps=free_running_steps)
  full = pt.tokenize_prompt(sp, template, input_len=10_000, **kw)
  first_slot = {}  # item -> position of its first token
  for s, slot in enumerate(full.slots):
    if slot >= 0:
      first_slot.setdefault(slot // C, s)
  for input_len in (len(full.tokens), len(full.tokens) - 1, first_slot[5] + 1, first_slot[5] + 2, 3):
    out = pt.tokenize_prompt(sp, template, input_len=input_len, truncation="right", **kw)
    if input_len >= len(full.tokens):
      assert out == full
      continue
    assert out.tokens == full.tokens[:input_len - 1] + [1]
    assert out.slots == full.slots[:input_len - 1] + [-1]
    assert (out.first_item, out.end_item) == (0, sum(s < input_len - 1 for s in first_slot.values()))
    assert {s // C for s in out.slots if s >= 0} == set(range(out.end_item))


def test_right_truncation_equals_hf_t5_tokenizer_truncation(official, shared_dir, monkeypatch):
  """The official collator: `tokenizer(text, truncation=True, max_length=n)`, HF's T5 tokenizer
  on T5's SentencePiece model (the slow one: it encodes as SentencePiece does)."""
  monkeypatch.setenv("USE_TF", "0")  # keep transformers from importing TensorFlow
  transformers = pytest.importorskip("transformers")
  sp, templates, ids = official
  tok = transformers.T5Tokenizer(vocab_file=str(shared_dir / "vocab" / "t5_spiece.model"), legacy=True)
  rng = np.random.default_rng(0)
  for t in (0, 2, 6):
    template = templates.train[t]
    history = [ids[i] for i in rng.choice(len(ids), size=20, replace=False)]
    user = ids[int(rng.integers(len(ids)))]
    text = render_prompt(template, user_id=user, history=history, target="")[0]
    assert tok(text).input_ids == sp.encode(text) + [1]
    n_full = len(sp.encode(text)) + 1
    for max_length in (n_full, n_full - 1, n_full // 2, 40):
      out = pt.tokenize_prompt(sp, template, user_id=user, history=history, input_len=max_length,
                               id_tokens=[sp.encode(i) for i in history], slot_stride=64,
                               truncation="right")
      assert out.tokens == tok(text, truncation=True, max_length=max_length).input_ids, (t, max_length)
