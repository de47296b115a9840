"""`make demo`: the largest real thing that runs offline on a laptop CPU.

For now: a t5_tiny encoder-decoder learns the built-in copy task from random weights, printing
its loss as it falls, then decodes held-out inputs with jit-compiled beam search and reports
exact-match accuracy. (The IDGenRec end-to-end demo replaces this once training lands.)

  python -m llmrec_jax.demo [--steps 400] [--vocab 64] [--max_len 12]
"""
from __future__ import annotations

import argparse
import time

import jax
import numpy as np
import tqdm

from llmrec_jax import model_sizes, models, network, optimizers, toy_tasks, trainer
from llmrec_jax.train_state import TrainState


def run(steps: int = 400, vocab: int = 64, max_len: int = 12, batch_size: int = 64,
        seed: int = 0) -> dict[str, float]:
  rng = np.random.default_rng(seed)
  cfg = model_sizes.t5_config("t5_tiny", vocab_size=vocab, dropout_rate=0.0)
  model = models.EncoderDecoderModel(network.Transformer(cfg))
  example = toy_tasks.copy_task_batch(rng, batch_size, max_len, vocab)
  params = model.get_initial_variables(jax.random.PRNGKey(seed),
                                       {k: v.shape for k, v in example.items()})["params"]
  tx = optimizers.adamw(optimizers.linear_warmup_decay(3e-3, steps // 10, steps))
  t = trainer.Trainer(model.loss_fn, tx)
  state = TrainState.create(params, tx)
  first_loss = None
  with tqdm.trange(steps, desc="train t5_tiny on copy", unit="step") as bar:
    for step in bar:
      state, metrics = t.train(state, toy_tasks.copy_task_batch(rng, batch_size, max_len, vocab))
      if step % 50 == 0 or step == steps - 1:
        loss = float(metrics["loss"])
        first_loss = loss if first_loss is None else first_loss
        bar.set_postfix(loss=f"{loss:.3f}")
        tqdm.tqdm.write(f"step {step:4d}  loss {loss:.4f}  token accuracy {float(metrics['accuracy']):.3f}")
  held_out = toy_tasks.copy_task_batch(np.random.default_rng(seed + 1), 128, max_len, vocab)
  predict = jax.jit(lambda p, b: model.predict_batch(p, b, num_decodes=4))
  t0 = time.perf_counter()
  decodes = np.asarray(predict(state.params, held_out))
  decode_s = time.perf_counter() - t0
  want = held_out["decoder_target_tokens"]
  exact = float(np.mean(np.all(decodes == want, axis=1)))
  for i in range(3):
    n = int((want[i] > 0).sum())
    print(f"input {want[i][:n].tolist()} -> decoded {decodes[i][:n].tolist()}")
  result = {"first_loss": first_loss, "final_loss": float(metrics["loss"]),
            "exact_match": exact, "decode_seconds": decode_s}
  print(f"copy task: loss {first_loss:.3f} -> {result['final_loss']:.3f}; beam-search exact match "
        f"{exact:.1%} on 128 held-out inputs")
  return result


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--steps", type=int, default=400)
  p.add_argument("--vocab", type=int, default=64)
  p.add_argument("--max_len", type=int, default=12)
  a = p.parse_args()
  run(steps=a.steps, vocab=a.vocab, max_len=a.max_len)


if __name__ == "__main__":
  main()
