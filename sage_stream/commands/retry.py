"""`sage retry ID...`: put DEFERRED tickets back in the queue."""

from __future__ import annotations

import click

from sage_stream.engine import ticket_state
from sage_stream.errors import EXIT_OK, SageError
from sage_stream.tickets.models import State
from sage_stream.tickets.store import IndexStore, resolve_index_path


@click.command("retry")
@click.argument("ticket_ids", nargs=-1, required=False)
@click.option("--all-deferred", is_flag=True, help="Retry every DEFERRED ticket.")
@click.option("--index", default=None, metavar="PATH", help="The ticket index (default: found upward from here).")
def command(ticket_ids: tuple[str, ...], all_deferred: bool, index: str | None) -> int:
    """Put DEFERRED tickets back to UNPROCESSED (their defer history is kept)."""
    store = IndexStore(resolve_index_path(index))
    tickets = store.load().index.by_id()
    if all_deferred:
        ticket_ids = tuple(tid for tid, t in tickets.items() if t.state is State.DEFERRED)
        if not ticket_ids:
            click.echo("no DEFERRED tickets")
            return EXIT_OK
    if not ticket_ids:
        raise SageError("name the tickets to retry (sage retry TKT-004), or pass --all-deferred")
    for ticket_id in ticket_ids:
        ticket = tickets.get(ticket_id)
        if ticket is None:
            raise SageError(f"{store.path}: no ticket {ticket_id}")
        if ticket.state is not State.DEFERRED:
            raise SageError(f"{store.path}: ticket {ticket_id} is {ticket.state}, not DEFERRED: nothing to retry")
    ticket_state.apply(store, {tid: ticket_state.retry() for tid in ticket_ids})
    for ticket_id in ticket_ids:
        click.echo(f"{ticket_id}: DEFERRED -> UNPROCESSED")
    return EXIT_OK
