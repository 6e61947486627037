"""The scheduler replayed on estimates: greedy (ours) and batch (the original's barrier)."""

from __future__ import annotations

import pytest

from sage_stream.graph.simulate import (
    WorkerPlan,
    lower_bound,
    plan_workers,
    recommend_by_lower_bound,
    recommend_worker_count,
    recommend_workers,
    simulate,
)

CALC_DURATIONS = {"C1": 1, "C2": 2, "C3": 2, "C4": 3, "C5": 2, "C6": 1, "C7": 2, "C8": 1}
CALC_DEPENDENCIES = {
    "C2": ["C1"],
    "C3": ["C1"],
    "C4": ["C1"],
    "C5": ["C2", "C3", "C4"],
    "C6": ["C5"],
    "C7": ["C5"],
}


def test_independent_tickets_run_together_and_their_dependent_after_both() -> None:
    schedule = simulate({"T1": 3, "T2": 5, "T3": 1}, {"T3": ["T1", "T2"]}, 2)
    assert schedule.starts["T1"][0] == schedule.starts["T2"][0] == 0
    assert schedule.starts["T3"] == (5, 6, schedule.starts["T3"][2])
    assert schedule.makespan == 6


def test_greedy_starts_work_as_soon_as_a_slot_frees_the_batch_waits_for_the_slowest() -> None:
    durations = {"LONG": 10, "S1": 1, "S2": 1, "S3": 1}
    greedy = simulate(durations, {}, 2)
    batch = simulate(durations, {}, 2, policy="batch")
    assert greedy.makespan == 10  # S1, S2, S3 run one after another beside LONG
    assert batch.makespan == 11  # [LONG, S1] -> wait 10 -> [S2, S3]
    assert batch.starts["S2"][0] == 10


def test_priority_comes_before_bottom_level() -> None:
    durations = {"URGENT": 1, "BIG": 10}
    schedule = simulate(durations, {}, 1, priority_rank={"URGENT": 0, "BIG": 2})
    assert schedule.starts["URGENT"] == (0, 1, 0)
    assert schedule.starts["BIG"] == (1, 11, 0)


def test_within_a_priority_the_longest_remaining_chain_goes_first() -> None:
    durations = {"A": 1, "B": 1, "AFTER_B": 5}
    schedule = simulate(durations, {"AFTER_B": ["B"]}, 1)
    assert schedule.starts["B"][0] == 0
    assert schedule.makespan == 7


def test_ids_outside_the_jobs_are_done_already() -> None:
    schedule = simulate({"A": 2}, {"A": ["COMPLETED-1"]}, 1)
    assert schedule.starts["A"] == (0, 2, 0)


def test_each_worker_runs_one_job_at_a_time() -> None:
    schedule = simulate({f"J{n}": 1 for n in range(5)}, {}, 2)
    assert sorted(worker for _, _, worker in schedule.starts.values()) == [0, 0, 0, 1, 1]
    assert schedule.makespan == 3


def test_more_workers_than_jobs() -> None:
    schedule = simulate({"A": 1, "B": 2}, {}, 1000)
    assert schedule.makespan == 2


def test_nothing_to_schedule() -> None:
    assert simulate({}, {}, 4).makespan == 0
    assert plan_workers({}, {}) == [WorkerPlan(n, 0.0) for n in range(1, 9)]


@pytest.mark.parametrize("policy", ["greedy", "batch"])
def test_a_cycle_is_refused(policy: str) -> None:
    with pytest.raises(ValueError, match="cycle"):
        simulate({"A": 1, "B": 1}, {"A": ["B"], "B": ["A"]}, 2, policy=policy)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="policy"):
        simulate({"A": 1}, {}, 1, policy="fifo")
    with pytest.raises(ValueError, match="workers"):
        simulate({"A": 1}, {}, 0)


def test_lower_bound_is_the_critical_path_or_the_work_per_worker() -> None:
    assert lower_bound(CALC_DURATIONS, CALC_DEPENDENCIES, 1) == 14
    assert lower_bound(CALC_DURATIONS, CALC_DEPENDENCIES, 2) == 8  # critical path C1 C4 C5 C7
    assert lower_bound({"A": 4, "B": 4}, {}, 2) == 4


def test_plan_for_the_example_backlog() -> None:
    plans = plan_workers(CALC_DURATIONS, CALC_DEPENDENCIES)
    assert [(p.workers, p.makespan) for p in plans] == [
        (1, 14),
        (2, 9),
        (3, 8),
        (4, 8),
        (5, 8),
        (6, 8),
        (7, 8),
        (8, 8),
    ]
    assert recommend_workers(plans) == 3
    assert recommend_worker_count(CALC_DURATIONS, CALC_DEPENDENCIES) == 3


def test_plan_workers_counts_up_to_max_workers() -> None:
    plans = plan_workers({f"J{n}": 1 for n in range(20)}, {}, max_workers=3)
    assert [(p.workers, p.makespan) for p in plans] == [(1, 20), (2, 10), (3, 7)]


def test_recommend_takes_the_smallest_count_within_five_percent_of_the_best() -> None:
    plans = [WorkerPlan(1, 100), WorkerPlan(2, 60), WorkerPlan(3, 52.5), WorkerPlan(4, 50)]
    assert recommend_workers(plans) == 3  # 52.5 = 50 * 1.05
    plans[2] = WorkerPlan(3, 52.6)
    assert recommend_workers(plans) == 4
    assert recommend_workers([]) == 1


def test_recommend_count_skips_counts_that_cannot_qualify() -> None:
    # total work dominates: 8 workers is the only count within 5% of the best
    durations = {f"J{n}": 1 for n in range(80)}
    assert recommend_worker_count(durations, {}) == 8
    assert recommend_worker_count(durations, {}, max_workers=4) == 4


@pytest.mark.parametrize(("critical_path", "total", "workers"), [
    (10, 1000, 8),  # work-bound: every worker counts
    (100, 1000, 8),  # 1000 / 8 = 125 is the best bound; 7 workers: 142.9, more than 5% above
    (130, 1000, 8),  # the best bound is 130 (the path); 8 workers: 130, 7: 142.9 -> 8
    (140, 1000, 7),  # 7 workers: 142.9 is within 5% of 140
    (200, 1000, 5),  # the path dominates from 5 workers on
    (50, 40, 1),  # one worker already reaches the critical path
    (0, 0, 1),  # nothing to do
])
def test_recommend_by_lower_bound(critical_path: float, total: float, workers: int) -> None:
    assert recommend_by_lower_bound(critical_path, total) == workers
    bounds = [WorkerPlan(n, max(critical_path, total / n)) for n in range(1, 9)]
    assert recommend_workers(bounds) == workers  # the simulated rule, were makespans the bounds


def test_every_slot_that_frees_at_one_moment_is_freed_before_choosing() -> None:
    # A and B end together at t=1; B releases two urgent jobs. Choosing after A alone
    # would hand its slot to the unimportant X, which was waiting already.
    durations = {"A": 1, "B": 1, "X": 1, "Y1": 1, "Y2": 1}
    ranks = {"A": 0, "B": 1, "X": 2, "Y1": 0, "Y2": 0}
    schedule = simulate(durations, {"Y1": ["B"], "Y2": ["B"]}, 2, priority_rank=ranks)
    assert schedule.starts["Y1"][0] == schedule.starts["Y2"][0] == 1
    assert schedule.starts["X"][0] == 2
