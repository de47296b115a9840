"""The step loop every trainer of the library runs: IDGenRec's rec and ID phases, the ID
generator's bootstrap, whole-stream training and SASRec.

`StepLoop.run(state, batches, start, total)` feeds batches to `step_fn(state, batch) -> (state,
metrics)` until step `total`, and around each step does what a long run needs:
- bounds how far the host runs ahead of the device (`stopping.InFlight`), building the next
  batch on the host while the device works on the current one;
- a progress bar (steps, rate, ETA, the last logged loss);
- scalar metrics to the host every `log_every` steps and at the last step (`on_log`);
- chosen per-step metrics kept for the owner (`keep`), fetched in one host sync per save and
  at the end, so the steps between stay asynchronous;
- a checkpoint (`save`) on the cadence (steps and wall-clock minutes), and a checkpoint then
  a stop when `stop` is requested (SIGINT / SIGTERM) or `must_stop(step)` says so (e.g. a
  budget of optimizer steps). The last step of the loop never saves or stops: its end
  belongs to the owner.

Steps are counted from 0 for the owner's unit (a phase, an epoch, a whole run): the loop runs
steps `start + 1 .. total`, so a resumed loop continues where a stopped one ended. The loop
holds no model, optimizer or data: those are the owner's (`training.trainer`, a batch source).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Iterable, Optional, Sequence

import jax
import tqdm

from llmrec_jax.training import stopping

StepFn = Callable[[Any, Any], tuple[Any, dict[str, jax.Array]]]


@dataclasses.dataclass
class LoopEnd:
  """How a `StepLoop.run` ended.

  Attributes:
    state: the state after the last step run.
    step: steps done (of the owner's unit), `total` unless stopped.
    stopped: True when a stop request or `must_stop` ended the loop early (after `save`).
    last: the last logged metrics (host floats; {} when none was logged).
    kept: one dict of the `keep` metrics per step run (host floats).
    seconds: wall-clock seconds inside `run`.
  """
  state: Any
  step: int
  stopped: bool
  last: dict[str, float]
  kept: list[dict[str, float]]
  seconds: float


def every(n: int) -> Callable[[int, int], bool]:
  """A `log_at` that logs after every n-th step and after the last."""
  return lambda step, total: step % n == 0 or step == total


@dataclasses.dataclass
class StepLoop:
  """Runs steps with progress, metrics, checkpoint cadence and stops (see module doc).

  Attributes:
    step_fn: (state, batch) -> (state, metrics), usually a jitted `Trainer.train`.
    desc: progress-bar label.
    log_at: (step, total) -> whether to fetch and log the metrics after this step.
    on_log: called with (step, metrics as host floats) when `log_at` says so.
    keep: metric names kept for every step (`LoopEnd.kept`, and `save`'s third argument).
    save: (state, step, kept so far) -> None; saves a checkpoint (None: never saves).
    cadence: when to save inside the loop (None: only on a stop).
    stop: a stop request (SIGINT / SIGTERM) read after each step.
    must_stop: step -> whether to save and stop after this step (None: never).
    after_step: (state, step) -> None after each step, e.g. a held-out evaluation.
    progress: show the progress bar.
  """
  step_fn: StepFn
  desc: str = "train"
  log_at: Callable[[int, int], bool] = every(50)
  on_log: Optional[Callable[[int, dict[str, float]], None]] = None
  keep: Sequence[str] = ()
  save: Optional[Callable[[Any, int, list[dict[str, float]]], None]] = None
  cadence: Optional[stopping.CheckpointCadence] = None
  stop: Optional[stopping.StopRequest] = None
  must_stop: Optional[Callable[[int], bool]] = None
  after_step: Optional[Callable[[Any, int], None]] = None
  progress: bool = True

  def run(self, state: Any, batches: Iterable[Any], *, total: int, start: int = 0) -> LoopEnd:
    """Steps `start + 1 .. total` on the batches in order (the source yields the batch of
    step `start + 1` first; it is not drawn beyond the last step run)."""
    t0 = time.time()
    in_flight = stopping.InFlight()
    kept, pending, last = [], [], {}
    step = start
    batches = iter(batches)
    batch = next(batches) if step < total else None
    with tqdm.tqdm(total=total, initial=start, desc=self.desc, unit="step", mininterval=2.0,
                   disable=not self.progress, leave=False) as bar:
      while step < total:
        state, metrics = self.step_fn(state, batch)
        in_flight.add(metrics)
        step += 1
        if self.keep:
          pending.append({k: metrics[k] for k in self.keep})
        if step < total:
          batch = next(batches)  # built on the host while the device runs the step
        bar.update(1)
        if self.log_at(step, total):
          last = {k: float(v) for k, v in metrics.items()}
          if "loss" in last:
            bar.set_postfix(loss=f"{last['loss']:.3f}")
          if self.on_log is not None:
            self.on_log(step, last)
        if self.after_step is not None:
          self.after_step(state, step)
        if step == total:
          break
        stopping_now = self._must_stop(step)
        if self.save is not None and (stopping_now or (self.cadence and self.cadence.due(step))):
          kept, pending = kept + _to_host(pending), []
          self.save(state, step, kept)
          if self.cadence:
            self.cadence.saved()
        if stopping_now:
          return LoopEnd(state, step, True, last, kept, time.time() - t0)
    kept += _to_host(pending)
    return LoopEnd(state, step, False, last, kept, time.time() - t0)

  def _must_stop(self, step: int) -> bool:
    return bool((self.stop is not None and self.stop.requested) or
                (self.must_stop is not None and self.must_stop(step)))


def _to_host(pending: list[dict[str, Any]]) -> list[dict[str, float]]:
  """Per-step device metrics as host floats, in one transfer."""
  return [{k: float(v) for k, v in m.items()} for m in jax.device_get(pending)]
