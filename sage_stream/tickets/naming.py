"""The names a ticket gives to what Sage makes for it in git: its branch and its commit trailer."""

from __future__ import annotations

from sage_stream.errors import SageError
from sage_stream.tickets.prose import is_safe_id

TRAILER = "Sage-Ticket"  # the trailer key of a landed commit: "Sage-Ticket: <ID>"
BRANCH_PREFIX = "sage/"  # every branch Sage makes: a ticket's work, kept attempts and slots


def ticket_branch(ticket_id: str) -> str:
    """The branch a ticket's work is done on: sage/<ID>."""
    if not is_safe_id(ticket_id):
        raise SageError(f"ticket id {ticket_id!r} cannot name a branch or a directory")
    return f"{BRANCH_PREFIX}{ticket_id}"
