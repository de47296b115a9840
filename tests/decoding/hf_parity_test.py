"""`diverse.hf_beam_search` vs HF transformers `generate(num_beams=K)` on a tiny random torch T5.

The JAX search calls the torch decoder through `jax.pure_callback` (re-running the whole prefix:
the callback ignores the cache), so both searches see the same logits. This pins the IDGenRec
evaluation semantics: trie via `prefix_allowed_tokens_fn`, `length_penalty`, HF's scoring
(sum logprob / new tokens incl. EOS), finishing and early-stopping rules.
This is the installed transformers (4.57 in CI); `hf_beam_search` follows 4.26 (the official
pin), which differs only in the divisor of beams cut at max length (n + 1 vs n new tokens), and
every case here avoids that (the trie ends each beam before, or length_penalty is 0). The check
against 4.26 itself is bench/hf426_parity.py. (HF group beam search moved to the Hub in 4.57, so
`diverse_test.py` and `group_pool_test.py` check groups against python transcriptions instead.)
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llmrec_jax.decoding import diverse
from llmrec_jax.decoding import trie as trie_lib

import torch  # noqa: E402
import transformers  # noqa: E402

V, B, S, EOS = 12, 3, 5, 1


@pytest.fixture(scope="module")
def t5():
  torch.manual_seed(0)
  cfg = transformers.T5Config(vocab_size=V, d_model=16, d_ff=32, num_layers=1,
                              num_decoder_layers=1, num_heads=2, d_kv=8, dropout_rate=0.0,
                              decoder_start_token_id=0, eos_token_id=EOS, pad_token_id=0)
  model = transformers.T5ForConditionalGeneration(cfg).eval()
  with torch.no_grad():
    model.lm_head.weight.mul_(4.0)  # spread the random logits so that beams differ
  enc_in = torch.randint(2, V, (B, S), generator=torch.Generator().manual_seed(1))
  with torch.no_grad():
    enc_out = model.get_encoder()(input_ids=enc_in).last_hidden_state
  return model, enc_in, enc_out


def _prefix_table(items):
  table = {}
  for s in items:
    for d in range(len(s)):
      table.setdefault(tuple(s[:d]), set()).add(s[d])
  return table


def _until_eos(row):
  row = [int(x) for x in row]
  return row[:row.index(EOS) + 1] if EOS in row else row


@pytest.mark.parametrize("k,length,lp,use_trie,n_items", [
    (4, 6, 1.0, True, 15), (3, 4, 0.0, False, 0), (5, 6, 2.0, True, 15), (10, 8, 1.0, True, 60)])
def test_hf_beam_search_matches_transformers_generate(t5, k, length, lp, use_trie, n_items):
  model, enc_in, enc_out = t5
  rng = np.random.default_rng(k)
  items = set()
  while len(items) < max(n_items, 1):
    items.add(tuple(rng.integers(2, V, size=rng.integers(1, 6)).tolist()) + (EOS,))
  items = [list(x) for x in items]
  table = _prefix_table(items)
  kw = {}
  if use_trie:
    # HF 4.57 rejects an empty list; off-trie beams are -inf anyway, so feed them pad.
    kw["prefix_allowed_tokens_fn"] = (
        lambda _, ids: sorted(table.get(tuple(ids.tolist()[1:]), [])) or [0])
  with torch.no_grad():
    out = model.generate(input_ids=enc_in, num_beams=k, num_return_sequences=k,
                         max_new_tokens=length, length_penalty=lp, do_sample=False,
                         output_scores=True, return_dict_in_generate=True, **kw)
  hf_seqs = out.sequences.reshape(B, k, -1)[:, :, 1:].numpy()
  hf_scores = out.sequences_scores.reshape(B, k).numpy()

  def host_logits(seqs, cur):
    prefix = torch.from_numpy(np.array(seqs)).long()[:, :int(cur) + 1]
    with torch.no_grad():
      logits = model(encoder_outputs=(enc_out.repeat_interleave(k, 0),),
                     decoder_input_ids=prefix).logits[:, -1]
    return logits.numpy().astype(np.float32)

  def tokens_to_logits(ds):
    logits = jax.pure_callback(host_logits, jax.ShapeDtypeStruct((B * k, V), jnp.float32),
                               ds.sequences, ds.cur_index)
    return logits, ds.cache

  trie = trie_lib.ItemTrie.from_sequences(items, vocab_size=V) if use_trie else None
  seqs, scores = jax.jit(lambda: diverse.hf_beam_search(
      jnp.zeros((B, length), jnp.int32), {}, tokens_to_logits, EOS, k, length_penalty=lp,
      trie=trie))()
  seqs, scores = np.asarray(seqs)[:, ::-1], np.asarray(scores)[:, ::-1]  # best first, like HF
  real = hf_scores > -1e8  # HF fills slots it cannot fill with ~-1e9-scored junk beams
  assert real.sum() >= B * (k - 1)
  np.testing.assert_allclose(scores[real], hf_scores[real], rtol=1e-4, atol=1e-4)
  assert np.all(np.isneginf(scores[~real]))
  for b in range(B):
    for j in range(k):
      if real[b, j]:
        assert _until_eos(seqs[b, j]) == _until_eos(hf_seqs[b, j]), (b, j)
        if use_trie:
          assert _until_eos(seqs[b, j]) in items
