"""Which tickets may start now, and in which order."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sage_stream.graph.ordering import (
    TRANSIENT_CATEGORIES,
    is_retryable,
    is_startable,
    order_ready,
    ready_order_key,
    ready_tickets,
    startable_count,
)
from sage_stream.tickets.models import Ticket

NOW = datetime(2026, 1, 31, 12, 0, tzinfo=timezone.utc)


def ticket(ticket_id: str, *deps: str, state: str = "UNPROCESSED", **fields: Any) -> Ticket:
    return Ticket(id=ticket_id, title=f"title of {ticket_id}", state=state, dependencies=list(deps), **fields)


def deferred(ticket_id: str, *deps: str, retryable: bool | None, **fields: Any) -> Ticket:
    reason: dict[str, Any] = {"category": "timeout", "message": "agent timed out"}
    if retryable is not None:
        reason["retryable"] = retryable
    return ticket(ticket_id, *deps, state="DEFERRED", defer_reason=reason, **fields)


def ids(tickets: list[Ticket]) -> list[str]:
    return [t.id for t in tickets]


def test_transient_categories_are_the_ones_worth_an_automatic_retry() -> None:
    assert {"timeout", "conflict", "rate_limit", "interrupted"} == TRANSIENT_CATEGORIES


def test_only_a_deferred_ticket_marked_retryable_true_is_retryable() -> None:
    assert is_retryable(deferred("A-1", retryable=True))
    assert not is_retryable(deferred("A-1", retryable=False))
    assert not is_retryable(deferred("A-1", retryable=None))
    assert not is_retryable(ticket("A-1", state="DEFERRED"))  # no defer_reason at all
    assert not is_retryable(ticket("A-1", defer_reason={"retryable": True}))  # not DEFERRED


def test_retryable_must_be_the_json_true_not_a_truthy_string() -> None:
    odd = ticket("A-1", state="DEFERRED", defer_reason={"retryable": "yes"})
    assert not is_retryable(odd)


def test_startable_states() -> None:
    assert is_startable(ticket("A-1"), NOW)
    assert is_startable(deferred("A-1", retryable=True), NOW)
    assert not is_startable(deferred("A-1", retryable=False), NOW)
    assert not is_startable(ticket("A-1", state="IN_PROGRESS"), NOW)
    assert not is_startable(ticket("A-1", state="COMPLETED"), NOW)


def test_not_before_holds_a_ticket_back_until_that_moment() -> None:
    later = ticket("A-1", not_before="2026-01-31T12:00:01Z")
    assert not is_startable(later, NOW)
    assert is_startable(later, NOW + timedelta(seconds=1))
    assert is_startable(ticket("A-1", not_before="2026-01-31T12:00:00Z"), NOW)  # <= now


def test_not_before_applies_to_retries_too() -> None:
    retry = deferred("A-1", retryable=True, not_before="2026-01-31T13:00:00Z")
    assert not is_startable(retry, NOW)
    assert is_startable(retry, NOW + timedelta(hours=1))


def test_a_naive_now_is_taken_as_utc() -> None:
    later = ticket("A-1", not_before="2026-01-31T12:30:00Z")
    assert not is_startable(later, datetime(2026, 1, 31, 12, 0))
    assert is_startable(later, datetime(2026, 1, 31, 12, 30))


def test_ready_means_startable_with_every_dependency_completed() -> None:
    tickets = [
        ticket("A-1", state="COMPLETED"),
        ticket("A-2", "A-1"),
        ticket("A-3", "A-1", "A-2"),  # A-2 is not done
        ticket("A-4", state="IN_PROGRESS"),
        ticket("A-5", "A-1", state="DEFERRED"),  # deferred for good
    ]
    assert ids(ready_tickets(tickets, {}, NOW)) == ["A-2"]


def test_a_dependency_missing_from_the_index_keeps_its_dependent_waiting() -> None:
    assert ready_tickets([ticket("A-1", "GONE-9")], {}, NOW) == []


def test_a_self_dependency_is_never_satisfied() -> None:
    assert ready_tickets([ticket("A-1", "A-1")], {}, NOW) == []


def test_ready_order_is_priority_then_bottom_level_then_id() -> None:
    tickets = [
        ticket("A-1", priority="P2"),
        ticket("A-2", priority="P1"),
        ticket("A-3", priority="P1"),
        ticket("A-4", priority="P1"),
        ticket("A-5", priority="P0"),
        ticket("A-6"),  # no priority: after P4
        ticket("A-7", priority="P9"),  # unknown priority: after P4 too
        ticket("A-8", priority="P4"),
    ]
    levels = {
        "A-1": 100.0,
        "A-2": 3.0,
        "A-3": 7.0,
        "A-4": 3.0,
        "A-5": 1.0,
        "A-6": 50.0,
        "A-7": 60.0,
        "A-8": 1.0,
    }
    assert ids(ready_tickets(tickets, levels, NOW)) == [
        "A-5",
        "A-3",
        "A-2",
        "A-4",
        "A-1",
        "A-8",
        "A-7",
        "A-6",
    ]


def test_ready_order_key_puts_more_waiting_work_first() -> None:
    p1 = ticket("A-1", priority="P1")
    assert ready_order_key(p1, 7.0) < ready_order_key(p1, 3.0)
    assert ready_order_key(p1, 7.0) == (1, -7.0, "A-1")


def test_order_ready_falls_back_to_the_ticket_estimate() -> None:
    small = ticket("A-1", estimate=1.0)
    large = ticket("A-2", estimate=5.0)
    assert ids(order_ready([small, large], {})) == ["A-2", "A-1"]
    assert ids(order_ready([small, large], {"A-1": 9.0})) == ["A-1", "A-2"]


def test_with_duplicate_ids_the_first_ticket_counts() -> None:
    tickets = [
        ticket("A-1", state="COMPLETED"),
        ticket("A-1"),  # a second A-1, unfinished: ignored
        ticket("A-2", "A-1"),
        ticket("A-2", "A-9"),  # ignored too
    ]
    ready = ready_tickets(tickets, {}, NOW)
    assert ids(ready) == ["A-2"]
    assert ready[0] is tickets[2]


def test_retryable_deferred_ticket_is_ready_again() -> None:
    tickets = [ticket("A-1", state="COMPLETED"), deferred("A-2", "A-1", retryable=True)]
    assert ids(ready_tickets(tickets, {}, NOW)) == ["A-2"]


def test_ready_tickets_defaults_now_to_the_current_time() -> None:
    past = ticket("A-1", not_before="2000-01-01T00:00:00Z")
    future = ticket("A-2", not_before="2999-01-01T00:00:00Z")
    assert ids(ready_tickets([past, future], {})) == ["A-1"]


def test_startable_counts_the_startable_states_and_stops_where_it_is_told() -> None:
    tickets = [ticket("A"), ticket("B", state="COMPLETED"), deferred("C", retryable=True),
               deferred("D", retryable=False), ticket("E", not_before="2026-02-01T00:00:00Z"), ticket("F", "A")]
    assert startable_count(tickets, NOW) == 3  # A, C and F (whatever F waits on)
    assert startable_count(tickets, NOW, frozenset({"A", "B"})) == 1
    assert startable_count(tickets, NOW, at_most=2) == 2
    assert startable_count(tickets, NOW, at_most=8) == 3

    def then_nothing_more():
        yield from tickets[:3]
        raise AssertionError("counted past at_most")

    assert startable_count(then_nothing_more(), NOW, at_most=2) == 2
