"""`sage ready`: what would start next, in order and why; what waits, and on what."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from operator import attrgetter
from typing import Any

import click

from sage_stream.errors import EXIT_OK
from sage_stream.graph.analysis import Analysis, BlockedTicket, analyze
from sage_stream.graph.dependency_graph import DependencyGraph, gc_paused, read_sound_index
from sage_stream.graph.ordering import is_retryable
from sage_stream.tickets.models import State, Ticket
from sage_stream.text import JsonRows, output_json
from sage_stream.tickets.store import IndexView, resolve_index_path

# Unicode categories that break a line or start an escape: Cc (C0, DEL, C1), Zl, Zp
_LINE_BREAKING = frozenset({"Cc", "Zl", "Zp"})
_TICKET_ID = attrgetter("ticket_id")


@click.command("ready")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option("--index", "index_path", type=click.Path(dir_okay=False), default=None,
              help="The ticket index (default: .sage/tickets/index.json here or above).")
def command(as_json: bool, index_path: str | None) -> int:
    """Show what would start next, in order, and why blocked tickets wait."""
    with gc_paused():  # short-lived and allocation-heavy on a big index: see gc_paused
        loaded, graph = read_sound_index(resolve_index_path(index_path))
        analysis = analyze(loaded.tickets, graph=graph)
        if as_json:
            output = output_json(ready_json(loaded, graph, analysis), entries=len(graph.nodes.ids))
        else:
            output = ready_text(graph, analysis)
    click.echo(output)
    return EXIT_OK



def ready_reason(ticket: Ticket, bottom_level: float) -> str:
    """"P1, 7.0 min of work waits on it" (+ why it is retried, for a DEFERRED ticket)."""
    priority = ticket.priority or "no priority"
    reason = f"{priority}, {bottom_level:.1f} min of work waits on it"
    if is_retryable(ticket) and ticket.defer_reason is not None:
        why = ticket.defer_reason.category or ticket.defer_reason.message or "deferred"
        reason += f"; a retry after {why}"
    return reason


def one_line(text: str | None) -> str:
    """Ticket text for a terminal: control characters (newlines, escape sequences) become spaces."""
    text = text or ""
    if text.isprintable():  # no Cc, Zl or Zp character: the usual case, without a pass per character
        return text.strip()
    flat = "".join(" " if unicodedata.category(char) in _LINE_BREAKING else char for char in text)
    return flat.strip()


# ---------------------------------------------------------------- text


def ready_text(graph: DependencyGraph, analysis: Analysis) -> str:
    first = graph.first
    in_progress, deferred = _in_progress(graph), _deferred_for_good(graph)
    lines = [_summary(first, analysis, len(in_progress), len(deferred))]
    if analysis.ready:
        lines.append(f"\nReady to start ({len(analysis.ready)}), in this order:")
        width = len(str(len(analysis.ready)))
        for number, ticket_id in enumerate(analysis.ready, start=1):
            ticket = first[ticket_id]
            reason = ready_reason(ticket, analysis.bottom_level.get(ticket_id, ticket.estimate))
            lines.append(f"  {number:>{width}}. {ticket_id}  {one_line(ticket.title)}  ({reason})")
    if analysis.blocked:
        lines.append(f"\nBlocked ({len(analysis.blocked)}):")
        reason, title = BlockedReasons(), graph.nodes.titles
        position = graph.position
        lines += [f"  {b.ticket_id}  {one_line(title[position[b.ticket_id]])}  ({one_line(reason(b))})"
                  for b in analysis.blocked]
    if in_progress:
        lines.append(f"\nIn progress ({len(in_progress)}):")
        lines += [f"  {t.id}  {one_line(t.title)}" for t in in_progress]
    if deferred:
        lines.append(f"\nDeferred, waiting for `sage retry ID` ({len(deferred)}):")
        lines += [f"  {t.id}  {one_line(t.title)}  ({one_line(_defer_text(t))})" for t in deferred]
    return "\n".join(lines)


def blocked_reason(blocked: BlockedTicket) -> str:
    """`describe()`, led by its own dependencies when the root causes are further down."""
    roots = {cause.ticket_id for cause in blocked.root_causes}
    if not blocked.waiting_on or set(blocked.waiting_on) == roots:
        return blocked.describe()
    return f"waits on {', '.join(blocked.waiting_on)}; {blocked.describe()}"


class BlockedReasons:
    """`blocked_reason` for every blocked ticket of one analysis: tickets blocked by the same
    root causes (one shared RootCause per root) share one description, built once - at 100k
    tickets, 56,000 blocked tickets have a few hundred distinct ones."""

    def __init__(self) -> None:
        self._described: dict[tuple[tuple[str, ...], bool], str] = {}

    def __call__(self, blocked: BlockedTicket) -> str:
        root_ids = tuple(map(_TICKET_ID, blocked.root_causes))
        if blocked.ticket_id in root_ids:  # it waits for itself (its not_before): described on its own
            return blocked_reason(blocked)
        key = (root_ids, blocked.more_root_causes)
        described = self._described.get(key)
        if described is None:
            described = self._described[key] = blocked.describe()
        if not blocked.waiting_on or set(blocked.waiting_on) == set(root_ids):
            return described
        return f"waits on {', '.join(blocked.waiting_on)}; {described}"


def _in_progress(graph: DependencyGraph) -> list[Ticket]:
    """The IN_PROGRESS tickets, in index order."""
    states = graph.nodes.states
    if State.IN_PROGRESS not in states:  # the usual case: one pass in C
        return []
    return [ticket for ticket, state in zip(graph.nodes.tickets, states) if state is State.IN_PROGRESS]


def _deferred_for_good(graph: DependencyGraph) -> list[Ticket]:
    """The DEFERRED tickets waiting for `sage retry` (not retried by themselves), in index order."""
    states = graph.nodes.states
    if State.DEFERRED not in states:
        return []
    return [ticket for ticket, state in zip(graph.nodes.tickets, states)
            if state is State.DEFERRED and not is_retryable(ticket)]


def _summary(first: Mapping[str, Ticket], analysis: Analysis, in_progress: int, deferred: int) -> str:
    unfinished = len(analysis.bottom_level)
    if not unfinished:
        return f"Nothing left to do: all {len(first)} tickets are COMPLETED."
    parts = [f"{len(analysis.ready)} ready", f"{len(analysis.blocked)} blocked"]
    parts += [f"{in_progress} in progress"] if in_progress else []
    parts += [f"{deferred} deferred"] if deferred else []
    path = " -> ".join(analysis.critical_path)
    return (
        f"{unfinished} of {len(first)} tickets unfinished: {', '.join(parts)}.\n"
        f"Critical path, {analysis.critical_path_minutes:.1f} min: {path}"
    )


def _defer_text(ticket: Ticket) -> str:
    reason = ticket.defer_reason
    if reason is None:
        return "no reason recorded"
    if reason.category and reason.message:
        return f"{reason.category}: {reason.message}"
    return reason.message or reason.category or "no reason recorded"


# ---------------------------------------------------------------- json


def ready_json(loaded: IndexView, graph: DependencyGraph, analysis: Analysis) -> dict[str, Any]:
    """`sage ready --json`: the ready and the blocked tickets as rows of columns (`JsonRows`)."""
    return {
        "index": str(loaded.path),
        "ready": _ready_rows(graph, analysis),
        "blocked": _blocked_rows(graph, analysis.blocked),
        "in_progress": [{"id": t.id, "title": t.title} for t in _in_progress(graph)],
        "deferred": [
            {"id": t.id, "title": t.title,
             "category": t.defer_reason.category if t.defer_reason else None,
             "message": t.defer_reason.message if t.defer_reason else None}
            for t in _deferred_for_good(graph)
        ],
        "critical_path": analysis.critical_path,
        "critical_path_minutes": analysis.critical_path_minutes,
        "total_minutes": analysis.total_minutes,
    }


def _ready_rows(graph: DependencyGraph, analysis: Analysis) -> JsonRows:
    tickets = list(map(graph.first.__getitem__, analysis.ready))
    levels = [analysis.bottom_level.get(ticket.id, ticket.estimate) for ticket in tickets]
    return JsonRows({
        "id": analysis.ready, "title": [t.title for t in tickets], "state": [t.state.value for t in tickets],
        "priority": [t.priority for t in tickets], "estimate": [t.estimate for t in tickets],
        "bottom_level": levels, "reason": list(map(ready_reason, tickets, levels)),
    })


def _blocked_rows(graph: DependencyGraph, blocked: list[BlockedTicket]) -> JsonRows:
    reason, titles, position = BlockedReasons(), graph.nodes.titles, graph.position
    listed: dict[tuple[str, ...], list[dict[str, str]]] = {}  # one list per set of root causes, shared

    def root_causes(ticket: BlockedTicket) -> list[dict[str, str]]:
        key = tuple(map(_TICKET_ID, ticket.root_causes))
        causes = listed.get(key)
        if causes is None:
            causes = listed[key] = [{"id": cause.ticket_id, "state": cause.state, "reason": cause.reason}
                                    for cause in ticket.root_causes]
        return causes

    return JsonRows({
        "id": [b.ticket_id for b in blocked],
        "title": [titles[position[b.ticket_id]] for b in blocked],
        "waiting_on": [b.waiting_on for b in blocked],
        "root_causes": list(map(root_causes, blocked)),
        "more_root_causes": [b.more_root_causes for b in blocked],
        "reason": list(map(reason, blocked)),
    })
