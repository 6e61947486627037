"""What the remaining work looks like: ready set, why the rest waits, waves, critical path.

Only unfinished work counts. A COMPLETED ticket weighs 0 minutes (no work remains in
it), is in no wave and never on the critical path. Unfinished = UNPROCESSED,
IN_PROGRESS or DEFERRED: a DEFERRED ticket is still work the backlog needs, so it keeps
its estimate even though it waits for `sage retry`.

`analyze` assumes `graph_findings` reported no errors (in particular no cycle). It makes
a few linear passes over one topological order, then one or a few worker simulations
(`simulate.recommend_worker_count`): about 2-4 s for 100,000 tickets on a busy 2-core box.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

import networkx as nx

from sage_stream.graph.dependency_graph import build_graph, gc_paused
from sage_stream.graph.ordering import (
    is_retryable,
    is_startable,
    is_startable_state,
    ready_order_key,
    ready_tickets,
)
from sage_stream.graph.simulate import recommend_worker_count
from sage_stream.tickets.models import State, Ticket

ROOT_CAUSES_KEPT = 5
"""Root causes kept per blocked ticket. In a wide graph a ticket can wait on thousands of
roots; keeping them all would make the analysis quadratic."""

MISSING = "MISSING"  # RootCause.state of a dependency that is not in the index


@dataclass(frozen=True)  # shared by every ticket blocked on the same root
class RootCause:
    ticket_id: str
    state: str  # a ticket State value, or MISSING
    reason: str  # "tests failed", "in progress", "waiting until 2026-01-31T12:00:00Z"

    def describe(self) -> str:
        return f"{self.ticket_id}, {self.state}: {self.reason}"


@dataclass
class BlockedTicket:
    ticket_id: str
    waiting_on: list[str]  # its own unfinished or missing dependencies
    root_causes: list[RootCause]  # what it really waits for, at the bottom of those chains
    more_root_causes: bool = False  # True when more than ROOT_CAUSES_KEPT were found

    def describe(self) -> str:
        """"blocked by TKT-004, DEFERRED: tests failed", or "waiting until T" for itself."""
        own = [cause for cause in self.root_causes if cause.ticket_id == self.ticket_id]
        others = [cause for cause in self.root_causes if cause.ticket_id != self.ticket_id]
        parts = [cause.reason for cause in own]
        if others:
            more = "; and more" if self.more_root_causes else ""
            parts.append("blocked by " + "; ".join(cause.describe() for cause in others) + more)
        return "; ".join(parts)


@dataclass
class Analysis:
    ready: list[str]  # startable now, in start order
    blocked: list[BlockedTicket]  # startable states that cannot start yet, in start order
    waves: list[list[str]]  # topological generations of unfinished tickets
    max_parallelism: int  # the largest wave
    critical_path: list[str]  # the longest chain of remaining work, first ticket first
    critical_path_minutes: float
    total_minutes: float  # all remaining work
    bottom_level: dict[str, float] = field(default_factory=dict)  # unfinished tickets only
    recommended_workers: int = 1  # of 1..8, the smallest within 5% of the best predicted makespan


def remaining_estimates(tickets: Iterable[Ticket]) -> dict[str, float]:
    """Estimates of unfinished tickets; COMPLETED ones are left out, so they weigh 0."""
    first: dict[str, Ticket] = {}
    for ticket in tickets:
        first.setdefault(ticket.id, ticket)
    return {ticket_id: t.estimate for ticket_id, t in first.items() if t.state is not State.COMPLETED}


def bottom_levels(graph: nx.DiGraph, estimates: Mapping[str, float]) -> dict[str, float]:
    """Per node: its estimate plus the longest chain of estimates after it.

    A node missing from `estimates` weighs 0: pass `remaining_estimates(tickets)` so that
    COMPLETED tickets count for nothing. One reverse-topological pass; the graph must be
    acyclic (`nx.NetworkXUnfeasible` otherwise). Not `dag_longest_path`: that weights edges.
    """
    return _bottom_levels(list(nx.topological_sort(graph)), graph.succ, estimates)


def analyze(tickets: Sequence[Ticket], now: datetime | None = None) -> Analysis:
    """The remaining work of a sound index (see the module docstring); `now` decides
    `not_before` waits and defaults to the current time."""
    with gc_paused():
        return _analyze(tickets, now)


def _analyze(tickets: Sequence[Ticket], now: datetime | None) -> Analysis:
    moment = now if now is not None else datetime.now(timezone.utc)
    graph = build_graph(tickets)
    first: dict[str, Ticket] = dict(graph.nodes(data="ticket"))
    order = list(nx.topological_sort(graph))
    estimates = remaining_estimates(first.values())
    levels = _bottom_levels(order, graph.succ, estimates)
    unfinished = [ticket_id for ticket_id in order if ticket_id in estimates]
    bottom_level = {ticket_id: levels[ticket_id] for ticket_id in unfinished}
    start_order = {
        ticket_id: ready_order_key(first[ticket_id], level) for ticket_id, level in bottom_level.items()
    }.__getitem__

    ready = [ticket.id for ticket in ready_tickets(list(first.values()), bottom_level, moment)]
    waits = _Waits(first, set(first) - set(estimates), moment)
    for ticket_id in unfinished:
        waits.add(ticket_id)
    waves = [sorted(wave, key=start_order) for wave in waits.waves()]
    ready_set = set(ready)
    blocked_ids = [
        ticket_id for ticket_id in unfinished
        if ticket_id not in ready_set and is_startable_state(first[ticket_id])
    ]
    critical_path = _critical_path(unfinished, graph.succ, levels, estimates)
    return Analysis(
        ready=ready,
        blocked=[waits.blocked(ticket_id) for ticket_id in sorted(blocked_ids, key=start_order)],
        waves=waves,
        max_parallelism=max((len(wave) for wave in waves), default=0),
        critical_path=critical_path,
        critical_path_minutes=levels[critical_path[0]] if critical_path else 0.0,
        total_minutes=sum(estimates.values()),
        bottom_level=bottom_level,
        recommended_workers=recommend_worker_count(
            estimates,
            {ticket_id: first[ticket_id].dependencies for ticket_id in unfinished},
            priority_rank={ticket_id: first[ticket_id].priority_rank for ticket_id in unfinished},
        ),
    )


# ---------------------------------------------------------------- internals


def _bottom_levels(
    order: Sequence[str], successors: Mapping[str, Iterable[str]], estimates: Mapping[str, float]
) -> dict[str, float]:
    levels: dict[str, float] = {}
    for node in reversed(order):
        after = successors[node]
        levels[node] = estimates.get(node, 0.0) + (max(levels[s] for s in after) if after else 0.0)
    return levels


def _critical_path(
    unfinished: Sequence[str],
    successors: Mapping[str, Iterable[str]],
    levels: Mapping[str, float],
    estimates: Mapping[str, float],
) -> list[str]:
    """From the unfinished ticket with the largest bottom level, follow the heaviest successor."""
    if not unfinished:
        return []
    node = min(unfinished, key=lambda ticket_id: (-levels[ticket_id], ticket_id))
    path = [node]
    while successors[node]:
        node = min(successors[node], key=lambda ticket_id: (-levels[ticket_id], ticket_id))
        path.append(node)
    return [ticket_id for ticket_id in path if ticket_id in estimates]


class _Waits:
    """Waves and root causes, filled in topological order, one ticket at a time.

    A ticket is a *root* when nothing unfinished stands before it: it is IN_PROGRESS,
    DEFERRED for good (waits for `sage retry`), or has no unfinished dependency (then it
    is ready, or waits for its `not_before`). Every other unfinished ticket waits on the
    roots found below its unfinished dependencies, plus its missing dependencies.
    """

    def __init__(self, first: Mapping[str, Ticket], completed: set[str], now: datetime) -> None:
        self.first = first
        self.completed = completed
        self.now = now
        self.wave: dict[str, int] = {}
        self.waiting_on: dict[str, list[str]] = {}
        self.roots: dict[str, tuple[tuple[str, ...], bool]] = {}  # non-root id -> (root ids, more)
        self.causes: dict[str, RootCause] = {}  # one shared RootCause per root

    def add(self, ticket_id: str) -> None:
        ticket = self.first[ticket_id]
        completed = self.completed
        before = [d for d in ticket.dependencies if d not in completed and d != ticket_id]
        if len(before) > 1:
            before = list(dict.fromkeys(before))
        self.waiting_on[ticket_id] = before
        wave = self.wave
        self.wave[ticket_id] = 1 + max([wave.get(d, -1) for d in before], default=-1)  # missing: -1
        if self._is_root(ticket, before):
            return
        roots = self.roots
        below = [roots.get(d) or ((d,), False) for d in before]  # a root (or missing) stands for itself
        if len(below) == 1:  # a chain: share the tuple, do not copy it
            roots[ticket_id] = below[0]
            return
        found = set().union(*(ids for ids, _ in below))
        more = any(truncated for _, truncated in below) or len(found) > ROOT_CAUSES_KEPT
        roots[ticket_id] = (tuple(sorted(found)[:ROOT_CAUSES_KEPT]), more)

    def waves(self) -> list[list[str]]:
        waves: list[list[str]] = [[] for _ in range(max(self.wave.values(), default=-1) + 1)]
        for ticket_id, wave in self.wave.items():
            waves[wave].append(ticket_id)
        return waves

    def blocked(self, ticket_id: str) -> BlockedTicket:
        if ticket_id in self.roots:
            ids, more = self.roots[ticket_id]
        else:
            ids, more = (ticket_id,), False  # waits for nothing but itself: its not_before
        return BlockedTicket(
            ticket_id=ticket_id,
            waiting_on=list(self.waiting_on.get(ticket_id, [])),
            root_causes=[self._cause(root) for root in ids],
            more_root_causes=more,
        )

    def _is_root(self, ticket: Ticket, before: Sequence[str]) -> bool:
        if ticket.state is State.IN_PROGRESS:
            return True
        if ticket.state is State.DEFERRED and not is_retryable(ticket):
            return True
        return not before

    def _cause(self, ticket_id: str) -> RootCause:
        cause = self.causes.get(ticket_id)
        if cause is None:
            ticket = self.first.get(ticket_id)
            if ticket is None:
                cause = RootCause(ticket_id, MISSING, "not in the index")
            else:
                cause = RootCause(ticket_id, ticket.state.value, root_reason(ticket, self.now))
            self.causes[ticket_id] = cause
        return cause


def root_reason(ticket: Ticket, now: datetime) -> str:
    """Why a root ticket has not finished, in a few words."""
    not_before = ticket.not_before
    waiting = not_before is not None and not is_startable(ticket, now) and is_startable_state(ticket)
    if ticket.state is State.IN_PROGRESS:
        return "in progress"
    if ticket.state is State.DEFERRED:
        why = _defer_text(ticket)
        if not is_retryable(ticket):
            return why
        return f"retry after {not_before} ({why})" if waiting else f"ready to retry ({why})"
    if waiting:
        return f"waiting until {not_before}"
    return "ready, not started yet"


def _defer_text(ticket: Ticket) -> str:
    reason = ticket.defer_reason
    if reason is None:
        return "deferred, no reason recorded"
    return reason.message or reason.category or "deferred, no reason recorded"
