"""The ticket fields as columns (graph/columns.py): read once, the same whichever way."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sage_stream.graph.columns import Columns
from sage_stream.tickets.models import Ticket
from sage_stream.tickets.store import read_index


def write(tmp_path: Path, tickets: list[dict[str, Any]]) -> Path:
    path = tmp_path / "index.json"
    path.write_text(json.dumps({"version": "1.0", "tickets": tickets}), encoding="utf-8")
    return path


def as_lists(columns: Columns) -> list[list[Any]]:
    return [list(column) for column in columns[1:]]


PLAIN = [
    {"id": "A-1", "title": "one", "state": "COMPLETED", "priority": "P1", "estimate": 3},
    {"id": "A-2", "title": "two", "state": "UNPROCESSED", "dependencies": ["A-1"]},
]
EVERY_FIELD = [
    *PLAIN,
    {"id": "A-3", "title": "three", "state": "DEFERRED", "type": "bugfix", "validation_type": "generic",
     "tasks": [{"id": "t1", "description": "d"}], "docs": {"spec": "docs/a.md"}, "files": ["src/*.py"],
     "parent": "A-1", "children": ["A-2"], "checkpoint_id": "abc123", "components": [{"x": 1}]},
]


@pytest.mark.parametrize("tickets", [PLAIN, EVERY_FIELD], ids=["few fields", "every field"])
def test_columns_of_validated_models_are_those_read_field_by_field(
    tmp_path: Path, tickets: list[dict[str, Any]],
) -> None:
    models = read_index(write(tmp_path, tickets)).tickets
    fast, plain = Columns.of(models, as_validated=True), Columns.of(models)
    assert as_lists(fast) == as_lists(plain)
    assert fast.tickets is models
    assert as_lists(plain)[0] == [ticket.id for ticket in models]
    assert list(plain.extras) == [ticket.model_extra for ticket in models]
    assert list(plain.dependencies) == [ticket.dependencies for ticket in models]


def test_a_field_no_ticket_was_given_holds_its_default(tmp_path: Path) -> None:
    columns = Columns.of(read_index(write(tmp_path, PLAIN)).tickets, as_validated=True)
    assert list(columns.files) == [[], []] and list(columns.docs) == [None, None]
    assert list(columns.children) == [[], []] and list(columns.parents) == [None, None]
    assert list(columns.extras) == [{}, {}] and list(columns.tasks) == [[], []]
    assert list(columns.estimates) == [3.0, 1.0]


def test_columns_of_no_ticket_and_of_chosen_positions() -> None:
    assert as_lists(Columns.of([])) == [[]] * (len(Columns._fields) - 1)
    tickets = [Ticket(id=f"A-{n}", title=f"t{n}", state="UNPROCESSED") for n in range(4)]
    chosen = Columns.of(tickets).at([3, 1])
    assert list(chosen.tickets) == [tickets[3], tickets[1]] and list(chosen.ids) == ["A-3", "A-1"]
    assert list(Columns.of(tickets).unfinished()) == [1, 2, 3, 4]
