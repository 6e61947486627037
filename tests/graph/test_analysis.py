"""The analysis of remaining work: bottom levels, waves, critical path, why tickets wait."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from typing import Any

import networkx as nx
import pytest

from sage_stream.graph import analysis as analysis_module
from sage_stream.graph.analysis import (
    ROOT_CAUSES_KEPT,
    BlockedTicket,
    RootCause,
    analyze,
    bottom_levels,
    remaining_estimates,
)
from sage_stream.graph.dependency_graph import DependencyGraph, build_graph
from sage_stream.graph.simulate import RULE_LOWER_BOUND, RULE_SIMULATION, recommend_by_lower_bound
from sage_stream.tickets.models import Ticket

NOW = datetime(2026, 1, 31, 12, 0, tzinfo=timezone.utc)


def ticket(ticket_id: str, *deps: str, state: str = "UNPROCESSED", **fields: Any) -> Ticket:
    return Ticket(id=ticket_id, title=f"title of {ticket_id}", state=state, dependencies=list(deps), **fields)


def calc_backlog() -> list[Ticket]:
    """The shape of the built-in example: 001 first, three in parallel, then 005, then two."""
    return [
        ticket("CALC-001", priority="P0", estimate=1),
        ticket("CALC-002", "CALC-001", priority="P1", estimate=2),
        ticket("CALC-003", "CALC-001", priority="P1", estimate=2),
        ticket("CALC-004", "CALC-001", priority="P1", estimate=3),
        ticket("CALC-005", "CALC-002", "CALC-003", "CALC-004", priority="P1", estimate=2),
        ticket("CALC-006", "CALC-005", priority="P2", estimate=1),
        ticket("CALC-007", "CALC-005", priority="P1", estimate=2),
        ticket("CALC-008", priority="P3", estimate=1),
    ]


# ---------------------------------------------------------------- bottom levels


def test_bottom_level_is_own_estimate_plus_the_longest_chain_after_it() -> None:
    graph = nx.DiGraph([("A", "B"), ("B", "D"), ("A", "C"), ("C", "D")])
    levels = bottom_levels(graph, {"A": 1, "B": 5, "C": 2, "D": 3})
    assert levels == {"A": 9, "B": 8, "C": 5, "D": 3}


def test_bottom_level_weighs_nodes_not_edges() -> None:
    # one heavy node beats two light ones: dag_longest_path (edge weights) would pick A-B-C
    graph = nx.DiGraph([("A", "B"), ("B", "C"), ("A", "H")])
    levels = bottom_levels(graph, {"A": 1, "B": 1, "C": 1, "H": 10})
    assert levels["A"] == 11


def test_completed_tickets_weigh_nothing() -> None:
    tickets = [ticket("A-1", state="COMPLETED", estimate=50), ticket("A-2", "A-1", estimate=2)]
    estimates = remaining_estimates(tickets)
    assert estimates == {"A-2": 2}
    assert bottom_levels(build_graph(tickets), estimates) == {"A-1": 2, "A-2": 2}


def test_bottom_levels_refuse_a_cycle() -> None:
    with pytest.raises(nx.NetworkXUnfeasible):
        bottom_levels(nx.DiGraph([("A", "B"), ("B", "A")]), {"A": 1, "B": 1})


# ---------------------------------------------------------------- analyze


def test_analysis_of_the_example_backlog() -> None:
    analysis = analyze(calc_backlog(), NOW)
    assert analysis.ready == ["CALC-001", "CALC-008"]
    assert analysis.waves == [
        ["CALC-001", "CALC-008"],
        ["CALC-004", "CALC-002", "CALC-003"],  # in start order: CALC-004 has more work behind it
        ["CALC-005"],
        ["CALC-007", "CALC-006"],
    ]
    assert analysis.max_parallelism == 3
    assert analysis.critical_path == ["CALC-001", "CALC-004", "CALC-005", "CALC-007"]
    assert analysis.critical_path_minutes == 8
    assert analysis.total_minutes == 14
    assert analysis.bottom_level["CALC-001"] == 8
    assert analysis.bottom_level["CALC-006"] == 1
    # 2 workers: 9 min; 3 reach the critical path (8 min): the smallest count within 5%
    assert analysis.recommended_workers == 3


def test_the_acceptance_case_of_the_original() -> None:
    tickets = [ticket("TKT-001"), ticket("TKT-002"), ticket("TKT-003", "TKT-001", "TKT-002")]
    analysis = analyze(tickets, NOW)
    assert analysis.ready == ["TKT-001", "TKT-002"]
    assert analysis.waves == [["TKT-001", "TKT-002"], ["TKT-003"]]
    assert analysis.recommended_workers == 2


def test_completed_work_is_in_no_wave_and_off_the_critical_path() -> None:
    tickets = [ticket("A-1", state="COMPLETED", estimate=100), ticket("A-2", "A-1"), ticket("A-3", "A-2")]
    analysis = analyze(tickets, NOW)
    assert analysis.waves == [["A-2"], ["A-3"]]
    assert analysis.critical_path == ["A-2", "A-3"]
    assert analysis.critical_path_minutes == 2
    assert analysis.total_minutes == 2
    assert "A-1" not in analysis.bottom_level


def test_nothing_left_to_do() -> None:
    analysis = analyze([ticket("A-1", state="COMPLETED")], NOW)
    assert (analysis.ready, analysis.blocked, analysis.waves, analysis.critical_path) == ([], [], [], [])
    assert (analysis.max_parallelism, analysis.critical_path_minutes, analysis.total_minutes) == (0, 0, 0)
    assert analysis.recommended_workers == 1


def test_a_deferred_ticket_is_the_root_cause_of_the_chain_behind_it() -> None:
    tickets = [
        ticket(
            "TKT-004",
            state="DEFERRED",
            defer_reason={"category": "persistent_test_failure", "message": "tests failed"},
        ),
        ticket("TKT-005", "TKT-004"),
        ticket("TKT-006", "TKT-005"),
    ]
    analysis = analyze(tickets, NOW)
    assert analysis.ready == []
    assert [b.ticket_id for b in analysis.blocked] == ["TKT-005", "TKT-006"]
    last = analysis.blocked[1]
    assert last.waiting_on == ["TKT-005"]
    assert last.root_causes == [RootCause("TKT-004", "DEFERRED", "tests failed")]
    assert last.describe() == "blocked by TKT-004, DEFERRED: tests failed"


def test_defer_category_is_the_reason_when_there_is_no_message() -> None:
    tickets = [ticket("A-1", state="DEFERRED", defer_reason={"category": "timeout"}), ticket("A-2", "A-1")]
    [blocked] = analyze(tickets, NOW).blocked
    assert blocked.describe() == "blocked by A-1, DEFERRED: timeout"


def test_in_progress_and_ready_roots() -> None:
    tickets = [
        ticket("A-1", state="IN_PROGRESS"),
        ticket("A-2"),
        ticket("A-3", "A-1", "A-2"),
    ]
    [blocked] = analyze(tickets, NOW).blocked
    assert blocked.root_causes == [
        RootCause("A-1", "IN_PROGRESS", "in progress"),
        RootCause("A-2", "UNPROCESSED", "ready, not started yet"),
    ]


def test_a_ticket_waiting_for_its_own_not_before() -> None:
    tickets = [ticket("A-1", not_before="2026-01-31T13:00:00Z"), ticket("A-2", "A-1")]
    analysis = analyze(tickets, NOW)
    assert analysis.ready == []
    own, behind = analysis.blocked
    assert own.ticket_id == "A-1" and own.waiting_on == []
    assert own.describe() == "waiting until 2026-01-31T13:00:00Z"
    assert behind.describe() == "blocked by A-1, UNPROCESSED: waiting until 2026-01-31T13:00:00Z"


def test_a_retryable_deferred_ticket_is_ready_or_waits_for_its_retry_time() -> None:
    reason = {"category": "rate_limit", "message": "429", "retryable": True}
    later = [
        ticket("A-1", state="DEFERRED", defer_reason=reason, not_before="2026-01-31T13:00:00Z"),
        ticket("A-2", "A-1"),
    ]
    analysis = analyze(later, NOW)
    assert analysis.ready == []
    assert (
        analysis.blocked[1].describe() == "blocked by A-1, DEFERRED: retry after 2026-01-31T13:00:00Z (429)"
    )
    now_ready = analyze(later, datetime(2026, 1, 31, 13, 0, tzinfo=timezone.utc))
    assert now_ready.ready == ["A-1"]


def test_a_missing_dependency_is_a_root_cause() -> None:
    [blocked] = analyze([ticket("A-1", "GONE-1")], NOW).blocked
    assert blocked.waiting_on == ["GONE-1"]
    assert blocked.root_causes == [RootCause("GONE-1", "MISSING", "not in the index")]


def test_a_deferred_ticket_waiting_for_retry_is_a_root_not_a_blocked_ticket() -> None:
    tickets = [ticket("A-1", state="DEFERRED", defer_reason={"message": "no"}), ticket("A-2", "A-1")]
    assert [b.ticket_id for b in analyze(tickets, NOW).blocked] == ["A-2"]


def test_root_causes_are_unique_and_sorted_across_a_diamond() -> None:
    tickets = [
        ticket("R-2", state="IN_PROGRESS"),
        ticket("R-1", state="IN_PROGRESS"),
        ticket("M-1", "R-1", "R-2"),
        ticket("M-2", "R-1"),
        ticket("Z-1", "M-1", "M-2"),
    ]
    blocked = {b.ticket_id: b for b in analyze(tickets, NOW).blocked}
    assert [c.ticket_id for c in blocked["Z-1"].root_causes] == ["R-1", "R-2"]
    assert blocked["Z-1"].waiting_on == ["M-1", "M-2"]


def test_root_causes_are_capped_and_say_so() -> None:
    roots = [ticket(f"R-{n}", state="IN_PROGRESS") for n in range(ROOT_CAUSES_KEPT + 2)]
    tickets = [*roots, ticket("Z-1", *(r.id for r in roots)), ticket("Z-2", "Z-1")]
    blocked = {b.ticket_id: b for b in analyze(tickets, NOW).blocked}
    for ticket_id in ("Z-1", "Z-2"):
        assert len(blocked[ticket_id].root_causes) == ROOT_CAUSES_KEPT
        assert blocked[ticket_id].more_root_causes
        assert blocked[ticket_id].describe().endswith("; and more")


def test_blocked_ticket_describe_lists_every_root() -> None:
    blocked = BlockedTicket(
        "A-9",
        ["A-1", "A-2"],
        [RootCause("A-1", "IN_PROGRESS", "in progress"), RootCause("A-2", "MISSING", "not in the index")],
    )
    assert blocked.describe() == "blocked by A-1, IN_PROGRESS: in progress; A-2, MISSING: not in the index"


def test_blocked_tickets_are_listed_in_start_order() -> None:
    tickets = [
        ticket("A-1", state="IN_PROGRESS"),
        ticket("A-2", "A-1", priority="P3"),
        ticket("A-3", "A-1", priority="P0"),
        ticket("A-4", "A-1", priority="P3", estimate=5),
    ]
    assert [b.ticket_id for b in analyze(tickets, NOW).blocked] == ["A-3", "A-4", "A-2"]


def test_critical_path_prefers_the_smallest_id_on_ties() -> None:
    tickets = [ticket("B-1"), ticket("A-1"), ticket("C-1", "A-1", "B-1")]
    assert analyze(tickets, NOW).critical_path == ["A-1", "C-1"]


# ---------------------------------------------------------------- one graph, computed once, read lazily


def test_the_counts_are_those_of_the_lists() -> None:
    chain = [ticket("X-1", state="IN_PROGRESS"), ticket("X-2", "X-1"), ticket("X-3", "X-2")]
    tickets = [*calc_backlog(), *chain]
    analysis = analyze(tickets, NOW)
    assert analysis.blocked_count == len(analysis.blocked) == 8
    assert analysis.wave_count == len(analysis.waves) == 4
    assert analysis.max_parallelism == max(len(wave) for wave in analysis.waves) == 4


def test_root_causes_are_only_computed_when_read(monkeypatch: pytest.MonkeyPatch) -> None:
    tickets = [ticket("A-1", state="IN_PROGRESS"), ticket("A-2", "A-1")]
    analysis = analyze(tickets, NOW)
    calls = []
    reason = analysis_module.root_reason
    monkeypatch.setattr(analysis_module, "root_reason", lambda *args: calls.append(args) or reason(*args))
    assert analysis.blocked_count == 1 and calls == []
    assert analysis.blocked[0].root_causes == [RootCause("A-1", "IN_PROGRESS", "in progress")]
    assert len(calls) == 1


def test_a_shared_graph_gives_the_same_analysis() -> None:
    tickets = calc_backlog()
    alone, shared = analyze(tickets, NOW), analyze(tickets, NOW, graph=DependencyGraph(tickets))
    assert (alone.ready, alone.waves, alone.blocked, alone.bottom_level, alone.critical_path) == (
        shared.ready, shared.waves, shared.blocked, shared.bottom_level, shared.critical_path)


def test_a_cycle_is_refused() -> None:
    with pytest.raises(nx.NetworkXUnfeasible):
        analyze([ticket("A-1", "A-2"), ticket("A-2", "A-1")], NOW)


def test_small_backlogs_simulate_the_worker_count() -> None:
    analysis = analyze(calc_backlog(), NOW)
    assert (analysis.recommended_workers, analysis.recommended_workers_rule) == (3, RULE_SIMULATION)


def test_huge_backlogs_take_the_worker_count_from_the_lower_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(analysis_module, "SIMULATED_UP_TO", 7)  # the example has 8 unfinished tickets
    analysis = analyze(calc_backlog(), NOW)
    assert analysis.recommended_workers_rule == RULE_LOWER_BOUND
    # critical path 8 min, 14 min of work: 2 workers (bound 8) already reach the path
    assert analysis.recommended_workers == recommend_by_lower_bound(8, 14) == 2


# ---------------------------------------------------------------- blocked tickets against their definition


def blocked_by_definition(tickets: list[Ticket], analysis: analysis_module.Analysis) -> list[BlockedTicket]:
    """Ticket by ticket, as the docs say: a blocked ticket is unfinished, in a state the
    scheduler starts from, and not ready; it waits on its unfinished or missing
    dependencies; its roots are every root found below them (a missing dependency, a
    ticket in progress or DEFERRED until `sage retry`, or one waiting on nothing),
    the ROOT_CAUSES_KEPT smallest ids kept."""
    first: dict[str, Ticket] = {}
    for one in tickets:
        first.setdefault(one.id, one)
    done = {tid for tid, one in first.items() if one.state.value == "COMPLETED"}

    def waiting_on(one: Ticket) -> list[str]:
        return list(dict.fromkeys(d for d in one.dependencies if d not in done and d != one.id))

    def is_root(tid: str) -> bool:
        one = first.get(tid)
        if one is None or one.state.value == "IN_PROGRESS" or not waiting_on(one):
            return True
        return one.state.value == "DEFERRED" and not analysis_module.is_retryable(one)

    def roots(tid: str) -> set[str]:
        found, seen, todo = set(), set(), list(waiting_on(first[tid]))
        while todo:
            below = todo.pop()
            if below in seen:
                continue
            seen.add(below)
            if is_root(below):
                found.add(below)
            else:
                todo += waiting_on(first[below])
        return found

    def cause(tid: str) -> RootCause:
        one = first.get(tid)
        if one is None:
            return RootCause(tid, "MISSING", "not in the index")
        return RootCause(tid, one.state.value, analysis_module.root_reason(one, NOW))

    blocked = [one for tid, one in first.items() if tid not in done and tid not in analysis.ready
               and analysis_module.is_startable_state(one)]
    blocked.sort(key=lambda one: (one.priority_rank, -analysis.bottom_level[one.id], one.id))
    result = []
    for one in blocked:
        found = sorted(roots(one.id)) if waiting_on(one) else [one.id]
        result.append(BlockedTicket(one.id, waiting_on(one), [cause(tid) for tid in found[:ROOT_CAUSES_KEPT]],
                                    len(found) > ROOT_CAUSES_KEPT))
    return result


@pytest.mark.parametrize("seed", range(40))
def test_blocked_tickets_are_those_of_the_definition(seed: int) -> None:
    rng = random.Random(seed)
    count = rng.randint(1, 40)
    later = "2026-02-01T00:00:00Z"
    tickets = []
    for n in range(count):
        deps = [f"T-{rng.randrange(n)}" for _ in range(rng.randint(0, 3))] if n else []
        if deps and rng.random() < 0.2:
            deps.append(deps[0])  # written twice
        if seed % 2 and rng.random() < 0.1:
            deps.append(rng.choice(["GONE-1", "GONE-2"]))  # not in the index
        state = rng.choice(["UNPROCESSED"] * 4 + ["COMPLETED"] * 3 + ["IN_PROGRESS", "DEFERRED"])
        fields: dict[str, Any] = {"priority": rng.choice(["P0", "P1", "P2", None]), "estimate": rng.choice([1, 2, 5])}
        if state == "DEFERRED":
            fields["defer_reason"] = {"message": "tests failed", "retryable": rng.random() < 0.5}
        if rng.random() < 0.1:
            fields["not_before"] = later
        tickets.append(ticket(f"T-{n}", *deps, state=state, **fields))
    if seed % 3 == 0:
        rng.shuffle(tickets)  # not in dependency order
    if seed % 4 == 0:  # a wide fan-in: more roots than are kept
        tickets += [ticket(f"R-{n}", state="IN_PROGRESS") for n in range(ROOT_CAUSES_KEPT + 2)]
        tickets.append(ticket("Z-1", *(f"R-{n}" for n in range(ROOT_CAUSES_KEPT + 2)), tickets[0].id))
    analysis = analyze(tickets, NOW)
    assert analysis.blocked == blocked_by_definition(tickets, analysis)
    assert analysis.blocked_count == len(analysis.blocked)
