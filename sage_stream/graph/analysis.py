"""What the remaining work looks like: ready set, why the rest waits, waves, critical path.

Only unfinished work counts. A COMPLETED ticket weighs 0 minutes (no work remains in
it), is in no wave and never on the critical path. Unfinished = UNPROCESSED,
IN_PROGRESS or DEFERRED: a DEFERRED ticket is still work the backlog needs, so it keeps
its estimate even though it waits for `sage retry`.

`analyze` assumes `graph_findings` reported no errors (in particular no cycle). It makes
a few linear passes over one topological order of the shared `DependencyGraph`, then
recommends a worker count (`simulate.recommend_worker_count`; above
`simulate.SIMULATED_UP_TO` tickets, `simulate.recommend_by_lower_bound`). What only some
callers read is computed when first read: the sorted waves and the root causes of every
blocked ticket (`sage ready` shows them, `sage validate` only counts them). About 0.5 s
for 100,000 tickets on a busy 2-core box (BENCHMARKS.md, "sage validate at scale").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from itertools import repeat
from operator import attrgetter
from typing import TYPE_CHECKING

from sage_stream.graph.dependency_graph import DependencyGraph
from sage_stream.graph.ordering import (
    is_retryable,
    is_startable,
    is_startable_state,
    order_ready,
    ready_order_key,
)
from sage_stream.graph.simulate import (
    RULE_LOWER_BOUND,
    RULE_SIMULATION,
    SIMULATED_UP_TO,
    recommend_by_lower_bound,
    recommend_worker_count,
)
from sage_stream.tickets.models import State, Ticket
from sage_stream.tickets.store import gc_paused

if TYPE_CHECKING:
    import networkx as nx

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
    blocked_count: int  # startable states that cannot start yet (`blocked` lists them)
    wave_count: int  # topological generations of unfinished tickets (`waves` lists them)
    max_parallelism: int  # the largest wave
    critical_path: list[str]  # the longest chain of remaining work, first ticket first
    critical_path_minutes: float
    total_minutes: float  # all remaining work
    bottom_level: dict[str, float]  # unfinished tickets only
    recommended_workers: int  # of 1..8, see recommended_workers_rule
    recommended_workers_rule: str  # simulate.RULE_SIMULATION or simulate.RULE_LOWER_BOUND
    _work: _RemainingWork = field(repr=False, compare=False)

    @cached_property
    def blocked(self) -> list[BlockedTicket]:
        """Every blocked ticket in start order, with its root causes (computed on first use)."""
        return self._work.blocked()

    @cached_property
    def waves(self) -> list[list[str]]:
        """The topological generations of unfinished tickets, each in start order."""
        return self._work.waves()


def remaining_estimates(tickets: Iterable[Ticket]) -> dict[str, float]:
    """Estimates of unfinished tickets; COMPLETED ones are left out, so they weigh 0."""
    first: dict[str, Ticket] = {}
    for ticket in tickets:
        first.setdefault(ticket.id, ticket)
    return _remaining_estimates(first)


def _remaining_estimates(first: Mapping[str, Ticket]) -> dict[str, float]:
    completed = State.COMPLETED
    return {ticket_id: t.estimate for ticket_id, t in first.items() if t.state is not completed}


def bottom_levels(graph: nx.DiGraph, estimates: Mapping[str, float]) -> dict[str, float]:
    """Per node: its estimate plus the longest chain of estimates after it.

    A node missing from `estimates` weighs 0: pass `remaining_estimates(tickets)` so that
    COMPLETED tickets count for nothing. One reverse-topological pass; the graph must be
    acyclic (`nx.NetworkXUnfeasible` otherwise). Not `dag_longest_path`: that weights edges.
    """
    import networkx as nx

    return _bottom_levels(list(nx.topological_sort(graph)), graph.succ, estimates)


def analyze(
    tickets: Sequence[Ticket], now: datetime | None = None, *, graph: DependencyGraph | None = None
) -> Analysis:
    """The remaining work of a sound index (see the module docstring); `now` decides
    `not_before` waits and defaults to the current time. `graph`, when given, must be
    `DependencyGraph(tickets)` (built once, shared with `graph_findings`). A cycle
    raises `networkx.NetworkXUnfeasible`."""
    with gc_paused():
        if graph is None:
            graph = DependencyGraph(tickets)
        graph.check_built_from(tickets)
        return _analyze(graph, now)


def _analyze(graph: DependencyGraph, now: datetime | None) -> Analysis:
    moment = now if now is not None else datetime.now(timezone.utc)
    if graph.order is None:
        import networkx as nx

        raise nx.NetworkXUnfeasible("the dependencies contain a cycle (sage validate names it)")
    first = graph.first
    estimates = _remaining_estimates(first)
    levels = _bottom_levels(graph.order, graph.dependents, estimates)
    if graph.in_index_order:  # then `estimates` is in that order too
        unfinished = list(estimates)
    else:
        unfinished = [ticket_id for ticket_id in graph.order if ticket_id in estimates]
    bottom_level = dict(zip(unfinished, map(levels.__getitem__, unfinished), strict=True))
    work = _RemainingWork(first, unfinished, first.keys() - estimates.keys(), bottom_level, moment)
    critical_path = _critical_path(unfinished, graph.dependents, levels, estimates)
    critical_path_minutes = levels[critical_path[0]] if critical_path else 0.0
    total_minutes = sum(estimates.values())
    if len(estimates) <= SIMULATED_UP_TO:
        recommended = recommend_worker_count(
            estimates,
            {ticket_id: first[ticket_id].dependencies for ticket_id in unfinished},
            priority_rank={ticket_id: first[ticket_id].priority_rank for ticket_id in unfinished},
        )
        rule = RULE_SIMULATION
    else:
        recommended, rule = recommend_by_lower_bound(critical_path_minutes, total_minutes), RULE_LOWER_BOUND
    wave_sizes = Counter(work.wave.values())
    return Analysis(
        ready=work.ready,
        blocked_count=work.blocked_count,
        wave_count=len(wave_sizes),
        max_parallelism=max(wave_sizes.values(), default=0),
        critical_path=critical_path,
        critical_path_minutes=critical_path_minutes,
        total_minutes=total_minutes,
        bottom_level=bottom_level,
        recommended_workers=recommended,
        recommended_workers_rule=rule,
        _work=work,
    )


# ---------------------------------------------------------------- internals


def _bottom_levels(
    order: Sequence[str], successors: Mapping[str, Iterable[str]], estimates: Mapping[str, float]
) -> dict[str, float]:
    levels: dict[str, float] = {}
    estimate, after_of, level_of = estimates.get, successors.get, levels.__getitem__
    for node in reversed(order):
        after = after_of(node)
        levels[node] = (estimate(node, 0.0) + max(map(level_of, after))) if after else estimate(node, 0.0)
    return levels


def _critical_path(
    unfinished: Sequence[str],
    successors: Mapping[str, Sequence[str]],
    levels: Mapping[str, float],
    estimates: Mapping[str, float],
) -> list[str]:
    """From the unfinished ticket with the largest bottom level, follow the heaviest successor."""
    if not unfinished:
        return []
    longest = max(map(levels.__getitem__, unfinished))
    node = min([ticket_id for ticket_id in unfinished if levels[ticket_id] == longest])
    path = [node]
    while successors.get(node):
        node = min(successors[node], key=lambda ticket_id: (-levels[ticket_id], ticket_id))
        path.append(node)
    return [ticket_id for ticket_id in path if ticket_id in estimates]


class _RemainingWork:
    """The unfinished tickets, in topological order: the wave of each, the ready and the
    blocked ones; the sorted waves and the root causes on demand.

    A ticket is a *root* when nothing unfinished stands before it: it is IN_PROGRESS,
    DEFERRED for good (waits for `sage retry`), or has no unfinished dependency (then it
    is ready, or waits for its `not_before`). Every other unfinished ticket waits on the
    roots found below its unfinished dependencies, plus its missing dependencies.
    """

    def __init__(
        self,
        first: Mapping[str, Ticket],
        unfinished: Sequence[str],
        completed: set[str],
        bottom_level: Mapping[str, float],
        now: datetime,
    ) -> None:
        self.first = first
        self.unfinished = unfinished
        self.completed = completed
        self.bottom_level = bottom_level
        self.now = now
        self.wave = self._waves_of(first, unfinished)
        startable = [ticket for ticket in self._unblocked() if is_startable(ticket, now)]
        self.ready = [ticket.id for ticket in order_ready(startable, bottom_level)]
        self.blocked_count = self._startable_count() - len(self.ready)  # every ready one is startable

    @staticmethod
    def _waves_of(first: Mapping[str, Ticket], unfinished: Sequence[str]) -> dict[str, int]:
        """Wave 0: nothing unfinished before it; else one after its latest unfinished dependency.

        COMPLETED and missing dependencies are not in `wave` yet, and neither is the ticket
        itself: they count as -1, that is, as nothing before it.
        """
        wave: dict[str, int] = {}
        wave_of = wave.get
        for ticket_id in unfinished:
            dependencies = first[ticket_id].dependencies
            wave[ticket_id] = 1 + max(map(wave_of, dependencies, repeat(-1))) if dependencies else 0
        return wave

    def _unblocked(self) -> list[Ticket]:
        """Unfinished tickets whose dependencies are all COMPLETED (a missing one is not)."""
        first, completed = self.first, self.completed
        no_wait = [first[ticket_id] for ticket_id, number in self.wave.items() if not number]
        return [ticket for ticket in no_wait if completed.issuperset(ticket.dependencies)]

    def waiting_on(self, ticket_id: str) -> list[str]:
        """Its unfinished or missing dependencies, each once."""
        completed = self.completed
        before = [d for d in self.first[ticket_id].dependencies if d not in completed and d != ticket_id]
        return list(dict.fromkeys(before)) if len(before) > 1 else before

    def start_order(self, ticket_id: str) -> tuple[int, float, str]:
        return ready_order_key(self.first[ticket_id], self.bottom_level[ticket_id])

    def waves(self) -> list[list[str]]:
        waves: list[list[str]] = [[] for _ in range(max(self.wave.values(), default=-1) + 1)]
        for ticket_id, wave in self.wave.items():
            waves[wave].append(ticket_id)
        return [sorted(wave, key=self.start_order) for wave in waves]

    def _startable_count(self) -> int:
        """Unfinished tickets in a state the scheduler starts from (`is_startable_state`)."""
        states = Counter(map(attrgetter("state"), self.first.values()))
        if not states[State.DEFERRED]:
            return states[State.UNPROCESSED]
        return sum(1 for ticket_id in self.unfinished if is_startable_state(self.first[ticket_id]))

    def blocked(self) -> list[BlockedTicket]:
        ready = set(self.ready)
        blocked_ids = [
            ticket_id for ticket_id in self.unfinished
            if ticket_id not in ready and is_startable_state(self.first[ticket_id])
        ]
        roots = self._roots()
        causes: dict[str, RootCause] = {}  # one shared RootCause per root
        return [
            self._blocked(ticket_id, roots, causes) for ticket_id in sorted(blocked_ids, key=self.start_order)
        ]

    def _roots(self) -> dict[str, tuple[tuple[str, ...], bool]]:
        """Non-root id -> (its first ROOT_CAUSES_KEPT root ids, whether there are more)."""
        roots: dict[str, tuple[tuple[str, ...], bool]] = {}
        for ticket_id in self.unfinished:
            before = self.waiting_on(ticket_id)
            if self._is_root(self.first[ticket_id], before):
                continue
            below = [roots.get(d) or ((d,), False) for d in before]  # a root (or missing) stands for itself
            if len(below) == 1:  # a chain: share the tuple, do not copy it
                roots[ticket_id] = below[0]
                continue
            found = set().union(*(ids for ids, _ in below))
            more = any(truncated for _, truncated in below) or len(found) > ROOT_CAUSES_KEPT
            roots[ticket_id] = (tuple(sorted(found)[:ROOT_CAUSES_KEPT]), more)
        return roots

    def _blocked(
        self, ticket_id: str, roots: Mapping[str, tuple[tuple[str, ...], bool]], causes: dict[str, RootCause]
    ) -> BlockedTicket:
        ids, more = roots.get(ticket_id) or ((ticket_id,), False)  # else: waits for its not_before
        return BlockedTicket(
            ticket_id=ticket_id,
            waiting_on=self.waiting_on(ticket_id),
            root_causes=[self._cause(root, causes) for root in ids],
            more_root_causes=more,
        )

    def _is_root(self, ticket: Ticket, before: Sequence[str]) -> bool:
        if ticket.state is State.IN_PROGRESS:
            return True
        if ticket.state is State.DEFERRED and not is_retryable(ticket):
            return True
        return not before

    def _cause(self, ticket_id: str, causes: dict[str, RootCause]) -> RootCause:
        cause = causes.get(ticket_id)
        if cause is None:
            ticket = self.first.get(ticket_id)
            if ticket is None:
                cause = RootCause(ticket_id, MISSING, "not in the index")
            else:
                cause = RootCause(ticket_id, ticket.state.value, root_reason(ticket, self.now))
            causes[ticket_id] = cause
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
