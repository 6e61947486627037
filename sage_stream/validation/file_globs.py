"""`files` globs that name nothing in the repository: a warning (a typo keeps a ticket from
landing anything, as every change it makes is then out of scope).

A ticket that creates a file may name it before it exists, so this is a warning, never an
error. Matched with the landing's own rule (engine/scope.py) against `git ls-files`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sage_stream.engine.scope import matches
from sage_stream.findings import Finding, Severity
from sage_stream.tickets.models import State, Ticket
from sage_stream.validation.prerequisites import GitContext, tracked_files


def unmatched_glob_findings(tickets: Sequence[Ticket], context: GitContext | None, file: str) -> Iterator[Finding]:
    scoped = [(position, ticket) for position, ticket in enumerate(tickets, start=1)
              if ticket.files and ticket.state is not State.COMPLETED]
    if not scoped or context is None:
        return
    paths = tracked_files(context)
    if paths is None:
        return
    known: dict[str, bool] = {}
    for position, ticket in scoped:
        for index, glob in enumerate(ticket.files):
            if glob not in known:
                known[glob] = any(matches(path, glob) for path in paths)
            if not known[glob]:
                label = ticket.id if ticket.id.strip() and ticket.id.isprintable() else f"#{position}"
                yield Finding(
                    Severity.WARNING, "files_match_nothing",
                    f"{file}: ticket {label}, field 'files[{index}]': {glob!r} matches no file in the repository"
                    " (fine if the ticket creates it; else a typo, and every change of the ticket is out of scope)",
                    file=file, ticket=label, field=f"files[{index}]", expected="a glob matching a tracked file",
                    found=glob)
