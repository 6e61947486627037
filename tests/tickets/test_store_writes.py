"""A run's index writes re-encode only the tickets they change, and never write over a
file that someone else changed since: the store trusts what it last wrote only while the
file on disk is still that file."""

from __future__ import annotations

import codecs
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sage_stream.engine import ticket_state
from sage_stream.tickets import store
from sage_stream.tickets.store import IndexLoadError, IndexStore, JsonLayout

LAYOUTS = [{"indent": 2}, {"indent": 4, "ensure_ascii": True}, {"separators": (",", ":")}, {}, {"indent": "\t"}]


def index_of(count: int) -> dict[str, Any]:
    return {"version": "1.0", "x_top": {"tickets": "not a list"}, "tickets": [
        {"id": f"T-{number:03d}", "title": f"Ticket é {number}", "state": "UNPROCESSED", "x_extra": [number, None],
         "dependencies": [f"T-{number - 1:03d}"] if number else []}
        for number in range(count)], "after": True}


def write(path: Path, data: dict[str, Any], layout: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, **{"ensure_ascii": False, **layout}) + "\n", encoding="utf-8")


def expected_bytes(data: dict[str, Any], layout: dict[str, Any]) -> bytes:
    return (json.dumps(data, **{"ensure_ascii": False, **layout}) + "\n").encode("utf-8")


def set_title(title: str):
    return lambda item: item.update(title=title)


@pytest.fixture
def full_reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every time the store reads the whole file."""
    reads: list[Path] = []
    real = store._read_file

    def counting(path: Path):
        reads.append(path)
        return real(path)

    monkeypatch.setattr(store, "_read_file", counting)
    return reads


@pytest.mark.parametrize("layout", LAYOUTS, ids=[str(layout) for layout in LAYOUTS])
def test_writes_after_the_first_read_nothing_and_give_what_a_full_write_gives(
        tmp_path: Path, layout: dict[str, Any], full_reads: list[Path]) -> None:
    path = tmp_path / "index.json"
    data = index_of(5)
    write(path, data, layout)
    index_store = IndexStore(path)
    for number, ticket_id in enumerate(["T-001", "T-003", "T-001", "T-004"]):
        by_id = ticket_state.apply(index_store, {ticket_id: set_title(f"new {number}"),
                                                 "T-000": lambda item: item.update(state="IN_PROGRESS")})
        next(item for item in data["tickets"] if item["id"] == ticket_id)["title"] = f"new {number}"
        data["tickets"][0]["state"] = "IN_PROGRESS"
        assert path.read_bytes() == expected_bytes(data, layout)
        assert by_id[ticket_id].title == f"new {number}"
        assert by_id["T-000"].state.value == "IN_PROGRESS"
    assert len(full_reads) == 1  # the first write only


def test_a_hand_edit_in_place_with_the_same_size_and_mtime_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "index.json"
    data = index_of(3)
    write(path, data, {"indent": 2})
    index_store = IndexStore(path)
    ticket_state.apply(index_store, {"T-000": set_title("by sage 1")})
    before = os.stat(path)
    text = path.read_text(encoding="utf-8")
    hand = text.replace('"Ticket é 2"', '"Ticket XYZ2"')  # é is two bytes: the same size
    assert len(hand.encode()) == len(text.encode())
    with open(path, "r+b") as handle:  # in place: same inode
        handle.write(hand.encode("utf-8"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # even the mtime put back
    ticket_state.apply(index_store, {"T-001": set_title("by sage 2")})
    after = json.loads(path.read_text(encoding="utf-8"))
    assert [item["title"] for item in after["tickets"]] == ["by sage 1", "by sage 2", "Ticket XYZ2"]


def test_a_hand_edit_between_writes_is_read_and_checked_again(tmp_path: Path) -> None:
    path = tmp_path / "index.json"
    write(path, index_of(3), {"indent": 2})
    index_store = IndexStore(path)
    ticket_state.apply(index_store, {"T-000": set_title("by sage")})
    edited = json.loads(path.read_text(encoding="utf-8"))
    edited["tickets"][2]["state"] = "DONE"  # an invalid hand edit of another ticket
    write(path, edited, {"indent": 2})
    original = path.read_bytes()
    with pytest.raises(IndexLoadError, match="T-002"):
        ticket_state.apply(index_store, {"T-001": set_title("by sage again")})
    assert path.read_bytes() == original


def test_a_bad_edit_or_a_missing_ticket_writes_nothing_and_the_next_write_is_right(tmp_path: Path) -> None:
    path = tmp_path / "index.json"
    data = index_of(3)
    write(path, data, {"indent": 2})
    index_store = IndexStore(path)
    ticket_state.apply(index_store, {"T-000": set_title("one")})
    original = path.read_bytes()
    with pytest.raises(IndexLoadError, match="T-001.*'state'"):
        ticket_state.apply(index_store, {"T-001": lambda item: item.update(state="DONE")})
    with pytest.raises(store.SageError, match="T-404"):
        ticket_state.apply(index_store, {"T-404": set_title("x"), "T-002": set_title("two")})
    assert path.read_bytes() == original
    ticket_state.apply(index_store, {"T-002": set_title("two")})
    data["tickets"][0]["title"], data["tickets"][2]["title"] = "one", "two"
    assert path.read_bytes() == expected_bytes(data, {"indent": 2})


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layout=st.sampled_from(LAYOUTS),
       steps=st.lists(st.tuples(st.sampled_from(["sage", "sage", "hand-rename", "hand-in-place"]),
                                st.integers(0, 3), st.text(max_size=6)), min_size=1, max_size=8))
def test_any_mix_of_writes_and_hand_edits_keeps_every_change(tmp_path: Path, layout: dict[str, Any],
                                                             steps: list[tuple[str, int, str]]) -> None:
    path = tmp_path / "index.json"
    data = index_of(4)
    write(path, data, layout)
    index_store = IndexStore(path)
    for who, position, title in steps:
        data["tickets"][position]["title"] = title
        if who == "sage":
            ticket_state.apply(index_store, {f"T-{position:03d}": set_title(title)})
        elif who == "hand-rename":
            write(path.with_name("new.json"), data, layout)
            os.replace(path.with_name("new.json"), path)
        else:
            before = os.stat(path)
            with open(path, "wb") as handle:
                handle.write(expected_bytes(data, layout))
            os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert json.loads(path.read_text(encoding="utf-8")) == data
    assert path.read_bytes() == expected_bytes(data, layout)


@settings(max_examples=100, deadline=None)
@given(tickets=st.lists(st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3),
                        max_size=5),
       separators=st.sampled_from([None, (", ", ": "), (",", ":")]), ensure_ascii=st.booleans())
def test_one_line_writes_are_byte_for_byte_what_json_dumps_gives(tickets, separators, ensure_ascii) -> None:
    document = {"a": 1, "tickets": tickets, "after": [{"tickets": []}] if tickets else []}
    layout = JsonLayout(indent=None, separators=separators, ensure_ascii=ensure_ascii)
    assert layout.dumps(document) == json.dumps(document, separators=separators, ensure_ascii=ensure_ascii) + "\n"


def test_a_run_reads_the_file_once_while_nothing_changes_it(tmp_path: Path, full_reads: list[Path]) -> None:
    """Start-up asks for the index several times (validation, recovery, the plan): one read;
    and a file Sage wrote needs no second read for the first write either."""
    path = tmp_path / "index.json"
    data = index_of(4)
    write(path, data, {"indent": 2})
    index_store = IndexStore(path)
    first = index_store.load()
    assert index_store.load() is first
    ticket_state.apply(index_store, {"T-001": set_title("changed")})
    assert len(full_reads) == 1
    data["tickets"][1]["title"] = "changed"
    assert path.read_bytes() == expected_bytes(data, {"indent": 2})
    again = index_store.load()  # after a write: the file as it is now
    assert again is not first and again.index.by_id()["T-001"].title == "changed"


@pytest.mark.parametrize("mark", [b"", codecs.BOM_UTF8], ids=["plain", "byte-order-mark"])
@pytest.mark.parametrize("layout", LAYOUTS, ids=[str(layout) for layout in LAYOUTS])
def test_the_writes_after_a_load_splice_the_file_as_read_byte_for_byte(
        tmp_path: Path, layout: dict[str, Any], mark: bytes, full_reads: list[Path]) -> None:
    """The first write after a load keeps the file's own bytes (the load found each ticket
    in its text): non-ASCII titles, and a byte order mark in front, which once shifted
    every splice by three bytes and broke the file."""
    path = tmp_path / "index.json"
    data = index_of(6)
    path.write_bytes(mark + expected_bytes(data, layout))
    index_store = IndexStore(path)
    index_store.load()
    for number, ticket_id in enumerate(["T-004", "T-001", "T-005", "T-000"]):
        ticket_state.apply(index_store, {ticket_id: set_title(f"é {number} ü" * number)})
        next(item for item in data["tickets"] if item["id"] == ticket_id)["title"] = f"é {number} ü" * number
        assert path.read_bytes() == mark + expected_bytes(data, layout)
    assert len(full_reads) == 1  # the load's


def test_a_load_sees_a_hand_edit_made_since_the_last_one(tmp_path: Path) -> None:
    path = tmp_path / "index.json"
    data = index_of(2)
    write(path, data, {"indent": 2})
    index_store = IndexStore(path)
    assert index_store.load().index.by_id()["T-000"].title == "Ticket é 0"
    data["tickets"][0]["title"] = "Ticket é 9"  # the same size
    before = os.stat(path)
    path.write_bytes(expected_bytes(data, {"indent": 2}))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert index_store.load().index.by_id()["T-000"].title == "Ticket é 9"
    ticket_state.apply(index_store, {"T-001": set_title("sage")})
    assert [t["title"] for t in json.loads(path.read_text(encoding="utf-8"))["tickets"]] == ["Ticket é 9", "sage"]


def test_a_ticket_sage_does_not_change_keeps_its_text_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "index.json"
    text = ('{\n  "version": "1.0",\n  "tickets": [\n    {"id": "T-000",   "title": "kept as typed", '
            '"state": "UNPROCESSED"},\n    {\n      "id": "T-001",\n      "title": "x",\n'
            '      "state": "UNPROCESSED"\n    }\n  ]\n}\n')
    path.write_text(text, encoding="utf-8")
    ticket_state.apply(IndexStore(path), {"T-001": set_title("y")})
    assert path.read_text(encoding="utf-8") == text.replace('"title": "x"', '"title": "y"')


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.text('{}[]",:\\ aé\n', max_size=6),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text('"tickets', max_size=7),
                                                                                       inner, max_size=3),
                           max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(before=st.dictionaries(st.text("ab\"", max_size=3), JSON_VALUES, max_size=2),
       after=st.dictionaries(st.text("cd", max_size=3), JSON_VALUES, max_size=2),
       tickets=st.lists(JSON_VALUES, min_size=1, max_size=5), layout=st.sampled_from(LAYOUTS))
def test_each_ticket_is_found_where_it_stands_and_the_frame_around_them_is_the_rest(
        before, after, tickets, layout) -> None:
    from sage_stream.tickets.index_text import TicketsFrame, ticket_bounds

    document = {**{key: value for key, value in before.items() if key != "tickets"}, "tickets": tickets,
                **{key: value for key, value in after.items() if key not in before}}
    text = json.dumps(document, **{"ensure_ascii": False, **layout}) + "\n"
    bounds = ticket_bounds(text)
    assert [json.loads(text[start:end]) for start, end in zip(bounds[0::2], bounds[1::2])] == tickets
    frame = TicketsFrame.of(document, JsonLayout.of(text))
    if frame is not None:  # (None: a `"tickets": []` elsewhere in the document; written whole)
        assert frame.surrounds(text, bounds)
        assert not frame.surrounds(text + " ", bounds) and not frame.surrounds(" " + text, bounds)
        moved = [bound + 1 for bound in bounds]
        assert not frame.surrounds(" " + text[:-1], moved)  # the spans alone do not make the text


@settings(max_examples=300, deadline=None)
@given(before=st.dictionaries(st.text("ab\"", max_size=3), JSON_VALUES, max_size=2),
       after=st.dictionaries(st.text("cd", max_size=3), JSON_VALUES, max_size=2),
       tickets=st.lists(st.dictionaries(st.text('"tickets', max_size=7), JSON_VALUES, max_size=3),
                        min_size=1, max_size=5),
       layout=st.sampled_from([layout for layout in LAYOUTS if "indent" in layout]))
def test_in_an_indented_file_the_layout_finds_each_ticket_where_decoding_finds_it(
        before, after, tickets, layout) -> None:
    from sage_stream.tickets.index_text import laid_out_ticket_bounds, ticket_bounds

    document = {**{key: value for key, value in before.items() if key != "tickets"}, "tickets": tickets,
                **{key: value for key, value in after.items() if key not in before}}
    text = json.dumps(document, **{"ensure_ascii": False, **layout}) + "\n"
    assert laid_out_ticket_bounds(text, JsonLayout.of(text)) == ticket_bounds(text)


def test_a_file_laid_out_to_mislead_the_layout_is_read_in_full_not_spliced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Laid out by hand so that the layout's guess passes every check of the text around the
    tickets: a value nested in T-A (an exact copy of T-B) stands where a ticket would, and
    T-B, T-C and T-D share one line. Editing T-B must change T-B, not the copy."""
    from sage_stream.tickets import index_text

    def ticket(name: str) -> str:
        return f'{{"id": "T-{name}", "title": "{name}", "state": "UNPROCESSED"}}'

    text = ('{\n  "version": "1.0",\n  "tickets": [\n'
            f'    {{"id": "T-A", "title": "A", "state": "UNPROCESSED", "notes": [{{"x": 1}},\n'
            f'    {ticket("B")},\n'
            f'    {{"y": 2}}]}},\n'
            f'    {ticket("B")}, {ticket("C")}, {ticket("D")}\n  ]\n}}\n')
    path = tmp_path / "index.json"
    path.write_text(text, encoding="utf-8")
    guessed = index_text.laid_out_ticket_bounds(text, JsonLayout.of(text))
    assert guessed is not None and len(guessed) == 2 * 4  # four spans for four tickets: a wrong guess
    assert guessed != index_text.ticket_bounds(text)
    index_store = IndexStore(path)
    index_store.load()
    ticket_state.apply(index_store, {"T-B": set_title("changed")})
    written = json.loads(path.read_text(encoding="utf-8"))
    assert [item["title"] for item in written["tickets"]] == ["A", "changed", "C", "D"]
    assert written["tickets"][0]["notes"][1] == json.loads(ticket("B"))  # the copy is as it was
    ticket_state.apply(index_store, {"T-D": set_title("also")})  # and the writes after it are right
    assert [item["title"] for item in json.loads(path.read_text(encoding="utf-8"))["tickets"]] == \
        ["A", "changed", "C", "also"]


def test_the_first_write_after_a_load_finds_the_tickets_of_a_sage_file_without_decoding_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoding every ticket to find where it ends took 0.3-0.4 s at 100,000 tickets."""
    decoded: list[str] = []
    real = store.ticket_bounds
    monkeypatch.setattr(store, "ticket_bounds", lambda text: decoded.append(text) or real(text))
    path = tmp_path / "index.json"
    data = index_of(5)
    write(path, data, {"indent": 2})
    index_store = IndexStore(path)
    index_store.load()
    ticket_state.apply(index_store, {"T-003": set_title("changed")})
    data["tickets"][3]["title"] = "changed"
    assert path.read_bytes() == expected_bytes(data, {"indent": 2})
    assert decoded == []


@given(st.lists(st.integers(0, 500), max_size=40),
       st.lists(st.tuples(st.integers(0, 39), st.integers(-200, 200)), max_size=30))
def test_span_offsets_are_the_sums_of_the_lengths_before(lengths: list[int], changes: list[tuple[int, int]]) -> None:
    from sage_stream.tickets.index_text import SpanOffsets

    offsets, lengths = SpanOffsets(lengths), list(lengths)
    for position, delta in changes:
        if position < len(lengths):
            offsets.change(position, delta)
            lengths[position] += delta
        assert [offsets.before(at) for at in range(len(lengths) + 1)] == \
            [sum(lengths[:at]) for at in range(len(lengths) + 1)]


@pytest.mark.parametrize("load_first", [False, True])
def test_with_a_duplicate_id_the_first_ticket_of_it_is_the_one_edited(tmp_path: Path, load_first: bool) -> None:
    """(`sage validate` reports the duplicate; the store, like `by_id`, takes the first.)"""
    path = tmp_path / "index.json"
    data = index_of(4)
    data["tickets"][3]["id"] = "T-001"
    write(path, data, {"indent": 2})
    index_store = IndexStore(path)
    if load_first:
        index_store.load()
    for title in ("one", "two"):
        by_id = ticket_state.apply(index_store, {"T-001": set_title(title)})
        data["tickets"][1]["title"] = title
        assert path.read_bytes() == expected_bytes(data, {"indent": 2})
        assert by_id["T-001"].title == title and list(by_id) == ["T-000", "T-001", "T-002"]
