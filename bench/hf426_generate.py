"""The official IDGenRec decoding calls under transformers 4.26.0 (run with that environment's
python, see bench/hf426_env.sh); driven by bench/hf426_parity.py through npz/json files.

  python bench/hf426_generate.py eval  --model DIR --data IN.npz --out OUT.npz
  python bench/hf426_generate.py group --model DIR --data IN.npz --out OUT.npz
  python bench/hf426_generate.py ids   --model DIR --data IN.npz --out OUT.json --spiece SPM

`eval`: per prompt (batch 1, as the official test loop), `generate(num_beams=10,
num_return_sequences=10, max_length=50, prefix_allowed_tokens_fn=trie)` with IDGenRec's
`Trie.get` over `[0] + item tokens + EOS` (`[]` off the trie). IN.npz: prompts [N, S] (0 = pad),
items [I, T] (-1 = pad, EOS included). OUT.npz: sequences [N, 10, L] (decoder start dropped, -1
pad), scores [N, 10] (`sequences_scores`).

`group`: per text, per level (dp, m): `generate(num_beams=10, num_beam_groups=10,
diversity_penalty=dp, min_length=m, max_length=m+10, num_return_sequences=10,
suppress_tokens=...)`. IN.npz: inputs [N, S], levels [Lv, 2], suppress [X]. OUT.npz: sequences
[N, Lv, 10, L], scores [N, Lv, 10].

`ids`: IDGenRec's `generate_item_id_from_text` loop (src/utils/indexing.py) over the inputs in
order: dp 1..9 then min_length += 10, the first candidate (HF `batch_decode(skip_special_tokens)`,
then `" ".join(re.findall(r"\\b\\w+\\b", text))`) not yet taken. OUT.json: {"ids", "levels"}.
Prints one JSON line (versions, seconds).
"""
import argparse
import json
import re
import time

import numpy as np
import torch
import transformers

MAX_LENGTH = 50
NUM = 10


class Trie:
  """IDGenRec's `generation_trie.Trie` (dict of dicts; `get` = children of a prefix, [] off it)."""

  def __init__(self, sequences):
    self.root = {}
    for seq in sequences:
      node = self.root
      for tok in seq:
        node = node.setdefault(tok, {})

  def get(self, prefix):
    node = self.root
    for tok in prefix:
      if tok not in node:
        return []
      node = node[tok]
    return list(node.keys())


def _rows(arr, pad):
  return [[int(x) for x in row if x != pad] for row in arr]


def _pack(seqs, shape_prefix):
  """-1-padded int32 array of shape shape_prefix + [L] from a flat list of token lists."""
  width = max([len(s) for s in seqs] + [1])
  out = np.full((len(seqs), width), -1, np.int32)
  for i, s in enumerate(seqs):
    out[i, :len(s)] = s
  return out.reshape(tuple(shape_prefix) + (width,))


def run_eval(model, data):
  items = _rows(data["items"], -1)
  trie = Trie([[0] + seq for seq in items])
  allowed = lambda batch_id, sent: trie.get(sent.tolist())  # noqa: E731  (official closure)
  seqs, scores = [], []
  for prompt in _rows(data["prompts"], 0):
    with torch.no_grad():
      out = model.generate(input_ids=torch.tensor([prompt]), max_length=MAX_LENGTH,
                           prefix_allowed_tokens_fn=allowed, num_beams=NUM,
                           num_return_sequences=NUM, output_scores=True,
                           return_dict_in_generate=True)
    seqs += [row[1:] for row in out.sequences.tolist()]
    scores.append(out.sequences_scores.numpy())
  n = len(scores)
  return {"sequences": _pack(seqs, (n, NUM)), "scores": np.stack(scores).astype(np.float32)}


def _group_generate(model, prompt, dp, m, suppress):
  with torch.no_grad():
    return model.generate(input_ids=torch.tensor([prompt]), num_beams=NUM, num_beam_groups=NUM,
                          do_sample=False, diversity_penalty=float(dp), min_length=int(m),
                          max_length=int(m) + 10, num_return_sequences=NUM,
                          suppress_tokens=suppress, output_scores=True,
                          return_dict_in_generate=True)


def run_group(model, data):
  suppress = [int(x) for x in data["suppress"]] or None
  levels = data["levels"].tolist()
  seqs, scores = [], []
  prompts = _rows(data["inputs"], 0)
  for prompt in prompts:
    for dp, m in levels:
      out = _group_generate(model, prompt, dp, m, suppress)
      seqs += [row[1:] for row in out.sequences.tolist()]
      scores.append(out.sequences_scores.numpy())
  n, lv = len(prompts), len(levels)
  return {"sequences": _pack(seqs, (n, lv, NUM)),
          "scores": np.stack(scores).reshape(n, lv, NUM).astype(np.float32)}


def run_ids(model, data, spiece):
  """The official loop (no cap on levels, as the official code)."""
  tokenizer = transformers.T5Tokenizer(vocab_file=spiece)
  suppress = [int(x) for x in data["suppress"]] or None
  taken, ids, levels = set(), [], []
  for prompt in _rows(data["inputs"], 0):
    dp, min_l, level, found = 1.0, 1, 0, None
    while found is None:
      out = _group_generate(model, prompt, dp, min_l, suppress)
      for text in tokenizer.batch_decode(out.sequences, skip_special_tokens=True):
        cand = " ".join(re.findall(r"\b\w+\b", text))
        if cand not in taken:
          found = cand
          taken.add(cand)
          break
      if found is None:
        level += 1
      dp += 1
      if dp >= 10:
        min_l += 10
        dp = 1.0
    ids.append(found)
    levels.append(level)
  return {"ids": ids, "levels": levels}


def main():
  p = argparse.ArgumentParser()
  p.add_argument("mode", choices=("eval", "group", "ids"))
  p.add_argument("--model", required=True)
  p.add_argument("--data", required=True)
  p.add_argument("--out", required=True)
  p.add_argument("--spiece")
  p.add_argument("--threads", type=int, default=1)
  args = p.parse_args()
  torch.set_num_threads(args.threads)
  model = transformers.T5ForConditionalGeneration.from_pretrained(args.model).eval()
  data = np.load(args.data)
  t0 = time.time()
  if args.mode == "eval":
    np.savez(args.out, **run_eval(model, data))
  elif args.mode == "group":
    np.savez(args.out, **run_group(model, data))
  else:
    with open(args.out, "w", encoding="utf-8") as f:
      json.dump(run_ids(model, data, args.spiece), f)
  print(json.dumps({"mode": args.mode, "transformers": transformers.__version__,
                    "torch": torch.__version__, "seconds": time.time() - t0}))


if __name__ == "__main__":
  main()
