"""Where the ticket index is found, read, and written: the one place that writes it.

Two ways to read. `load_index` keeps the raw JSON objects (key order and unknown keys
included) beside the typed models: writing applies field changes to those raw objects
under a lock and replaces the file atomically, so a save after a change alters only what
changed and a save without a change gives back the same JSON. `read_index` is for
readers that never write (`sage validate`): the models only, parsed straight from the
file's bytes (at 100,000 tickets: no 83 MB of raw dicts, a quarter less time). Both
give the same models and, for a bad file, the same findings.
"""

from __future__ import annotations

import codecs
import gc
import json
import os
import re
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import TypeAdapter, ValidationError

from sage_stream.errors import SageError
from sage_stream.findings import Finding, Severity
from sage_stream.paths import INDEX_RELATIVE
from sage_stream.tickets.index_text import (
    FileIdentity,
    JsonLayout,
    TicketsFrame,
    TicketsText,
    WrittenIndex,
    content_checksum,
    file_identity,
    laid_out_ticket_bounds,
    ticket_bounds,
    ticket_spans,
)
from sage_stream.tickets.models import Ticket, TicketIndex

LOCK_TIMEOUT_SECONDS = 60




class IndexLoadError(SageError):
    """The index cannot be used; `findings` holds every problem found, for `--json`."""

    def __init__(self, message: str, findings: list[Finding]) -> None:
        super().__init__(message)
        self.findings = findings


@dataclass
class IndexView:
    """The typed index, for reading only (`read_index`)."""

    path: Path
    index: TicketIndex
    _by_id: dict[str, Ticket] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def tickets(self) -> list[Ticket]:
        return self.index.tickets

    @property
    def tickets_dir(self) -> Path:
        return self.path.parent

    def by_id(self) -> dict[str, Ticket]:
        """`index.by_id()`, made once: the store hands out the same loaded index while the
        file is unchanged (a run's start-up asks five times: 70 ms each at 100,000 tickets).
        A new dict each time: callers may change theirs."""
        if self._by_id is None:
            self._by_id = self.index.by_id()
        return dict(self._by_id)


@dataclass
class LoadedIndex(IndexView):
    """The typed index with the raw JSON and its layout, as a writer needs them (`load_index`)."""

    raw: dict[str, Any]
    layout: JsonLayout


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for one allocation-heavy pass over the index.

    Loading and analysing 100,000 tickets creates millions of objects that all stay
    alive, and every full collection walks everything alive again: measured, collections
    were 3 of the 3.5 s of loading 100k tickets and 40% of `sage plan`. Nothing here
    makes cyclic garbage worth collecting early. The collector resumes afterwards, unless
    the caller had paused it already: nesting is free. The one helper for this
    (`graph.dependency_graph` and `validation.checks` re-export it).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# ---------------------------------------------------------------- locating


def find_index(start: Path | None = None) -> Path:
    """`.sage/tickets/index.json` in `start` or the nearest parent, up to the git root."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / INDEX_RELATIVE
        if candidate.exists():
            return candidate
        if (directory / ".git").exists():
            break
    raise SageError(
        f"no ticket index found: looked for {INDEX_RELATIVE} in {here} and its parents"
        " up to the git root. Run `sage init` to create one, or pass --index PATH."
    )


def resolve_index_path(option: str | Path | None) -> Path:
    return Path(option).resolve() if option else find_index()


# ---------------------------------------------------------------- reading


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class _LoadErrors:
    """The IndexLoadError of a file that cannot be read or parsed, naming the file."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def fail(self, message: str, code: str) -> IndexLoadError:
        full = f"{self.path}: {message}"
        return IndexLoadError(full, [Finding(Severity.ERROR, code, full, file=self.path)])


def read_raw(path: Path) -> tuple[dict[str, Any], JsonLayout]:
    """The file parsed as JSON, or an IndexLoadError naming the place that is wrong."""
    raw, layout, _ = read_raw_text(path)
    return raw, layout


def read_raw_text(path: Path) -> tuple[dict[str, Any], JsonLayout, str]:
    """`read_raw`, and the file's text."""
    raw, layout, text, _ = _read_file(path)
    return raw, layout, text


def _read_file(path: Path) -> tuple[dict[str, Any], JsonLayout, str, int]:
    """`read_raw_text`, and the CRC-32 of the bytes read."""
    errors = _LoadErrors(path)
    data = _read_bytes(path, errors)
    text = _decode(data, errors)
    return _parse(text, errors), JsonLayout.of(text), text, zlib.crc32(data)


def _read_bytes(path: Path, errors: _LoadErrors) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise errors.fail("no such file. Run `sage init` to create an empty index.", "index_missing")
    except IsADirectoryError:
        raise errors.fail("is a directory, expected the JSON ticket index file", "index_unreadable")
    except PermissionError:
        raise errors.fail("permission denied reading the ticket index", "index_unreadable")
    except OSError as error:
        raise errors.fail(f"cannot read: {error.strerror or error}", "index_unreadable")


def _decode(data: bytes, errors: _LoadErrors) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise errors.fail(
            f"line {line}: not valid UTF-8 (byte 0x{data[error.start]:02x} at offset {error.start})",
            "invalid_utf8",
        )


def _parse(text: str, errors: _LoadErrors) -> dict[str, Any]:
    if not text.strip():
        raise errors.fail("is empty, expected a JSON object with a \"tickets\" list", "invalid_json")
    try:
        raw = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise errors.fail(f"line {error.lineno}, column {error.colno}: invalid JSON: {error.msg}",
                          "invalid_json")
    except ValueError as error:  # NaN / Infinity
        raise errors.fail(f"{_where_constant(text)}invalid JSON: {error}", "invalid_json")
    except RecursionError:
        raise errors.fail("invalid JSON: nested too deeply to be a ticket index", "invalid_json")
    if not isinstance(raw, dict):
        raise errors.fail(
            f"expected a JSON object with a \"tickets\" list at the top level, found {_json_type(raw)}",
            "invalid_schema",
        )
    return raw


_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|(-?Infinity|NaN)')
_CONSTANT = object()  # what NaN / Infinity parse as while looking for where they are


def _where_constant(text: str) -> str:
    """`line 3, ticket A-1, field 'estimate': ` for the first NaN or Infinity (outside
    strings), as far as can be told; the line alone when the file is not an index."""
    token = next((match for match in _JSON_TOKEN.finditer(text) if match.group(1)), None)
    if token is None:
        return ""
    where = f"line {text.count(chr(10), 0, token.start()) + 1}, "
    try:
        raw = json.loads(text, parse_constant=lambda name: _CONSTANT)
    except (ValueError, RecursionError):
        return where
    tickets = raw.get("tickets") if isinstance(raw, dict) else None
    for position, item in enumerate(tickets if isinstance(tickets, list) else [], start=1):
        field = _path_to(item, _CONSTANT)
        if field is not None:
            label = item.get("id") if isinstance(item, dict) and isinstance(item.get("id"), str) else f"#{position}"
            return f"{where}ticket {label}, field '{field}': "
    return where


def _path_to(value: Any, target: object, prefix: str = "") -> str | None:
    """The dotted path (`validation_config.verification_scripts[0].timeout`) to `target`."""
    if value is target:
        return prefix
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, inner in items:
        name = f"{prefix}[{key}]" if isinstance(key, int) else f"{prefix}.{key}" if prefix else str(key)
        found = _path_to(inner, target, name)
        if found is not None:
            return found
    return None


_TICKETS_ADAPTER = TypeAdapter(list[Ticket])
_INDEX_ADAPTER = TypeAdapter(TicketIndex)

_LENIENT_LITERALS = (b"NaN", b"Infinity")
"""JSON has no NaN or Infinity: json.loads is told to refuse them, pydantic-core's parser
takes them. A file that holds either word anywhere (in a title, say) is read the slow way."""


def load_index(path: Path) -> LoadedIndex:
    """Read and type-check the index, keeping the raw JSON for writing it back; every
    schema problem is reported at once."""
    with gc_paused():
        raw, layout = read_raw(path)
        return LoadedIndex(path=path, raw=raw, index=_validate(raw, path), layout=layout)


def read_index(path: Path) -> IndexView:
    """The typed index for a reader that never writes: the same models as `load_index`,
    and the same IndexLoadError for a file that is not a valid index.

    A valid file is parsed and validated in one step from its bytes (pydantic-core,
    no intermediate dicts). Whatever that step rejects, or might take where json.loads
    would not, goes the way of `load_index`, which names the problem exactly.
    """
    with gc_paused():
        errors = _LoadErrors(path)
        data = _read_bytes(path, errors)
        index = _validate_json(data)
        if index is None:
            index = _validate(_parse(_decode(data, errors), errors), path)
        return IndexView(path=path, index=index)


def _validate_json(data: bytes) -> TicketIndex | None:
    """The models straight from the bytes, or None when the slow path must decide."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    if any(literal in data for literal in _LENIENT_LITERALS) or b'"tickets"' not in data:
        return None  # the slow path names the problem (a missing "tickets" would default to [])
    try:
        return _INDEX_ADAPTER.validate_json(data)
    except (ValidationError, RecursionError):
        return None


def _validate(raw: dict[str, Any], path: Path) -> TicketIndex:
    shown = str(path)
    if "tickets" not in raw:
        message = (f"{shown}: no \"tickets\" list at the top level (found "
                   f"{', '.join(map(repr, list(raw)[:5])) or 'an empty object'}): an index is "
                   "{\"version\": \"1.0\", \"tickets\": [...]}")
        raise IndexLoadError(message, [Finding(Severity.ERROR, "invalid_schema", message, file=shown,
                                               field="tickets", expected="list", found="nothing")])
    raw_tickets = raw["tickets"]
    if not isinstance(raw_tickets, list):
        message = f"{shown}: field 'tickets': expected a list of tickets, found {_json_type(raw_tickets)}"
        raise IndexLoadError(
            message,
            [Finding(Severity.ERROR, "invalid_schema", message, file=shown, field="tickets",
                     expected="list", found=_json_type(raw_tickets))],
        )
    findings: list[Finding] = []
    version = raw.get("version")
    if version is not None and not isinstance(version, str):
        findings.append(_schema_finding(shown, None, "version", "a string such as \"1.0\"", version))
    try:
        tickets = _TICKETS_ADAPTER.validate_python(raw_tickets)
    except ValidationError as error:
        tickets = []
        for problem in error.errors(include_url=False):
            findings.append(_finding_from_pydantic(shown, raw_tickets, problem))
    except RecursionError:
        findings.append(Finding(Severity.ERROR, "invalid_schema",
                                f"{shown}: tickets are nested too deeply to be read", file=shown))
    if findings:
        count = len(findings)
        lines = "\n".join(f"  {finding.message}" for finding in findings[:200])
        more = f"\n  ... and {count - 200} more" if count > 200 else ""
        raise IndexLoadError(
            f"{shown}: {count} schema error{'s' if count != 1 else ''}:\n{lines}{more}", findings
        )
    extras = {key: value for key, value in raw.items() if key not in ("tickets", "version")}
    return TicketIndex.model_construct(version=version, tickets=tickets, **extras)


def _ticket_label(raw_tickets: list[Any], position: int) -> str:
    item = raw_tickets[position] if 0 <= position < len(raw_tickets) else None
    ticket_id = item.get("id") if isinstance(item, dict) else None
    if isinstance(ticket_id, str) and ticket_id:
        return ticket_id
    return f"#{position + 1}"


def _finding_from_pydantic(shown: str, raw_tickets: list[Any], problem: Mapping[str, Any]) -> Finding:
    loc = list(problem.get("loc", ()))
    position = loc.pop(0) if loc and isinstance(loc[0], int) else -1
    label = _ticket_label(raw_tickets, position)
    field = ".".join(str(part) for part in loc) or None
    kind = problem.get("type", "")
    if kind == "missing":
        expected, found = "a value (required)", "nothing"
    elif kind == "model_type" or kind == "dict_type":
        expected, found = "a JSON object", _json_type(problem.get("input"))
    else:
        expected = _expected_from_message(problem.get("msg", ""))
        found = _shown_value(problem.get("input"))
    where = f"ticket {label}" + (f", field '{field}'" if field else "")
    if kind == "missing":
        message = f"{shown}: {where}: required field is missing"
    elif kind in ("model_type", "dict_type"):
        message = f"{shown}: {where}: expected a JSON object, found {found}"
    else:
        message = f"{shown}: {where}: expected {expected}, found {found}"
    return Finding(Severity.ERROR, "invalid_schema", message, file=shown, ticket=label,
                   field=field, expected=expected, found=found)


def _schema_finding(shown: str, label: str | None, field: str, expected: str, value: Any) -> Finding:
    found = _shown_value(value)
    message = f"{shown}: field '{field}': expected {expected}, found {found}"
    return Finding(Severity.ERROR, "invalid_schema", message, file=shown, ticket=label,
                   field=field, expected=expected, found=found)


def _expected_from_message(message: str) -> str:
    text = message
    for prefix in ("Input should be ", "Value error, "):
        if text.startswith(prefix):
            text = text[len(prefix):]
    return text


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _shown_value(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return _json_type(value)
    text = json.dumps(value, ensure_ascii=False) if value is not None else "null"
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------- writing



class IndexStore:
    """The only writer of the index. Every write is a locked read-modify-write.

    The store keeps the index as it last wrote it (`WrittenIndex`): while the file on disk
    is still that one (same device, inode, size, mtime and ctime, and the same bytes,
    compared under the lock), `edit_tickets` re-reads,
    re-validates and re-encodes only the tickets it changes and splices them into the rest.
    A file changed by anyone else (a hand edit, another process) is read and checked in
    full again, so what it says is never overwritten with what this process remembers.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        from filelock import FileLock  # only writers need it: readers skip the import

        self._lock = FileLock(str(self.path.with_name(self.path.name + ".lock")),
                              timeout=LOCK_TIMEOUT_SECONDS, is_singleton=True)
        self._written: WrittenIndex | None = None
        self._loaded: _Loaded | None = None  # the last load, and its file

    def load(self) -> IndexView:
        """The index as the file holds it now. The same object again while the file is
        unchanged (a run's start-up asks several times: validation, recovery, the plan);
        read it, do not change it. Until the first write after it.

        The models only: the raw JSON they were checked from is let go (80 MB at 100,000
        tickets, and the largest part of a run's peak); a write reads what it changes from
        the file."""
        if self._loaded is not None:
            if file_identity(self.path) == self._loaded.identity and \
                    content_checksum(self.path) == self._loaded.checksum:
                return self._loaded.view
        self._loaded = None
        with gc_paused():
            before = file_identity(self.path)
            raw, layout, _, checksum = _read_file(self.path)
            view = IndexView(path=self.path, index=_validate(raw, self.path))
            if before is not None and before == file_identity(self.path):  # not changed while read
                self._loaded = _Loaded(before, checksum, view, layout)
            return view

    def _written_as_loaded(self) -> WrittenIndex | None:
        """The last load as if this process had written it, when the file is still that one
        and a rewrite would give its very text (a file in one of Sage's layouts): then the
        first write after a load need not read and check every ticket again."""
        if self._loaded is None:
            return None
        identity, checksum, loaded, layout = self._loaded
        if file_identity(self.path) != identity:
            return None
        data = _read_into_bytearray(self.path)
        if data is None or zlib.crc32(data) != checksum:
            return None
        text = data.decode("utf-8-sig")
        bounds = laid_out_ticket_bounds(text, layout)
        if bounds is None or len(bounds) != 2 * len(loaded.index.tickets):
            bounds = ticket_bounds(text)
        frame = _frame_around(text, bounds, layout) if bounds else None
        if frame is None or bounds is None or not frame.surrounds(text, bounds):
            return None
        return WrittenIndex.of_text(frame, bounds, text, loaded.index.tickets, layout, identity, data,
                                    loaded.by_id())  # a new dict each time, the load's own made once

    def modify(self, mutate: Callable[[dict[str, Any]], None]) -> LoadedIndex:
        """Re-read the file under the lock, let `mutate` change the raw JSON, check it, write it.

        A read-only file system, a full disk or a missing permission is an IndexWriteError
        (a SageError naming the file): the index on disk is then unchanged.
        """
        with self._writing(), gc_paused():
            return self._modify_in_full(mutate)

    def edit_tickets(self, edits: Mapping[str, Callable[[dict[str, Any]], None]]) -> dict[str, Ticket]:
        """Apply each edit to the raw JSON of the (first) ticket of its id, check the result,
        write the file; the tickets by id as now written. Nothing is written when a ticket
        is missing (SageError) or an edit leaves a ticket invalid (IndexLoadError)."""
        with self._writing(), gc_paused():
            written, self._written = self._written, None  # trusted again only after a write
            on_disk = written is not None and written.is_on_disk(self.path)
            if written is None:
                written = self._written_as_loaded()  # read and compared just now, under this lock
                on_disk = written is not None
            self._loaded = None
            originals: list[dict[str, Any] | None] = []
            if written is not None and on_disk:
                _missing_tickets(edits, written.positions, self.path)
                originals = [written.raw_ticket(written.positions[ticket_id]) for ticket_id in edits]
            items = [item for item in originals if item is not None]
            if written is None or not on_disk or len(items) != len(edits):  # read, check and write it all
                edited: set[int] = set()
                loaded = self._modify_in_full(lambda raw: edited.update(_edit_raw(raw, edits, self.path)),
                                              edited=edited)
                return self._written.by_id if self._written is not None else loaded.by_id()
            replaced: dict[int, tuple[bytes, Ticket]] = {}
            for edit, item in zip(edits.values(), items):
                edit(item)
            models = _validate({"tickets": items}, self.path).tickets
            for ticket_id, item, model in zip(edits, items, models):
                replaced[written.positions[ticket_id]] = (written.encode(item), model)
            data = written.splice({place: span for place, (span, _) in replaced.items()})
            _write_atomic(self.path, data)
            identity = file_identity(self.path)
            if identity is not None and all(item.get("id") == tid for tid, item in zip(edits, items)):
                written.take(replaced, identity, data)
                self._written = written
                return written.by_id
            by_id = dict(written.by_id)
            by_id.update({model.id: model for _, model in replaced.values()})
            return by_id

    def _modify_in_full(self, mutate: Callable[[dict[str, Any]], None], *, edited: set[int] | None = None,
                        ) -> LoadedIndex:
        """Read, change, check and write the whole file. `edited`: the positions of the only
        tickets `mutate` changes (filled in by it): the others keep their text as it is in
        the file (no encoding of 100,000 tickets to change one)."""
        self._written = self._loaded = None
        raw, layout, text = read_raw_text(self.path)
        kept: list[str | None] | None = list(ticket_spans(text) or ()) if edited is not None else None
        mutate(raw)
        index = _validate(raw, self.path)
        for position in edited or ():
            if kept is not None and position < len(kept):
                kept[position] = None
        cut = TicketsText.of(raw, layout, kept or None)
        data = (cut.joined() if cut else layout.dumps(raw)).encode("utf-8")
        _write_atomic(self.path, data)
        identity = file_identity(self.path)
        if cut is not None and identity is not None:
            self._written = WrittenIndex.of(cut, raw["tickets"], index.tickets, layout, identity, data)
        return LoadedIndex(path=self.path, raw=raw, index=index, layout=layout)

    def save_unchanged(self) -> None:
        """Write the index back from what a load reads of it: its raw JSON in its layout
        (used to prove the round trip)."""
        with self._writing():
            self._written = self._loaded = None
            raw, layout = read_raw(self.path)
            _write_atomic(self.path, layout.dumps(raw).encode("utf-8"))

    @contextmanager
    def _writing(self) -> Iterator[None]:
        try:
            with self._lock:
                yield
        except OSError as error:
            reason = error.strerror or str(error)
            raise IndexWriteError(f"cannot write {self.path}: {reason}; the index is unchanged") from None


def _edit_raw(raw: dict[str, Any], edits: Mapping[str, Callable[[dict[str, Any]], None]], path: Path,
              ) -> list[int]:
    """Apply edits to the raw tickets by id (the first ticket of an id); their positions."""
    items = raw.get("tickets", [])
    positions: dict[str, int] = {}
    for position, item in enumerate(items if isinstance(items, list) else []):
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            positions.setdefault(item["id"], position)
    _missing_tickets(edits, positions, path)
    for ticket_id, edit in edits.items():
        edit(items[positions[ticket_id]])
    return [positions[ticket_id] for ticket_id in edits]


def _missing_tickets(edits: Mapping[str, Any], positions: Mapping[str, int], path: Path) -> None:
    missing = [ticket_id for ticket_id in edits if ticket_id not in positions]
    if missing:
        raise SageError(f"tickets {', '.join(sorted(missing))} are no longer in {path}")


class _Loaded(NamedTuple):
    identity: FileIdentity
    checksum: int
    view: IndexView
    layout: JsonLayout


def _frame_around(text: str, bounds: Sequence[int], layout: JsonLayout) -> TicketsFrame | None:
    """What a rewrite in `layout` puts around the tickets, from the text around them in the
    file (the rest of the document, read again: the load kept the models only)."""
    try:
        head = json.loads(text[:bounds[0]] + text[bounds[-1]:])
    except ValueError:
        return None
    if not isinstance(head, dict) or head.get("tickets") != []:
        return None
    head["tickets"] = [None]  # where it stands: a rewrite keeps the order of the keys
    return TicketsFrame.of(head, layout)


def _read_into_bytearray(path: Path) -> bytearray | None:
    """The file's bytes, read straight into the buffer a `WrittenIndex` keeps (no second
    20 MB copy); None when it cannot be read whole."""
    try:
        with open(path, "rb") as handle:
            data = bytearray(os.fstat(handle.fileno()).st_size)
            if handle.readinto(data) != len(data) or handle.read(1):
                return None  # changed size while read
            return data
    except OSError:
        return None


def _write_atomic(path: Path, data: bytes) -> None:
    from sage_stream.durable import write_atomic  # only writers need it (6 ms of every reader's start)

    write_atomic(path, data)


class IndexWriteError(SageError):
    """The index could not be written (read-only, disk full, permissions): nothing changed."""
