"""Decoding: item trie, beam search with a constraint hook, HF-style diverse beam search.

Modules: `trie` (host build, device walk), `beams` (what both searches share: decoding state,
cache expansion and beam gathers, candidates, the constraint hook and `TrieConstraint`),
`beam_search` (T5X-compatible search and the trie-constrained `decode_fn`), `diverse` (HF group
beam search; `num_groups=1` is HF beam search), `group_pool` (its finished-hypothesis pools in
transformers 4.26's and newer conventions). Nothing here imports the network, the models or
gin.
"""
