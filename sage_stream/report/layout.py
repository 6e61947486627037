"""The dependency graph laid out by sage itself: no Graphviz at view time.

Layers left to right (a ticket sits one layer after its deepest dependency), each layer
ordered by the mean position of its dependencies (one barycentre pass, which untangles
most edges), and a layer taller than `max_rows` wraps into several columns so a wide
backlog stays a page you can scroll rather than one very tall column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Placed:
    column: int
    row: int


def layer_of(nodes: Sequence[str], deps: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """0 for a ticket without dependencies among `nodes`, else 1 + its deepest one's layer
    (iterative; an edge that would close a cycle is ignored)."""
    known = set(nodes)
    layer: dict[str, int] = {}
    for first in nodes:
        if first in layer:
            continue
        stack, visiting = [(first, iter(deps.get(first, ())))], {first}
        while stack:
            node, pending = stack[-1]
            later = next((dep for dep in pending if dep in known and dep not in layer and dep not in visiting), None)
            if later is not None:
                visiting.add(later)
                stack.append((later, iter(deps.get(later, ()))))
                continue
            layer[node] = 1 + max((layer[dep] for dep in deps.get(node, ()) if dep in layer), default=-1)
            visiting.discard(node)
            stack.pop()
    return layer


def layered_layout(nodes: Sequence[str], deps: Mapping[str, Sequence[str]], *,
                   max_rows: int = 40) -> dict[str, Placed]:
    """Column and row of every node: layers in order, each wrapped at `max_rows`."""
    layer = layer_of(nodes, deps)
    layers: dict[int, list[str]] = {}
    for node in nodes:  # input order breaks ties: the index order
        layers.setdefault(layer[node], []).append(node)
    placed: dict[str, Placed] = {}
    position: dict[str, float] = {}
    column = 0
    for number in sorted(layers):
        members = layers[number]

        def barycentre(node: str) -> float:
            before = [position[dep] for dep in deps.get(node, ()) if dep in position]
            return sum(before) / len(before) if before else -1.0

        members.sort(key=barycentre)
        for index, node in enumerate(members):
            placed[node] = Placed(column + index // max_rows, index % max_rows)
            position[node] = index % max_rows + (index // max_rows) * 0.01
        column += (len(members) - 1) // max_rows + 1
    return placed
