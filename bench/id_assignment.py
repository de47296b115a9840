"""Item-ID assignment throughput: our batched, jit-compiled escalation vs the official loop.

  python bench/id_assignment.py --generator DIR [--data_dir DIR] [--hf_items 200] [--our_items 2000]
                                [--batch_size 256] [--max_input_tokens 256] [--max_levels 18]

DIR is an HF folder with `spiece.model` (e.g. written by `python -m llmrec_jax.systems.idgenrec.assign
--save_generator DIR`). The official side is IDGenRec's `generate_item_id_from_text` loop: one item
at a time, `model.generate(num_beams=10, num_beam_groups=10, diversity_penalty=dp, min_length=m,
max_length=m+10, num_return_sequences=10)` with dp 1..9 then m += 10, first untaken normalised
candidate, on `transformers.T5ForConditionalGeneration.from_pretrained(DIR)` (same weights). HF
moved group beam search to a Hub repo in transformers 4.57 (no network here), so it is plugged in
through `generate(custom_generate=...)` as HF's own classic loop: HF `BeamSearchScorer` with
`num_beam_groups`, HF `HammingDiversityLogitsProcessor`, HF min-length processor and cache.
Prints one JSON object: items/s of each, the speed-up, and how many of the first `hf_items` IDs agree.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]


def hf_group_beam_search(model, input_ids, logits_processor, stopping_criteria, generation_config,
                         **model_kwargs):
  """HF's classic `_group_beam_search` loop (transformers <= 4.55), built from HF's own parts."""
  import torch  # pylint: disable=g-import-not-at-top
  from transformers.generation.beam_search import BeamSearchScorer  # pylint: disable=g-import-not-at-top
  from transformers.generation.logits_process import HammingDiversityLogitsProcessor  # pylint: disable=g-import-not-at-top
  gc = generation_config
  num_beams, num_groups = gc.num_beams, gc.num_beam_groups
  sub = num_beams // num_groups
  batch_size = input_ids.shape[0] // num_beams
  device = input_ids.device
  scorer = BeamSearchScorer(batch_size=batch_size, num_beams=num_beams, device=device,
                            length_penalty=gc.length_penalty, do_early_stopping=gc.early_stopping,
                            num_beam_hyps_to_keep=gc.num_return_sequences, num_beam_groups=num_groups,
                            max_length=gc.max_length)
  hamming = HammingDiversityLogitsProcessor(gc.diversity_penalty, num_beams, num_groups)
  pad, eos = gc._pad_token_tensor, gc._eos_token_tensor  # pylint: disable=protected-access
  beam_scores = torch.full((batch_size, num_beams), -1e9, dtype=torch.float, device=device)
  beam_scores[:, ::sub] = 0
  beam_scores = beam_scores.view(-1)
  cur_len = input_ids.shape[-1]
  prompt_len = cur_len
  model_kwargs = model._get_initial_cache_position(cur_len, device, model_kwargs)  # pylint: disable=protected-access
  while True:
    current = torch.zeros(batch_size * num_beams, dtype=input_ids.dtype, device=device)
    reorder = torch.zeros(batch_size * num_beams, dtype=torch.long, device=device)
    inputs = model.prepare_inputs_for_generation(input_ids, **model_kwargs)
    out = model(**inputs, return_dict=True)
    model_kwargs = model._update_model_kwargs_for_generation(out, model_kwargs, is_encoder_decoder=True)  # pylint: disable=protected-access
    logits_all = out.logits[:, -1, :].float()
    for g in range(num_groups):
      start, end = g * sub, min(g * sub + sub, num_beams)
      size = end - start
      idx = [b * num_beams + i for b in range(batch_size) for i in range(start, end)]
      group_ids = input_ids[idx]
      scores = torch.nn.functional.log_softmax(logits_all[idx, :], dim=-1)
      vocab = scores.shape[-1]
      processed = logits_processor(group_ids, scores)
      processed = hamming(group_ids, processed, current_tokens=current, beam_group_idx=g)
      scores = (processed + beam_scores[idx].unsqueeze(-1)).view(batch_size, size * vocab)
      keep = max(2, 1 + (eos.shape[0] if eos is not None else 0)) * size
      scores, tokens = torch.topk(scores, keep, dim=1, largest=True, sorted=True)
      beams = torch.div(tokens, vocab, rounding_mode="floor")
      tokens = tokens % vocab
      res = scorer.process(group_ids, scores, tokens, beams, pad_token_id=pad, eos_token_id=eos,
                           group_index=g, decoder_prompt_len=prompt_len)
      beam_scores[idx] = res["next_beam_scores"]
      nxt, bidx = res["next_beam_tokens"], res["next_beam_indices"]
      input_ids[idx] = group_ids[bidx]
      current[idx] = nxt
      reorder[idx] = num_beams * torch.div(bidx, size, rounding_mode="floor") + start + (bidx % size)
    input_ids = torch.cat([input_ids, current.unsqueeze(-1)], dim=-1)
    model_kwargs["past_key_values"].reorder_cache(reorder)
    cur_len += 1
    if scorer.is_done or all(stopping_criteria(input_ids, None)):
      break
  final = scorer.finalize(input_ids, beam_scores, tokens, beams, pad_token_id=pad, eos_token_id=eos,
                          max_length=stopping_criteria.max_length, decoder_prompt_len=prompt_len)
  return final["sequences"]


def official_loop(model, tokenizer, texts, max_input_tokens, max_levels):
  """IDGenRec's item loop (one item at a time); returns (ids, levels)."""
  import torch  # pylint: disable=g-import-not-at-top
  from llmrec_jax.data.id_tables import normalize_id  # pylint: disable=g-import-not-at-top
  from llmrec_jax.indexing import text_tokens, uniqueness  # pylint: disable=g-import-not-at-top
  taken, ids, levels = set(), [], []
  # Same emittable tokens as ours (`generator.allowed_tokens`): no pad, no ids past the pieces.
  suppress = [0] + list(range(text_tokens.num_pieces(tokenizer), model.config.vocab_size))
  schedule = uniqueness.EscalationSchedule(max_levels=max_levels)
  for text in texts:
    enc = torch.from_numpy(text_tokens.encode_texts([text], tokenizer, max_input_tokens).astype(np.int64))
    enc = enc[:, :int((enc[0] > 0).sum())]
    got = None
    for level in schedule.levels():
      with torch.no_grad():
        out = model.generate(enc, num_beams=10, num_beam_groups=10, diversity_penalty=level.diversity_penalty,
                             min_length=level.min_length, max_length=level.max_length,
                             num_return_sequences=10, do_sample=False, suppress_tokens=suppress,
                             custom_generate=hf_group_beam_search)
      for row in out.tolist():
        cand = normalize_id(text_tokens.decode_ids(row[1:], tokenizer))
        if cand and cand not in taken:
          got = cand
          break
      if got is not None:
        break
    taken.add(got)
    ids.append(got)
    levels.append(level.index if got is not None else -1)
  return ids, levels


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--generator", required=True, help="HF folder with spiece.model")
  p.add_argument("--data_dir", default=str(REPO / ".." / "shared" / "data" / "amazon2014_beauty"))
  p.add_argument("--hf_items", type=int, default=200)
  p.add_argument("--our_items", type=int, default=2000)
  p.add_argument("--batch_size", type=int, default=256)
  p.add_argument("--max_input_tokens", type=int, default=256)
  p.add_argument("--max_levels", type=int, default=18)
  args = p.parse_args()

  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  from llmrec_jax.data import sources  # pylint: disable=g-import-not-at-top
  from llmrec_jax.systems.idgenrec import assign  # pylint: disable=g-import-not-at-top
  from llmrec_jax.indexing import text_tokens, uniqueness
  from llmrec_jax.systems.idgenrec.generator import GeneratorOptions, T5IdGenerator  # pylint: disable=g-import-not-at-top

  data = sources.load_p5(args.data_dir)
  texts, _ = assign.item_texts_and_titles(data)
  tokenizer = text_tokens.load_sentencepiece(pathlib.Path(args.generator) / assign.SPM_IN_CHECKPOINT)
  config, params = assign.load_generator(args.generator)
  schedule = uniqueness.EscalationSchedule(max_levels=args.max_levels)

  def ours(n):
    gen = T5IdGenerator(config, params, tokenizer, GeneratorOptions(batch_size=args.batch_size,
                                                                    max_input_tokens=args.max_input_tokens))
    assign.assign_ids(gen, texts[:min(n, 16)], schedule, uniqueness.IdNamespace())  # compile (not timed)
    t = time.time()
    res = assign.assign_ids(gen, texts[:n], schedule, uniqueness.IdNamespace())
    return res, time.time() - t

  res_small, sec_small = ours(args.hf_items)
  res_big, sec_big = ours(args.our_items)

  torch.set_num_threads(os.cpu_count() or 1)
  hf = transformers.T5ForConditionalGeneration.from_pretrained(args.generator).eval()
  t = time.time()
  hf_ids, hf_levels = official_loop(hf, tokenizer, texts[:args.hf_items], args.max_input_tokens, args.max_levels)
  sec_hf = time.time() - t
  agree = sum(a == b for a, b in zip(hf_ids, res_small.ids))
  ours_rate = args.our_items / sec_big
  print(json.dumps({
      "bench": "id_assignment", "dataset": data.name, "generator": args.generator,
      "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg": os.getloadavg()},
      "ours": {"items": args.our_items, "seconds": sec_big, "items_per_s": ours_rate,
               "batch_size": args.batch_size, "levels": res_big.level_histogram(),
               "same_items_as_hf": {"items": args.hf_items, "seconds": sec_small,
                                    "items_per_s": args.hf_items / sec_small}},
      "hf_official_loop": {"items": args.hf_items, "seconds": sec_hf, "items_per_s": args.hf_items / sec_hf,
                           "torch_threads": torch.get_num_threads(),
                           "levels": {str(l): hf_levels.count(l) for l in sorted(set(hf_levels))}},
      "speedup": ours_rate / (args.hf_items / sec_hf),
      "ids_agreeing_with_hf": {"agree": agree, "of": args.hf_items},
  }, indent=1))


if __name__ == "__main__":
  main()
