"""Agent sessions along chains (`--reuse-sessions`): a ticket whose only dependency landed
in this run by the same agent continues that session, in the same worktree slot when
it is free. A session is continued by one ticket at most (two would fork it)."""

from __future__ import annotations

from dataclasses import dataclass

from sage_stream.tickets.models import Ticket


@dataclass(frozen=True)
class Continuation:
    """A landed ticket's agent session that a dependent ticket may continue."""

    ticket: str
    title: str
    session_id: str
    slot: int  # the worktree slot (and so the working directory) the session ran in


class SessionBook:
    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self.landed: dict[str, Continuation] = {}  # by ticket id, landed in this run
        self.continued: dict[str, str] = {}  # session id -> the ticket that continues it

    def landed_with(self, ticket: Ticket, session_id: object, slot: int) -> None:
        if isinstance(session_id, str) and session_id:
            self.landed[ticket.id] = Continuation(ticket=ticket.id, title=ticket.title, session_id=session_id,
                                                  slot=slot)

    def for_ticket(self, ticket: Ticket) -> Continuation | None:
        """The session to continue: its only dependency's, landed in this run, not yet
        continued by another ticket."""
        if not self.enabled or len(ticket.dependencies) != 1:
            return None
        landed = self.landed.get(ticket.dependencies[0])
        if landed is None or self.continued.get(landed.session_id, ticket.id) != ticket.id:
            return None
        return landed

    def continue_with(self, continuation: Continuation, ticket_id: str) -> None:
        self.continued[continuation.session_id] = ticket_id


def continuation_note(continuation: Continuation) -> str:
    """Appended to the prompt of a ticket that continues its dependency's session."""
    title = " ".join(continuation.title.split())
    return (f"\n## Continuing from {continuation.ticket}\n\n"
            f"This session continues from ticket {continuation.ticket} (\"{title}\"), which you finished "
            "earlier in this run. It has landed: this worktree starts from it. Work on the ticket above now; "
            "what was asked for the earlier ticket no longer applies.\n")
