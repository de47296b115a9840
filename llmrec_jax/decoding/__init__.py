"""Decoding: item trie, beam search with a constraint hook, HF-style diverse beam search.

Modules: `trie` (host build, device walk), `beam_search` (T5X-compatible search and the
trie-constrained `decode_fn`), `diverse` (HF group beam search; `num_groups=1` is HF beam
search). Nothing here imports the network, the models or gin.
"""
