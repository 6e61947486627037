"""The dependency graph of the ticket index, and everything that can be wrong with it.

An edge goes from a dependency to its dependent (`TKT-001 -> TKT-003` when TKT-003
depends on TKT-001), so a topological order is a valid work order. `parent` and
`children` are hierarchy, not scheduling edges: they are only checked for consistency.

`DependencyGraph` is the graph as the checks and the analysis use it: tickets are
numbered by their place in the index and the edges are two flat lists of those numbers,
built once and shared (`sage validate` builds it once, from the same `Columns` as its
checks, for `graph_findings` and `analysis.analyze`). `build_graph` gives the same graph
as a networkx DiGraph, for drawing (`sage graph`) and for naming cycles; networkx is
only imported for those.

Everything here is linear in the size of the index: a cycle is detected by a topological
sort that does not reach every ticket, and only then named, one per strongly connected
component of the tickets the sort could not reach, by a breadth-first search inside that
component. `nx.find_cycle` / `simple_cycles` on the whole graph are super-linear
(minutes at 100k, see notes/engine-facts.md) and are never used.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from itertools import accumulate, chain, compress, repeat
from operator import and_, eq, gt, is_, is_not, lt, ne, not_, or_
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from sage_stream.errors import SageError
from sage_stream.findings import Finding, Severity
from sage_stream.graph.columns import Columns
from sage_stream.tickets.models import State, Ticket
from sage_stream.tickets.store import IndexView, gc_paused, read_index

if TYPE_CHECKING:
    import networkx as nx

DIFFLIB_BUDGET = 100_000
"""Id comparisons difflib may make for "did you mean" suggestions in one check (~0.2 s)."""

CYCLE_MEMBERS_SHOWN = 10
ERRORS_SHOWN = 20


class DependencyGraph:
    """The dependency graph of an index, built once and shared by its readers.

    Nodes are numbered 0..n-1: the first ticket of each id, in index order (with
    duplicate ids the first ticket of an id is the one that counts; `graph_findings`
    reports the others). `nodes` holds their fields as columns (`nodes.ids[k]`,
    `nodes.states[k]`...), `position` maps an id to its node.

    - `edge_dependency[e] -> edge_dependent[e]`: every edge, as node numbers, grouped by
      dependent in a topological order (`node_order`; index order when there is none): a
      pass over the edges meets a ticket's edges only after those of everything it depends
      on, a pass over them reversed only after those of everything that depends on it.
      Unknown dependencies
      and self-dependencies are no edge (`graph_findings` reports them). A dependency
      written twice by one ticket is two edges (no pass here minds; `dependents` and
      networkx see it once).
    - `node_order`: the nodes in a topological order (`range(n)` when that is the index
      order, as it is in a file that only ever had tickets appended: `in_index_order`),
      or None when the dependencies contain a cycle (`unsorted` then lists the nodes the
      sort could not reach: every cycle is among them).
    - `every_dependency_known`: every dependency names another ticket of the index (no
      unknown id, no self-dependency): then `graph_findings` need not look for those.
    - by id, built on first use: `first` (id -> ticket), `dependents` (id -> the ids that
      depend on it, each once), `order` (the ids in `node_order`).
    - built on first use for `graph_findings` and `analysis`: `completed` (per node),
      `completed_depends_on_unfinished`, `unfinished_edges` (those between two unfinished
      tickets, the only ones the waves walk).

    Numbers and flat lists rather than networkx or dicts of ids: an nx.DiGraph of 100,000
    tickets took 0.4-0.6 s to build (a dict per node and per edge), and in index order
    the whole graph is built by C-level passes over the columns.
    """

    def __init__(self, tickets: Sequence[Ticket], *, columns: Columns | None = None) -> None:
        self.tickets = tickets
        if columns is None:
            columns = Columns.of(tickets)
        elif columns.tickets is not tickets:
            raise ValueError("these Columns were read from another ticket list")
        self.columns = columns  # of every ticket, duplicates included
        self.nodes, self.position = _nodes(columns)
        self.has_duplicate_ids = len(self.nodes.ids) != len(columns.ids)
        edges = _edges(self.nodes.dependencies, self.position)
        self.edge_dependency, self.edge_dependent = edges.dependency, edges.dependent
        self.in_index_order, self.every_dependency_known = edges.in_index_order, edges.every_dependency_known
        self.node_order, self.unsorted = edges.order, edges.unsorted

    @cached_property
    def first(self) -> dict[str, Ticket]:
        """Ticket id -> the first ticket of that id, in index order."""
        return dict(zip(self.nodes.ids, self.nodes.tickets, strict=True))

    @cached_property
    def order(self) -> list[str] | None:
        """Every id in `node_order` (dependencies before dependents), or None (a cycle)."""
        if self.node_order is None:
            return None
        return list(map(self.nodes.ids.__getitem__, self.node_order))

    @cached_property
    def dependent_nodes(self) -> list[list[int]]:
        """Per node: the nodes that depend on it, in index order, each once.

        One pass over the edges. They come grouped by dependent, so a node's dependents
        arrive in the order of `node_order` and a dependency written twice by one ticket
        arrives twice in a row; only when that order is not the index order are the
        lists sorted (and their repeats dropped) afterwards."""
        after: list[list[int]] = [[] for _ in range(len(self.nodes.ids))]
        if self.in_index_order:
            for dependency, dependent in zip(self.edge_dependency, self.edge_dependent):
                later = after[dependency]
                if not later or later[-1] != dependent:
                    later.append(dependent)
            return after
        for dependency, dependent in zip(self.edge_dependency, self.edge_dependent):
            after[dependency].append(dependent)
        return [sorted(set(later)) if len(later) > 1 else later for later in after]

    @cached_property
    def dependents(self) -> dict[str, list[str]]:
        """Id -> the ids that depend on it, in index order, each once; only ids with
        dependents, in index order (`dependent_nodes` by id)."""
        ids = self.nodes.ids
        return {ids[node]: list(map(ids.__getitem__, later))
                for node, later in enumerate(self.dependent_nodes) if later}

    @cached_property
    def completed(self) -> list[bool]:
        """Per node: whether its ticket is COMPLETED."""
        return list(map(is_, self.nodes.states, repeat(State.COMPLETED)))

    @cached_property
    def _dependency_completed(self) -> list[bool]:
        """Per edge: whether its dependency is COMPLETED."""
        return list(map(self.completed.__getitem__, self.edge_dependency))

    @cached_property
    def completed_depends_on_unfinished(self) -> bool:
        """Whether some COMPLETED ticket depends on an unfinished one (an error for validate)."""
        dependent_done = map(self.completed.__getitem__, self.edge_dependent)
        return any(map(gt, dependent_done, self._dependency_completed))

    @cached_property
    def unfinished_edges(self) -> tuple[list[int], list[int]]:
        """(dependents, dependencies) of the edges between two unfinished tickets, in edge order."""
        if self.completed_depends_on_unfinished:
            dependent_done = map(self.completed.__getitem__, self.edge_dependent)
            keep = list(map(not_, map(or_, dependent_done, self._dependency_completed)))
        else:  # an unfinished dependency has unfinished dependents only
            keep = list(map(not_, self._dependency_completed))
        return list(compress(self.edge_dependent, keep)), list(compress(self.edge_dependency, keep))

    def to_networkx(self) -> nx.DiGraph:
        """The same graph as a networkx DiGraph (see `build_graph`)."""
        return _networkx_graph(self.first)

    def check_built_from(self, tickets: Sequence[Ticket]) -> None:
        """A graph handed to `graph_findings` or `analyze` must be of the tickets they get."""
        if tickets is not self.tickets:
            raise ValueError("this DependencyGraph was built from another ticket list")


def _nodes(columns: Columns) -> tuple[Columns, dict[str, int]]:
    """The columns of the first ticket of each id, and id -> node number."""
    position = dict(zip(columns.ids, range(len(columns.ids))))
    if len(position) == len(columns.ids):
        return columns, position
    first: dict[str, int] = {}  # duplicate ids: the dict above kept the last of each, we want the first
    for place, ticket_id in enumerate(columns.ids):
        first.setdefault(ticket_id, place)
    nodes = columns.at(list(first.values()))
    return nodes, dict(zip(nodes.ids, range(len(nodes.ids))))


class _Edges(NamedTuple):
    dependency: list[int]
    dependent: list[int]
    in_index_order: bool
    every_dependency_known: bool
    order: Sequence[int] | None
    unsorted: list[int]


def _edges(dependencies: Sequence[Sequence[str]], position: Mapping[str, int]) -> _Edges:
    count = len(dependencies)
    dependency = list(map(position.get, chain.from_iterable(dependencies)))
    dependent = list(chain.from_iterable(map(repeat, range(count), map(len, dependencies))))
    # Sage appends tickets after what they depend on: then every edge goes forward in the
    # index, the index order is a topological order, and all of it was C-level passes
    if None not in dependency and all(map(lt, dependency, dependent)):
        return _Edges(dependency, dependent, True, True, range(count), [])
    known = None not in dependency and not any(map(eq, dependency, dependent))
    if not known:  # not in the index, or itself: no edge
        keep = list(map(and_, map(is_not, dependency, repeat(None)), map(ne, dependency, dependent)))
        dependency, dependent = list(compress(dependency, keep)), list(compress(dependent, keep))
        if all(map(lt, dependency, dependent)):
            return _Edges(dependency, dependent, True, False, range(count), [])
    order, unsorted, indegree = _kahn(count, dependency, dependent)
    if order is None:  # a cycle: the edges stay in index order
        return _Edges(dependency, dependent, False, known, None, unsorted)
    # the edges are grouped by dependent in index order: cut them into each ticket's own
    # dependencies (as written), and put those together again in the topological order
    ends = list(accumulate(indegree))
    before = list(map(dependency.__getitem__, map(slice, [0, *ends[:-1]], ends)))
    grouped = list(map(before.__getitem__, order))
    return _Edges(list(chain.from_iterable(grouped)),
                  list(chain.from_iterable(map(repeat, order, map(len, grouped)))),
                  False, known, order, [])


def _kahn(
    count: int, dependency: Sequence[int], dependent: Sequence[int]
) -> tuple[list[int] | None, list[int], list[int]]:
    """Kahn's algorithm: (a topological order, [], in-degrees), or (None, the nodes never
    freed, in-degrees) when there is a cycle. A dependency written twice is two edges,
    counted and freed twice: the same order as with one."""
    after: list[list[int]] = [[] for _ in range(count)]
    for before, later in zip(dependency, dependent):
        after[before].append(later)
    waiting = [0] * count
    for later in dependent:
        waiting[later] += 1
    indegree = waiting.copy()
    order = list(compress(range(count), map(not_, waiting)))
    for node in order:  # grows while iterating
        for later in after[node]:
            left = waiting[later] - 1
            waiting[later] = left
            if not left:
                order.append(later)
    if len(order) == count:
        return order, [], indegree
    return None, list(compress(range(count), waiting)), indegree


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
        suggest = _Suggester(graph.nodes.ids)
        findings: list[Finding] = []
        findings += _duplicate_findings(tickets, graph, file)
        findings += _dependency_findings(tickets, graph, suggest, file)
        findings += _cycle_findings(graph, file)
        findings += _parent_findings(tickets, graph, suggest, file)
        findings += _hierarchy_warnings(graph, file)
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


class SoundIndex(NamedTuple):
    """An index read for a command that only reads, with its dependency graph."""

    view: IndexView
    graph: DependencyGraph

    @property
    def tickets(self) -> list[Ticket]:
        return self.view.tickets


def read_sound_index(path: Path) -> SoundIndex:
    """The index at `path` and its DependencyGraph, for `sage ready`, `graph` and `plan`:
    read the fast way (`tickets.store.read_index`: the models straight from the file's
    bytes), the fields read once (`Columns`), one graph for the checks and the analysis.
    A SageError pointing to `sage validate` when the graph has errors (`require_sound_graph`)."""
    with gc_paused():
        view = read_index(path)
        graph = DependencyGraph(view.tickets, columns=Columns.of(view.tickets, as_validated=True))
        require_sound_graph(view.tickets, file=str(view.path), graph=graph)
        return SoundIndex(view, graph)


# ---------------------------------------------------------------- errors


def _duplicate_findings(tickets: Sequence[Ticket], graph: DependencyGraph, file: str | None) -> list[Finding]:
    if not graph.has_duplicate_ids:
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
    completed = State.COMPLETED
    if graph.every_dependency_known and not graph.has_duplicate_ids:
        # no unknown id, no self-dependency: only a COMPLETED ticket that depends on an
        # unfinished one has a finding here, and a pass over the edges says if there is one
        if not graph.completed_depends_on_unfinished:
            return []
        tickets = [ticket for ticket in tickets if ticket.state is completed and ticket.dependencies]
    first = graph.first
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
    """One finding per strongly connected component of more than one ticket.

    Every cycle is among the tickets the topological sort could not reach
    (`unsorted`): only those go into networkx.
    """
    if dependencies.node_order is not None:
        return []
    import networkx as nx

    nodes = dependencies.nodes
    graph = _networkx_graph(dict(zip(map(nodes.ids.__getitem__, dependencies.unsorted),
                                     map(nodes.tickets.__getitem__, dependencies.unsorted))))
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
    tickets: Sequence[Ticket], graph: DependencyGraph, suggest: _Suggester, file: str | None
) -> list[Finding]:
    parents = set(graph.columns.parents)
    parents.discard(None)
    if graph.position.keys() >= parents:  # the usual case: every parent is known (or none is named)
        return []
    first = graph.first
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


def _hierarchy_warnings(graph: DependencyGraph, file: str | None) -> list[Finding]:
    """`children` and `parent` must tell the same story.

    A parent whose `children` list is empty is not checked against its children's
    `parent` fields: many Sage files only fill `parent`, and that is not a contradiction.
    So an index where no ticket lists children has nothing to warn about.
    """
    if not any(graph.nodes.children):
        return []
    first = graph.first
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

    def __init__(self, ids: Sequence[str]) -> None:
        self._ids = ids
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
        import difflib  # only an index with unknown ids pays for the import

        close = difflib.get_close_matches(prefix, list(prefixes), n=1, cutoff=0.6)
        return prefixes[close[0]] if close else None

    def _difflib(self, unknown: str) -> str | None:
        if self._budget < len(self._ids):
            return None
        self._budget -= len(self._ids)
        import difflib

        close = difflib.get_close_matches(unknown, self._ids, n=1, cutoff=0.75)
        return close[0] if close else None


def _split_number(ticket_id: str) -> tuple[str, int | None]:
    """("TKT-", 4) for "TKT-004"; (id, None) when it does not end in digits."""
    prefix = ticket_id.rstrip("0123456789")
    digits = ticket_id[len(prefix):]
    return (prefix, int(digits)) if digits.isascii() and digits else (ticket_id, None)


def _first_by_id(tickets: Sequence[Ticket]) -> dict[str, Ticket]:
    first = dict(zip([ticket.id for ticket in tickets], tickets, strict=True))
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
