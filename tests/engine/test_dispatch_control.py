"""Rate limits pause dispatch for everyone, shrink and slowly regrow the worker count,
and stop the run instead of burning through the backlog. Driven on a fake clock."""

from __future__ import annotations

import pytest

from sage_stream.engine.dispatch_control import DEFER, REQUEUE, STOP, DispatchControl, RateLimitPolicy


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def control(workers: int = 4, *, jitter_draw: float = 0.0, **policy: float) -> tuple[DispatchControl, Clock]:
    clock = Clock()
    return DispatchControl(workers, RateLimitPolicy(**policy), clock=clock, random=lambda: jitter_draw), clock


def test_a_rate_limit_pauses_everyone_then_resumes_with_half_the_workers() -> None:
    dispatch, clock = control(4)
    assert dispatch.startable(running=1) == 3
    decision = dispatch.on_rate_limit(kind="rate_limit", started_at=clock() - 5)
    assert decision.action == REQUEUE and decision.pause_s == 30 and decision.workers == 2
    assert decision.until == clock() + 30
    assert dispatch.startable(running=0) == 0 and dispatch.is_paused()
    clock.advance(29.9)
    assert dispatch.startable(running=0) == 0 and not dispatch.take_resume()
    clock.advance(0.2)
    assert dispatch.take_resume() and not dispatch.take_resume()  # announced once
    assert dispatch.startable(running=0) == 2 and dispatch.startable(running=2) == 0


def test_backoff_doubles_with_each_limit_in_a_row_up_to_the_maximum() -> None:
    dispatch, clock = control(8, stop_after=20, max_backoff_s=200)
    pauses, workers = [], []
    for _ in range(5):
        decision = dispatch.on_rate_limit(kind="rate_limit", started_at=clock())
        pauses.append(decision.pause_s)
        workers.append(decision.workers)
        clock.advance(decision.pause_s + 1)
    assert pauses == [30, 60, 120, 200, 200]
    assert workers == [4, 2, 1, 1, 1]  # halved, never below one


def test_jitter_stretches_a_pause_by_at_most_its_fraction() -> None:
    dispatch, clock = control(2, jitter_draw=1.0, jitter=0.5)
    assert dispatch.on_rate_limit(kind="rate_limit", started_at=clock()).pause_s == 45
    plain, clock = control(2, jitter_draw=0.0, jitter=0.5)
    assert plain.on_rate_limit(kind="rate_limit", started_at=clock()).pause_s == 30


def test_a_reported_reset_time_sets_the_pause() -> None:
    dispatch, clock = control(4)
    decision = dispatch.on_rate_limit(kind="rate_limit", started_at=clock(), reset_at=clock() + 300)
    assert decision.action == REQUEUE and decision.pause_s == 300 and decision.until == clock() + 300


def test_workers_come_back_one_at_a_time_after_two_successes_each() -> None:
    dispatch, clock = control(4)
    dispatch.on_rate_limit(kind="rate_limit", started_at=clock())
    clock.advance(31)
    assert dispatch.take_resume() and dispatch.workers == 2
    raised = [dispatch.on_success(started_at=clock()) for _ in range(6)]
    assert raised == [None, 3, None, 4, None, None]  # never above the configured count
    assert dispatch.startable(running=0) == 4


def test_outcomes_of_agents_started_before_the_pause_teach_nothing() -> None:
    dispatch, clock = control(4)
    before = clock() - 10
    first = dispatch.on_rate_limit(kind="rate_limit", started_at=before)
    clock.advance(1)
    # three more agents that were already running hit the same limit: requeued, no escalation
    for _ in range(3):
        again = dispatch.on_rate_limit(kind="rate_limit", started_at=before)
        assert again.action == REQUEUE and again.pause_s == 0 and again.until == first.until
    assert dispatch.workers == 2 and dispatch.limits_in_row == 1
    # nor does their success count towards giving workers back
    clock.advance(60)
    assert [dispatch.on_success(started_at=before) for _ in range(4)] == [None] * 4 and dispatch.workers == 2


def test_repeated_limits_stop_dispatch_instead_of_burning_the_backlog() -> None:
    dispatch, clock = control(2, stop_after=3)
    actions = []
    for _ in range(3):
        decision = dispatch.on_rate_limit(kind="rate_limit", started_at=clock())
        actions.append(decision.action)
        clock.advance(decision.pause_s + 1)
    assert actions == [REQUEUE, REQUEUE, STOP]
    assert dispatch.stopped == "3 rate limits in a row"
    assert dispatch.startable(running=0) == 0


def test_a_success_breaks_the_row() -> None:
    dispatch, clock = control(2, stop_after=3)
    for _ in range(2):
        clock.advance(dispatch.on_rate_limit(kind="rate_limit", started_at=clock()).pause_s + 1)
        dispatch.take_resume()
    dispatch.on_success(started_at=clock())
    decision = dispatch.on_rate_limit(kind="rate_limit", started_at=clock())
    assert decision.action == REQUEUE and decision.pause_s == 30  # the doubling starts over too


def test_a_quota_that_resets_far_away_defers_the_ticket_and_stops_the_run() -> None:
    dispatch, clock = control(4)
    reset = clock() + 3 * 3600
    decision = dispatch.on_rate_limit(kind="quota", started_at=clock(), reset_at=reset)
    assert decision.action == DEFER and decision.not_before == reset
    assert dispatch.stopped is not None and "quota exhausted until" in dispatch.stopped
    assert dispatch.startable(running=0) == 0


def test_a_quota_that_resets_soon_is_waited_for() -> None:
    dispatch, clock = control(4, far_reset_s=900)
    decision = dispatch.on_rate_limit(kind="quota", started_at=clock(), reset_at=clock() + 600)
    assert decision.action == REQUEUE and decision.pause_s == 600 and dispatch.stopped is None


@pytest.mark.parametrize("workers", [1, 3])
def test_one_worker_stays_one_and_odd_counts_round_down(workers: int) -> None:
    dispatch, clock = control(workers)
    assert dispatch.on_rate_limit(kind="rate_limit", started_at=clock()).workers == max(1, workers // 2)
