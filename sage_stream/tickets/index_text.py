"""The index's text: its layout, each ticket's encoded span, and the index as last written.

`JsonLayout` says how a file was laid out so that a rewrite looks like the original.
`TicketsText` is that rewrite cut at the tickets: the text before the list, one span per
ticket, the text after - joined, byte for byte what `json.dumps` gives for the whole.
`WrittenIndex` keeps those spans (as bytes) for the file this process last wrote, so
that the next write re-encodes only the tickets it changes (`tickets.store` decides when
the file on disk is still that one).
"""

from __future__ import annotations

import codecs
import json
import mmap
import os
import re
import zlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import sub
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sage_stream.tickets.models import Ticket


@dataclass
class JsonLayout:
    """How the file was laid out, so that a rewrite looks like the original."""

    indent: int | str | None = 2
    separators: tuple[str, str] | None = None
    trailing_newline: bool = True
    ensure_ascii: bool = False  # True for files written as \u00e9 (python's json.dump default)

    @classmethod
    def of(cls, text: str) -> JsonLayout:
        match = re.match(r"[ \t\r]*[\[{][ \t\r]*\n([ \t]*)\S", text)
        if match:
            whitespace = match.group(1)
            indent: int | str | None = len(whitespace) if set(whitespace) <= {" "} else whitespace
            return cls(indent=indent, trailing_newline=text.endswith("\n"), ensure_ascii=_is_escaped(text))
        return cls(
            indent=None,
            separators=(",", ":") if _is_compact(text) else None,
            trailing_newline=text.endswith("\n"),
            ensure_ascii=_is_escaped(text),
        )

    def dumps(self, value: Any) -> str:
        cut = TicketsText.of(value, self)
        if cut is not None:
            return cut.joined()
        text = json.dumps(value, indent=self.indent, separators=self.separators, ensure_ascii=self.ensure_ascii)
        return text + "\n" if self.trailing_newline else text

    def _unit(self) -> str:
        return " " * self.indent if isinstance(self.indent, int) else str(self.indent or "")

    def encode_ticket(self, item: Any) -> str:
        """One ticket's span, as it stands inside the tickets list of the whole file."""
        if self.indent is None:
            return json.dumps(item, separators=self.separators, ensure_ascii=self.ensure_ascii)
        text = json.dumps(item, indent=self.indent, separators=self.separators, ensure_ascii=self.ensure_ascii)
        return text.replace("\n", "\n" + self._unit() * 2)


# Indented JSON is encoded by python code in the json module (only compact output has the
# C encoder): 40 ms for an index of 2,000 tickets. A ticket that did not change encodes as
# it did last time: each is looked up by its compact (C-encoded) text and only new ones are
# indented. (A run's own writes go through `WrittenIndex` and re-encode only what changed.)
_INDENTED: dict[tuple[Any, ...], str] = {}
_INDENTED_LIMIT = 50_000


@dataclass(frozen=True)
class TicketsFrame:
    """The text of a rewrite of the whole index around its tickets: before the first, between
    two, after the last."""

    prefix: str
    separator: str
    suffix: str

    @classmethod
    def of(cls, value: Any, layout: JsonLayout) -> TicketsFrame | None:
        """None when the document has no non-empty top-level tickets list (or one whose place
        cannot be told for sure)."""
        tickets = value.get("tickets") if isinstance(value, dict) else None
        if not isinstance(tickets, list) or not tickets:
            return None
        options: dict[str, Any] = {"indent": layout.indent, "separators": layout.separators,
                                   "ensure_ascii": layout.ensure_ascii}
        indented = layout.indent is not None
        unit = layout._unit()
        default_separators = (",", ": ") if indented else (", ", ": ")
        item_separator, key_separator = layout.separators or default_separators
        marker = (f"\n{unit}" if indented else "") + f"{json.dumps('tickets')}{key_separator}[]"
        head = json.dumps({**value, "tickets": []}, **options)
        if head.count(marker) != 1:  # `"tickets": []` also nested somewhere: do not guess
            return None
        before, after = head.split(marker, 1)
        inner = "\n" + unit * 2 if indented else ""
        closing = "\n" + unit if indented else ""
        newline = "\n" if layout.trailing_newline else ""
        return cls(prefix=before + marker[:-1] + inner, separator=item_separator + inner,
                   suffix=closing + "]" + after + newline)

    def surrounds(self, text: str, bounds: Sequence[int]) -> bool:
        """Whether `text` is this frame around the spans at `bounds` (start, end, start,
        end...: `ticket_bounds`), so that a rewrite with those spans kept is `text` itself."""
        if len(bounds) < 2 or bounds[0] != len(self.prefix) or not text.startswith(self.prefix):
            return False
        separator, width = self.separator, len(self.separator)
        starts, ends = iter(bounds[2::2]), iter(bounds[1:-1:2])
        for start, end in zip(starts, ends):
            if start - end != width or not text.startswith(separator, end):
                return False
        return len(text) - bounds[-1] == len(self.suffix) and text.endswith(self.suffix)


@dataclass
class TicketsText:
    """A rewrite of the whole index cut at its tickets: prefix + separator.join(spans) + suffix."""

    prefix: str
    separator: str
    suffix: str
    spans: list[str]

    @classmethod
    def of(cls, value: Any, layout: JsonLayout, kept: list[str | None] | None = None) -> TicketsText | None:
        """The cut, or None when the document has no non-empty top-level tickets list to cut
        at (or one whose place cannot be told for sure): then it is encoded whole. `kept`:
        spans to use as they are (the file's own text of tickets that did not change),
        None where a ticket must be encoded."""
        frame = TicketsFrame.of(value, layout)
        if frame is None:
            return None
        return cls(prefix=frame.prefix, separator=frame.separator, suffix=frame.suffix,
                   spans=_spans(value["tickets"], layout, kept))

    def joined(self) -> str:
        return self.prefix + self.separator.join(self.spans) + self.suffix


def _spans(tickets: list[Any], layout: JsonLayout, kept: list[str | None] | None) -> list[str]:
    if kept is not None and len(kept) == len(tickets):
        return [span if span is not None else layout.encode_ticket(item) for item, span in zip(tickets, kept)]
    if layout.indent is None:  # the C encoder: fast enough without a cache
        return [layout.encode_ticket(item) for item in tickets]
    if len(_INDENTED) > _INDENTED_LIMIT:
        _INDENTED.clear()
    compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=layout.ensure_ascii).encode
    spans = []
    for item in tickets:
        key = (layout.indent, layout.separators, layout.ensure_ascii, compact(item))
        text = _INDENTED.get(key)
        if text is None:
            text = _INDENTED[key] = layout.encode_ticket(item)
        spans.append(text)
    return spans


_WHITESPACE = re.compile(r"[ \t\n\r]*")


def ticket_spans(text: str) -> list[str] | None:
    """The file's own text of each ticket of its top-level "tickets" list, in order; None
    when the file is not an object with exactly one such list."""
    bounds = ticket_bounds(text)
    if bounds is None:
        return None
    return [text[start:end] for start, end in zip(bounds[0::2], bounds[1::2])]


def ticket_bounds(text: str) -> array[int] | None:
    """Where each ticket of the file's top-level "tickets" list starts and ends in `text`
    (start, end, start, end...), in order; None when the file is not an object with exactly
    one such list (it was parsed before: this only finds where each ticket stands, as a
    rewrite keeps an unchanged ticket's text). Numbers, not slices: 100,000 spans of text
    were 25 MB, and the memory they left behind stayed with the process."""
    decoder = json.JSONDecoder()
    skip = _WHITESPACE.match
    bounds: array[int] | None = None
    try:
        at = skip(text, 0).end()
        if not text.startswith("{", at):
            return None
        at = skip(text, at + 1).end()
        while text.startswith('"', at):
            key, at = json.decoder.scanstring(text, at + 1)
            at = skip(text, at).end()
            if not text.startswith(":", at):
                return None
            at = skip(text, at + 1).end()
            if key == "tickets":
                if bounds is not None or not text.startswith("[", at):
                    return None
                bounds, at = _list_item_bounds(text, at, decoder)
            else:
                _, at = decoder.raw_decode(text, at)
            at = skip(text, at).end()
            if text.startswith("}", at):
                return bounds if skip(text, at + 1).end() == len(text) else None
            if not text.startswith(",", at):
                return None
            at = skip(text, at + 1).end()
    except (ValueError, RecursionError):
        return None
    return None


def laid_out_ticket_bounds(text: str, layout: JsonLayout) -> array[int] | None:
    """`ticket_bounds` of an indented file, found from where its layout puts them - a
    guess, not a parse, to be checked: `TicketsFrame.surrounds` for the text around the
    tickets, `WrittenIndex.raw_ticket` for each span edited. None for a file not indented
    (a compact separator can stand anywhere) or when the guess finds no tickets list.

    In an indented file every line break is the layout's (a JSON string holds none), and
    two tickets of the list meet at `},` + a line break + two indents + `{`: one search
    of the text (55-80 ms at 100,000 tickets, where `ticket_bounds`, which decodes every
    ticket to find its end, took 300-400 ms)."""
    if layout.indent is None:
        return None
    unit = layout._unit()
    item_separator, key_separator = layout.separators or (",", ": ")
    opening = f"\n{unit}{json.dumps('tickets')}{key_separator}[\n{unit * 2}{{"
    head = text.find(opening)
    if head < 0:
        return None
    first = head + len(opening) - 1
    last = text.find(f"}}\n{unit}]", first) + 1  # the first list closed at the top level
    if last <= 0:
        return None
    meeting = re.compile(re.escape(f"}}{item_separator}\n{unit * 2}{{"))
    bounds = array("q", [first])
    for found in meeting.finditer(text, first, last):
        bounds.append(found.start() + 1)  # the end of one ticket, the start of the next
        bounds.append(found.end() - 1)
    bounds.append(last)
    return bounds


def _list_item_bounds(text: str, at: int, decoder: json.JSONDecoder) -> tuple[array[int], int]:
    """Where each item of the list that starts at `at` starts and ends, and where the list ends."""
    skip = _WHITESPACE.match
    bounds = array("q")
    at = skip(text, at + 1).end()
    if text.startswith("]", at):
        return bounds, at + 1
    while True:
        _, end = decoder.raw_decode(text, at)
        bounds.append(at)
        bounds.append(end)
        at = skip(text, end).end()
        if text.startswith("]", at):
            return bounds, at + 1
        if not text.startswith(",", at):
            raise ValueError("not a list")
        at = skip(text, at + 1).end()


def _is_escaped(text: str) -> bool:
    """An all-ASCII file with \\u escapes was written with non-ASCII characters escaped."""
    return text.isascii() and "\\u" in text


def _is_compact(text: str) -> bool:
    """Whether the first key of the top-level object is followed by ':' without a space.

    The key is scanned as a JSON string, so that a `": ` inside some string value later in
    the file cannot make a compact file look spaced (and be rewritten differently).
    """
    start = text.find("{")
    quote = text.find('"', start + 1) if start >= 0 else -1
    if quote < 0 or text[start + 1:quote].strip():
        return False
    try:
        _, end = json.decoder.scanstring(text, quote + 1)
    except ValueError:
        return False
    return text.startswith(":", end) and not text.startswith(": ", end)


# ---------------------------------------------------------------- the index as last written

FileIdentity = tuple[int, int, int, int, int]


def file_identity(path: Path) -> FileIdentity | None:
    """Device, inode, size, mtime and ctime (ns), or None when the file cannot be looked at.

    A rename onto the path gives a new inode, a write in place moves mtime and ctime (and
    ctime cannot be set back: `touch -d` sets mtime only). Not enough alone: timestamps
    move in clock ticks of a few milliseconds, so a same-size write in place within the
    tick of sage's own write looks the same - hence the bytes as well (`file_holds`;
    `content_checksum` for a file loaded, not written)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def content_checksum(path: Path) -> int | None:
    """CRC-32 of the file's bytes, read through a memory map (7 ms for 20 MB, a third of
    reading them into memory), or None when the file cannot be read."""
    try:
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size == 0:
                return zlib.crc32(b"")
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                return zlib.crc32(mapped)
    except (OSError, ValueError):
        return None


def file_holds(path: Path, data: bytes | bytearray) -> bool:
    """Whether the file's bytes are `data`, compared through a memory map (1.6 ms for 20 MB:
    no copy of the file in this process; a CRC-32 of the file and one of `data` took 14 ms,
    reading the file into new memory 4-16 ms); False when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size != len(data) or size == 0:
                return size == len(data)
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                return data.startswith(mapped)  # equal lengths: a memcmp of the two
    except (OSError, ValueError):
        return False


class SpanOffsets:
    """Where each span starts, counted from the first, kept right as spans change length:
    a Fenwick tree of their lengths, so a lookup or a change touches about 17 entries at
    100,000 tickets. Summing the lengths instead took 10-14 ms per write in a run (the
    100,000 spans lie all over a big process's memory: a cache miss each)."""

    def __init__(self, lengths: Sequence[int]) -> None:
        tree = array("q", [0])
        tree.extend(lengths)
        for index in range(1, len(tree)):
            parent = index + (index & -index)
            if parent < len(tree):
                tree[parent] += tree[index]
        self._tree = tree

    def before(self, position: int) -> int:
        """The total length of the spans before `position`."""
        total, index = 0, position
        while index > 0:
            total += self._tree[index]
            index -= index & -index
        return total

    def change(self, position: int, delta: int) -> None:
        """The span at `position` became `delta` bytes longer (or shorter)."""
        index = position + 1
        while index < len(self._tree):
            self._tree[index] += delta
            index += index & -index


@dataclass
class WrittenIndex:
    """The index file as this process last wrote it: its bytes, the length of each ticket's
    span in them (in file order) with its model, and where each id is (the first ticket of
    an id, as `by_id`). The bytes are spliced in place for the next write (`splice`): no new
    20 MB object per write at 100,000 tickets, whose fresh memory cost 11 ms to fill; and no
    object per span (a span is read out of the bytes when its ticket is edited)."""

    identity: FileIdentity
    data: bytearray  # the file's bytes as written: the next write compares the file with them
    layout: JsonLayout
    first: int  # where the first span starts in `data` (after a byte order mark and the text before it)
    separator: int  # the length of the text between two spans, in bytes
    lengths: array[int]  # each span's length in bytes
    tickets: list[Ticket]
    by_id: dict[str, Ticket]
    positions: dict[str, int] = field(default_factory=dict)
    offsets: SpanOffsets = field(default_factory=lambda: SpanOffsets([]))

    @classmethod
    def of(cls, cut: TicketsText, raw_tickets: list[Any], tickets: list[Ticket], layout: JsonLayout,
           identity: FileIdentity, data: bytes | bytearray) -> WrittenIndex | None:
        """The file this process just wrote: `data`, the encoding of `cut`."""
        lengths = array("q", [len(span.encode("utf-8")) for span in cut.spans])
        ids = [item.get("id") if isinstance(item, dict) else None for item in raw_tickets]
        return cls._made(cut, lengths, ids, tickets, layout, identity, data)

    @classmethod
    def of_text(cls, frame: TicketsFrame, bounds: Sequence[int], text: str, tickets: list[Ticket],
                layout: JsonLayout, identity: FileIdentity, data: bytes | bytearray,
                by_id: dict[str, Ticket] | None = None) -> WrittenIndex | None:
        """A file as read: its bytes `data`, decoded as `text`, holding `frame` around the
        tickets at `bounds` (`TicketsFrame.surrounds`). `by_id`: a dict of the tickets'
        `by_id()` that this object may keep, when the caller has one (at 100,000 tickets,
        building it again took 40 ms and listing the ids 30 ms)."""
        starts, ends = bounds[0::2], bounds[1::2]
        if text.isascii():  # a character is a byte
            lengths = array("q", map(sub, ends, starts))
        else:
            lengths = array("q", [len(text[start:end].encode("utf-8")) for start, end in zip(starts, ends)])
        if by_id is not None and len(by_id) == len(tickets):  # each id once, in the tickets' order
            return cls._made(frame, lengths, list(by_id), tickets, layout, identity, data, by_id)
        return cls._made(frame, lengths, [ticket.id for ticket in tickets], tickets, layout, identity, data)

    @classmethod
    def _made(cls, frame: TicketsFrame | TicketsText, lengths: array[int], ids: list[Any],
              tickets: list[Ticket], layout: JsonLayout, identity: FileIdentity,
              data: bytes | bytearray, known_by_id: dict[str, Ticket] | None = None) -> WrittenIndex | None:
        """None when the spans, the frame and `data` do not add up (never splice by guess).
        `known_by_id`: `ids` with their tickets, when each id is a string found once."""
        mark = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
        first, separator = mark + len(frame.prefix.encode("utf-8")), len(frame.separator.encode("utf-8"))
        suffix = len(frame.suffix.encode("utf-8"))
        if not lengths or first + sum(lengths) + separator * (len(lengths) - 1) + suffix != len(data):
            return None
        positions: dict[str, int] = dict(zip(ids, range(len(ids))))  # the usual case: each id once
        by_id = known_by_id if known_by_id is not None else dict(zip(ids, tickets))
        if known_by_id is None and (len(positions) != len(ids)
                                    or not all(isinstance(ticket_id, str) for ticket_id in positions)):
            positions, by_id = {}, {}  # the first ticket of an id (validation reports the others)
            for position, (ticket_id, ticket) in enumerate(zip(ids, tickets)):
                if isinstance(ticket_id, str) and ticket_id not in positions:
                    positions[ticket_id] = position
                    by_id[ticket_id] = ticket
        return cls(identity=identity, data=data if isinstance(data, bytearray) else bytearray(data),
                   layout=layout, first=first, separator=separator, lengths=lengths, tickets=list(tickets),
                   by_id=by_id, positions=positions, offsets=SpanOffsets(lengths))

    def _start(self, position: int) -> int:
        return self.first + self.offsets.before(position) + position * self.separator

    def raw_ticket(self, position: int) -> dict[str, Any] | None:
        """A fresh copy of one ticket's JSON, to edit; None unless the span at `position` is
        one JSON object, written as this layout writes a ticket, that gives that ticket's
        model. Spans found from the layout are a guess until then (`laid_out_ticket_bounds`);
        on None the caller reads and writes the whole file instead."""
        start = self._start(position)
        span = self.data[start:start + self.lengths[position]]
        try:
            item = json.loads(span)
            if (isinstance(item, dict) and self.encode(item) == span
                    and Ticket.model_validate(item) == self.tickets[position]):
                return item
        except (ValueError, ValidationError):
            pass
        return None

    def encode(self, item: Any) -> bytes:
        return self.layout.encode_ticket(item).encode("utf-8")

    def splice(self, replaced: dict[int, bytes]) -> bytearray:
        """The whole file with the spans at `replaced`'s positions swapped in, made by
        changing `data` in place (then `take` what was written; a failed write leaves this
        object out of date: the store drops it and reads the file again)."""
        for position in sorted(replaced, reverse=True):  # from the end: earlier offsets stay right
            start = self._start(position)
            self.data[start:start + self.lengths[position]] = replaced[position]
        return self.data

    def is_on_disk(self, path: Path) -> bool:
        """Is the file at `path` still the one this was written as (checked under the index lock)?"""
        return file_identity(path) == self.identity and file_holds(path, self.data)

    def take(self, replaced: dict[int, tuple[bytes, Ticket]], identity: FileIdentity, data: bytearray) -> None:
        """What was just written (`data`, from `splice`): the new span lengths and models, and
        the file's new identity."""
        for position, (span, ticket) in replaced.items():
            self.offsets.change(position, len(span) - self.lengths[position])
            self.lengths[position] = len(span)
            self.tickets[position] = ticket
            self.by_id[ticket.id] = ticket
        self.identity = identity
        self.data = data
