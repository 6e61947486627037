"""A synthetic run: the event sequence a `sage stream` of N tickets on W workers emits, folded
into a run record by the engine's own `RunRecord.apply` (so the record is what a real run
writes). Used by the report's tests and by bench/bench_report.py.

Tickets form chains (each depends on the one before in its chain, and every 7th also on a
ticket of the previous chain), durations are drawn from a seeded random generator, and a
greedy list schedule places them on workers (the free worker takes
the ticket that can start soonest). Every 9th ticket gets a fix turn, every 29th
a conflict rerun, some chain ends are deferred; one rate-limit pause and one halt are marked.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from sage_stream.engine import events as ev
from sage_stream.engine.run_record import RunRecord, record_from_events

T0 = 1_795_000_000.0


@dataclass
class SyntheticRun:
    events: list[ev.Event] = field(default_factory=list)
    record: RunRecord | None = None
    deps: dict[str, list[str]] = field(default_factory=dict)


def ticket_ids(count: int, prefix: str = "T") -> list[str]:
    return [f"{prefix}-{number:04d}" for number in range(1, count + 1)]


def synthetic_run(count: int, workers: int, *, seed: int = 1, chain: int = 6, titles: dict[str, str] | None = None,
                  summaries: dict[str, str] | None = None, finished: bool = True, ids: list[str] | None = None,
                  run_id: str = "20261202T120000Z-abc123") -> SyntheticRun:
    rng = random.Random(seed)
    ids = ids or ticket_ids(count)
    titles = titles or {}
    deps: dict[str, list[str]] = {}
    for index, tid in enumerate(ids):
        deps[tid] = [ids[index - 1]] if index % chain else []
        if index % 7 == 3 and index >= chain:
            deps[tid].append(ids[index - chain - 1])
    out = SyntheticRun(deps=deps)
    emit = (lambda kind, ticket, when, **data: out.events.append(ev.Event(kind=kind, ticket=ticket, data=data,
                                                                         time=T0 + when)))
    meta = {tid: {"title": titles.get(tid, f"Ticket {tid}"), "estimate": 1.0, "deps": deps[tid]} for tid in ids}
    emit(ev.RUN_STARTED, None, 0.0, run_id=run_id, target="main", workers=workers, workers_reason="test",
         schedule="critical-path", agent="exec", tickets=meta, ready=[t for t in ids if not deps[t]],
         predicted_makespan_minutes=count * 1.25 / workers)
    done: dict[str, float] = {}
    free = [(0.0, row) for row in range(workers)]
    heapq.heapify(free)
    last = 0.0
    pending = list(enumerate(ids))  # dependencies come first in `ids`
    while pending:  # a greedy list schedule: the free worker takes what can start soonest
        at, row = heapq.heappop(free)
        startable = [(max([at] + [done[dep] for dep in deps[tid]]), position)
                     for position, (index, tid) in enumerate(pending[:200]) if all(dep in done for dep in deps[tid])]
        at, position = min(startable)
        index, tid = pending.pop(position)
        defer = index % chain == chain - 1 and (index // chain) % 3 == 1  # a chain's end: nothing waits on it
        end = _attempts(emit, tid, index, at, row, rng, titles.get(tid, f"Ticket {tid}"), summaries or {}, defer)
        done[tid] = end
        last = max(last, end)
        heapq.heappush(free, (end, row))
        if index == count // 3:
            emit(ev.DISPATCH_PAUSED, None, end, reason="rate limited (429)", until=None)
            emit(ev.DISPATCH_RESUMED, None, end + 20, workers=workers, reason="the rate-limit pause is over")
    if count > 4:
        emit(ev.MESSAGE, None, last * 0.9, level="warning", text="stopped starting tickets: test halt",
             halt="test halt")
    if finished:
        emit(ev.RUN_FINISHED, None, last + 1, completed=count, deferred=0, interrupted=False, remaining=0,
             exit_code=0, duration_s=last + 1)
    out.events.sort(key=lambda event: event.time)
    out.record = record_from_events(run_id, out.events)
    return out


def _attempts(emit, tid: str, index: int, at: float, row: int, rng: random.Random, title: str,
              summaries: dict[str, str], defer: bool) -> float:
    attempt = 1
    while True:
        prepare, agent, checks = rng.uniform(0.2, 1.5), rng.uniform(20, 120), rng.uniform(2, 10)
        emit(ev.TICKET_STARTED, tid, at + prepare, title=title, row=row, slot=row, attempt=attempt,
             branch=f"sage/{tid}", worktree=f".sage/worktrees/slot-{row}", log=f".sage/workers/run/{tid}.log",
             continues=None, prepare_s=round(prepare, 2))
        now = at + prepare + agent
        emit(ev.AGENT_FINISHED, tid, now, outcome="exited", returncode=0, duration_s=agent, success=True,
             summary=summaries.get(tid, "did it"), turn=0, cost_usd=round(agent / 1000, 4), session_id=None,
             error_kind=None, tokens=int(agent * 40))
        emit(ev.TICKET_CHECKING, tid, now, checks=["tests"], turn=0)
        fix = index % 9 == 4 and attempt == 1
        now += checks
        emit(ev.TICKET_CHECKED, tid, now, passed=not fix, failed=["tests"] if fix else [], turn=0,
             fix_turn_next=fix, duration_s=checks)
        if fix:
            now += agent / 3
            emit(ev.AGENT_FINISHED, tid, now, outcome="exited", returncode=0, duration_s=agent / 3, success=True,
                 summary="fixed", turn=1, cost_usd=0.01, session_id=None, error_kind=None, tokens=900)
            emit(ev.TICKET_CHECKING, tid, now, checks=["tests"], turn=1)
            now += checks
            emit(ev.TICKET_CHECKED, tid, now, passed=True, failed=[], turn=1, fix_turn_next=False,
                 duration_s=checks)
        if defer:
            emit(ev.TICKET_DEFERRED, tid, now, category="checks_failed", message="tests still fail",
                 retryable=True, not_before=None)
            return now
        now += rng.uniform(0.1, 2.0)  # waiting for the loop to queue it
        emit(ev.TICKET_QUEUED, tid, now)
        landing = rng.uniform(0.3, 1.2)
        if index % 29 == 6 and attempt == 1:
            emit(ev.TICKET_REQUEUED, tid, now + landing, reason="conflict in src/app.py", attempt=2,
                 category="conflict")
            at, attempt = now + landing, 2
            continue
        emit(ev.TICKET_LANDED, tid, now + landing, commit=f"{index:040x}", duration_s=now + landing - at)
        return now + landing
