"""The index store keeps files as they were: a save without a change gives the same bytes,
and an update changes only the fields it names."""

from __future__ import annotations

import gc
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sage_stream.errors import SageError
from sage_stream.tickets import store
from sage_stream.tickets.models import Ticket
from sage_stream.engine import ticket_state
from sage_stream.tickets.store import IndexLoadError, IndexStore, gc_paused, load_index, read_index

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
    store.save_unchanged()
    assert path.read_bytes() == original


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=list(LAYOUTS))
def test_a_string_that_looks_like_a_separator_does_not_change_the_layout(tmp_path: Path,
                                                                        layout: dict[str, Any]) -> None:
    data = rich_index()
    data["tickets"][1]["title"] = 'say "hi": now, {\n  "not": "a key"}'
    path = tmp_path / "index.json"
    original = write(path, data, layout)
    store = IndexStore(path)
    store.save_unchanged()
    assert path.read_bytes() == original


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=list(LAYOUTS))
def test_update_changes_only_the_named_fields(tmp_path: Path, layout: dict[str, Any]) -> None:
    path = tmp_path / "index.json"
    data = rich_index()
    write(path, data, layout)
    def change(item: dict[str, Any]) -> None:
        item["state"] = "IN_PROGRESS"
        del item["estimate"]
        item["x_new"] = [1]

    ticket_state.apply(IndexStore(path), {"AUTH-002": change})
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
        ticket_state.apply(IndexStore(path), {"AUTH-002": lambda item: item.update(state="DONE")})
    assert "AUTH-002" in str(raised.value) and "'state'" in str(raised.value)
    assert path.read_bytes() == original


def test_update_of_an_unknown_ticket_is_an_error_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "index.json"
    original = write(path, rich_index(), {"indent": 2})
    with pytest.raises(SageError, match="AUTH-404"):
        ticket_state.apply(IndexStore(path), {"AUTH-404": lambda item: item.update(state="COMPLETED")})
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
    store.save_unchanged()
    assert path.read_bytes() == original
    ticket_state.apply(store, {"TKT-000": lambda item: item.update(state="IN_PROGRESS")})
    expected = json.loads(json.dumps(data))
    expected["tickets"][0]["state"] = "IN_PROGRESS"
    assert json.loads(path.read_text(encoding="utf-8")) == expected
    assert path.read_bytes() == write(tmp_path / "expected.json", expected, layout)


# ---------------------------------------------------------------- read_index: the read-only fast path

CORPUS = Path(__file__).resolve().parent.parent / "corpus"


def load_either(reader: Callable[[Path], Any], path: Path) -> tuple[str, Any]:
    """What a reader makes of a file, comparable between readers: the models in full
    (repr tells 1 from 1.0 and True from 1, and shows key order), or the load error."""
    try:
        return "models", repr(reader(path).index.model_dump())
    except IndexLoadError as error:
        return "error", (error.message, [finding.as_json() for finding in error.findings])


def assert_same_reading(path: Path) -> None:
    assert load_either(read_index, path) == load_either(load_index, path)


@pytest.mark.parametrize("name", sorted(entry.name for entry in CORPUS.iterdir()
                                         if entry.name != "expected.json"))
def test_read_index_reads_every_corpus_file_as_load_index_does(name: str) -> None:
    assert_same_reading(CORPUS / name)


TICKET = '{"id": "A-1", "title": "%s", "state": "UNPROCESSED"%s}'


@pytest.mark.parametrize("text", [
    '\ufeff{"tickets": [%s]}' % (TICKET % ("bom", "")),  # a byte order mark is fine
    '{"tickets": [%s]}' % (TICKET % ("NaN handling", "")),  # the word, not the literal
    '{"tickets": [%s]}' % (TICKET % ("x", ', "x_v": NaN')),  # json.loads refuses NaN
    '{"tickets": [%s]}' % (TICKET % ("x", ', "x_v": -Infinity')),
    '{"tickets": [%s]}' % (TICKET % ("x", ', "estimate": 1e400')),  # infinity, as json.loads reads it
    '{"tickets": [%s]}' % (TICKET % ("x", ', "attempts": 1' + "0" * 400)),
    '{"tickets": [%s]}' % (TICKET % ("\\ud800 lone surrogate", "")),  # json.loads takes it
    '{"tickets": [%s]}' % (TICKET % ("x", ', "title": "second", "x_v": 1, "x_v": [2]')),  # repeated keys
    '{"tickets": [], "tickets": [%s]}' % (TICKET % ("x", "")),
    '{"tickets": [%s]}' % (TICKET % ("tab\there", "")),  # a raw control character
    '{"tickets": [%s]} trailing' % (TICKET % ("x", "")),
    '{"tickets": [%s], "version": 1}' % (TICKET % ("x", "")),
    '{"version": "1.0"}',
    '[]',
    '',
])
def test_read_index_agrees_with_load_index_on_the_edges_of_json(tmp_path: Path, text: str) -> None:
    path = tmp_path / "index.json"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    assert_same_reading(path)


def test_read_index_agrees_on_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "index.json"
    path.write_bytes(('{"tickets": [%s]}' % (TICKET % ("x", ""))).encode().replace(b'"x"', b'"\xff"'))
    kind, (message, _) = load_either(read_index, path)
    assert (kind, "not valid UTF-8" in message) == ("error", True)
    assert_same_reading(path)


FIELD_VALUES = st.sampled_from([
    None, True, False, 0, 1, -1, 2.5, 1e300, "", " ", "x", "1", "2.5", "true", "P1", "COMPLETED",
    "UNPROCESSED", "2026-01-31T12:00:00Z", [], ["A-1"], [1], ["x", "x"], {}, {"command": "pytest"},
    {"sha": "abc", "x": [1]}, [{"id": "T1"}], [{"command": "make"}],
])
TICKET_FIELDS = [name for name in Ticket.model_fields] + ["x_unknown", "checkpoint_id"]


@st.composite
def tickets_of_any_shape(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Tickets with any JSON value in any field: valid, coercible (\"2\" for a number) or wrong."""
    tickets = []
    for number in range(draw(st.integers(min_value=1, max_value=3))):
        ticket: dict[str, Any] = {"id": f"A-{number}", "title": "t", "state": "UNPROCESSED"}
        for name in draw(st.lists(st.sampled_from(TICKET_FIELDS), max_size=5, unique=True)):
            ticket[name] = draw(FIELD_VALUES)
        tickets.append(ticket)
    return tickets


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tickets=tickets_of_any_shape(),
       top=st.dictionaries(st.sampled_from(["version", "x_top"]), FIELD_VALUES))
def test_read_index_gives_the_same_models_or_the_same_errors_as_load_index(
    tmp_path: Path, tickets: list[dict[str, Any]], top: dict[str, Any]
) -> None:
    path = tmp_path / "index.json"
    path.write_text(json.dumps({**top, "tickets": tickets}), encoding="utf-8")
    assert_same_reading(path)


def test_read_index_keeps_no_raw_json(tmp_path: Path) -> None:
    path = tmp_path / "index.json"
    write(path, rich_index(), {"indent": 2})
    view = read_index(path)
    assert not hasattr(view, "raw")
    assert view.tickets[0].model_extra == {"x_custom": rich_index()["tickets"][0]["x_custom"]}
    assert view.tickets_dir == tmp_path


# ---------------------------------------------------------------- the garbage collector


def test_one_gc_pause_helper_for_every_module() -> None:
    from sage_stream.graph import dependency_graph
    from sage_stream.validation import checks

    assert dependency_graph.gc_paused is checks.gc_paused is gc_paused


def test_loading_pauses_the_collector_and_restores_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "index.json"
    write(path, rich_index(), {"indent": 2})
    seen = []
    original = store._validate_json

    def spy(data: bytes) -> Any:
        seen.append(gc.isenabled())
        return original(data)

    monkeypatch.setattr(store, "_validate_json", spy)
    assert gc.isenabled()
    read_index(path)
    load_index(path)
    assert seen == [False] and gc.isenabled()


def test_gc_paused_restores_the_collector_even_on_error() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        assert not gc.isenabled()
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_gc_paused_leaves_a_collector_paused_by_the_caller_paused() -> None:
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(
    tickets=st.lists(st.dictionaries(st.text(max_size=6), json_values, max_size=4) | json_values, max_size=6),
    before=st.dictionaries(st.text(max_size=5).filter(lambda key: key != "tickets"), json_values, max_size=2),
    indent=st.sampled_from([0, 1, 2, 4, "\t"]),
    ensure_ascii=st.booleans(),
    separators=st.sampled_from([None, (", ", ": "), (",", ":")]),
)
def test_indented_writes_are_byte_for_byte_what_json_dumps_gives(tickets, before, indent, ensure_ascii, separators):
    """A rewrite reuses the encoding of tickets it wrote before; the text must not change."""
    from sage_stream.tickets.store import JsonLayout

    document = {**before, "tickets": tickets, "after": [1, {"tickets": []}]}
    layout = JsonLayout(indent=indent, separators=separators, ensure_ascii=ensure_ascii)
    expected = json.dumps(document, indent=indent, separators=separators, ensure_ascii=ensure_ascii) + "\n"
    assert layout.dumps(document) == expected
    assert layout.dumps(document) == expected  # the second time from the cache


# ---------------------------------------------------------------- what a bad index is told


@pytest.mark.parametrize("reader", [load_index, read_index])
@pytest.mark.parametrize("text", ['{"version": "1.0"}', "{}", '{"version": "1.0", "ticket": []}'])
def test_an_index_without_a_tickets_list_is_an_error(tmp_path: Path, reader, text: str) -> None:
    path = tmp_path / "index.json"
    path.write_text(text)
    with pytest.raises(IndexLoadError) as raised:
        reader(path)
    (finding,) = raised.value.findings
    assert finding.code == "invalid_schema" and finding.field == "tickets"
    assert 'no "tickets" list at the top level' in finding.message and str(path) in finding.message


@pytest.mark.parametrize(("value", "field"), [
    ("NaN", "estimate"),
    ("Infinity", "estimate"),
    ('{"verification_scripts": [{"command": "x", "timeout": -Infinity}]}',
     "validation_config.verification_scripts[0].timeout"),
])
def test_nan_or_infinity_names_the_line_the_ticket_and_the_field(tmp_path: Path, value: str, field: str) -> None:
    key = "validation_config" if field.startswith("validation_config") else "estimate"
    path = tmp_path / "index.json"
    path.write_text('{"version": "1.0", "tickets": [\n'
                    '  {"id": "A-1", "title": "NaN in a title is text", "state": "UNPROCESSED"},\n'
                    f'  {{"id": "A-2", "title": "t", "state": "UNPROCESSED", "{key}": {value}}}\n]}}\n')
    with pytest.raises(IndexLoadError) as raised:
        load_index(path)
    message = raised.value.findings[0].message
    assert f"line 3, ticket A-2, field '{field}': invalid JSON:" in message
