"""Which tickets may start now, and in which order: pure functions, no I/O.

The order is the one the scheduler uses and `sage ready` shows:

1. priority (P0 first; a missing or unknown priority sorts after P4),
2. bottom level, largest first: the minutes of work on the longest chain that starts
   with the ticket, so work that holds up the most remaining work starts early
   (what ninja does; near-optimal on random DAGs, see notes/engine-facts.md),
3. id, so that the order is total and the same on every run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import islice
from datetime import datetime, timezone

from sage_stream.tickets.models import State, Ticket

TRANSIENT_CATEGORIES = frozenset({"timeout", "conflict", "rate_limit", "interrupted"})
"""Defer categories that say nothing about the ticket itself: worth an automatic retry."""


def is_retryable(ticket: Ticket) -> bool:
    """A DEFERRED ticket whose `defer_reason` says `"retryable": true` (set by the engine)."""
    if ticket.state is not State.DEFERRED or ticket.defer_reason is None:
        return False
    extra = ticket.defer_reason.model_extra or {}
    return extra.get("retryable") is True


def is_startable_state(ticket: Ticket) -> bool:
    """UNPROCESSED or retryable DEFERRED: a state the scheduler starts a ticket from."""
    return ticket.state is State.UNPROCESSED or is_retryable(ticket)


def is_startable(ticket: Ticket, now: datetime) -> bool:
    """UNPROCESSED or retryable DEFERRED, and not told to wait (`not_before`) past `now`.

    Dependencies are not looked at here: see `ready_tickets`.
    """
    if not is_startable_state(ticket):
        return False
    not_before = ticket.not_before_time()
    return not_before is None or not_before <= _aware(now)


def startable_count(tickets: Iterable[Ticket], now: datetime, only: frozenset[str] | None = None, *,
                    at_most: int | None = None) -> int:
    """How many tickets (of `only`, when given) a run could start, now or once their
    dependencies land: what caps its worker count (process/cpus.py `decide_workers`).
    `at_most`: stop counting there (a cap on workers needs no more: 0.15 s at 100,000)."""
    startable = (ticket for ticket in tickets if (only is None or ticket.id in only) and is_startable(ticket, now))
    return sum(1 for _ in islice(startable, at_most))


def reachable_tickets(tickets: Mapping[str, Ticket], now: datetime, *, done: Iterable[str] = (),
                      excluded: Iterable[str] = (), only: frozenset[str] | None = None) -> dict[str, Ticket]:
    """The tickets a run can start, now or once what they wait on lands in it: startable
    now (`is_startable`), with every dependency COMPLETED (`done`) or itself reachable.
    What a prediction of the run (its makespan, a dry run's order) may count on; a ticket
    parked until a later time or until `sage retry`, and all that waits on it, is not."""
    finished, left_out = set(done), set(excluded)
    candidates = {tid: ticket for tid, ticket in tickets.items()
                  if tid not in finished and tid not in left_out and (only is None or tid in only)
                  and is_startable(ticket, now)}
    waiting = {tid: sum(1 for dep in set(ticket.dependencies) if dep not in finished)
               for tid, ticket in candidates.items()}
    dependents: dict[str, list[str]] = {}
    for tid, ticket in candidates.items():
        for dep in set(ticket.dependencies):
            if dep not in finished:
                dependents.setdefault(dep, []).append(tid)
    reachable = [tid for tid, count in waiting.items() if count == 0]
    for tid in reachable:  # grows while iterating: Kahn's algorithm over the candidates
        for dependent in dependents.get(tid, ()):
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                reachable.append(dependent)
    return {tid: candidates[tid] for tid in reachable}


def ready_order_key(ticket: Ticket, bottom_level: float) -> tuple[int, float, str]:
    """Smaller sorts first: (priority rank, -bottom level, id)."""
    return (ticket.priority_rank, -bottom_level, ticket.id)


def order_ready(tickets: Iterable[Ticket], bottom_levels: Mapping[str, float]) -> list[Ticket]:
    """`tickets` in start order. A ticket missing from `bottom_levels` counts its own estimate."""
    return sorted(
        tickets,
        key=lambda ticket: ready_order_key(ticket, bottom_levels.get(ticket.id, ticket.estimate)),
    )


def ready_tickets(
    tickets: Sequence[Ticket],
    bottom_levels: Mapping[str, float],
    now: datetime | None = None,
) -> list[Ticket]:
    """Tickets that may start now, in start order.

    Ready = startable (see `is_startable`) and every dependency COMPLETED. A dependency
    that is not in the index is not COMPLETED, so its dependent is never ready. With
    duplicate ids, the first ticket of an id is the one that counts (as in `build_graph`).
    """
    moment = _aware(now) if now is not None else datetime.now(timezone.utc)
    first: dict[str, Ticket] = {}
    for ticket in tickets:
        first.setdefault(ticket.id, ticket)
    completed = {ticket_id for ticket_id, ticket in first.items() if ticket.state is State.COMPLETED}
    ready = [
        ticket
        for ticket in first.values()
        if is_startable(ticket, moment) and all(dep in completed for dep in ticket.dependencies)
    ]
    return order_ready(ready, bottom_levels)


def _aware(moment: datetime) -> datetime:
    """Naive times are taken as UTC, as `parse_timestamp` does for the index."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)
