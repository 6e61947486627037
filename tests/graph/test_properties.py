"""Properties on random graphs, checked against simple reference implementations."""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timezone
from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st

from sage_stream.graph.analysis import Analysis, analyze, bottom_levels, remaining_estimates
from sage_stream.graph.dependency_graph import DependencyGraph, build_graph, graph_findings
from sage_stream.graph.ordering import is_startable_state, ready_order_key, ready_tickets
from sage_stream.graph.simulate import (
    lower_bound,
    plan_workers,
    recommend_worker_count,
    recommend_workers,
    simulate,
)
from sage_stream.text import parse_timestamp
from sage_stream.tickets.models import PRIORITIES, Ticket

NOW = datetime(2026, 1, 31, 12, 0, tzinfo=timezone.utc)
IDS = [f"N-{n}" for n in range(9)]

Dependencies = dict[str, list[str]]


def ticket(ticket_id: str, deps: list[str], state: str = "UNPROCESSED", **fields: object) -> Ticket:
    return Ticket(id=ticket_id, title=ticket_id, state=state, dependencies=deps, **fields)


# ---------------------------------------------------------------- strategies


@st.composite
def any_graph(draw: st.DrawFn) -> Dependencies:
    """Any directed graph on up to 9 ids: cycles, self-loops and repeats included."""
    size = draw(st.integers(1, len(IDS)))
    ids = IDS[:size]
    return {node: draw(st.lists(st.sampled_from(ids), max_size=4)) for node in ids}


@st.composite
def dag(draw: st.DrawFn, max_size: int = 12) -> tuple[dict[str, int], Dependencies]:
    """Jobs with integer durations (exact arithmetic), depending only on earlier jobs or on
    ids outside the jobs (already done)."""
    size = draw(st.integers(0, max_size))
    jobs = [f"J{n:02d}" for n in range(size)]
    durations = {job: draw(st.integers(1, 10)) for job in jobs}
    dependencies = {
        job: draw(st.lists(st.sampled_from([*jobs[:position], "DONE-1"]), max_size=3)) if position else []
        for position, job in enumerate(jobs)
    }
    return durations, dependencies


# ---------------------------------------------------------------- references


def reference_reachable(deps: Dependencies, start: str) -> set[str]:
    """Every id reachable from `start` by one or more "depends on" steps (no self-loops)."""
    seen: set[str] = set()
    stack = [d for d in deps[start] if d != start]
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(d for d in deps[node] if d != node)
    return seen


def reference_tangles(deps: Dependencies) -> list[set[str]]:
    """Groups of ids that reach each other: a brute-force DFS from every node."""
    reach = {node: reference_reachable(deps, node) for node in deps}
    on_cycle = [node for node in deps if node in reach[node]]
    groups: list[set[str]] = []
    for node in on_cycle:
        if not any(node in group for group in groups):
            groups.append({other for other in on_cycle if other in reach[node] and node in reach[other]})
    return groups


def reference_shortest_cycle(deps: Dependencies, start: str) -> int:
    """Length of the shortest cycle through `start`, by trying every simple path."""
    best = len(deps) + 1

    def walk(node: str, length: int, seen: frozenset[str]) -> None:
        nonlocal best
        for nxt in deps[node]:
            if nxt == node:
                continue
            if nxt == start:
                best = min(best, length + 1)
            elif nxt not in seen and length + 1 < best:
                walk(nxt, length + 1, seen | {nxt})

    walk(start, 0, frozenset({start}))
    return best


def reference_bottom_levels(durations: dict[str, float], deps: Dependencies) -> dict[str, float]:
    dependents: dict[str, list[str]] = {job: [] for job in durations}
    for job, before in deps.items():
        for dependency in before:
            if dependency in dependents and job in durations:
                dependents[dependency].append(job)

    @cache
    def level(job: str) -> float:
        return durations[job] + max((level(after) for after in dependents[job]), default=0)

    return {job: level(job) for job in durations}


# ---------------------------------------------------------------- cycles


@settings(max_examples=300, deadline=None)
@given(any_graph())
def test_cycle_findings_agree_with_a_brute_force_search(deps: Dependencies) -> None:
    tickets = [ticket(node, before) for node, before in deps.items()]
    findings = [f for f in graph_findings(tickets) if f.code == "cycle"]
    tangles = reference_tangles(deps)
    assert len(findings) == len(tangles)
    assert sorted(f.ticket for f in findings) == sorted(min(group) for group in tangles)
    for finding in findings:
        path = finding.found.split(" -> ")
        group = next(group for group in tangles if path[0] in group)
        assert path[0] == path[-1] == min(group)
        assert len(set(path[:-1])) == len(path) - 1  # a simple cycle
        assert set(path) <= group
        for node, dependency in zip(path, path[1:]):
            assert dependency in deps[node] and dependency != node  # each depends on the next
        assert len(path) - 1 == reference_shortest_cycle(deps, path[0])


@settings(max_examples=200, deadline=None)
@given(any_graph())
def test_self_dependencies_are_reported_apart_from_cycles(deps: Dependencies) -> None:
    tickets = [ticket(node, before) for node, before in deps.items()]
    self_deps = [f.ticket for f in graph_findings(tickets) if f.code == "self_dependency"]
    assert self_deps == [node for node, before in deps.items() for d in before if d == node]


# ---------------------------------------------------------------- ready set and order


STATES = st.sampled_from(["UNPROCESSED", "UNPROCESSED", "COMPLETED", "COMPLETED", "IN_PROGRESS", "DEFERRED"])
TIMES = st.sampled_from([None, "2026-01-31T11:59:59Z", "2026-01-31T12:00:00Z", "2026-01-31T12:00:01Z"])


@st.composite
def backlog(draw: st.DrawFn) -> list[Ticket]:
    pool = IDS[:6]
    tickets = []
    for _ in range(draw(st.integers(0, 10))):  # ids drawn from a pool: duplicates happen
        state = draw(STATES)
        fields: dict[str, object] = {
            "priority": draw(st.sampled_from([*PRIORITIES, None, "P7"])),
            "estimate": draw(st.integers(1, 5)),
            "not_before": draw(TIMES),
        }
        if state == "DEFERRED":
            fields["defer_reason"] = {
                "category": "timeout",
                "retryable": draw(st.sampled_from([True, False, "yes"])),
            }
        deps = draw(st.lists(st.sampled_from([*pool, "GONE-1"]), max_size=3))
        tickets.append(ticket(draw(st.sampled_from(pool)), deps, state, **fields))
    return tickets


def reference_ready(tickets: list[Ticket], levels: dict[str, float]) -> list[str]:
    first: dict[str, Ticket] = {}
    for t in tickets:
        if t.id not in first:
            first[t.id] = t
    done = {t.id for t in first.values() if t.state.value == "COMPLETED"}

    def startable(t: Ticket) -> bool:
        retry = (
            t.state.value == "DEFERRED"
            and t.defer_reason is not None
            and (t.defer_reason.model_extra or {}).get("retryable") is True
        )
        on_time = t.not_before is None or parse_timestamp(t.not_before) <= NOW
        return (t.state.value == "UNPROCESSED" or retry) and on_time

    def rank(t: Ticket) -> int:
        return PRIORITIES.index(t.priority) if t.priority in PRIORITIES else len(PRIORITIES)

    ready = [t for t in first.values() if startable(t) and all(d in done for d in t.dependencies)]
    ready.sort(key=lambda t: (rank(t), -levels.get(t.id, t.estimate), t.id))
    return [t.id for t in ready]


@settings(max_examples=300, deadline=None)
@given(backlog(), st.dictionaries(st.sampled_from(IDS[:6]), st.integers(0, 20)))
def test_ready_set_and_order_agree_with_a_reference(tickets: list[Ticket], levels: dict[str, float]) -> None:
    assert [t.id for t in ready_tickets(tickets, levels, NOW)] == reference_ready(tickets, levels)


# ---------------------------------------------------------------- bottom levels


@settings(max_examples=200, deadline=None)
@given(dag(), st.data())
def test_bottom_levels_agree_with_a_recursive_reference(
    problem: tuple[dict[str, int], Dependencies], data: st.DataObject
) -> None:
    durations, deps = problem
    states = {job: data.draw(st.sampled_from(["UNPROCESSED", "COMPLETED"])) for job in durations}
    # a COMPLETED ticket never depends on unfinished work (graph_findings reports that)
    for job in durations:
        if any(states.get(d) == "UNPROCESSED" for d in deps[job]):
            states[job] = "UNPROCESSED"
    tickets = [
        ticket(job, [d for d in deps[job] if d in durations], states[job], estimate=durations[job])
        for job in durations
    ]
    levels = bottom_levels(build_graph(tickets), remaining_estimates(tickets))
    remaining = {job: (0 if states[job] == "COMPLETED" else durations[job]) for job in durations}
    assert levels == reference_bottom_levels(remaining, deps)


# ---------------------------------------------------------------- the analysis, whatever the ticket order


@st.composite
def sound_backlog(draw: st.DrawFn) -> list[Ticket]:
    """An acyclic backlog in any ticket order, with any states (a missing dependency too)."""
    durations, deps = draw(dag())
    tickets = []
    for job, duration in durations.items():
        state = draw(STATES)
        fields: dict[str, object] = {"priority": draw(st.sampled_from([*PRIORITIES, None])),
                                     "estimate": duration, "not_before": draw(TIMES)}
        if state == "DEFERRED":
            fields["defer_reason"] = {"message": "failed", "retryable": draw(st.booleans())}
        tickets.append(ticket(job, deps[job], state, **fields))
    random.Random(draw(st.integers(0, 1000))).shuffle(tickets)
    return tickets


def reference_waves(tickets: list[Ticket]) -> dict[str, int]:
    """Wave 0 when no unfinished ticket of the index comes before; else one after the latest."""
    unfinished = {t.id: t for t in tickets if t.state.value != "COMPLETED"}

    @cache
    def wave(ticket_id: str) -> int:
        before = [d for d in unfinished[ticket_id].dependencies if d in unfinished and d != ticket_id]
        return 1 + max((wave(d) for d in before), default=-1)

    return {ticket_id: wave(ticket_id) for ticket_id in unfinished}


def everything(analysis: Analysis) -> tuple[object, ...]:
    return (analysis.ready, analysis.waves, analysis.blocked, analysis.critical_path,
            analysis.critical_path_minutes, analysis.total_minutes, analysis.bottom_level,
            analysis.recommended_workers, analysis.blocked_count, analysis.wave_count,
            analysis.max_parallelism)


@settings(max_examples=300, deadline=None)
@given(sound_backlog(), st.randoms(use_true_random=False))
def test_the_analysis_does_not_depend_on_the_ticket_order(tickets: list[Ticket], rng: random.Random) -> None:
    shuffled = list(tickets)
    rng.shuffle(shuffled)
    assert DependencyGraph(shuffled).order is not None
    assert everything(analyze(tickets, NOW)) == everything(analyze(shuffled, NOW))


@settings(max_examples=300, deadline=None)
@given(sound_backlog())
def test_the_analysis_agrees_with_references(tickets: list[Ticket]) -> None:
    analysis = analyze(tickets, NOW)
    assert analysis.ready == [t.id for t in ready_tickets(tickets, analysis.bottom_level, NOW)]
    waves = reference_waves(tickets)
    assert {ticket_id: number for number, wave in enumerate(analysis.waves) for ticket_id in wave} == waves
    assert (analysis.wave_count, analysis.max_parallelism) == (
        len(set(waves.values())), max(list(Counter(waves.values()).values()), default=0))
    by_id = {t.id: t for t in tickets}
    blocked = [t for t in tickets
               if t.state.value != "COMPLETED" and is_startable_state(t) and t.id not in analysis.ready]
    blocked.sort(key=lambda t: ready_order_key(t, analysis.bottom_level[t.id]))
    assert [b.ticket_id for b in analysis.blocked] == [t.id for t in blocked]
    assert analysis.blocked_count == len(blocked)
    assert all(by_id[b.ticket_id].state.value != "COMPLETED" for b in analysis.blocked)


def reference_critical_path(tickets: list[Ticket], levels: dict[str, float]) -> list[str]:
    """From the unfinished ticket with the largest bottom level (smallest id on a tie),
    follow the dependent with the largest bottom level (smallest id on a tie); COMPLETED
    tickets on the way are left out."""
    unfinished = [t.id for t in tickets if t.state.value != "COMPLETED"]
    if not unfinished:
        return []
    dependents: dict[str, list[str]] = {t.id: [] for t in tickets}
    for t in tickets:
        for dependency in dict.fromkeys(t.dependencies):
            if dependency in dependents and dependency != t.id:
                dependents[dependency].append(t.id)
    longest = max(levels[ticket_id] for ticket_id in unfinished)
    path = [min(ticket_id for ticket_id in unfinished if levels[ticket_id] == longest)]
    while dependents[path[-1]]:
        path.append(min(dependents[path[-1]], key=lambda ticket_id: (-levels[ticket_id], ticket_id)))
    return [ticket_id for ticket_id in path if ticket_id in unfinished]


@settings(max_examples=300, deadline=None)
@given(sound_backlog())
def test_bottom_levels_and_the_critical_path_agree_with_references(tickets: list[Ticket]) -> None:
    # any states: a COMPLETED ticket may depend on unfinished work here, as it may in an
    # index `sage stream` analyses without validating first
    remaining = {t.id: (0 if t.state.value == "COMPLETED" else t.estimate) for t in tickets}
    levels = reference_bottom_levels(remaining, {t.id: t.dependencies for t in tickets})
    analysis = analyze(tickets, NOW)
    assert analysis.bottom_level == {t.id: levels[t.id] for t in tickets if t.state.value != "COMPLETED"}
    assert analysis.critical_path == reference_critical_path(tickets, levels)
    path = analysis.critical_path
    assert analysis.critical_path_minutes == (levels[path[0]] if path else 0)
    assert analysis.total_minutes == sum(t.estimate for t in tickets if t.state.value != "COMPLETED")


# ---------------------------------------------------------------- schedules


def check_feasible(
    durations: dict[str, int], deps: Dependencies, workers: int, starts: dict[str, tuple[float, float, int]]
) -> None:
    assert set(starts) == set(durations)
    for job, (start, end, worker) in starts.items():
        assert end - start == durations[job]
        assert 0 <= worker < workers
        for dependency in deps[job]:
            if dependency in durations:
                assert start >= starts[dependency][1], f"{job} started before {dependency} ended"
    by_worker: dict[int, list[tuple[float, float]]] = {}
    for start, end, worker in starts.values():
        by_worker.setdefault(worker, []).append((start, end))
    for intervals in by_worker.values():
        intervals.sort()
        for (_, end), (next_start, _) in zip(intervals, intervals[1:]):
            assert next_start >= end, "a worker ran two jobs at once"


@settings(max_examples=300, deadline=None)
@given(dag(), st.integers(1, 5), st.data())
def test_greedy_schedule_is_feasible_work_conserving_and_in_priority_order(
    problem: tuple[dict[str, int], Dependencies], workers: int, data: st.DataObject
) -> None:
    durations, deps = problem
    ranks = {job: data.draw(st.integers(0, 2)) for job in durations}
    schedule = simulate(durations, deps, workers, priority_rank=ranks)
    starts = schedule.starts
    check_feasible(durations, deps, workers, starts)
    assert schedule.makespan == max((end for _, end, _ in starts.values()), default=0)
    assert schedule.makespan >= lower_bound(durations, deps, workers)

    levels = reference_bottom_levels(durations, deps)
    ready_at = {job: max((starts[d][1] for d in deps[job] if d in durations), default=0) for job in durations}

    def running(moment: float) -> int:
        return sum(1 for start, end, _ in starts.values() if start <= moment < end)

    for job, (start, _, _) in starts.items():
        # never idle: while a job waited, every worker was busy
        moments = {ready_at[job], *(end for _, end, _ in starts.values() if ready_at[job] <= end < start)}
        for moment in moments:
            if moment < start:
                assert running(moment) == workers, f"{job} waited at {moment} with a worker free"
        # the best ready job went first
        for other, (other_start, _, _) in starts.items():
            if ready_at[other] <= start < other_start:
                key = (ranks[job], -levels[job], job)
                assert key < (ranks[other], -levels[other], other), (
                    f"{other} should have started before {job}"
                )


@settings(max_examples=200, deadline=None)
@given(dag(), st.integers(1, 5))
def test_batch_schedule_is_feasible_and_never_beats_the_lower_bound(
    problem: tuple[dict[str, int], Dependencies], workers: int
) -> None:
    durations, deps = problem
    schedule = simulate(durations, deps, workers, policy="batch")
    check_feasible(durations, deps, workers, schedule.starts)
    assert schedule.makespan >= lower_bound(durations, deps, workers)
    # a barrier: all jobs of a batch start together, the next batch when the slowest ends
    batch_starts = sorted({start for start, _, _ in schedule.starts.values()})
    for earlier, later in zip(batch_starts, batch_starts[1:]):
        batch_end = max(end for start, end, _ in schedule.starts.values() if start == earlier)
        assert later == batch_end


@settings(max_examples=150, deadline=None)
@given(dag(max_size=16), st.integers(1, 10))
def test_plans_match_single_simulations_and_the_quick_recommendation(
    problem: tuple[dict[str, int], Dependencies], max_workers: int
) -> None:
    durations, deps = problem
    plans = plan_workers(durations, deps, max_workers=max_workers)
    assert [p.workers for p in plans] == list(range(1, max_workers + 1))
    assert [p.makespan for p in plans] == [
        simulate(durations, deps, n).makespan for n in range(1, max_workers + 1)
    ]
    assert recommend_worker_count(durations, deps, max_workers=max_workers) == recommend_workers(plans)
