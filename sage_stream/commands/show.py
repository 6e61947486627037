"""`sage show ID [--json] [--index PATH]`: one ticket in full.

Every key of the ticket as written, its dependencies' states, the tickets that wait
for it, why it was deferred, and its `<ID>.md` prose.
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

import click

from sage_stream.commands.tickets import one_line
from sage_stream.errors import SageError
from sage_stream.tickets.models import Ticket
from sage_stream.tickets.prose import prose_path, read_prose
from sage_stream.tickets.store import LoadedIndex, load_index, resolve_index_path
from sage_stream.validation.checks import gc_paused

MISSING = "MISSING"  # the state shown for a dependency that is not in the index
SHOWN_APART = ("id", "title", "dependencies", "defer_reason")
_PROSE_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # keeps \t and \n


@click.command("show")
@click.argument("ticket_id")
@click.option("--json", "as_json", is_flag=True, help="Print the ticket as JSON.")
@click.option("--index", "index_path", type=click.Path(), default=None,
              help="The ticket index (default: .sage/tickets/index.json here or above).")
def command(ticket_id: str, as_json: bool, index_path: str | None) -> int:
    """Show one ticket in full, with its prose and its dependencies' states."""
    with gc_paused():  # 100k tickets: 0.5 s instead of 3.5 s (see validation/checks.py)
        loaded = load_index(resolve_index_path(index_path))
    details = ticket_details(loaded, ticket_id)
    click.echo(json.dumps(details, indent=2, ensure_ascii=False) if as_json else render(details))
    return 0


def find_ticket(loaded: LoadedIndex, ticket_id: str) -> tuple[Ticket, dict[str, Any]]:
    """The first ticket with this id and its raw JSON object, or a SageError with a suggestion."""
    raw_tickets = loaded.raw.get("tickets", [])
    for ticket, raw in zip(loaded.tickets, raw_tickets):
        if ticket.id == ticket_id:
            return ticket, raw
    ids = [ticket.id for ticket in loaded.tickets]
    by_upper = {known.upper(): known for known in ids}
    close = by_upper.get(ticket_id.upper())
    if close is None:
        matches = difflib.get_close_matches(ticket_id, ids, n=1, cutoff=0.6)
        close = matches[0] if matches else None
    hint = f"; did you mean {close}?" if close else ""
    raise SageError(f"{loaded.path}: no ticket {one_line(ticket_id)!r} in the index{hint}")


def ticket_details(loaded: LoadedIndex, ticket_id: str) -> dict[str, Any]:
    ticket, raw = find_ticket(loaded, ticket_id)
    by_id = loaded.index.by_id()
    path = prose_path(loaded.tickets_dir, ticket.id)
    prose = read_prose(loaded.tickets_dir, ticket.id)
    return {
        "index": str(loaded.path),
        "ticket": raw,
        "dependencies": [
            {"id": dep, "state": by_id[dep].state.value if dep in by_id else MISSING}
            for dep in ticket.dependencies
        ],
        "dependents": [other.id for other in by_id.values() if ticket.id in other.dependencies],
        "defer_reason": raw.get("defer_reason"),
        "prose_path": str(path) if prose is not None else None,
        "prose": prose,
    }


def render(details: dict[str, Any]) -> str:
    raw = details["ticket"]
    lines = [f"{one_line(raw.get('id'))}: {one_line(raw.get('title'))}"]
    others = [key for key in raw if key not in SHOWN_APART]
    width = max((len(one_line(key)) for key in others), default=0)
    lines += [f"  {one_line(key):<{width}}  {_value(raw[key])}" for key in others]
    if details["dependencies"]:
        lines.append("dependencies:")
        for dep in details["dependencies"]:
            missing = "  (not in the index)" if dep["state"] == MISSING else ""
            lines.append(f"  {one_line(dep['id'])}  {dep['state']}{missing}")
    else:
        lines.append("dependencies: none")
    if details["dependents"]:
        lines.append(f"waiting for it: {', '.join(one_line(dep) for dep in details['dependents'])}")
    if details["defer_reason"] is not None:
        lines += _defer_lines(details["defer_reason"])
    if details["prose"] is not None:
        lines += ["", f"--- {details['prose_path']} ---", _PROSE_CONTROL.sub("", details["prose"]).rstrip()]
    return "\n".join(lines)


def _defer_lines(reason: Any) -> list[str]:
    if not isinstance(reason, dict):
        return [f"deferred: {_value(reason)}"]
    head = f"deferred: {one_line(reason.get('category') or 'no category')}"
    if reason.get("message"):
        head += f": {one_line(reason['message'])}"
    lines = [head]
    for key, value in reason.items():
        if key not in ("category", "message"):
            lines.append(f"  {one_line(key)}: {_value(value)}")
    return lines


def _value(value: Any) -> str:
    if isinstance(value, str):
        return one_line(value)
    return one_line(json.dumps(value, ensure_ascii=False))
