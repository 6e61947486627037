"""What the remaining work looks like: ready set, why the rest waits, waves, critical path.

Only unfinished work counts. A COMPLETED ticket weighs 0 minutes (no work remains in
it), is in no wave and never on the critical path. Unfinished = UNPROCESSED,
IN_PROGRESS or DEFERRED: a DEFERRED ticket is still work the backlog needs, so it keeps
its estimate even though it waits for `sage retry`.

`analyze` assumes `graph_findings` reported no errors (in particular no cycle). It works
on the node numbers and flat edge lists of the shared `DependencyGraph`: one pass over
the edges in reverse gives every bottom level and the heaviest dependent of each ticket
(the critical path), one forward pass over the edges between unfinished tickets gives
the waves; the rest are C-level passes over columns. Then it recommends a worker count
(`simulate.recommend_worker_count`; above `simulate.SIMULATED_UP_TO` tickets,
`simulate.recommend_by_lower_bound`). What only some callers read is computed when first
read: the sorted waves and the root causes of every blocked ticket (`sage ready` shows
them, `sage validate` only counts them). See BENCHMARKS.md, "sage validate at scale".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from itertools import compress, repeat
from operator import add, and_, gt, is_, itemgetter, not_
from typing import TYPE_CHECKING

from sage_stream.graph.columns import Columns
from sage_stream.graph.dependency_graph import DependencyGraph
from sage_stream.graph.ordering import is_retryable, is_startable, is_startable_state, ready_order_key
from sage_stream.graph.simulate import (
    RULE_LOWER_BOUND,
    RULE_SIMULATION,
    SIMULATED_UP_TO,
    recommend_by_lower_bound,
    recommend_worker_count,
)
from sage_stream.tickets.models import PRIORITIES, State, Ticket
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
    recommended_workers: int  # of 1..8, see recommended_workers_rule
    recommended_workers_rule: str  # simulate.RULE_SIMULATION or simulate.RULE_LOWER_BOUND
    _work: _RemainingWork = field(repr=False, compare=False)

    @cached_property
    def bottom_level(self) -> dict[str, float]:
        """Unfinished tickets only, in topological order (built on first use)."""
        return self._work.bottom_level

    @property
    def unblocked(self) -> list[str]:
        """The unfinished tickets whose dependencies are all COMPLETED, startable now or not:
        where the ready ones are (the scheduler's plan finds them there)."""
        return self._work.unblocked

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
    order = graph.node_order
    if order is None:
        import networkx as nx

        raise nx.NetworkXUnfeasible("the dependencies contain a cycle (sage validate names it)")
    nodes = graph.nodes
    unfinished = list(map(not_, graph.completed))  # per node
    weight = [estimate if left else 0.0 for estimate, left in zip(nodes.estimates, unfinished)]
    levels, heaviest_dependent = _levels(graph, weight)
    if graph.in_index_order:
        unfinished_nodes = list(compress(range(len(unfinished)), unfinished))
    else:
        unfinished_nodes = [node for node in order if unfinished[node]]
    wave = _waves(graph, unfinished)
    work = _RemainingWork(graph, unfinished, unfinished_nodes, wave, levels, moment)
    critical_path = _critical_path(graph, unfinished, levels, heaviest_dependent)
    critical_path_minutes = levels[graph.position[critical_path[0]]] if critical_path else 0.0
    estimates = list(compress(nodes.estimates, unfinished))  # in index order, as always summed
    total_minutes = sum(estimates)
    if len(estimates) <= SIMULATED_UP_TO:
        unfinished_ids = work.unfinished
        recommended = recommend_worker_count(
            dict(zip(compress(nodes.ids, unfinished), estimates)),
            dict(zip(unfinished_ids, map(nodes.dependencies.__getitem__, unfinished_nodes))),
            priority_rank=dict(zip(unfinished_ids, map(priority_rank, map(nodes.priorities.__getitem__,
                                                                           unfinished_nodes)))),
            # tickets whose `files` overlap never run at once (the scheduler's rule)
            files=(dict(zip(unfinished_ids, map(nodes.files.__getitem__, unfinished_nodes)))
                   if any(nodes.files) else None),
        )
        rule = RULE_SIMULATION
    else:
        recommended, rule = recommend_by_lower_bound(critical_path_minutes, total_minutes), RULE_LOWER_BOUND
    wave_sizes = Counter(map(wave.__getitem__, unfinished_nodes))
    return Analysis(
        ready=work.ready,
        blocked_count=work.blocked_count,
        wave_count=len(wave_sizes),
        max_parallelism=max(wave_sizes.values(), default=0),
        critical_path=critical_path,
        critical_path_minutes=critical_path_minutes,
        total_minutes=total_minutes,
        recommended_workers=recommended,
        recommended_workers_rule=rule,
        _work=work,
    )


# ---------------------------------------------------------------- internals


def priority_rank(priority: str | None) -> int:
    """`Ticket.priority_rank` of a priority: 0 for P0 ... 4 for P4, 5 for anything else."""
    return _PRIORITY_RANK.get(priority, len(PRIORITIES))  # type: ignore[arg-type]


_PRIORITY_RANK = {priority: rank for rank, priority in enumerate(PRIORITIES)}


def _levels(graph: DependencyGraph, weight: Sequence[float]) -> tuple[list[float], list[int]]:
    """(Per node: its weight plus the heaviest chain of weights after it, its bottom level;
    per node: its dependent of the largest bottom level, the smallest id of those on a
    tie, or -1 without one). Exact for every unfinished node, which is all the analysis
    reads: a COMPLETED node's edges are skipped when they cannot matter.

    One pass over the edges in reverse: a node's edges come after those of everything
    that depends on it, so its own level is final when it is pushed to its dependencies.
    """
    ids = graph.nodes.ids
    after = [0.0] * len(weight)  # the largest bottom level among a node's dependents
    heaviest = [-1] * len(weight)
    dependents, dependencies = graph.edge_dependent, graph.edge_dependency
    if not graph.completed_depends_on_unfinished:
        # then an unfinished ticket has only unfinished dependents: a COMPLETED one weighs
        # nothing and never adds to an unfinished level, its edges can be left out
        dependents, dependencies = graph.unfinished_edges
    for dependent, dependency in zip(reversed(dependents), reversed(dependencies)):
        level = weight[dependent] + after[dependent]
        largest = after[dependency]
        if level > largest:
            after[dependency] = level
            heaviest[dependency] = dependent
        elif level == largest:
            current = heaviest[dependency]
            if current < 0 or ids[dependent] < ids[current]:
                heaviest[dependency] = dependent
    return list(map(add, weight, after)), heaviest


def _waves(graph: DependencyGraph, unfinished: Sequence[bool]) -> list[int]:
    """Per node: 0 when nothing unfinished stands before it, else one after its latest
    unfinished dependency (only meaningful for unfinished nodes). COMPLETED and missing
    dependencies count as nothing: only edges between two unfinished nodes are walked."""
    wave = [0] * len(unfinished)
    for dependent, dependency in zip(*graph.unfinished_edges):
        reached = wave[dependency] + 1
        if reached > wave[dependent]:
            wave[dependent] = reached
    return wave


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
    graph: DependencyGraph,
    unfinished: Sequence[bool],
    levels: Sequence[float],
    heaviest_dependent: Sequence[int],
) -> list[str]:
    """From the unfinished ticket with the largest bottom level (the smallest id on a tie),
    follow the heaviest dependent; COMPLETED tickets on the way are left out."""
    longest = max(compress(levels, unfinished), default=None)
    if longest is None:
        return []
    ids = graph.nodes.ids
    node = min(_unfinished_at(levels, longest, unfinished), key=ids.__getitem__)
    path = [node]
    while heaviest_dependent[node] >= 0:
        node = heaviest_dependent[node]
        path.append(node)
    return [ids[node] for node in path if unfinished[node]]


def _in_start_order(nodes: Columns, startable: Iterable[int], levels: Sequence[float]) -> list[int]:
    """`startable` (node numbers) in start order: (priority rank, -bottom level, id), the
    order of `ordering.ready_order_key`. Three stable sorts, last key first: each compares
    plain strings, floats or ints, which python sorts several times faster than tuples."""
    order = sorted(startable, key=nodes.ids.__getitem__)
    order.sort(key=levels.__getitem__, reverse=True)  # stable: equal levels keep the id order
    ranks = list(map(_PRIORITY_RANK.get, map(nodes.priorities.__getitem__, order), repeat(len(PRIORITIES))))
    return list(map(itemgetter(1), sorted(zip(ranks, order), key=itemgetter(0))))


def _unfinished_at(levels: list[float], level: float, unfinished: Sequence[bool]) -> list[int]:
    """The unfinished nodes of this bottom level (`list.index` finds each in C)."""
    found = []
    start = 0
    while True:
        try:
            node = levels.index(level, start)
        except ValueError:
            return found
        if unfinished[node]:
            found.append(node)
        start = node + 1


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
        graph: DependencyGraph,
        is_unfinished: Sequence[bool],
        unfinished_nodes: Sequence[int],
        wave: Sequence[int],
        levels: Sequence[float],
        now: datetime,
    ) -> None:
        self.graph = graph
        self.unfinished_nodes = unfinished_nodes  # in topological order
        self.node_wave = wave
        self.levels = levels  # bottom level of every node
        self.now = now
        self.unblocked_nodes = self._unblocked(is_unfinished)
        startable = self._startable(self.unblocked_nodes)
        self.ready = list(map(graph.nodes.ids.__getitem__, _in_start_order(graph.nodes, startable, levels)))
        self.blocked_count = self._startable_count() - len(self.ready)  # every ready one is startable

    @cached_property
    def first(self) -> Mapping[str, Ticket]:
        return self.graph.first

    @property
    def unblocked(self) -> list[str]:
        """The ids of the unfinished tickets whose dependencies are all COMPLETED (startable
        now or not)."""
        return list(map(self.graph.nodes.ids.__getitem__, self.unblocked_nodes))

    @cached_property
    def unfinished(self) -> list[str]:
        """The ids of the unfinished tickets, in topological order."""
        return list(map(self.graph.nodes.ids.__getitem__, self.unfinished_nodes))

    @cached_property
    def bottom_level(self) -> dict[str, float]:
        """Unfinished id -> its bottom level, in topological order."""
        return dict(zip(self.unfinished, map(self.levels.__getitem__, self.unfinished_nodes), strict=True))

    @cached_property
    def completed(self) -> set[str]:
        return set(compress(self.graph.nodes.ids, self.graph.completed))

    @cached_property
    def wave(self) -> dict[str, int]:
        """Unfinished id -> its wave, in topological order."""
        return dict(zip(self.unfinished, map(self.node_wave.__getitem__, self.unfinished_nodes), strict=True))

    def _unblocked(self, is_unfinished: Sequence[bool]) -> list[int]:
        """Unfinished nodes whose dependencies are all COMPLETED (a missing one is not)."""
        wave = self.node_wave
        no_wait = list(compress(range(len(wave)), map(and_, is_unfinished, map(not_, wave))))
        if self.graph.every_dependency_known:  # then wave 0 means every dependency is COMPLETED
            return no_wait
        completed, dependencies = self.completed, self.graph.nodes.dependencies
        return [node for node in no_wait if completed.issuperset(dependencies[node])]

    def _startable(self, nodes: list[int]) -> list[int]:
        """Those of `nodes` whose ticket may start now (`ordering.is_startable`)."""
        columns = self.graph.nodes
        if (all(map(is_, map(columns.states.__getitem__, nodes), repeat(State.UNPROCESSED)))
                and not any(map(columns.not_befores.__getitem__, nodes))):
            return nodes  # UNPROCESSED and waiting for no time: the usual case, decided in C
        tickets = columns.tickets
        return [node for node in nodes if is_startable(tickets[node], self.now)]

    def _waiting_on(self) -> list[Sequence[str]]:
        """Per node: the ids of its unfinished or missing dependencies, each once, as
        written: a list of its own, or an empty tuple (only unfinished nodes are read)."""
        nodes = self.graph.nodes
        waiting: list[Sequence[str]] = [()] * len(nodes.ids)
        if not self.graph.every_dependency_known:  # missing ones too: ticket by ticket
            completed, ids = self.completed, nodes.ids
            for node in self.unfinished_nodes:
                ticket_id = ids[node]
                before = [d for d in nodes.dependencies[node] if d not in completed and d != ticket_id]
                waiting[node] = list(dict.fromkeys(before)) if len(before) > 1 else before
            return waiting
        # the edges between unfinished tickets, grouped by dependent, in written order
        ids = nodes.ids
        for dependent, dependency in zip(*self.graph.unfinished_edges):
            before = waiting[dependent]
            if before:
                before.append(ids[dependency])  # type: ignore[attr-defined]
            else:
                waiting[dependent] = [ids[dependency]]
        for node in compress(range(len(waiting)), map(gt, map(len, waiting), repeat(1))):
            waiting[node] = list(dict.fromkeys(waiting[node]))  # a dependency written twice
        return waiting

    def start_order(self, ticket_id: str) -> tuple[int, float, str]:
        return ready_order_key(self.first[ticket_id], self.bottom_level[ticket_id])

    def waves(self) -> list[list[str]]:
        waves: list[list[str]] = [[] for _ in range(max(self.wave.values(), default=-1) + 1)]
        for ticket_id, wave in self.wave.items():
            waves[wave].append(ticket_id)
        return [sorted(wave, key=self.start_order) for wave in waves]

    def _startable_count(self) -> int:
        """Unfinished tickets in a state the scheduler starts from (`is_startable_state`)."""
        states = self.graph.nodes.states
        unprocessed = states.count(State.UNPROCESSED)  # count: identity tests in C, no hashing of enums
        if not states.count(State.DEFERRED):
            return unprocessed
        ids = self.graph.nodes.ids
        deferred = [ids[node] for node, state in enumerate(states) if state is State.DEFERRED]
        return unprocessed + sum(1 for ticket_id in deferred if is_startable_state(self.first[ticket_id]))

    def blocked(self) -> list[BlockedTicket]:
        nodes = self.graph.nodes
        ids, states = nodes.ids, nodes.states
        ready = set(map(self.graph.position.__getitem__, self.ready))
        unprocessed = State.UNPROCESSED
        if State.DEFERRED in states:
            blocked = [node for node in self.unfinished_nodes if node not in ready and (
                states[node] is unprocessed or is_retryable(nodes.tickets[node]))]
        else:
            blocked = [node for node in self.unfinished_nodes if node not in ready and states[node] is unprocessed]
        waiting = self._waiting_on()
        roots = self._roots(waiting)
        causes: dict[str, RootCause] = {}  # one shared RootCause per root
        listed: dict[tuple[tuple[str, ...], bool], tuple[RootCause, ...]] = {}  # per set of roots
        result = []
        for node in _in_start_order(nodes, blocked, self.levels):
            ticket_id = ids[node]
            found = roots.get(ticket_id) or ((ticket_id,), False)  # else: waits for its not_before
            root_causes = listed.get(found)
            if root_causes is None:
                root_causes = listed[found] = tuple(self._cause(root, causes) for root in found[0])
            result.append(BlockedTicket(ticket_id, waiting[node] or [], list(root_causes), found[1]))
        return result

    def _roots(self, waiting: Sequence[Sequence[str]]) -> dict[str, tuple[tuple[str, ...], bool]]:
        """Non-root id -> (its first ROOT_CAUSES_KEPT root ids, whether there are more), in
        one pass over the unfinished tickets in topological order."""
        nodes = self.graph.nodes
        ids, states = nodes.ids, nodes.states
        unprocessed, in_progress = State.UNPROCESSED, State.IN_PROGRESS
        roots: dict[str, tuple[tuple[str, ...], bool]] = {}
        for node in self.unfinished_nodes:
            before = waiting[node]
            if not before:  # waits on nothing unfinished: a root
                continue
            state = states[node]
            if state is not unprocessed and (state is in_progress or not is_retryable(nodes.tickets[node])):
                continue  # in progress, or DEFERRED until `sage retry`: a root
            if len(before) == 1:  # a chain: share the tuple, do not copy it
                roots[ids[node]] = roots.get(before[0]) or ((before[0],), False)
                continue
            below = [roots.get(d) or ((d,), False) for d in before]  # a root (or missing) stands for itself
            found = set().union(*(root_ids for root_ids, _ in below))
            more = any(truncated for _, truncated in below) or len(found) > ROOT_CAUSES_KEPT
            roots[ids[node]] = (tuple(sorted(found)[:ROOT_CAUSES_KEPT]), more)
        return roots

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
