"""DecoderOnlyModel: whole-sequence losses equal per-position ones, bucketing leaves the loss
unchanged, and trie-constrained top-K equals brute-force ranking of every item."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llmrec_jax.data import item_streams
from llmrec_jax.decoder_model import DecoderOnlyModel, make_topk_fn
from llmrec_jax.decoding import trie as trie_lib
from llmrec_jax.network import T5Config, decoder_only

V = 24
ITEM_TOKENS = [[5, 6], [5, 7], [8], [9, 10, 11], [5, 6, 12], [13, 14], [13, 15, 16], [17],
               [9, 18], [19, 20, 21]]


def _setup(trie_softmax=True, seed=0):
  cfg = T5Config(vocab_size=V, emb_dim=32, num_heads=4, head_dim=8, num_encoder_layers=1,
                 num_decoder_layers=2, mlp_dim=48, dropout_rate=0.0, logits_via_embedding=True,
                 relative_attention_num_buckets=8, relative_attention_max_distance=16)
  model = DecoderOnlyModel(decoder_only.DecoderOnlyTransformer(cfg), trie_softmax=trie_softmax)
  params = model.get_initial_variables(jax.random.PRNGKey(seed),
                                       {"decoder_input_tokens": (2, 8)})["params"]
  trie = trie_lib.ItemTrie.from_sequences([t + [1] for t in ITEM_TOKENS], eos_id=1, vocab_size=V)
  nodes, branching = trie.choice_nodes()
  return model, params, trie, item_streams.TrieChoices(nodes, branching, trie.token_ids)


def _sequences(num_users=12, seed=0):
  rng = np.random.default_rng(seed)
  return [rng.integers(0, len(ITEM_TOKENS), size=rng.integers(3, 8)).astype(np.int32)
          for _ in range(num_users)]


def _item_logprobs(model, params, trie, history):
  """log P(item | history) of every item under the trie's distribution, from a plain forward
  pass over each `prompt + item tokens` sequence (no whole-sequence batching, no cache)."""
  prefix = [item_streams.START_ID] + list(item_streams.user_stream(history, ITEM_TOKENS, eos_id=1))
  seqs = [prefix + list(t) + [1] for t in ITEM_TOKENS]
  length = max(len(s) for s in seqs)
  tokens = np.zeros((len(seqs), length), np.int32)
  for r, s in enumerate(seqs):
    tokens[r, :len(s)] = s
  logits = np.asarray(model.module.apply({"params": params}, jnp.asarray(tokens)), np.float64)
  allowed_MxV = np.asarray(trie_lib.allowed_mask(trie.arrays, jnp.arange(trie.num_nodes), V))
  out = np.zeros(len(seqs))
  for r, item_tokens in enumerate(ITEM_TOKENS):
    node = 0
    for j, tok in enumerate(list(item_tokens) + [1]):
      row = logits[r, len(prefix) - 1 + j]
      allowed = allowed_MxV[node]
      top = row[allowed].max()
      out[r] += row[tok] - top - np.log(np.exp(row[allowed] - top).sum())
      node = int(trie.step_np(np.array([node]), np.array([tok]))[0])
  return out


def _item_logprob(model, params, trie, history, item):
  return _item_logprobs(model, params, trie, history)[item]


def _epoch_nll_sum(model, params, trie, choices, seqs, tokens_per_batch):
  streams = item_streams.train_streams(seqs, ITEM_TOKENS, max_items=20, eos_id=1)
  nodes = choices.streams(seqs, 20)
  total = items = 0.0
  loss_fn = jax.jit(lambda p, b, t: model.loss_fn(p, b, None, t))
  for batch in item_streams.epoch_batches(streams, tokens_per_batch=tokens_per_batch, seed=0,
                                          epoch=0, multiple=8, choices=choices, node_streams=nodes):
    _, m = loss_fn(params, batch, trie.arrays)
    total += float(m["item_nll"]) * float(m["num_items"])
    items += float(m["num_items"])
  return total, items


def test_whole_sequence_loss_equals_per_position_item_losses():
  model, params, trie, choices = _setup()
  seqs = _sequences(num_users=3)
  total, items = _epoch_nll_sum(model, params, trie, choices, seqs, tokens_per_batch=64)
  expected = 0.0
  for seq in seqs:
    train = seq[:-2]
    for i in range(len(train)):
      expected -= _item_logprob(model, params, trie, train[:i], int(train[i]))
  assert items == sum(len(s) - 2 for s in seqs)
  np.testing.assert_allclose(total, expected, rtol=1e-4)


@pytest.mark.parametrize("trie_softmax", [True, False])
def test_bucketing_leaves_the_loss_unchanged(trie_softmax):
  model, params, trie, choices = _setup(trie_softmax)
  seqs = _sequences()
  if trie_softmax:
    a = _epoch_nll_sum(model, params, trie, choices, seqs, tokens_per_batch=32)
    b = _epoch_nll_sum(model, params, trie, choices, seqs, tokens_per_batch=256)
    np.testing.assert_allclose(a, b, rtol=1e-5)
    return
  streams = item_streams.train_streams(seqs, ITEM_TOKENS, max_items=20, eos_id=1)
  sums = []
  loss_fn = jax.jit(lambda p, b: model.loss_fn(p, b, None))
  for tokens in (32, 256):
    total = 0.0
    for batch in item_streams.epoch_batches(streams, tokens_per_batch=tokens, seed=0, epoch=0,
                                            multiple=8):
      _, m = loss_fn(params, batch)
      total += float(m["loss"]) * float(m["num_tokens"])
    sums.append(total)
  np.testing.assert_allclose(sums[0], sums[1], rtol=1e-5)


def test_trie_topk_equals_brute_force_ranking():
  model, params, trie, _ = _setup(seed=3)
  seqs = _sequences(num_users=4, seed=5)
  hist, _ = item_streams.held_out_histories(seqs, "test", max_items=20)
  prompt, valid = item_streams.prompt_batch(hist, ITEM_TOKENS, eos_id=1, multiple=8)
  k = len(ITEM_TOKENS)
  topk = make_topk_fn(model, num_beams=k, max_decode_len=trie.max_len)
  items, scores = topk(params, jnp.asarray(prompt), jnp.asarray(valid), trie.arrays)
  for u, h in enumerate(hist):
    brute = _item_logprobs(model, params, trie, h)
    np.testing.assert_array_equal(np.asarray(items[u]), np.argsort(-brute, kind="stable"))
    np.testing.assert_allclose(np.asarray(scores[u]), np.sort(brute)[::-1], atol=1e-4)
