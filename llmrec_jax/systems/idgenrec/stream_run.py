"""The decoder-only (whole-stream) run of `llmrec_jax.train`: build the recommender, train it
(alternating with ID phases when a generator is given; over a mixture's catalogues when given),
test, and return the summary in the shape `train` prints and `experiments.table` reads."""
from __future__ import annotations

from typing import Any

import jax

from llmrec_jax import decoder_model, model_sizes
from llmrec_jax.network import decoder_only
from llmrec_jax.systems.idgenrec import stream_id_phase, stream_training
from llmrec_jax.training import stopping


def train_stream(item_ids, data, tokenizer, vocab_size: int, *, rec_size: str,
                  dropout_rate: float, schedule: stream_training.StreamSchedule, model_dir: str,
                  log_fn, stream_ids: stream_id_phase.StreamIdSchedule,
                  generator=None, mixture=None, partitioner=None, user_tokens=None
                  ) -> dict[str, Any]:
  """The decoder-only form: whole-stream training (alternating with ID phases when
  `generator` = (model, params, assign, item_text_NxL) is given), then the test; `mixture` =
  (catalogues, epoch -> users) trains on a mixture (`run_data.mixture`); `partitioner` shards the
  train steps over its mesh; `user_tokens` (int32 [num_users], each < vocab_size) start each
  user's stream and prompts in place of the shared start token."""
  if generator is not None and user_tokens is not None:
    raise ValueError("user_tokens are not supported with ID phases (a generator): the ID phase's "
                     "streams start with the shared start token")
  config = model_sizes.t5_config(rec_size, vocab_size=vocab_size, dropout_rate=dropout_rate)
  model = decoder_model.DecoderOnlyModel(decoder_only.DecoderOnlyTransformer(config),
                                         trie_softmax=schedule.trie_softmax)
  params = model.get_initial_variables(jax.random.PRNGKey(schedule.seed),
                                       {"decoder_input_tokens": (2, 16)})["params"]
  item_tokens = [tokenizer.encode(t) for t in item_ids]
  catalogues, epoch_users = mixture or ((), None)
  trainer = stream_training.StreamTrainer(model, params, data.sequences, item_tokens, schedule,
                                          vocab_size=vocab_size, model_dir=model_dir,
                                          log_fn=log_fn, catalogues=catalogues,
                                          epoch_users=epoch_users, partitioner=partitioner,
                                          user_tokens=user_tokens)
  runner = trainer
  if generator is not None:
    gen_model, gen_params, assign_items, text_NxL = generator
    runner = stream_id_phase.StreamAlternation(trainer, gen_model, gen_params, assign_items,
                                               tokenizer.encode, text_NxL, stream_ids)
  runner.maybe_restore()
  with stopping.stop_on_signals() as stop:
    summary = runner.run(stop=stop)
  if summary is None:   # stopped by SIGINT / SIGTERM after a checkpoint
    return {"complete": False, "stopped_by": stop.name, "stopped_at_step": int(trainer.state.step),
            "best": None}
  best = summary["best"] or {}
  # The shape `main` prints and `experiments.table` reads: test metrics of the selected model.
  summary["best"] = {"round": best.get("epoch"), "valid": {k[len("valid/"):]: v for k, v in
                                                         best.items() if k.startswith("valid/")},
                     "test": summary["test"],
                     "eval_users": {"test": len(trainer.eval_users(schedule.test_users,
                                                                   schedule.seed + 1))}}
  return summary
