"""`--max-load`: start nothing new while the load average is above the limit, and say so
once when it holds and once when it resumes. The load average is injected."""

from __future__ import annotations

from sage_stream.engine.dispatch_control import LoadGate


class Load:
    def __init__(self, value: float) -> None:
        self.value = value
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return self.value


def test_without_a_limit_nothing_is_held_and_the_load_is_not_read() -> None:
    load = Load(99.0)
    gate = LoadGate(None, load=load)
    assert gate.check() == (False, None, None)
    assert load.calls == 0 and not gate.paused


def test_below_or_at_the_limit_nothing_is_held() -> None:
    load = Load(1.5)
    gate = LoadGate(2.0, load=load)
    assert gate.check() == (False, None, None)
    load.value = 2.0
    assert gate.check() == (False, None, None)  # held only above it


def test_above_the_limit_it_holds_and_says_why_once() -> None:
    gate = LoadGate(2.0, load=Load(3.456))
    assert gate.check() == (True, "load average 3.46 is above --max-load 2.0", None)
    assert gate.paused
    assert gate.check() == (True, None, None)


def test_back_below_the_limit_it_resumes_and_says_so_once() -> None:
    load = Load(3.0)
    gate = LoadGate(2.0, load=load)
    gate.check()
    load.value = 1.0
    assert gate.check() == (False, None, "the load average is down")
    assert not gate.paused
    assert gate.check() == (False, None, None)


def test_it_holds_again_and_says_so_again_after_resuming() -> None:
    load = Load(3.0)
    gate = LoadGate(2.0, load=load)
    gate.check()
    load.value = 1.0
    gate.check()
    load.value = 4.0
    assert gate.check() == (True, "load average 4.00 is above --max-load 2.0", None)
