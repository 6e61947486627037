"""The index store keeps files as they were: a save without a change gives the same bytes,
and an update changes only the fields it names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sage_stream.errors import SageError
from sage_stream.tickets.store import REMOVE, IndexLoadError, IndexStore, load_index

LAYOUTS = {
    "indent 2": {"indent": 2},
    "indent 4": {"indent": 4},
    "compact": {"separators": (",", ":")},
    "one line": {},
    "indent 2, non-ASCII escaped": {"indent": 2, "ensure_ascii": True},  # python's json.dump default
}


def rich_index() -> dict[str, Any]:
    """Unknown keys at every level, in an order no sorting would give."""
    return {
        "version": "1.0",
        "zz_generated": "2026-01-01T00:00:00Z",
        "migration_mode": True,
        "tickets": [
            {
                "title": "Log in",
                "id": "AUTH-001",
                "state": "COMPLETED",
                "priority": "P0",
                "x_custom": {"nested": [1, 2.5, None, {"deep": "é ✓"}], "empty": {}},
                "docs": {"spec": "docs/spec.md", "x_doc_extra": ["a", "b"]},
                "git": {"branch": "b", "commits": ["abc"], "last_commit": {"sha": "abc", "x_sig": "..."}},
                "tasks": [{"id": "T1", "description": "d", "x_task": 0}],
                "defer_reason": None,
                "validation_config": {"verification_scripts": [{"command": "pytest", "x_v": False}]},
                "dependencies": [],
            },
            {"id": "AUTH-002", "title": "Log out", "state": "UNPROCESSED", "dependencies": ["AUTH-001"],
             "estimate": 2.5, "blocks": [], "unknown_list": [[], [[]]], "big": 12345678901234567890},
        ],
        "created": "2026-01-01T00:00:00Z",
    }


def write(path: Path, data: Any, layout: dict[str, Any], *, newline: bool = True) -> bytes:
    text = json.dumps(data, **{"ensure_ascii": False, **layout}) + ("\n" if newline else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path.read_bytes()


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=list(LAYOUTS))
@pytest.mark.parametrize("newline", [True, False])
def test_save_unchanged_gives_the_same_bytes(tmp_path: Path, layout: dict[str, Any], newline: bool) -> None:
    path = tmp_path / "index.json"
    original = write(path, rich_index(), layout, newline=newline)
    store = IndexStore(path)
    store.save_unchanged(store.load())
    assert path.read_bytes() == original


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=list(LAYOUTS))
def test_a_string_that_looks_like_a_separator_does_not_change_the_layout(tmp_path: Path,
                                                                        layout: dict[str, Any]) -> None:
    data = rich_index()
    data["tickets"][1]["title"] = 'say "hi": now, {\n  "not": "a key"}'
    path = tmp_path / "index.json"
    original = write(path, data, layout)
    store = IndexStore(path)
    store.save_unchanged(store.load())
    assert path.read_bytes() == original


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=list(LAYOUTS))
def test_update_changes_only_the_named_fields(tmp_path: Path, layout: dict[str, Any]) -> None:
    path = tmp_path / "index.json"
    data = rich_index()
    write(path, data, layout)
    IndexStore(path).update({"AUTH-002": {"state": "IN_PROGRESS", "estimate": REMOVE, "x_new": [1]}})
    after = json.loads(path.read_text(encoding="utf-8"))
    expected = rich_index()
    ticket = expected["tickets"][1]
    ticket["state"] = "IN_PROGRESS"  # in place: keeps its position
    del ticket["estimate"]
    ticket["x_new"] = [1]  # new keys go last
    assert after == expected
    assert list(after["tickets"][1]) == list(ticket)
    assert list(after) == list(expected)
    assert path.read_bytes() == write(tmp_path / "expected.json", expected, layout)


def test_update_with_an_invalid_value_leaves_the_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "index.json"
    original = write(path, rich_index(), {"indent": 2})
    with pytest.raises(IndexLoadError) as raised:
        IndexStore(path).update({"AUTH-002": {"state": "DONE"}})
    assert "AUTH-002" in str(raised.value) and "'state'" in str(raised.value)
    assert path.read_bytes() == original


def test_update_of_an_unknown_ticket_is_an_error_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "index.json"
    original = write(path, rich_index(), {"indent": 2})
    with pytest.raises(SageError, match="AUTH-404"):
        IndexStore(path).update({"AUTH-404": {"state": "COMPLETED"}})
    assert path.read_bytes() == original


def test_the_models_keep_unknown_keys_too(tmp_path: Path) -> None:
    path = tmp_path / "index.json"
    write(path, rich_index(), {"indent": 2})
    loaded = load_index(path)
    first = loaded.tickets[0]
    assert first.model_extra == {"x_custom": rich_index()["tickets"][0]["x_custom"]}
    assert first.docs is not None and first.docs.model_extra == {"x_doc_extra": ["a", "b"]}
    assert loaded.index.model_extra == {"zz_generated": "2026-01-01T00:00:00Z", "migration_mode": True,
                                        "created": "2026-01-01T00:00:00Z"}


# ---------------------------------------------------------------- property: any unknown keys survive

tricky_strings = st.sampled_from(['": ', '", "', '{\n  "key": 1}', "\\", '"', "é ✓", "\u2028", ""])
json_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                | st.text() | tricky_strings)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
unknown_keys = st.dictionaries(st.text(max_size=10).map(lambda key: "x_" + key), json_values, max_size=4)


@st.composite
def indexes_with_unknown_keys(draw: st.DrawFn) -> dict[str, Any]:
    tickets = []
    for number in range(draw(st.integers(min_value=1, max_value=3))):
        ticket: dict[str, Any] = {"id": f"TKT-{number:03d}", "title": draw(st.text(min_size=1, max_size=20)),
                                  "state": draw(st.sampled_from(["UNPROCESSED", "COMPLETED", "DEFERRED"]))}
        ticket.update(draw(unknown_keys))
        ticket["docs"] = {"spec": "docs/x.md", **draw(unknown_keys)}
        ticket["git"] = {"branch": "b", "last_commit": {"sha": "abc", **draw(unknown_keys)}, **draw(unknown_keys)}
        ticket["tasks"] = [{"id": "T1", **draw(unknown_keys)}]
        ticket["defer_reason"] = {"category": "timeout", **draw(unknown_keys)}
        tickets.append(ticket)
    return {"version": "1.0", **draw(unknown_keys), "tickets": tickets, **draw(unknown_keys)}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=indexes_with_unknown_keys(), layout=st.sampled_from(list(LAYOUTS.values())))
def test_unknown_keys_at_every_level_survive_save_and_update(tmp_path: Path, data: dict[str, Any],
                                                             layout: dict[str, Any]) -> None:
    path = tmp_path / "index.json"
    original = write(path, data, layout)
    store = IndexStore(path)
    store.save_unchanged(store.load())
    assert path.read_bytes() == original
    store.update({"TKT-000": {"state": "IN_PROGRESS"}})
    expected = json.loads(json.dumps(data))
    expected["tickets"][0]["state"] = "IN_PROGRESS"
    assert json.loads(path.read_text(encoding="utf-8")) == expected
    assert path.read_bytes() == write(tmp_path / "expected.json", expected, layout)
