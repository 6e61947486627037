"""`sage graph`: the dependency graph as mermaid, dot or json, critical path highlighted.

Edges point from a dependency to its dependent: the order work happens in. Ticket text
is data, never syntax: titles and ids are escaped for each format, so a title with
quotes, brackets, `#`, `<br>`, backslashes or newlines renders as text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from functools import cached_property
from itertools import chain, repeat
from operator import eq
from typing import Any

import click

from sage_stream.errors import EXIT_OK
from sage_stream.graph.analysis import analyze
from sage_stream.graph.dependency_graph import DependencyGraph, gc_paused, read_sound_index
from sage_stream.tickets.models import State, Ticket
from sage_stream.text import JsonRows, output_json
from sage_stream.tickets.store import resolve_index_path

FORMATS = ("mermaid", "dot", "json", "svg", "html")

# mermaid: one class per unfinished-or-done state; a critical node gets `critical` instead
MERMAID_CLASSES = {
    "completed": "fill:#d4edda,stroke:#2e7d32",
    "in_progress": "fill:#fff3cd,stroke:#b8860b",
    "deferred": "fill:#f8d7da,stroke:#c62828",
    "critical": "fill:#ffe0e0,stroke:#d00000,stroke-width:3px",
}
CRITICAL_STROKE = "stroke:#d00000,stroke-width:3px"
DOT_FILL = {
    State.COMPLETED: "#d4edda",
    State.IN_PROGRESS: "#fff3cd",
    State.DEFERRED: "#f8d7da",
    State.UNPROCESSED: "#ffffff",
}
DOT_CRITICAL = 'color="#d00000", penwidth=3'
# characters a mermaid quoted label shows as they are; any other becomes a #code; entity
_MERMAID_PLAIN = frozenset(" .,:-_/()[]{}!?'+=*@$%~^|")
# a label made only of those and of letters and digits (`\w` is str.isalnum() or "_")
_MERMAID_AS_IS = re.compile(r"[\w .,:\-/()\[\]{}!?'+=*@$%~^|]*")
# Unicode categories that break a line or start an escape: Cc (C0, DEL, C1), Zl, Zp
_LINE_BREAKING = frozenset({"Cc", "Zl", "Zp"})


class GraphView:
    """What every format draws: tickets in index order, edges, the critical path."""

    def __init__(self, tickets: Sequence[Ticket], graph: DependencyGraph | None = None) -> None:
        if graph is None:
            graph = DependencyGraph(tickets)
        analysis = analyze(tickets, graph=graph)
        self.graph = graph
        # the first ticket of each id, in index order
        self.tickets: list[Ticket] = list(graph.nodes.tickets)
        self.critical_path = analysis.critical_path
        self.critical_path_minutes = analysis.critical_path_minutes
        self.critical_nodes = set(self.critical_path)
        self.critical_edges = set(zip(self.critical_path, self.critical_path[1:]))

    @cached_property
    def edge_nodes(self) -> tuple[list[int], list[int]]:
        """(dependencies, dependents) of every edge as node numbers: by dependency in index
        order, each dependency's dependents in index order (the order networkx gave them in)."""
        after = self.graph.dependent_nodes
        return (list(chain.from_iterable(map(repeat, range(len(after)), map(len, after)))),
                list(chain.from_iterable(after)))

    @cached_property
    def edges(self) -> list[tuple[str, str]]:
        """Every edge as (dependency, dependent) ids, in the order of `edge_nodes`."""
        ids = self.graph.nodes.ids
        return list(zip(*(map(ids.__getitem__, ends) for ends in self.edge_nodes)))


@click.command("graph")
@click.option("--format", "output_format", type=click.Choice(FORMATS), default="mermaid",
              show_default=True, help="Output format.")
@click.option("--index", "index_path", type=click.Path(dir_okay=False), default=None,
              help="The ticket index (default: .sage/tickets/index.json here or above).")
def command(output_format: str, index_path: str | None) -> int:
    """Print the dependency graph (mermaid, dot, json, svg or a self-contained html page)."""
    render: Callable[[GraphView], str] = {"mermaid": mermaid, "dot": dot, "json": as_json, "svg": svg,
                                          "html": html_page}[output_format]
    with gc_paused():  # short-lived and allocation-heavy on a big index: see gc_paused
        loaded, graph = read_sound_index(resolve_index_path(index_path))
        output = render(GraphView(loaded.tickets, graph))
    click.echo(output)
    return EXIT_OK



# ---------------------------------------------------------------- svg and html (sage report's renderer)


def _drawn(view: GraphView) -> tuple[list[tuple[str, str, str]], dict[str, list[str]]]:
    nodes = [(ticket.id, ticket.title, ticket.state.value.lower()) for ticket in view.tickets]
    deps: dict[str, list[str]] = {}
    for dependency, dependent in view.edges:
        deps.setdefault(dependent, []).append(dependency)
    return nodes, deps


def svg(view: GraphView) -> str:
    from sage_stream.report.svg import graph_svg  # imported only for these two formats
    nodes, deps = _drawn(view)
    return graph_svg(nodes, deps, view.critical_path, standalone=True)


def html_page(view: GraphView) -> str:
    from sage_stream.report.html import graph_html
    nodes, deps = _drawn(view)
    return graph_html(nodes, deps, view.critical_path, title="sage graph: the backlog")


# ---------------------------------------------------------------- mermaid


def mermaid(view: GraphView) -> str:
    # node ids are n0, n1...: a ticket id such as "end" or "A-B" is not a safe mermaid id
    node_of = {ticket.id: f"n{number}" for number, ticket in enumerate(view.tickets)}
    lines = ["flowchart TD"]
    for ticket in view.tickets:
        label = f"{mermaid_text(ticket.id)}: {mermaid_text(ticket.title)}<br/>{ticket.state.value}"
        lines.append(f'    {node_of[ticket.id]}["{label}"]')
    lines += [f"    {node_of[before]} --> {node_of[after]}" for before, after in view.edges]
    lines += [f"    classDef {name} {style};" for name, style in MERMAID_CLASSES.items()]
    by_class: dict[str, list[str]] = {}
    for ticket in view.tickets:
        name = "critical" if ticket.id in view.critical_nodes else _state_class(ticket.state)
        if name:
            by_class.setdefault(name, []).append(node_of[ticket.id])
    lines += [f"    class {','.join(nodes)} {name};" for name, nodes in by_class.items()]
    critical_links = [str(number) for number, edge in enumerate(view.edges) if edge in view.critical_edges]
    if critical_links:
        lines.append(f"    linkStyle {','.join(critical_links)} {CRITICAL_STROKE};")
    return "\n".join(lines)


def mermaid_text(text: str) -> str:
    """Text for a quoted mermaid label: letters, digits and harmless punctuation stay;
    everything else (quotes, #, <, >, &, `, ;, newlines...) becomes a `#code;` entity."""
    if _MERMAID_AS_IS.fullmatch(text):  # the usual case, without a pass per character
        return text
    return "".join(
        char if char.isalnum() or char in _MERMAID_PLAIN else f"#{ord(char)};"
        for char in _one_line(text)
    )


def _state_class(state: State) -> str | None:
    return None if state is State.UNPROCESSED else state.value.lower()


# ---------------------------------------------------------------- dot


def dot(view: GraphView) -> str:
    lines = ["digraph dependencies {", "  node [shape=box, style=\"rounded,filled\"];"]
    for ticket in view.tickets:
        label = f"{dot_text(ticket.id)}\\n{dot_text(ticket.title)}\\n{ticket.state.value}"
        attributes = f'label="{label}", fillcolor="{DOT_FILL[ticket.state]}"'
        if ticket.id in view.critical_nodes:
            attributes += f", {DOT_CRITICAL}"
        lines.append(f'  "{dot_text(ticket.id)}" [{attributes}];')
    for before, after in view.edges:
        style = f" [{DOT_CRITICAL}]" if (before, after) in view.critical_edges else ""
        lines.append(f'  "{dot_text(before)}" -> "{dot_text(after)}"{style};')
    lines.append("}")
    return "\n".join(lines)


def dot_text(text: str) -> str:
    """Text inside a DOT double-quoted string. A backslash is doubled, or graphviz would
    read `\\n`, `\\l`, `\\N`... in a title as its own escapes; a quote is escaped; `&`
    becomes `&amp;`, as graphviz decodes entities such as `&amp;` in labels."""
    return _one_line(text).replace("&", "&amp;").replace("\\", "\\\\").replace('"', '\\"')


# ---------------------------------------------------------------- json


def as_json(view: GraphView) -> str:
    return output_json(graph_json(view), entries=len(view.tickets) + len(view.edge_nodes[0]))


def graph_json(view: GraphView) -> dict[str, Any]:
    """Every node, every edge, the critical path and its length (`sage graph --format json`),
    the nodes and edges as columns, from the graph's."""
    nodes, position = view.graph.nodes, view.graph.position
    path = list(map(position.__getitem__, view.critical_path))
    critical, following = set(path), dict(zip(path, path[1:]))
    dependencies, dependents = view.edge_nodes
    return {
        "nodes": JsonRows({
            "id": nodes.ids, "title": nodes.titles, "state": nodes.states,  # str enums: written as their values
            "priority": nodes.priorities, "estimate": nodes.estimates,
            "critical": list(map(critical.__contains__, range(len(nodes.ids)))),
        }),
        "edges": JsonRows({
            "from": list(map(nodes.ids.__getitem__, dependencies)), "to": list(map(nodes.ids.__getitem__, dependents)),
            "critical": list(map(eq, map(following.get, dependencies), dependents)),
        }),
        "critical_path": view.critical_path,
        "critical_path_minutes": view.critical_path_minutes,
    }


def _one_line(text: str | None) -> str:
    """Control characters, newlines included, become spaces: a label is one line."""
    if text and text.isprintable():  # no Cc, Zl or Zp character: nothing to replace
        return text
    return "".join(" " if unicodedata.category(char) in _LINE_BREAKING else char for char in text or "")
