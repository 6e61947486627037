"""Ctrl-C and SIGTERM: nothing new starts, running agents get a grace period, a second
signal stops them at once; "quit" only stops starting. On a fake clock, no real signal."""

from __future__ import annotations

import signal


from sage_stream.engine.stopping import Stopping


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def stopping(grace_s: float = 10.0) -> tuple[Stopping, Clock, list[None]]:
    clock, wakes = Clock(), []
    return Stopping(grace_s, wake=lambda: wakes.append(None), clock=clock), clock, wakes


def test_nothing_is_due_before_a_signal() -> None:
    stop, _, wakes = stopping()
    assert not stop.requested and not stop.interrupted
    assert stop.due() == (False, False)
    assert wakes == []


def test_a_signal_stops_starting_and_gives_the_agents_a_grace_period() -> None:
    stop, clock, wakes = stopping(grace_s=10.0)
    stop.on_signal(signal.SIGINT, None)
    assert stop.requested and stop.interrupted
    assert stop.deadline == clock.now + 10.0
    assert len(wakes) == 1  # the loop wakes to stop starting


def test_due_announces_once_and_stops_the_agents_only_after_the_grace_period() -> None:
    stop, clock, _ = stopping(grace_s=10.0)
    stop.on_signal(signal.SIGTERM, None)
    assert stop.due() == (True, False)
    clock.now = 109.5
    assert stop.due() == (False, False)
    clock.now = 110.0  # the deadline: 100 + 10
    assert stop.due() == (False, True)


def test_a_second_signal_stops_the_agents_now() -> None:
    stop, clock, _ = stopping(grace_s=10.0)
    stop.on_signal(signal.SIGINT, None)
    clock.now += 1.0
    stop.on_signal(signal.SIGINT, None)
    assert stop.deadline == clock.now
    assert stop.due() == (True, True)


def test_quit_stops_starting_without_interrupting() -> None:
    stop, _, wakes = stopping()
    stop.quit()
    assert stop.requested and not stop.interrupted  # exit code is not 130
    assert stop.due() == (False, False)  # running tickets finish: nothing to announce or stop
    assert wakes == []


def test_a_signal_after_quit_still_gives_the_agents_their_grace_period() -> None:
    stop, clock, _ = stopping(grace_s=10.0)
    stop.quit()
    stop.on_signal(signal.SIGINT, None)
    assert stop.interrupted
    assert stop.due() == (True, False)
