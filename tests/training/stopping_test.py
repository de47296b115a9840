"""Signals set the stop flag (a second Ctrl-C aborts); the cadence fires by steps and by time."""
import os
import signal
import threading

import pytest

from llmrec_jax.training import stopping


def test_sigterm_and_sigint_set_the_flag_and_handlers_are_restored():
  before = signal.getsignal(signal.SIGTERM)
  with stopping.stop_on_signals() as stop:
    assert not stop.requested
    os.kill(os.getpid(), signal.SIGTERM)
    assert stop.requested and stop.name == "SIGTERM"
  assert signal.getsignal(signal.SIGTERM) is before
  with stopping.stop_on_signals() as stop:
    os.kill(os.getpid(), signal.SIGINT)   # no KeyboardInterrupt: the loop stops at its boundary
    assert stop.name == "SIGINT"
    with pytest.raises(KeyboardInterrupt):
      os.kill(os.getpid(), signal.SIGINT)   # the second Ctrl-C aborts at once


def test_outside_the_main_thread_nothing_is_installed():
  seen = []
  thread = threading.Thread(target=lambda: seen.append(stopping.stop_on_signals().__enter__().requested))
  before = signal.getsignal(signal.SIGTERM)
  thread.start()
  thread.join()
  assert seen == [False] and signal.getsignal(signal.SIGTERM) is before


def test_cadence_by_steps_and_by_minutes():
  now = [0.0]
  cadence = stopping.CheckpointCadence(every_steps=5, every_minutes=2.0, clock=lambda: now[0])
  due = []
  for step in range(1, 13):
    now[0] += 50.0   # 50 s a step
    if cadence.due(step):
      due.append(step)
      cadence.saved()
  # By steps at 5 and 10; by time 120 s after the last save: step 3 (150 s), 8 (400 s >= 250 + 120).
  assert due == [3, 5, 8, 10]
  never = stopping.CheckpointCadence(clock=lambda: now[0])
  now[0] += 1e9
  assert not never.due(7)
  with pytest.raises(ValueError):
    stopping.CheckpointCadence(every_minutes=-1)
