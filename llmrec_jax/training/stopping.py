"""When a training loop saves and stops: SIGINT / SIGTERM at the next step boundary, and a
checkpoint cadence in steps and in wall-clock minutes.

`stop_on_signals()` installs handlers for SIGINT (Ctrl-C) and SIGTERM (a TPU preemption notice,
`kill`) that only set a flag; the loop reads `StopRequest.requested` after each step, saves a
checkpoint and returns, as T5X does on preemption. A second SIGINT while the first is pending
raises KeyboardInterrupt at once (a user who really wants out). Outside the main thread (where
Python cannot install handlers) nothing is installed and the flag stays clear.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import signal
import threading
import time
from typing import Callable, Iterator, Optional

import jax

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
  """A flag a signal handler sets; `signum` is the signal that set it (or None)."""

  def __init__(self):
    self.signum: Optional[int] = None

  @property
  def requested(self) -> bool:
    return self.signum is not None

  @property
  def name(self) -> str:
    return signal.Signals(self.signum).name if self.signum is not None else ""

  def request(self, signum: int = signal.SIGTERM) -> None:
    self.signum = signum


@contextlib.contextmanager
def stop_on_signals(signals: tuple[int, ...] = SIGNALS) -> Iterator[StopRequest]:
  """Yields a `StopRequest` that SIGINT/SIGTERM set while the block runs; restores the previous
  handlers on exit."""
  stop = StopRequest()
  if threading.current_thread() is not threading.main_thread():
    yield stop
    return

  def handler(signum, frame):
    del frame
    if stop.requested and signum == signal.SIGINT:
      raise KeyboardInterrupt
    stop.request(signum)
    log.warning("%s received: saving a checkpoint at the next step boundary, then stopping "
                "(Ctrl-C again to abort without saving)", signal.Signals(signum).name)

  previous = {s: signal.signal(s, handler) for s in signals}
  try:
    yield stop
  finally:
    for s, h in previous.items():
      signal.signal(s, h)


class InFlight:
  """Bounds how far the host runs ahead of the device: `add(x)` after dispatching a step waits
  for the step `max_steps` back to finish. JAX dispatches asynchronously, so an unbounded loop
  can queue tens of seconds of steps; a stop (or a checkpoint, which waits for them) would then
  take that long. Two in flight keep the host building the next batch while the device works."""

  def __init__(self, max_steps: int = 2):
    self.max_steps, self._queue = max_steps, collections.deque()

  def add(self, step_output) -> None:
    self._queue.append(step_output)
    if len(self._queue) > self.max_steps:
      jax.block_until_ready(self._queue.popleft())


@dataclasses.dataclass
class CheckpointCadence:
  """Save every `every_steps` steps (0: never by count) and at least every `every_minutes` of
  wall clock (0: never by time), counted from construction or the last `saved()`. `due(step)`
  after a step; `saved()` after each save."""
  every_steps: int = 0
  every_minutes: float = 0.0
  clock: Callable[[], float] = time.monotonic

  def __post_init__(self):
    if self.every_steps < 0 or self.every_minutes < 0:
      raise ValueError(f"checkpoint cadence must be >= 0: {self}")
    self._last = self.clock()

  def due(self, step: int) -> bool:
    by_steps = bool(self.every_steps) and step % self.every_steps == 0
    by_time = bool(self.every_minutes) and self.clock() - self._last >= 60 * self.every_minutes
    return by_steps or by_time

  def saved(self) -> None:
    self._last = self.clock()
