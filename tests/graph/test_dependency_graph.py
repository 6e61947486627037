"""The dependency graph, and every finding about it."""

from __future__ import annotations

import random
from typing import Any

import pytest

from sage_stream.errors import SageError
from sage_stream.graph import dependency_graph
from sage_stream.graph.dependency_graph import (
    DependencyGraph,
    build_graph,
    dependency_cycle,
    graph_findings,
    require_sound_graph,
)
from sage_stream.tickets.models import Ticket
from sage_stream.findings import Finding, Severity

FILE = ".sage/tickets/index.json"


def ticket(ticket_id: str, *deps: str, state: str = "UNPROCESSED", **fields: Any) -> Ticket:
    return Ticket(id=ticket_id, title=f"title of {ticket_id}", state=state, dependencies=list(deps), **fields)


def codes(findings: list[Finding]) -> list[str]:
    return [finding.code for finding in findings]


def only(findings: list[Finding], code: str) -> list[Finding]:
    return [finding for finding in findings if finding.code == code]


# ---------------------------------------------------------------- build_graph


def test_edges_go_from_a_dependency_to_its_dependent() -> None:
    graph = build_graph([ticket("TKT-001"), ticket("TKT-002"), ticket("TKT-003", "TKT-001", "TKT-002")])
    assert sorted(graph.nodes) == ["TKT-001", "TKT-002", "TKT-003"]
    assert sorted(graph.edges) == [("TKT-001", "TKT-003"), ("TKT-002", "TKT-003")]


def test_unknown_and_self_dependencies_get_no_edge() -> None:
    graph = build_graph([ticket("TKT-001", "TKT-001", "TKT-404")])
    assert list(graph.nodes) == ["TKT-001"]
    assert list(graph.edges) == []


def test_the_first_ticket_of_a_duplicated_id_is_the_node() -> None:
    first = ticket("TKT-001")
    second = ticket("TKT-001", "TKT-002")
    graph = build_graph([first, ticket("TKT-002"), second])
    assert graph.nodes["TKT-001"]["ticket"] is first
    assert list(graph.edges) == []  # the second TKT-001's dependency is not used


def test_a_sound_index_has_no_findings() -> None:
    tickets = [
        ticket("EPIC-1", children=["TKT-001", "TKT-002"], state="COMPLETED"),
        ticket("TKT-001", parent="EPIC-1", state="COMPLETED"),
        ticket("TKT-002", "TKT-001", parent="EPIC-1"),
    ]
    assert graph_findings(tickets, file=FILE) == []


# ---------------------------------------------------------------- errors


def test_duplicate_ids_name_every_position() -> None:
    tickets = [ticket("TKT-001"), ticket("TKT-002"), ticket("TKT-001"), ticket("TKT-001")]
    [finding] = graph_findings(tickets, file=FILE)
    assert (finding.severity, finding.code, finding.ticket, finding.field, finding.file) == (
        Severity.ERROR,
        "duplicate_id",
        "TKT-001",
        "id",
        FILE,
    )
    assert "3 tickets" in finding.message
    assert "positions 1, 3, 4" in finding.message


def test_unknown_dependency_suggests_the_id_with_other_zero_padding() -> None:
    tickets = [ticket("TKT-003", "TKT-0004"), ticket("TKT-004")]
    [finding] = graph_findings(tickets, file=FILE)
    assert finding.code == "unknown_dependency"
    assert finding.message == "TKT-003 depends on TKT-0004, which is not in the index; did you mean TKT-004?"
    assert (finding.ticket, finding.field, finding.found, finding.file) == (
        "TKT-003",
        "dependencies",
        "TKT-0004",
        FILE,
    )


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("tkt-004", "TKT-004"),  # case
        ("TK-004", "TKT-004"),  # same number, similar prefix
        ("TKT-00A4", "TKT-004"),  # difflib
        ("AUTH-LOGIN", "AUTH-LOGON"),  # difflib, no number
    ],
)
def test_unknown_dependency_suggestions(typo: str, meant: str) -> None:
    tickets = [ticket("TKT-001", typo), ticket("TKT-004"), ticket("AUTH-LOGON"), ticket("DOCS-017")]
    [finding] = graph_findings(tickets)
    assert finding.message.endswith(f"did you mean {meant}?")


def test_no_suggestion_when_nothing_is_close() -> None:
    [finding] = graph_findings([ticket("TKT-001", "QQQQQQQQ"), ticket("TKT-002")])
    assert finding.message == "TKT-001 depends on QQQQQQQQ, which is not in the index"


def test_without_difflib_budget_padding_suggestions_still_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dependency_graph, "DIFFLIB_BUDGET", 0)
    padded, typo = graph_findings(
        [ticket("TKT-001", "TKT-0004", "AUTH-LOGIN"), ticket("TKT-004"), ticket("AUTH-LOGON")]
    )
    assert padded.message.endswith("did you mean TKT-004?")
    assert typo.message == "TKT-001 depends on AUTH-LOGIN, which is not in the index"


def test_self_dependency() -> None:
    [finding] = graph_findings([ticket("TKT-001", "TKT-001")], file=FILE)
    assert (finding.code, finding.ticket, finding.field) == ("self_dependency", "TKT-001", "dependencies")
    assert finding.message == "TKT-001 depends on itself"


def test_a_cycle_is_named_with_its_full_path_in_depends_on_order() -> None:
    tickets = [ticket("A-1", "A-2"), ticket("A-2", "A-3"), ticket("A-3", "A-1"), ticket("A-4", "A-1")]
    [finding] = graph_findings(tickets, file=FILE)
    assert (finding.severity, finding.code, finding.ticket, finding.field) == (
        Severity.ERROR,
        "cycle",
        "A-1",
        "dependencies",
    )
    assert "A-1 -> A-2 -> A-3 -> A-1" in finding.message
    assert "A-4" not in finding.message  # depends on the cycle, is not part of it


def test_every_cycle_gets_its_own_finding() -> None:
    tickets = [
        ticket("A-1", "A-2"),
        ticket("A-2", "A-1"),
        ticket("B-1", "B-2"),
        ticket("B-2", "B-3"),
        ticket("B-3", "B-1"),
        ticket("C-1", "A-1", "B-1"),
    ]
    cycles = only(graph_findings(tickets), "cycle")
    assert [f.found for f in cycles] == ["A-1 -> A-2 -> A-1", "B-1 -> B-2 -> B-3 -> B-1"]


def test_a_tangle_is_one_finding_with_its_shortest_cycle_and_all_its_members() -> None:
    # A-1 -> A-2 -> A-3 -> A-1 and A-2 -> A-4 -> A-2: one strongly connected component
    tickets = [ticket("A-1", "A-2"), ticket("A-2", "A-3", "A-4"), ticket("A-3", "A-1"), ticket("A-4", "A-2")]
    [finding] = graph_findings(tickets)
    assert finding.found == "A-1 -> A-2 -> A-3 -> A-1"
    assert "4 tickets are caught in it: A-1, A-2, A-3, A-4" in finding.message


def test_dependency_cycle_is_the_shortest_through_the_smallest_id() -> None:
    # A-1 depends on; A-5 depends straight back on A-1; A-2 on a long way round
    tickets = [
        ticket("A-1", "A-2", "A-5"),
        ticket("A-2", "A-3"),
        ticket("A-3", "A-4"),
        ticket("A-4", "A-1"),
        ticket("A-5", "A-1"),
    ]
    graph = build_graph(tickets)
    assert dependency_cycle(graph, {"A-1", "A-2", "A-3", "A-4", "A-5"}) == ["A-1", "A-5", "A-1"]


def test_unknown_parent() -> None:
    [finding] = graph_findings([ticket("TKT-001", parent="EPIC-9"), ticket("EPIC-1")], file=FILE)
    assert (finding.code, finding.ticket, finding.field, finding.found) == (
        "unknown_parent",
        "TKT-001",
        "parent",
        "EPIC-9",
    )
    assert finding.message == "TKT-001 has parent EPIC-9, which is not in the index; did you mean EPIC-1?"


def test_completed_ticket_depending_on_unfinished_work() -> None:
    tickets = [ticket("TKT-001", state="DEFERRED"), ticket("TKT-002", "TKT-001", state="COMPLETED")]
    [finding] = graph_findings(tickets, file=FILE)
    assert (finding.code, finding.ticket, finding.field) == (
        "completed_depends_on_unfinished",
        "TKT-002",
        "dependencies",
    )
    assert finding.message == "TKT-002 is COMPLETED but depends on TKT-001, which is DEFERRED"


# ---------------------------------------------------------------- warnings


def test_child_whose_parent_is_someone_else() -> None:
    tickets = [
        ticket("EPIC-1", children=["TKT-001"]),
        ticket("EPIC-2", children=["TKT-001"]),
        ticket("TKT-001", parent="EPIC-2"),
    ]
    [finding] = graph_findings(tickets, file=FILE)
    assert (finding.severity, finding.code, finding.ticket, finding.field) == (
        Severity.WARNING,
        "parent_children_mismatch",
        "EPIC-1",
        "children",
    )
    assert finding.message == "EPIC-1 lists TKT-001 as a child, but TKT-001 has parent EPIC-2"


def test_child_without_parent() -> None:
    [finding] = graph_findings([ticket("EPIC-1", children=["TKT-001"]), ticket("TKT-001")])
    assert finding.message == "EPIC-1 lists TKT-001 as a child, but TKT-001 has no parent"


def test_unknown_child() -> None:
    [finding] = graph_findings([ticket("EPIC-1", children=["TKT-404"])])
    assert (finding.severity, finding.code, finding.field) == (
        Severity.WARNING,
        "parent_children_mismatch",
        "children",
    )
    assert finding.message == "EPIC-1 lists TKT-404 as a child, which is not in the index"


def test_parent_whose_children_list_leaves_the_ticket_out() -> None:
    tickets = [
        ticket("EPIC-1", children=["TKT-001"]),
        ticket("TKT-001", parent="EPIC-1"),
        ticket("TKT-002", parent="EPIC-1"),
    ]
    [finding] = graph_findings(tickets)
    assert (finding.ticket, finding.field) == ("TKT-002", "parent")
    assert finding.message == "TKT-002 has parent EPIC-1, but EPIC-1 does not list it in its children"


def test_a_parent_without_any_children_list_is_not_a_mismatch() -> None:
    assert graph_findings([ticket("EPIC-1"), ticket("TKT-001", parent="EPIC-1")]) == []


def test_errors_come_before_warnings() -> None:
    tickets = [
        ticket("EPIC-1", children=["TKT-404"]),
        ticket("TKT-001", "TKT-002"),
        ticket("TKT-002", "TKT-001"),
    ]
    severities = [f.severity for f in graph_findings(tickets)]
    assert severities == [Severity.ERROR, Severity.WARNING]


# ---------------------------------------------------------------- require_sound_graph


def test_require_sound_graph_lists_the_errors_and_points_at_validate() -> None:
    tickets = [ticket("A-1", "A-2"), ticket("A-2", "A-1"), ticket("A-3", "A-0")]
    with pytest.raises(SageError) as raised:
        require_sound_graph(tickets, file=FILE)
    message = raised.value.message
    assert message.startswith(f"{FILE}: the dependency graph has 2 errors:")
    assert "A-1 -> A-2 -> A-1" in message
    assert "A-3 depends on A-0" in message
    assert "sage validate" in message
    assert raised.value.exit_code == 1


def test_require_sound_graph_returns_the_warnings() -> None:
    warnings = require_sound_graph([ticket("EPIC-1", children=["TKT-404"])])
    assert codes(warnings) == ["parent_children_mismatch"]


# ---------------------------------------------------------------- DependencyGraph


def is_topological(order: list[str], graph: DependencyGraph) -> bool:
    place = {ticket_id: position for position, ticket_id in enumerate(order)}
    edges = [(before, after) for before, afters in graph.dependents.items() for after in afters]
    return all(place[before] < place[after] for before, after in edges)


def layered(count: int) -> list[Ticket]:
    """Each ticket depends on one or two earlier ones: dependencies first, as Sage appends."""
    return [ticket(f"T-{n}", *{f"T-{n // 2}", f"T-{n - 1}"} - {f"T-{n}"}) if n else ticket("T-0")
            for n in range(count)]


def test_an_index_written_in_dependency_order_is_its_own_topological_order() -> None:
    tickets = layered(50)
    graph = DependencyGraph(tickets)
    assert graph.order == [t.id for t in tickets]
    assert graph.every_dependency_known


def test_any_other_order_is_sorted_dependencies_first() -> None:
    tickets = layered(50)
    random.Random(3).shuffle(tickets)
    graph = DependencyGraph(tickets)
    assert graph.order is not None and sorted(graph.order) == sorted(t.id for t in tickets)
    assert graph.order != [t.id for t in tickets]
    assert is_topological(graph.order, graph)


def test_a_cycle_leaves_no_order() -> None:
    graph = DependencyGraph([ticket("A-1", "A-3"), ticket("A-2", "A-1"), ticket("A-3", "A-2"), ticket("B-1")])
    assert graph.order is None


def test_edges_are_known_dependencies_each_once() -> None:
    graph = DependencyGraph([
        ticket("A-1"), ticket("A-2", "A-1", "A-1", "A-2", "GONE-1"), ticket("A-3", "A-2", "A-1"),
    ])
    assert graph.dependents == {"A-1": ["A-2", "A-3"], "A-2": ["A-3"]}
    assert not graph.every_dependency_known  # A-2 names itself and GONE-1
    assert graph.order == ["A-1", "A-2", "A-3"]


def test_the_networkx_view_is_build_graph() -> None:
    tickets = layered(30)
    random.Random(5).shuffle(tickets)
    view, built = DependencyGraph(tickets).to_networkx(), build_graph(tickets)
    assert list(view.nodes) == list(built.nodes)
    assert list(view.edges) == list(built.edges)
    assert all(view.nodes[node]["ticket"] is built.nodes[node]["ticket"] for node in view)


def test_a_shared_graph_gives_the_same_findings() -> None:
    tickets = [ticket("A-1", "A-2"), ticket("A-2", "A-1"), ticket("A-3", "GONE-1"), ticket("A-3"),
               ticket("A-4", "A-4", parent="EPIC-1")]
    assert graph_findings(tickets, graph=DependencyGraph(tickets)) == graph_findings(tickets)


def test_a_graph_of_other_tickets_is_refused() -> None:
    tickets = [ticket("A-1")]
    with pytest.raises(ValueError, match="another ticket list"):
        graph_findings(list(tickets), graph=DependencyGraph(tickets))


def edge_ids(graph: DependencyGraph) -> list[tuple[str, str]]:
    ids = graph.nodes.ids
    return [(ids[before], ids[after]) for before, after in zip(graph.edge_dependency, graph.edge_dependent)]


def test_edges_come_grouped_by_dependent_in_a_topological_order() -> None:
    tickets = layered(40)
    random.Random(7).shuffle(tickets)
    graph = DependencyGraph(tickets)
    dependents = [after for _, after in edge_ids(graph)]
    assert graph.order is not None and not graph.in_index_order
    place = {ticket_id: position for position, ticket_id in enumerate(graph.order)}
    assert [place[after] for after in dependents] == sorted(place[after] for after in dependents)
    assert all(place[before] < place[after] for before, after in edge_ids(graph))
    assert sorted(set(edge_ids(graph))) == sorted(
        (before, after) for before, afters in graph.dependents.items() for after in afters)


def test_the_same_tickets_in_any_order_make_the_same_graph() -> None:
    tickets = [ticket("A-1"), ticket("A-2", "A-1", "A-1"), ticket("A-3", "A-1", "A-2", "A-3", "GONE-1"),
               ticket("A-2", "A-3"), ticket("A-4", state="COMPLETED")]
    for seed in range(20):
        shuffled = list(tickets)
        random.Random(seed).shuffle(shuffled)
        graph = DependencyGraph(shuffled)
        first = {}
        for t in shuffled:
            first.setdefault(t.id, t)
        wanted = {(before, t.id) for t in first.values() for before in t.dependencies
                  if before in first and before != t.id}
        assert set(edge_ids(graph)) == wanted
        assert graph.first == first and list(graph.nodes.tickets) == list(first.values())
        assert graph.has_duplicate_ids and not graph.every_dependency_known


def test_unfinished_edges_and_a_completed_ticket_waiting_on_unfinished_work() -> None:
    sound = DependencyGraph([ticket("A-1", state="COMPLETED"), ticket("A-2", "A-1"), ticket("A-3", "A-2")])
    assert not sound.completed_depends_on_unfinished
    assert sound.unfinished_edges == ([2], [1])  # A-2 -> A-3 only: A-1 is COMPLETED
    unsound = DependencyGraph([ticket("A-1"), ticket("A-2", "A-1", state="COMPLETED")])
    assert unsound.completed_depends_on_unfinished
    assert unsound.unfinished_edges == ([], [])


@pytest.mark.parametrize("seed", range(20))
def test_dependents_are_each_tickets_dependents_in_index_order_each_once(seed: int) -> None:
    rng = random.Random(seed)
    tickets = layered(30)
    for one in rng.sample(tickets[1:], 8):  # some written twice, some out of place
        one.dependencies.append(one.dependencies[0])
    if seed % 2:
        rng.shuffle(tickets)
    graph = DependencyGraph(tickets)
    expected = {}
    for before in tickets:
        after = [t.id for t in tickets if before.id in t.dependencies]
        if after:
            expected[before.id] = after
    assert graph.dependents == expected
    assert list(graph.dependents) == list(expected)  # dependencies in index order too
