"""Tickets that no run starts by itself now: waiting for their `not_before`, or for `sage retry`.

A run that finds nothing ready says so with this (how many, until when, and the
command), instead of ending silently with the backlog parked.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sage_stream.graph.ordering import is_startable, is_startable_state
from sage_stream.tickets.models import State, Ticket

SHOWN_IDS = 5  # ids named in a message; the rest are counted


@dataclass(frozen=True)
class Parked:
    waiting_for_time: tuple[Ticket, ...]  # startable, but `not_before` is still ahead
    waiting_for_retry: tuple[Ticket, ...]  # DEFERRED and not retryable: only `sage retry` starts them

    def __bool__(self) -> bool:
        return bool(self.waiting_for_time or self.waiting_for_retry)


def parked_tickets(tickets: Iterable[Ticket], now: datetime) -> Parked:
    timed, retry = [], []
    for ticket in tickets:
        if is_startable_state(ticket) and not is_startable(ticket, now):
            timed.append(ticket)
        elif ticket.state is State.DEFERRED and not is_startable_state(ticket):
            retry.append(ticket)
    timed.sort(key=lambda ticket: (ticket.not_before_time(), ticket.id))
    return Parked(tuple(timed), tuple(sorted(retry, key=lambda ticket: ticket.id)))


def describe_parked(parked: Parked) -> list[str]:
    """One line per kind of wait: how many, until when, and the command that starts them now."""
    lines = []
    if parked.waiting_for_time:
        timed = parked.waiting_for_time
        first, last = timed[0].not_before, timed[-1].not_before
        until = f"until {first}" if first == last else f"until {first} (the last until {last})"
        them = "it" if len(timed) == 1 else "them"
        now = (f"; `sage retry {_id_args(timed)}` clears the wait now"
               if all(ticket.state is State.DEFERRED for ticket in timed) else "")
        lines.append(f"{_count(timed)} wait{'s' if len(timed) == 1 else ''} for {'its' if len(timed) == 1 else 'their'}"
                     f" `not_before` ({_ids(timed)}) {until}: a run after that starts {them}{now}")
    if parked.waiting_for_retry:
        retry = parked.waiting_for_retry
        lines.append(f"{_count(retry)} {'is' if len(retry) == 1 else 'are'} DEFERRED until you retry "
                     f"{'it' if len(retry) == 1 else 'them'} ({_ids(retry)}): `sage show ID` says why; "
                     f"`sage retry {_id_args(retry)}` (or `sage retry --all-deferred`) puts "
                     f"{'it' if len(retry) == 1 else 'them'} back in the queue")
    return lines


def _count(tickets: tuple[Ticket, ...]) -> str:
    return f"{len(tickets)} ticket{'s' if len(tickets) != 1 else ''}"


def _ids(tickets: tuple[Ticket, ...]) -> str:
    shown = ", ".join(ticket.id for ticket in tickets[:SHOWN_IDS])
    return shown if len(tickets) <= SHOWN_IDS else f"{shown} and {len(tickets) - SHOWN_IDS} more"


def _id_args(tickets: tuple[Ticket, ...]) -> str:
    if len(tickets) <= SHOWN_IDS:
        return " ".join(ticket.id for ticket in tickets)
    return "--all-deferred"
