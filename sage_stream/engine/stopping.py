"""Ctrl-C and SIGTERM: nothing new starts; running agents get a grace period, then stop.

A second signal stops the agents at once. The loop asks `due()` whenever it wakes.
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from sage_stream.engine.work import AttemptDone, AttemptCrashed, Message


class Stopping:
    def __init__(self, grace_s: float, *, wake: Callable[[], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.grace_s = grace_s
        self.wake = wake
        self.clock = clock
        self.requested = False  # start nothing new
        self.interrupted = False  # by a signal (exit 130), not by an answer to a question
        self.deadline: float | None = None
        self.announced = False
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Catch SIGINT and SIGTERM (only the main thread can)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self.on_signal)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def on_signal(self, signum: int, frame: Any) -> None:
        if self.interrupted:  # a second Ctrl-C: stop the agents now
            self.deadline = self.clock()
            return
        self.interrupted = True  # also after a "quit" answer: the agents still get their grace period
        self.requested = True
        self.deadline = self.clock() + self.grace_s
        self.wake()

    def quit(self) -> None:
        """The user answered "quit": nothing new starts, running tickets finish."""
        self.requested = True
        self.interrupted = False

    def due(self) -> tuple[bool, bool]:
        """(announce now, stop the agents now)."""
        if not (self.requested and self.interrupted and self.deadline is not None):
            return False, False
        announce = not self.announced
        self.announced = True
        return announce, self.clock() >= self.deadline


def stop_all_and_wait(attempts: dict[str, Any], inbox: queue.Queue[Message], *, wait_s: float) -> None:
    """The loop itself failed (say, the index cannot be written): cancel every attempt in
    `attempts` (ticket -> one with a `handle`) and wait up to `wait_s` for each to report
    that it is over (its process tree gone), dropping it from `attempts`."""
    for running in attempts.values():
        running.handle.cancel()
    deadline = time.monotonic() + wait_s
    while attempts and time.monotonic() < deadline:
        try:
            message = inbox.get(timeout=0.25)
        except queue.Empty:
            continue
        if isinstance(message, (AttemptDone, AttemptCrashed)):
            attempts.pop(message.ticket_id, None)
