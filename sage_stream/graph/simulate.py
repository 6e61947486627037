"""What a run would take: the scheduler replayed on the estimates. Pure, no I/O.

Two policies:

- "greedy" (ours): whenever a worker is free, start the best ready job, best by
  (priority rank, -bottom level, id) - the order of `ordering.ready_order_key`.
- "batch" (the original /stream): take up to N ready jobs, wait for ALL of them, repeat;
  workers idle behind the slowest job of each batch.

Both keep apart jobs whose `files` overlap, as the real scheduler does (one rule:
graph/file_overlap.py): a ready job that overlaps a running one waits, and the next best
ready job starts instead.

Jobs are renumbered once in priority order, so the ready queue is a heap of plain ints
and one simulation is O(n log n) for n jobs, whatever the worker count.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sage_stream.graph.file_overlap import globs_overlap
from sage_stream.tickets.models import PRIORITIES

POLICIES = ("greedy", "batch")
WITHIN_BEST = 1.05
"""`recommend_workers` takes the smallest count whose makespan is within 5% of the best."""

SIMULATED_UP_TO = 20_000
"""Above this many unfinished tickets the worker count comes from the lower bounds
(`recommend_by_lower_bound`), not from simulations: one simulation of 70,000 jobs takes
0.3-0.6 s, and on such a backlog total work dominates, where greedy by bottom level is
within 0.4% of the bound (random DAGs, notes/engine-facts.md)."""

RULE_SIMULATION = "simulation"  # the smallest count within 5% of the best simulated makespan
RULE_LOWER_BOUND = "lower_bound"  # the smallest count whose lower bound is within 5% of the best bound

_UNKNOWN_RANK = len(PRIORITIES)  # as Ticket.priority_rank: after P4
_Slots = dict[int, tuple[float, float, int]]  # job number -> (start, end, worker)


@dataclass
class Schedule:
    makespan: float
    starts: dict[str, tuple[float, float, int]]  # id -> (start, end, worker), worker counts from 0


@dataclass
class WorkerPlan:
    workers: int
    makespan: float


@dataclass
class _Jobs:
    """The problem in priority order: job p (0 = best) is ids[p]."""

    ids: list[str]
    durations: list[float]
    successors: list[list[int]]
    indegree: list[int]
    critical_path: float
    total: float
    files: list[Sequence[str]] | None = None  # job -> its `files` globs; None: no job has any


def simulate(
    durations: Mapping[str, float],
    dependencies: Mapping[str, Sequence[str]],
    workers: int,
    *,
    policy: str = "greedy",
    priority_rank: Mapping[str, int] | None = None,
    files: Mapping[str, Sequence[str]] | None = None,
) -> Schedule:
    """The schedule of the jobs in `durations` on `workers` workers.

    `dependencies[job]` may name ids outside `durations`: those are done already
    (COMPLETED tickets). `files[job]`: its `files` globs; jobs whose globs overlap never
    run at once. Raises ValueError on a cycle, a bad policy or workers < 1.
    """
    jobs = _prepare(durations, dependencies, priority_rank, files)
    makespan, starts, _ = _run(jobs, workers, policy, record=True)
    return Schedule(makespan=makespan, starts=starts)


def lower_bound(
    durations: Mapping[str, float], dependencies: Mapping[str, Sequence[str]], workers: int
) -> float:
    """No schedule beats max(critical path, total work / workers)."""
    jobs = _prepare(durations, dependencies, None)
    return _lower_bound(jobs, workers)


def plan_workers(
    durations: Mapping[str, float],
    dependencies: Mapping[str, Sequence[str]],
    *,
    max_workers: int = 8,
    priority_rank: Mapping[str, int] | None = None,
    files: Mapping[str, Sequence[str]] | None = None,
) -> list[WorkerPlan]:
    """The greedy makespan for 1..max_workers workers.

    Once a count is reached at which no job ever waits for a worker, every larger
    count gives the very same schedule, so the remaining counts are not simulated.
    """
    jobs = _prepare(durations, dependencies, priority_rank, files)
    plans: list[WorkerPlan] = []
    for workers in range(1, max_workers + 1):
        makespan, _, waited = _run(jobs, workers, "greedy", record=False)
        plans.append(WorkerPlan(workers, makespan))
        if not waited:
            plans += [WorkerPlan(more, makespan) for more in range(workers + 1, max_workers + 1)]
            break
    return plans


def recommend_worker_count(
    durations: Mapping[str, float],
    dependencies: Mapping[str, Sequence[str]],
    *,
    max_workers: int = 8,
    priority_rank: Mapping[str, int] | None = None,
    files: Mapping[str, Sequence[str]] | None = None,
) -> int:
    """`recommend_workers(plan_workers(...))`, without simulating every count.

    Counts are tried from `max_workers` down. A count whose lower bound is already more
    than 5% above the best makespan found cannot be within 5% of the best, and neither
    can any smaller count (their bounds are larger still), so the search stops there.
    When total work dominates (large backlogs) that is after one or two simulations.
    """
    jobs = _prepare(durations, dependencies, priority_rank, files)
    plans: list[WorkerPlan] = []
    best = float("inf")
    for workers in range(max_workers, 0, -1):
        if _lower_bound(jobs, workers) > best * WITHIN_BEST + 1e-9:
            break
        makespan, _, _ = _run(jobs, workers, "greedy", record=False)
        plans.append(WorkerPlan(workers, makespan))
        best = min(best, makespan)
    return recommend_workers(plans)


def recommend_by_lower_bound(critical_path: float, total: float, *, max_workers: int = 8) -> int:
    """The smallest worker count whose lower bound, max(critical path, total / workers),
    is within 5% of the best bound (that of `max_workers`): no simulation, O(1).

    The rule for huge backlogs (see SIMULATED_UP_TO). Where greedy scheduling meets the
    bound, it is the simulated recommendation; where it does not, the bound is optimistic
    for every count alike.
    """
    best = max(critical_path, total / max_workers)
    good_enough = best * WITHIN_BEST + 1e-9
    return next(workers for workers in range(1, max_workers + 1)
                if max(critical_path, total / workers) <= good_enough)


def recommend_workers(plans: Sequence[WorkerPlan]) -> int:
    """The smallest worker count whose makespan is within 5% of the best one (1 if none)."""
    if not plans:
        return 1
    best = min(plan.makespan for plan in plans)
    good_enough = best * WITHIN_BEST + 1e-9
    return min(plan.workers for plan in plans if plan.makespan <= good_enough)


# ---------------------------------------------------------------- internals


def _lower_bound(jobs: _Jobs, workers: int) -> float:
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    return max(jobs.critical_path, jobs.total / workers)


def _prepare(
    durations: Mapping[str, float],
    dependencies: Mapping[str, Sequence[str]],
    priority_rank: Mapping[str, int] | None,
    files: Mapping[str, Sequence[str]] | None = None,
) -> _Jobs:
    ids = list(durations)
    index = {job: position for position, job in enumerate(ids)}
    duration = [float(durations[job]) for job in ids]
    successors: list[list[int]] = [[] for _ in ids]
    indegree = [0] * len(ids)
    for position, job in enumerate(ids):
        for dependency in dict.fromkeys(dependencies.get(job, ())):  # a repeated id is one edge
            before = index.get(dependency)
            if before is not None:  # else: outside the jobs, i.e. done already
                successors[before].append(position)
                indegree[position] += 1
    order = _topological_order(ids, successors, indegree)
    bottom = [0.0] * len(ids)
    for position in reversed(order):
        after = successors[position]
        bottom[position] = duration[position] + (max(bottom[s] for s in after) if after else 0.0)
    # best first: (priority rank, -bottom level, id), by three stable sorts, last key first
    # (each compares plain strings, floats or ints: several times faster than tuples)
    best_first = sorted(range(len(ids)), key=ids.__getitem__)
    best_first.sort(key=bottom.__getitem__, reverse=True)  # stable: equal levels keep the id order
    if priority_rank is not None:
        best_first.sort(key=[priority_rank.get(job, _UNKNOWN_RANK) for job in ids].__getitem__)
    renumbered = [0] * len(ids)
    for new, old in enumerate(best_first):
        renumbered[old] = new
    return _Jobs(
        ids=[ids[old] for old in best_first],
        durations=[duration[old] for old in best_first],
        successors=[[renumbered[s] for s in successors[old]] for old in best_first],
        indegree=[indegree[old] for old in best_first],
        critical_path=max(bottom, default=0.0),
        total=sum(duration),
        files=[files.get(ids[old]) or () for old in best_first] if files and any(files.values()) else None,
    )


def _topological_order(ids: list[str], successors: list[list[int]], indegree: list[int]) -> list[int]:
    waiting = indegree.copy()
    order = [position for position, count in enumerate(waiting) if count == 0]
    for position in order:  # grows while iterating: Kahn's algorithm
        for successor in successors[position]:
            waiting[successor] -= 1
            if waiting[successor] == 0:
                order.append(successor)
    if len(order) != len(ids):
        stuck = sorted(ids[p] for p, count in enumerate(waiting) if count > 0)
        raise ValueError(f"the dependencies contain a cycle among {', '.join(stuck[:10])}")
    return order


def _run(
    jobs: _Jobs, workers: int, policy: str, *, record: bool
) -> tuple[float, dict[str, tuple[float, float, int]], bool]:
    """(makespan, starts if `record`, whether any job waited for a worker)."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if policy == "greedy":
        makespan, starts, waited = _greedy(jobs, min(workers, max(len(jobs.ids), 1)), record)
    elif policy == "batch":
        makespan, starts, waited = _batches(jobs, workers, record)
    else:
        raise ValueError(f"unknown policy {policy!r}: expected one of {', '.join(POLICIES)}")
    shown = {jobs.ids[p]: slot for p, slot in starts.items()} if record else {}
    return makespan, shown, waited


def _greedy(jobs: _Jobs, workers: int, record: bool) -> tuple[float, _Slots, bool]:
    """Whenever workers are free, start the best ready jobs; `record`: which worker ran
    what (the free workers are then a heap, the lowest number first; without `record`
    only how many are free is kept: the makespan is the same)."""
    duration, successors = jobs.durations, jobs.successors
    waiting = jobs.indegree.copy()
    ready = [p for p, count in enumerate(waiting) if count == 0]  # ascending: already a heap
    running: list[tuple[float, int]] = []  # (end, job)
    idle = workers  # how many workers are free
    free, worker_of = list(range(workers)), {}  # with `record`: the free workers, the running jobs'
    starts: _Slots = {}
    now, makespan, waited = 0.0, 0.0, False
    push, pop = heapq.heappush, heapq.heappop
    files, busy = jobs.files, set()  # busy: the running jobs, when some job has `files`
    while True:
        while ready and idle:
            job = pop(ready) if files is None else _pop_startable(ready, files, busy)
            if job is None:
                break  # every ready job overlaps a running one: it waits for that one, not for a worker
            idle -= 1
            end = now + duration[job]
            push(running, (end, job))
            if files is not None:
                busy.add(job)
            if record:
                worker = worker_of[job] = pop(free)
                starts[job] = (now, end, worker)
        if ready and not idle:
            waited = True
        if not running:
            break
        now = running[0][0]
        makespan = now
        while running and running[0][0] == now:  # free every slot that ends now, then choose
            _, job = pop(running)
            idle += 1
            if files is not None:
                busy.discard(job)
            if record:
                push(free, worker_of.pop(job))
            for successor in successors[job]:
                waiting[successor] -= 1
                if waiting[successor] == 0:
                    push(ready, successor)
    return makespan, starts, waited


def _batches(jobs: _Jobs, workers: int, record: bool) -> tuple[float, _Slots, bool]:
    duration, successors = jobs.durations, jobs.successors
    waiting = jobs.indegree.copy()
    ready = [p for p, count in enumerate(waiting) if count == 0]
    starts: _Slots = {}
    now, waited = 0.0, False
    files = jobs.files
    while ready:
        batch: list[int] = []
        while ready and len(batch) < workers:
            job = _pop_startable(ready, files, batch)
            if job is None:
                break
            batch.append(job)
        waited = waited or (bool(ready) and len(batch) == workers)
        barrier = now
        for worker, job in enumerate(batch):
            end = now + duration[job]
            barrier = max(barrier, end)
            if record:
                starts[job] = (now, end, worker)
        now = barrier
        for job in batch:
            for successor in successors[job]:
                waiting[successor] -= 1
                if waiting[successor] == 0:
                    heapq.heappush(ready, successor)
    return now, starts, waited


def _pop_startable(ready: list[int], files: list[Sequence[str]] | None, running: Iterable[int]) -> int | None:
    """The best ready job whose `files` overlap no running job's (as `DispatchPlan.next_to_start`
    skips one; the same `globs_overlap`, against the few running jobs only); the jobs passed
    over stay ready."""
    if files is None:
        return heapq.heappop(ready)
    passed: list[int] = []
    chosen = None
    while ready:
        job = heapq.heappop(ready)
        if not files[job] or not any(globs_overlap(files[job], files[other]) for other in running):
            chosen = job
            break
        passed.append(job)
    for job in passed:
        heapq.heappush(ready, job)
    return chosen
