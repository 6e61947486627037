"""The dependency graph of the ticket index, and everything that can be wrong with it.

An edge goes from a dependency to its dependent (`TKT-001 -> TKT-003` when TKT-003
depends on TKT-001), so a topological order is a valid work order. `parent` and
`children` are hierarchy, not scheduling edges: they are only checked for consistency.

`DependencyGraph` is the graph as the checks and the analysis use it: plain dicts of
ids, built in one pass and shared (`sage validate` builds it once for `graph_findings`
and `analysis.analyze`). `build_graph` gives the same graph as a networkx DiGraph, for
drawing (`sage graph`) and for naming cycles; networkx is only imported for those.

Everything here is linear in the size of the index (about 0.3 s for 100,000 tickets and
150,000 dependencies): a cycle is detected by a topological sort that does not reach
every ticket, and only then named, one per strongly connected component, by a
breadth-first search inside that component. `nx.find_cycle` / `simple_cycles` on the
whole graph are super-linear (minutes at 100k, see notes/engine-facts.md) and are never used.
"""

from __future__ import annotations

import difflib
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from operator import attrgetter
from typing import TYPE_CHECKING

from sage_stream.errors import SageError
from sage_stream.tickets.models import State, Ticket
from sage_stream.tickets.store import gc_paused
from sage_stream.validation.findings import Finding, Severity

if TYPE_CHECKING:
    import networkx as nx

DIFFLIB_BUDGET = 100_000
"""Id comparisons difflib may make for "did you mean" suggestions in one check (~0.2 s)."""

CYCLE_MEMBERS_SHOWN = 10
ERRORS_SHOWN = 20


class DependencyGraph:
    """The dependency graph of an index, built once and shared by its readers.

    - `first`: ticket id -> ticket, in index order; with duplicate ids the first ticket
      of an id is the one that counts (`graph_findings` reports the others).
    - `dependents`: id -> the ids that depend on it (the edges dependency -> dependent),
      each once; only ids with dependents have an entry. Unknown dependencies and
      self-dependencies are no edge (`graph_findings` reports them).
    - `order`: every id in a topological order (dependencies before dependents), or None
      when the dependencies contain a cycle; `in_index_order` when that is the order of
      `first`, as it is in a file that only ever had tickets appended.
    - `every_dependency_known`: every dependency of those tickets names another ticket
      of the index (no unknown id, no self-dependency): then `graph_findings` need not
      look for those.

    Plain dicts and lists rather than networkx: an nx.DiGraph of 100,000 tickets took
    0.4-0.6 s to build (a dict per node and per edge), more than every check and the whole
    analysis together.
    """

    def __init__(self, tickets: Sequence[Ticket]) -> None:
        self.tickets = tickets
        self.first = _first_by_id(tickets)
        self.dependents, self.in_index_order, self.every_dependency_known = _edges(self.first)
        # Sage appends tickets as they are created, after what they depend on: then the
        # index order is a topological order already and the sort is skipped (0.1 s at 100k)
        self.order: list[str] | None = (
            list(self.first) if self.in_index_order else _sorted(self.first, self.dependents)
        )

    def to_networkx(self) -> nx.DiGraph:
        """The same graph as a networkx DiGraph (see `build_graph`)."""
        return _networkx_graph(self.first)

    def check_built_from(self, tickets: Sequence[Ticket]) -> None:
        """A graph handed to `graph_findings` or `analyze` must be of the tickets they get."""
        if tickets is not self.tickets:
            raise ValueError("this DependencyGraph was built from another ticket list")


def _edges(first: Mapping[str, Ticket]) -> tuple[dict[str, list[str]], bool, bool]:
    """(dependents, whether every dependency comes before its dependent in the index,
    whether every dependency names another ticket of the index)."""
    dependents: defaultdict[str, list[str]] = defaultdict(list)
    seen: set[str] = set()
    in_order = known = True
    for ticket_id, ticket in first.items():
        seen.add(ticket_id)
        dependencies: Iterable[str] = ticket.dependencies
        if len(ticket.dependencies) > 1:
            dependencies = dict.fromkeys(dependencies)  # a repeated id is one edge
        for dependency in dependencies:
            if dependency in seen:
                if dependency != ticket_id:
                    dependents[dependency].append(ticket_id)
                else:  # a self-dependency is no edge
                    known = False
            elif dependency in first:  # later in the index
                dependents[dependency].append(ticket_id)
                in_order = False
            else:  # not in the index: no edge
                known = False
    return dict(dependents), in_order, known


def _sorted(first: Mapping[str, Ticket], dependents: Mapping[str, list[str]]) -> list[str] | None:
    """Kahn's algorithm; None when some tickets are never freed (a cycle)."""
    waiting = Counter(dependent for after in dependents.values() for dependent in after)
    order = [ticket_id for ticket_id in first if ticket_id not in waiting]
    for ticket_id in order:  # grows while iterating
        for dependent in dependents.get(ticket_id, ()):
            left = waiting[dependent] - 1
            waiting[dependent] = left
            if not left:
                order.append(dependent)
    return order if len(order) == len(first) else None


def _networkx_graph(first: Mapping[str, Ticket]) -> nx.DiGraph:
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from((ticket_id, {"ticket": ticket}) for ticket_id, ticket in first.items())
    graph.add_edges_from(  # in the order of each ticket's dependencies, as written
        (dependency, ticket_id)
        for ticket_id, ticket in first.items()
        for dependency in ticket.dependencies
        if dependency in first and dependency != ticket_id
    )
    return graph


def build_graph(tickets: Sequence[Ticket]) -> nx.DiGraph:
    """A node per ticket id (the first ticket of a duplicated id wins, with its `ticket`
    attribute), and an edge dependency -> dependent for every dependency that is in the
    index. Unknown dependencies and self-dependencies get no edge: `graph_findings`
    reports them."""
    return _networkx_graph(_first_by_id(tickets))


def graph_findings(
    tickets: Sequence[Ticket], *, file: str | None = None, graph: DependencyGraph | None = None
) -> list[Finding]:
    """Every problem of the dependency graph and the hierarchy, errors first in index order.

    Errors: duplicate_id, unknown_dependency, self_dependency, cycle, unknown_parent,
    completed_depends_on_unfinished. Warning: parent_children_mismatch. `graph`, when
    given, must be `DependencyGraph(tickets)` (built once, shared with `analyze`).
    """
    with gc_paused():
        if graph is None:
            graph = DependencyGraph(tickets)
        graph.check_built_from(tickets)
        first = graph.first
        suggest = _Suggester(first)
        findings: list[Finding] = []
        findings += _duplicate_findings(tickets, first, file)
        findings += _dependency_findings(tickets, graph, suggest, file)
        findings += _cycle_findings(graph, file)
        findings += _parent_findings(tickets, first, suggest, file)
        findings += _hierarchy_warnings(first, file)
        return findings


def require_sound_graph(
    tickets: Sequence[Ticket], *, file: str | None = None, graph: DependencyGraph | None = None
) -> list[Finding]:
    """The warnings of `graph_findings`; its errors raise one SageError that lists them.

    For commands that need an acyclic graph of known ids (`ready`, `graph`, `plan`).
    """
    findings = graph_findings(tickets, file=file, graph=graph)
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


def _duplicate_findings(
    tickets: Sequence[Ticket], first: Mapping[str, Ticket], file: str | None
) -> list[Finding]:
    if len(first) == len(tickets):
        return []
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
    tickets: Sequence[Ticket], graph: DependencyGraph, suggest: _Suggester, file: str | None
) -> list[Finding]:
    first = graph.first
    completed = State.COMPLETED
    if graph.every_dependency_known and len(first) == len(tickets):
        # no unknown id, no self-dependency: only a COMPLETED ticket can have a finding here
        tickets = [ticket for ticket in tickets if ticket.state is completed and ticket.dependencies]
    findings = []
    for ticket in tickets:
        if not ticket.dependencies:
            continue
        ticket_completed = ticket.state is completed
        for dependency in ticket.dependencies:
            before = first.get(dependency)
            if dependency == ticket.id:
                findings.append(_error(
                    "self_dependency", f"{ticket.id} depends on itself", file, ticket.id,
                    "dependencies", expected="other ticket ids", found=dependency,
                ))
            elif before is None:
                findings.append(_error(
                    "unknown_dependency",
                    f"{ticket.id} depends on {dependency}, which is not in the index"
                    + suggest.hint(dependency),
                    file, ticket.id, "dependencies", expected="an id in the index", found=dependency,
                ))
            elif ticket_completed and before.state is not completed:
                state = before.state
                findings.append(_error(
                    "completed_depends_on_unfinished",
                    f"{ticket.id} is COMPLETED but depends on {dependency}, which is {state}",
                    file, ticket.id, "dependencies",
                    expected=f"{dependency} COMPLETED", found=str(state),
                ))
    return findings


def _cycle_findings(dependencies: DependencyGraph, file: str | None) -> list[Finding]:
    """One finding per strongly connected component of more than one ticket."""
    if dependencies.order is not None:
        return []
    import networkx as nx

    graph = dependencies.to_networkx()
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
    parents = set(map(attrgetter("parent"), tickets))
    parents.discard(None)
    if first.keys() >= parents:  # the usual case: every parent is known (or none is named)
        return []
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
    So an index where no ticket lists children has nothing to warn about.
    """
    if not any(map(attrgetter("children"), first.values())):
        return []
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


def _first_by_id(tickets: Sequence[Ticket]) -> dict[str, Ticket]:
    first = dict(zip(map(attrgetter("id"), tickets), tickets, strict=True))
    if len(first) == len(tickets):
        return first
    first = {}  # duplicate ids: the comprehension kept the last ticket of each, we want the first
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
