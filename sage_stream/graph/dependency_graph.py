"""The dependency graph of the ticket index, and everything that can be wrong with it.

An edge goes from a dependency to its dependent (`TKT-001 -> TKT-003` when TKT-003
depends on TKT-001), so a topological order is a valid work order. `parent` and
`children` are hierarchy, not scheduling edges: they are only checked for consistency.

Everything here is linear in the size of the index (about a second for 100,000 tickets
and 150,000 dependencies): a cycle is detected by a failed topological sort, and only then named, one
per strongly connected component, by a breadth-first search inside that component.
`nx.find_cycle` / `simple_cycles` on the whole graph are super-linear (minutes at 100k,
see notes/engine-facts.md) and are never used.
"""

from __future__ import annotations

import difflib
import gc
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import networkx as nx

from sage_stream.errors import SageError
from sage_stream.tickets.models import State, Ticket
from sage_stream.validation.findings import Finding, Severity

DIFFLIB_BUDGET = 100_000
"""Id comparisons difflib may make for "did you mean" suggestions in one check (~0.2 s)."""

CYCLE_MEMBERS_SHOWN = 10
ERRORS_SHOWN = 20


def build_graph(tickets: Sequence[Ticket]) -> nx.DiGraph:
    """A node per ticket id (the first ticket of a duplicated id wins, with its `ticket`
    attribute), and an edge dependency -> dependent for every dependency that is in the
    index. Unknown dependencies and self-dependencies get no edge: `graph_findings`
    reports them."""
    first = _first_by_id(tickets)
    graph = nx.DiGraph()
    graph.add_nodes_from((ticket_id, {"ticket": ticket}) for ticket_id, ticket in first.items())
    graph.add_edges_from(
        (dependency, ticket_id)
        for ticket_id, ticket in first.items()
        for dependency in ticket.dependencies
        if dependency in first and dependency != ticket_id
    )
    return graph


def graph_findings(tickets: Sequence[Ticket], *, file: str | None = None) -> list[Finding]:
    """Every problem of the dependency graph and the hierarchy, errors first in index order.

    Errors: duplicate_id, unknown_dependency, self_dependency, cycle, unknown_parent,
    completed_depends_on_unfinished. Warning: parent_children_mismatch.
    """
    with gc_paused():
        first = _first_by_id(tickets)
        suggest = _Suggester(first)
        findings: list[Finding] = []
        findings += _duplicate_findings(tickets, file)
        findings += _dependency_findings(tickets, first, suggest, file)
        findings += _cycle_findings(build_graph(tickets), file)
        findings += _parent_findings(tickets, first, suggest, file)
        findings += _hierarchy_warnings(first, file)
        return findings


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for one allocation-heavy pass over the index.

    A graph of 100,000 tickets allocates millions of objects that all stay alive, and
    every full collection walks everything alive (the raw JSON, the models, the graph)
    again: measured, collections were 40% of `sage plan` on 100k tickets. Nothing
    here makes cyclic garbage worth collecting early; the collector resumes afterwards
    (unless the caller had paused it already).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def require_sound_graph(tickets: Sequence[Ticket], *, file: str | None = None) -> list[Finding]:
    """The warnings of `graph_findings`; its errors raise one SageError that lists them.

    For commands that need an acyclic graph of known ids (`ready`, `graph`, `plan`).
    """
    findings = graph_findings(tickets, file=file)
    errors = [finding for finding in findings if finding.severity is Severity.ERROR]
    if errors:
        where = f"{file}: " if file else ""
        shown = "\n".join(f"  {finding.message}" for finding in errors[:ERRORS_SHOWN])
        more = f"\n  ... and {len(errors) - ERRORS_SHOWN} more" if len(errors) > ERRORS_SHOWN else ""
        count = f"{len(errors)} error{'s' if len(errors) != 1 else ''}"
        raise SageError(
            f"{where}the dependency graph has {count}:\n{shown}{more}\n"
            "Fix them first; run `sage validate` for the full report."
        )
    return findings


# ---------------------------------------------------------------- errors


def _duplicate_findings(tickets: Sequence[Ticket], file: str | None) -> list[Finding]:
    positions: dict[str, list[int]] = {}
    for position, ticket in enumerate(tickets, start=1):
        positions.setdefault(ticket.id, []).append(position)
    findings = []
    for ticket_id, where in positions.items():
        if len(where) > 1:
            shown = ", ".join(str(position) for position in where)
            findings.append(_error(
                "duplicate_id",
                f"{ticket_id} is the id of {len(where)} tickets (positions {shown} in the ticket"
                " list, counting from 1); ids must be unique, only the first one is used",
                file, ticket_id, "id", expected="a unique id", found=f"{len(where)} tickets",
            ))
    return findings


def _dependency_findings(
    tickets: Sequence[Ticket], first: Mapping[str, Ticket], suggest: _Suggester, file: str | None
) -> list[Finding]:
    findings = []
    for ticket in tickets:
        for dependency in ticket.dependencies:
            if dependency == ticket.id:
                findings.append(_error(
                    "self_dependency", f"{ticket.id} depends on itself", file, ticket.id,
                    "dependencies", expected="other ticket ids", found=dependency,
                ))
            elif dependency not in first:
                findings.append(_error(
                    "unknown_dependency",
                    f"{ticket.id} depends on {dependency}, which is not in the index"
                    + suggest.hint(dependency),
                    file, ticket.id, "dependencies", expected="an id in the index", found=dependency,
                ))
            elif ticket.state is State.COMPLETED and first[dependency].state is not State.COMPLETED:
                state = first[dependency].state
                findings.append(_error(
                    "completed_depends_on_unfinished",
                    f"{ticket.id} is COMPLETED but depends on {dependency}, which is {state}",
                    file, ticket.id, "dependencies",
                    expected=f"{dependency} COMPLETED", found=str(state),
                ))
    return findings


def _cycle_findings(graph: nx.DiGraph, file: str | None) -> list[Finding]:
    """One finding per strongly connected component of more than one ticket."""
    try:
        for _ in nx.topological_sort(graph):
            pass
        return []
    except nx.NetworkXUnfeasible:
        pass
    tangles = [component for component in nx.strongly_connected_components(graph) if len(component) > 1]
    findings = []
    for component in sorted(tangles, key=min):
        path = dependency_cycle(graph, component)
        message = f"dependency cycle: {' -> '.join(path)} (each ticket depends on the next)"
        if len(component) > len(path) - 1:
            members = sorted(component)
            shown = ", ".join(members[:CYCLE_MEMBERS_SHOWN])
            hidden = len(members) - CYCLE_MEMBERS_SHOWN
            more = f" and {hidden} more" if hidden > 0 else ""
            message += f"; {len(members)} tickets are caught in it: {shown}{more}"
        findings.append(_error(
            "cycle", message, file, path[0], "dependencies",
            expected="no cycle", found=" -> ".join(path),
        ))
    return findings


def dependency_cycle(graph: nx.DiGraph, component: Iterable[str]) -> list[str]:
    """The shortest cycle through the smallest id of a strongly connected component, in
    "depends on" order and closed: [A, B, C, A] when A depends on B, B on C, C on A.

    A breadth-first search over dependencies (the graph's predecessors) inside the
    component: linear in its size, and the shortest cycle is the easiest to read.
    """
    members = set(component)
    start = min(members)
    predecessors = graph.pred
    reached_from: dict[str, str] = {start: start}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for dependency in predecessors[node]:
            if dependency == start:
                return _cycle_path(reached_from, node, start)
            if dependency in members and dependency not in reached_from:
                reached_from[dependency] = node
                queue.append(dependency)
    raise ValueError(f"{sorted(members)} is not a strongly connected component with a cycle")


def _cycle_path(reached_from: Mapping[str, str], last: str, start: str) -> list[str]:
    path = [last]
    while path[-1] != start:
        path.append(reached_from[path[-1]])
    path.reverse()  # start ... last: each depends on the next
    return [*path, start]


def _parent_findings(
    tickets: Sequence[Ticket], first: Mapping[str, Ticket], suggest: _Suggester, file: str | None
) -> list[Finding]:
    return [
        _error(
            "unknown_parent",
            f"{ticket.id} has parent {ticket.parent}, which is not in the index"
            + suggest.hint(ticket.parent),
            file, ticket.id, "parent", expected="an id in the index", found=ticket.parent,
        )
        for ticket in tickets
        if ticket.parent is not None and ticket.parent not in first
    ]


# ---------------------------------------------------------------- warnings


def _hierarchy_warnings(first: Mapping[str, Ticket], file: str | None) -> list[Finding]:
    """`children` and `parent` must tell the same story.

    A parent whose `children` list is empty is not checked against its children's
    `parent` fields: many Sage files only fill `parent`, and that is not a contradiction.
    """
    findings = []
    for ticket_id, ticket in first.items():
        for child_id in ticket.children:
            child = first.get(child_id)
            if child is None:
                findings.append(_warning(
                    f"{ticket_id} lists {child_id} as a child, which is not in the index",
                    file, ticket_id, "children", expected="an id in the index", found=child_id,
                ))
            elif child.parent != ticket_id:
                has = f"has parent {child.parent}" if child.parent else "has no parent"
                findings.append(_warning(
                    f"{ticket_id} lists {child_id} as a child, but {child_id} {has}",
                    file, ticket_id, "children", expected=f"{child_id}.parent = {ticket_id}",
                    found=str(child.parent),
                ))
        parent = first.get(ticket.parent) if ticket.parent is not None else None
        if parent is not None and parent.children and ticket_id not in parent.children:
            findings.append(_warning(
                f"{ticket_id} has parent {ticket.parent}, but {ticket.parent} does not list it"
                " in its children",
                file, ticket_id, "parent", expected=f"{ticket_id} in {ticket.parent}.children",
                found="not listed",
            ))
    return findings


# ---------------------------------------------------------------- helpers


class _Suggester:
    """"did you mean" for an unknown id.

    Constant-time guesses first: the same id in other case (tkt-004), the same number
    with other zero padding (TKT-0004 -> TKT-004), the same number under a similar
    prefix (TKT-004 -> TK-004). Then difflib, which compares against every id: it gets a
    budget of DIFFLIB_BUDGET comparisons per check, so an index of 100,000 tickets with
    thousands of dangling references stays fast (the first few get the full search).
    """

    def __init__(self, first: Mapping[str, Ticket]) -> None:
        self._ids = list(first)
        self._by_upper: dict[str, str] = {}
        self._by_number: dict[int, list[tuple[str, str]]] = {}  # number -> [(prefix, id)]
        self._budget = DIFFLIB_BUDGET
        self._cache: dict[str, str | None] = {}

    def _index_ids(self) -> None:
        """Built on the first unknown id only: a clean index pays nothing for suggestions."""
        for ticket_id in self._ids:
            self._by_upper.setdefault(ticket_id.upper(), ticket_id)
            prefix, number = _split_number(ticket_id)
            if number is not None:
                self._by_number.setdefault(number, []).append((prefix.upper(), ticket_id))

    def hint(self, unknown: str) -> str:
        match = self.closest(unknown)
        return f"; did you mean {match}?" if match else ""

    def closest(self, unknown: str) -> str | None:
        if not self._cache:
            self._index_ids()
        if unknown not in self._cache:
            self._cache[unknown] = self._same_id_other_spelling(unknown) or self._difflib(unknown)
        return self._cache[unknown]

    def _same_id_other_spelling(self, unknown: str) -> str | None:
        found = self._by_upper.get(unknown.upper())
        prefix, number = _split_number(unknown)
        if found or number is None:
            return found
        prefix = prefix.upper()
        same_number = self._by_number.get(number, [])
        for other_prefix, ticket_id in same_number:
            if other_prefix == prefix:
                return ticket_id
        prefixes = {other_prefix: ticket_id for other_prefix, ticket_id in reversed(same_number)}
        close = difflib.get_close_matches(prefix, list(prefixes), n=1, cutoff=0.6)
        return prefixes[close[0]] if close else None

    def _difflib(self, unknown: str) -> str | None:
        if self._budget < len(self._ids):
            return None
        self._budget -= len(self._ids)
        close = difflib.get_close_matches(unknown, self._ids, n=1, cutoff=0.75)
        return close[0] if close else None


def _split_number(ticket_id: str) -> tuple[str, int | None]:
    """("TKT-", 4) for "TKT-004"; (id, None) when it does not end in digits."""
    prefix = ticket_id.rstrip("0123456789")
    digits = ticket_id[len(prefix):]
    return (prefix, int(digits)) if digits.isascii() and digits else (ticket_id, None)


def _first_by_id(tickets: Iterable[Ticket]) -> dict[str, Ticket]:
    first: dict[str, Ticket] = {}
    for ticket in tickets:
        first.setdefault(ticket.id, ticket)
    return first


def _error(code: str, message: str, file: str | None, ticket: str, field: str, *,
           expected: str | None = None, found: str | None = None) -> Finding:
    return Finding(Severity.ERROR, code, message, file=file, ticket=ticket, field=field,
                   expected=expected, found=found)


def _warning(message: str, file: str | None, ticket: str, field: str, *,
             expected: str | None = None, found: str | None = None) -> Finding:
    return Finding(Severity.WARNING, "parent_children_mismatch", message, file=file, ticket=ticket,
                   field=field, expected=expected, found=found)
