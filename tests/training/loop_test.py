"""The shared step loop: order of steps and batches, metrics kept and logged, saves on the cadence,
stops (signal or budget) after a save, and a resumed loop that ends as an uninterrupted one."""
import itertools

import jax.numpy as jnp
import numpy as np

from llmrec_jax.training import loop as loop_lib
from llmrec_jax.training import stopping


def _step(state, batch):
  """A toy step whose state records every batch it saw, in order."""
  return state + [batch], {"loss": jnp.asarray(float(batch)), "twice": jnp.asarray(2.0 * batch)}


class _Source:
  """Batches 1, 2, 3, ... counting how many were drawn."""

  def __init__(self, first: int = 1):
    self.drawn = 0
    self.first = first

  def __iter__(self):
    for b in itertools.count(self.first):
      self.drawn += 1
      yield b


def test_runs_each_step_once_in_order_and_draws_no_batch_beyond_the_last():
  source = _Source()
  logged = []
  end = loop_lib.StepLoop(_step, keep=("loss",), log_at=loop_lib.every(3), progress=False,
                          on_log=lambda n, m: logged.append((n, m["loss"]))).run([], source, total=7)
  assert end.state == [1, 2, 3, 4, 5, 6, 7] and end.step == 7 and not end.stopped
  assert source.drawn == 7
  assert [m["loss"] for m in end.kept] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
  assert logged == [(3, 3.0), (6, 6.0), (7, 7.0)]   # every third step and the last
  assert end.last == {"loss": 7.0, "twice": 14.0}


def test_saves_on_the_step_cadence_but_never_after_the_last_step():
  saves = []
  loop = loop_lib.StepLoop(_step, keep=("loss",), progress=False,
                           save=lambda s, n, kept: saves.append((n, list(s), [m["loss"] for m in kept])),
                           cadence=stopping.CheckpointCadence(every_steps=2))
  loop.run([], _Source(), total=6)
  assert saves == [(2, [1, 2], [1.0, 2.0]), (4, [1, 2, 3, 4], [1.0, 2.0, 3.0, 4.0])]


def test_a_stop_request_saves_then_stops_and_the_resumed_loop_ends_as_an_uninterrupted_one():
  stop = stopping.StopRequest()
  saved = {}

  def step(state, batch):
    if batch == 3:
      stop.request()   # as SIGTERM arriving during step 3
    return _step(state, batch)

  def save(state, n, kept):
    saved.update(state=list(state), step=n, kept=list(kept))

  loop = loop_lib.StepLoop(step, keep=("loss",), save=save, stop=stop, progress=False)
  end = loop.run([], _Source(), total=6)
  assert end.stopped and end.step == 3 and saved["step"] == 3 and saved["state"] == [1, 2, 3]
  resumed = loop_lib.StepLoop(step, keep=("loss",), progress=False).run(
      saved["state"], _Source(first=saved["step"] + 1), total=6, start=saved["step"])
  whole = loop_lib.StepLoop(_step, keep=("loss",), progress=False).run([], _Source(), total=6)
  assert resumed.state == whole.state and not resumed.stopped
  assert saved["kept"] + resumed.kept == whole.kept


def test_must_stop_ends_after_that_step_with_a_save_and_a_finished_loop_never_stops():
  saves = []
  loop = loop_lib.StepLoop(_step, save=lambda s, n, kept: saves.append(n), progress=False,
                           must_stop=lambda n: n >= 4)
  end = loop.run([], _Source(), total=10)
  assert (end.step, end.stopped, saves) == (4, True, [4])
  end = loop.run([], _Source(), total=4)   # the budget falls on the last step: the owner's end
  assert (end.step, end.stopped) == (4, False)


def test_after_step_sees_every_state_and_an_empty_run_draws_nothing():
  seen = []
  loop = loop_lib.StepLoop(_step, after_step=lambda s, n: seen.append((n, len(s))), progress=False)
  loop.run([], _Source(), total=3)
  assert seen == [(1, 1), (2, 2), (3, 3)]
  source = _Source()
  end = loop.run(["x"], source, total=5, start=5)
  assert (end.state, end.step, source.drawn, end.kept) == (["x"], 5, 0, [])
  assert np.isfinite(end.seconds)
