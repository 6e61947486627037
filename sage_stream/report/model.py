"""What the report shows, built from a run record's JSON (never from the engine's objects).

`build_report(record)` reads the record tolerantly (an older record without `attempts`
still gives tickets and totals) and ends what is still open at the record's `updated`
time: a run killed mid-way still reports what happened up to its last write.
`ReportModel.to_json()` is `sage report --format json` (documented in README).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from sage_stream.text import epoch_of, iso_utc

OUTCOMES = ("landed", "deferred", "requeued", "interrupted", "running", "queued", "not started")
PHASES = ("prepare", "agent", "checks", "queue", "landing")
Json = dict[str, Any]


@dataclass
class Phase:
    phase: str
    start: float  # seconds since the run started
    end: float
    turn: int | None = None


@dataclass
class Bar:
    """One attempt on its worker's lane."""

    ticket: str
    title: str
    attempt: int
    row: int
    start: float
    end: float
    outcome: str
    open: bool  # still running when the record was last written
    phases: list[Phase]
    cost_usd: float | None = None
    tokens: float | None = None
    exit: str | None = None
    returncode: int | None = None
    category: str | None = None
    message: str | None = None
    log: str | None = None
    critical: bool = False


@dataclass
class TicketRow:
    id: str
    title: str
    outcome: str
    attempts: int = 0
    start: float | None = None
    end: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # per phase, over its attempts
    cost_usd: float | None = None
    tokens: float | None = None
    estimate: float | None = None
    deps: list[str] = field(default_factory=list)
    category: str | None = None
    message: str | None = None
    summary: str | None = None
    commit: str | None = None
    log: str | None = None
    critical: bool = False

    @property
    def wall_s(self) -> float | None:
        return None if self.start is None or self.end is None else self.end - self.start


@dataclass
class Mark:
    kind: str  # pause | conflict | rerun | halt
    start: float
    end: float | None
    text: str
    ticket: str | None = None


@dataclass
class Totals:
    makespan_s: float
    lower_bound_s: float | None  # from the plan's estimates: max(critical path, work / workers)
    predicted_s: float | None
    ran_lower_bound_s: float  # the same bound over what ran, with its real durations
    utilisation: float | None
    landed: int
    landings_per_minute: float | None
    cost_usd: float | None
    tokens: float | None
    attempts: int
    retries: int
    reruns: int
    deferrals: dict[str, int]
    outcomes: dict[str, int]


@dataclass
class ReportModel:
    run_id: str
    status: str
    target: str | None
    agent: str | None
    workers: int
    started: float | None  # epoch seconds; bar times are relative to it
    live: bool
    lanes: list[int]
    bars: list[Bar]
    tickets: list[TicketRow]
    edges: list[tuple[str, str]]
    critical_path: list[str]
    marks: list[Mark]
    totals: Totals

    def to_json(self) -> Json:
        data = asdict(self)
        data["edges"] = [list(edge) for edge in self.edges]
        data["started"] = iso_utc(self.started)
        return {"format": 1, **data}


def build_report(record: Json, *, live: bool = False) -> ReportModel:
    """The report of one run record (`RunRecord.to_json()` or the file's JSON)."""
    started = epoch_of(_text(record.get("started")))
    attempts = [item for item in _list(record.get("attempts")) if isinstance(item, dict)]
    t0 = min([started or math.inf] + [start for item in attempts if (start := _num(item.get("start"))) is not None])
    t0 = None if t0 == math.inf else t0
    now = _last_time(record, attempts)
    rel = (lambda epoch: round(epoch - t0, 2) if epoch is not None and t0 is not None else 0.0)
    plan = record.get("plan") if isinstance(record.get("plan"), dict) else {}
    planned = plan.get("tickets") if isinstance(plan.get("tickets"), dict) else {}
    bars = [_bar(item, rel, now, planned) for item in attempts]
    tickets = _tickets(record, planned, bars)
    known = {row.id for row in tickets}
    edges = [(dep, row.id) for row in tickets for dep in row.deps if dep in known]
    critical = _critical_path(tickets, {row.id: row.deps for row in tickets})
    for row in tickets:
        row.critical = row.id in critical
    for bar in bars:
        bar.critical = bar.ticket in critical
    workers = _int(record.get("workers")) or 1
    lanes = sorted(set(range(workers)) | {bar.row for bar in bars})
    marks = [_mark(item, rel, now) for item in _list(record.get("marks")) if isinstance(item, dict)]
    makespan = max([bar.end for bar in bars] + [rel(epoch_of(_text(record.get("finished"))))] + [0.0])
    totals = _totals(tickets, bars, plan, workers, makespan)
    return ReportModel(
        run_id=_text(record.get("run_id")) or "?", status=_text(record.get("status")) or "?",
        target=_text(record.get("target")), agent=_text(record.get("agent")), workers=workers, started=t0,
        live=live, lanes=lanes, bars=bars, tickets=tickets, edges=edges, critical_path=critical, marks=marks,
        totals=totals)


def _bar(item: Json, rel: Any, now: float, planned: Json) -> Bar:
    end = _num(item.get("end"))
    start = _num(item.get("start")) or now
    phases = []
    for phase in _list(item.get("phases")):
        if isinstance(phase, dict) and _num(phase.get("start")) is not None:
            phases.append(Phase(str(phase.get("phase")), rel(_num(phase.get("start"))),
                                rel(_num(phase.get("end")) or end or now), _int(phase.get("turn"))))
    ticket = _text(item.get("ticket")) or "?"
    info = planned.get(ticket) if isinstance(planned.get(ticket), dict) else {}
    return Bar(ticket=ticket, title=_text(info.get("title")) or "", attempt=_int(item.get("attempt")) or 1,
               row=max(_int(item.get("row")) or 0, 0), start=rel(start), end=rel(end or now),
               outcome=_text(item.get("outcome")) or "running", open=end is None, phases=phases,
               cost_usd=_num(item.get("cost_usd")), tokens=_num(item.get("tokens")), exit=_text(item.get("exit")),
               returncode=_int(item.get("returncode")), category=_text(item.get("category")),
               message=_text(item.get("message")), log=_text(item.get("log")))


def _tickets(record: Json, planned: Json, bars: list[Bar]) -> list[TicketRow]:
    recorded = record.get("tickets") if isinstance(record.get("tickets"), dict) else {}
    rows: dict[str, TicketRow] = {}
    for ticket_id in [*planned, *recorded]:
        info = planned.get(ticket_id) if isinstance(planned.get(ticket_id), dict) else {}
        seen = recorded.get(ticket_id) if isinstance(recorded.get(ticket_id), dict) else {}
        row = rows.setdefault(str(ticket_id), TicketRow(id=str(ticket_id), title="", outcome="not started"))
        row.title = _text(seen.get("title")) or _text(info.get("title")) or row.title
        row.outcome = _text(seen.get("outcome")) or row.outcome
        row.estimate = _num(info.get("estimate"))
        row.deps = [str(dep) for dep in _list(info.get("deps"))]
        row.attempts = _int(seen.get("attempts")) or 0
        for key in ("category", "message", "summary", "commit", "log"):
            setattr(row, key, _text(seen.get(key)))
        row.cost_usd = _num(seen.get("cost_usd"))
    for bar in bars:
        row = rows.setdefault(bar.ticket, TicketRow(id=bar.ticket, title=bar.title, outcome=bar.outcome))
        bar.title = bar.title or row.title
        row.start = bar.start if row.start is None else min(row.start, bar.start)
        row.end = bar.end if row.end is None else max(row.end, bar.end)
        row.attempts = max(row.attempts, bar.attempt)
        row.tokens = (row.tokens or 0) + bar.tokens if bar.tokens is not None else row.tokens
        for phase in bar.phases:
            row.seconds[phase.phase] = round(row.seconds.get(phase.phase, 0.0) + phase.end - phase.start, 2)
    return list(rows.values())


def _critical_path(tickets: list[TicketRow], deps: dict[str, list[str]]) -> list[str]:
    """What the run's end waited on: from the ticket that finished last, back through the
    dependency of each that finished last (only tickets that ran)."""
    ran = {row.id: row for row in tickets if row.end is not None}
    if not ran:
        return []
    chain = [max(ran.values(), key=lambda row: row.end).id]
    while True:
        before = [ran[dep] for dep in deps.get(chain[-1], []) if dep in ran and dep not in chain]
        if not before:
            return chain[::-1]
        chain.append(max(before, key=lambda row: row.end).id)


def _totals(tickets: list[TicketRow], bars: list[Bar], plan: Json, workers: int, makespan: float) -> Totals:
    estimates = {row.id: row.estimate or 1.0 for row in tickets if row.id in plan.get("tickets", {})}
    lower = None
    if estimates:
        lower = 60 * max(_longest_chain(estimates, {row.id: row.deps for row in tickets}),
                         sum(estimates.values()) / workers)
    ran = {row.id: row.wall_s for row in tickets if row.wall_s is not None}
    busy = sum(p.end - p.start for bar in bars for p in bar.phases if p.phase in ("prepare", "agent", "checks"))
    ran_lower = max(_longest_chain(ran, {row.id: row.deps for row in tickets}),
                    sum(ran.values()) / workers) if ran else 0.0
    landed = sum(1 for row in tickets if row.outcome == "landed")
    costs = [bar.cost_usd for bar in bars if bar.cost_usd is not None]
    tokens = [bar.tokens for bar in bars if bar.tokens is not None]
    predicted = _num(plan.get("predicted_makespan_minutes"))
    return Totals(
        makespan_s=round(makespan, 2), lower_bound_s=round(lower, 2) if lower is not None else None,
        predicted_s=round(predicted * 60, 2) if predicted is not None else None, ran_lower_bound_s=round(ran_lower, 2),
        utilisation=round(busy / (workers * makespan), 3) if makespan > 0 else None, landed=landed,
        landings_per_minute=round(landed / (makespan / 60), 2) if makespan > 0 else None,
        cost_usd=round(sum(costs), 4) if costs else None, tokens=sum(tokens) if tokens else None,
        attempts=len(bars), retries=sum(max(row.attempts - 1, 0) for row in tickets),
        reruns=sum(1 for bar in bars if bar.outcome == "requeued"),
        deferrals=dict(Counter(row.category or "unknown" for row in tickets if row.outcome == "deferred")),
        outcomes=dict(Counter(row.outcome for row in tickets)))


def _longest_chain(weights: dict[str, float], deps: dict[str, list[str]]) -> float:
    """The heaviest dependency chain among `weights`' tickets (iterative: deep chains are
    fine; an edge closing a cycle is not followed)."""
    finish: dict[str, float] = {}
    for first in weights:
        if first in finish:
            continue
        stack, visiting = [(first, iter(deps.get(first, [])))], {first}
        while stack:
            node, pending = stack[-1]
            later = next((dep for dep in pending if dep in weights and dep not in finish and dep not in visiting), None)
            if later is not None:
                visiting.add(later)
                stack.append((later, iter(deps.get(later, []))))
                continue
            finish[node] = weights[node] + max((finish[dep] for dep in deps.get(node, []) if dep in finish),
                                               default=0.0)
            visiting.discard(node)
            stack.pop()
    return max(finish.values(), default=0.0)


def _mark(item: Json, rel: Any, now: float) -> Mark:
    start = _num(item.get("start")) or now
    end = _num(item.get("end"))
    kind = _text(item.get("kind")) or "mark"
    return Mark(kind=kind, start=rel(start), end=rel(end or now) if kind == "pause" else None,
                text=_text(item.get("text")) or "", ticket=_text(item.get("ticket")))


def _last_time(record: Json, attempts: list[Json]) -> float:
    times = [_num(record.get("updated")), epoch_of(_text(record.get("finished")))]
    for item in attempts:
        times += [_num(item.get("start")), _num(item.get("end"))]
    known = [value for value in times if value is not None]
    return max(known) if known else 0.0


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    return value if isinstance(value, str) else str(value)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _int(value: Any) -> int | None:
    number = _num(value)
    return int(number) if number is not None and number.is_integer() else None
