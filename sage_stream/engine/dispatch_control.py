"""Dispatch under rate limits: when to pause, how many workers, when to stop. Pure.

A rate limit or an exhausted quota is about the account, not the ticket: every agent of
the run would hit it. So a rate-limited ticket is not deferred (that would burn through
the backlog one ticket after another); it goes back to ready, and dispatch pauses for
everyone:

- pause: 30 s, doubling with each further limit in a row, at most 10 min, stretched by a
  random fraction (up to `jitter`) so that several runs on one account do not come back
  in step. When the agent said when the limit resets (Retry-After, a reset time), the
  pause lasts until then instead.
- resume with half the workers (at least one); each `raise_after` successful agent runs
  in a row give one worker back, up to the configured count.
- a limit hit by an agent that started before the current pause began tells nothing new
  (it ran into the same limit): its ticket is requeued, the pause is not extended.
- `stop_after` limits in a row (each after a pause): stop dispatching for this run.
- a quota or limit that resets more than `far_reset_s` from now: waiting in this run is
  pointless; the ticket is deferred until the reset (`not_before`) and dispatch stops.

Nothing here runs a process or sleeps: the engine asks `startable` before it starts
agents and reports what agents did; the clock and the randomness are injected, so tests
drive it directly.
"""

from __future__ import annotations

import os
import random as _random
import time
from collections.abc import Callable
from dataclasses import dataclass

from sage_stream.text import iso_utc

_JITTER = _random.Random()  # its own: a run never moves the random state of whoever hosts it

RATE_LIMIT_KINDS = ("rate_limit", "quota")

REQUEUE = "requeue"  # back to ready; dispatch is (or stays) paused
DEFER = "defer"  # DEFERRED until the reset; dispatch stops for this run
STOP = "stop"  # too many limits in a row: back to ready, dispatch stops for this run


@dataclass(frozen=True)
class RateLimitPolicy:
    backoff_s: float = 30.0
    max_backoff_s: float = 600.0
    jitter: float = 0.25  # a pause is stretched by up to this fraction
    raise_after: int = 2  # successful agent runs in a row before one more worker
    stop_after: int = 5  # rate limits in a row before dispatch stops for the run
    far_reset_s: float = 900.0  # a reset further away than this: defer and stop


@dataclass(frozen=True)
class RateLimitDecision:
    action: str  # REQUEUE | DEFER | STOP
    reason: str  # one line for people
    workers: int  # the worker count once dispatch resumes
    pause_s: float = 0.0  # a new pause that starts now (0: none)
    until: float | None = None  # clock time dispatch resumes, while paused
    not_before: float | None = None  # DEFER: clock time of the reset


class DispatchControl:
    """How many agents may start now, given the rate limits seen so far in this run."""

    def __init__(
        self,
        workers: int,
        policy: RateLimitPolicy | None = None,
        *,
        clock: Callable[[], float] = time.time,
        random: Callable[[], float] = _JITTER.random,
    ) -> None:
        self.configured = max(1, workers)
        self.workers = self.configured
        self.policy = policy or RateLimitPolicy()
        self.clock = clock
        self.random = random
        self.paused_until: float | None = None
        self.pause_began: float | None = None  # start of the latest pause
        self.stopped: str | None = None  # why dispatch stopped for this run ("5 rate limits in a row")
        self.limits_in_row = 0
        self.successes_in_row = 0

    # ------------------------------------------------------------ questions

    def startable(self, running: int) -> int:
        """How many more agents may start now, with `running` agents running."""
        if self.stopped is not None or self.is_paused():
            return 0
        return max(0, self.workers - running)

    def is_paused(self) -> bool:
        return self.paused_until is not None and self.clock() < self.paused_until

    def poll_s(self) -> float:
        """How long the loop may wait for a message: a quarter second, less when a pause ends sooner."""
        until_resume = self.seconds_to_resume()
        return 0.25 if until_resume is None else min(0.25, max(0.01, until_resume))

    def seconds_to_resume(self) -> float | None:
        if self.paused_until is None:
            return None
        return max(0.0, self.paused_until - self.clock())

    def take_resume(self) -> bool:
        """True once when a pause has run out, so the caller can say dispatch resumed."""
        if self.paused_until is not None and self.clock() >= self.paused_until:
            self.paused_until = None
            return True
        return False

    # ------------------------------------------------------------ what agents did

    def on_success(self, *, started_at: float) -> int | None:
        """An agent run that started at `started_at` succeeded; the new worker count if
        this raised it, else None."""
        if self._before_pause(started_at):
            return None  # it ran under the old conditions: no evidence about now
        self.limits_in_row = 0
        if self.workers >= self.configured:
            return None
        self.successes_in_row += 1
        if self.successes_in_row < self.policy.raise_after:
            return None
        self.successes_in_row = 0
        self.workers += 1
        return self.workers

    def on_rate_limit(self, *, kind: str, started_at: float, reset_at: float | None = None) -> RateLimitDecision:
        """An agent run that started at `started_at` hit a rate limit or quota (`kind`);
        `reset_at` is the clock time the agent said it resets, if it did."""
        now = self.clock()
        what = "quota exhausted" if kind == "quota" else "rate limit"
        if reset_at is not None and reset_at - now > self.policy.far_reset_s:
            self.stopped = f"{what} until {iso_utc(reset_at)} (nothing else would succeed before then)"
            return RateLimitDecision(DEFER, self.stopped, self.workers, not_before=reset_at)
        if self._before_pause(started_at):
            return RateLimitDecision(REQUEUE, f"{what} (hit before the pause began)", self.workers,
                                     until=self.paused_until if self.is_paused() else None)
        self.successes_in_row = 0
        self.limits_in_row += 1
        if self.limits_in_row >= self.policy.stop_after:
            self.stopped = f"{self.limits_in_row} rate limits in a row"
            return RateLimitDecision(STOP, self.stopped, self.workers)
        pause = self._pause_length(now, reset_at)
        self.workers = max(1, self.workers // 2)
        self.pause_began = now
        self.paused_until = now + pause
        reason = f"{what}: pausing {pause:.0f} s, then {self.workers} worker{'s' if self.workers != 1 else ''}"
        return RateLimitDecision(REQUEUE, reason, self.workers, pause_s=pause, until=self.paused_until)

    # ------------------------------------------------------------ details

    def _before_pause(self, started_at: float) -> bool:
        return self.pause_began is not None and started_at < self.pause_began

    def _pause_length(self, now: float, reset_at: float | None) -> float:
        policy = self.policy
        stretch = 1.0 + policy.jitter * self.random()
        if reset_at is not None and reset_at > now:
            # the agent said when: wait until then, plus a little spread
            return (reset_at - now) + policy.backoff_s * (stretch - 1.0)
        backoff = policy.backoff_s * (2 ** (self.limits_in_row - 1))
        return min(policy.max_backoff_s, backoff * stretch)


class LoadGate:
    """`--max-load`: start nothing new while the 1-minute load average is above the limit.
    `check()` says whether starting is held back, and what changed (for the display)."""

    def __init__(self, limit: float | None, *, load: Callable[[], float] = lambda: os.getloadavg()[0]) -> None:
        self.limit = limit
        self.load = load
        self.paused = False

    def check(self) -> tuple[bool, str | None, str | None]:
        """(held back, pause reason if it just paused, resume reason if it just resumed)."""
        if self.limit is None:
            return False, None, None
        load = self.load()
        if load > self.limit:
            just_paused = not self.paused
            self.paused = True
            return True, (f"load average {load:.2f} is above --max-load {self.limit}" if just_paused else None), None
        if self.paused:
            self.paused = False
            return False, None, "the load average is down"
        return False, None, None
