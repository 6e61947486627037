"""Text we show or store: one line of text we did not write, clipped output, UTC times, durations.

Times are written the one way Sage writes them (2026-01-31T12:00:00Z, UTC, whole seconds)
and read tolerantly (any ISO-8601; `Z` or an offset; a naive time is UTC).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from math import isfinite

ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

_ANSI_ESCAPE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: window titles, hyperlinks
    r"|\x1b[P^_X][^\x1b]*(?:\x1b\\)?"  # DCS, PM, APC, SOS strings
    r"|\x1b[ -/]*[0-~]?"  # any other escape
)
# C0/C1 controls (newlines, carriage returns, bells) and the bidi overrides that can make
# a terminal show text in an order other than the one it has.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def one_line(text: object, limit: int | None = None) -> str:
    """`text` as a single printable line: escape sequences dropped, control characters and
    runs of whitespace made one space, at most `limit` characters (ending in "…" when cut).
    None is the empty line; anything else is shown as `str()` shows it."""
    line = "" if text is None else str(text)
    line = _CONTROL.sub(" ", _ANSI_ESCAPE.sub("", line))
    line = " ".join(line.split())
    # lone surrogates (undecodable agent output) cannot be written to a UTF-8 stream
    line = line.encode("utf-8", "replace").decode("utf-8")
    if limit is not None and len(line) > limit:
        line = line[: max(limit - 1, 0)] + "…"
    return line


def clip_tail(text: str | None, limit: int = 2000) -> str | None:
    """The last `limit` characters of `text`, after "..." when some were cut."""
    if text is None:
        return None
    return text if len(text) <= limit else "..." + text[-limit:]


def iso_utc(epoch: float | None) -> str | None:
    """Epoch seconds as Sage writes a time: 2026-01-31T12:00:00Z."""
    if epoch is None:
        return None
    return time.strftime(ISO_FORMAT, time.gmtime(epoch))


def now_iso() -> str:
    """The current UTC time as Sage writes it: 2026-01-31T12:00:00Z."""
    return datetime.now(timezone.utc).strftime(ISO_FORMAT)


def parse_timestamp(value: str) -> datetime:
    """ISO-8601, with `Z` accepted for UTC; naive times are taken as UTC."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        raise ValueError(f"expected an ISO-8601 time such as 2026-01-31T12:00:00Z, found {value!r}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def epoch_of(stamp: str | None) -> float | None:
    """Epoch seconds of an ISO-8601 time; None for None, empty or unparseable text."""
    if not stamp:
        return None
    try:
        return parse_timestamp(stamp).timestamp()
    except ValueError:
        return None


def format_duration(seconds: float | None) -> str:
    """12.4s, 3m05s, 1h02m."""
    if seconds is None:
        return "?"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def describe_exit(returncode: int | None) -> str:
    """How a process ended, one form everywhere: a signal reads the same whether Popen
    reports it (-15) or a shell or bwrap passed it on as 128 + N (143):
    `killed by SIGTERM (exit 143)`; otherwise `exit code N`."""
    import signal

    if returncode is None:
        return "no exit code"
    number = -returncode if returncode < 0 else returncode - 128 if 128 < returncode < 128 + signal.NSIG else None
    if number is None:
        return f"exit code {returncode}"
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    return f"killed by {name} (exit {128 + number})"


PRETTY_JSON_LIMIT = 1000
"""Up to this many entries (tickets, findings, edges) JSON output is indented for a reader;
above it, one compact line. json's indenting encoder is pure Python: for `sage ready --json`
on 100,000 tickets it took 6 of 9 s; the compact one is json's C encoder."""


def output_json(value: object, *, entries: int) -> str:
    """`value` as JSON for `--json` output: indented up to PRETTY_JSON_LIMIT entries,
    compact (no spaces, one line) above; the same content either way. `JsonRows` may
    stand anywhere for their list of objects; a compact object whose values include
    some is written piece by piece, the rows column by column (`JsonRows.compact`)."""
    if entries <= PRETTY_JSON_LIMIT:
        return json.dumps(value, indent=2, ensure_ascii=False, default=_rows_as_list)
    if isinstance(value, dict) and any(isinstance(item, JsonRows) for item in value.values()):
        return "{" + ",".join(
            f"{compact_json(key)}:{item.compact() if isinstance(item, JsonRows) else compact_json(item)}"
            for key, item in value.items()) + "}"
    return compact_json(value)


def compact_json(value: object) -> str:
    """`value` as `output_json` writes it above PRETTY_JSON_LIMIT entries: one compact line."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_rows_as_list)


class JsonRows:
    """A list of JSON objects with the same keys, held as one column of values per key.

    For the big lists of `--json` outputs (100,000 tickets): written compact, each
    column is encoded by a pass over it (`json_texts`) and each row by one `%`
    (`json_objects`), several times faster than json's encoder on the list of dicts,
    to the same text. A value shared by many rows (one list object) is encoded once.
    """

    def __init__(self, columns: Mapping[str, Sequence[object]]) -> None:
        if len({len(column) for column in columns.values()}) > 1:
            raise ValueError("every column of JsonRows must have one value per row")
        self.columns = columns

    def as_list(self) -> list[dict[str, object]]:
        return [dict(zip(self.columns, row)) for row in zip(*self.columns.values())]

    def compact(self) -> str:
        return json_objects({key: json_texts(column) for key, column in self.columns.items()})


def _rows_as_list(value: object) -> object:
    if isinstance(value, JsonRows):
        return value.as_list()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_JSON_BOOLS = {False: "false", True: "true"}


def json_texts(values: Sequence[object]) -> list[str]:
    """Each value as `compact_json` writes it, for a column of one kind of value.

    A column of strings (str enums too), of finite floats or of booleans is encoded by one
    C-level pass (json's own string encoder, `float.__repr__` as json uses it, a lookup), a
    column of lists of strings by one such pass per list; any other column encodes each
    distinct value once (an unhashable one: each object once).
    """
    kinds = set(map(type, values))
    if all(issubclass(kind, str) for kind in kinds):  # str, or a str enum (its value is its text)
        return list(map(encode_basestring, values))  # type: ignore[arg-type]
    if kinds == {bool}:
        return list(map(_JSON_BOOLS.__getitem__, values))  # type: ignore[arg-type]
    if kinds == {float} and all(map(isfinite, values)):  # type: ignore[arg-type]
        return list(map(float.__repr__, values))  # type: ignore[arg-type]
    if kinds == {list}:
        try:
            return ["[" + ",".join(map(encode_basestring, value)) + "]"  # type: ignore[call-overload]
                    for value in values]
        except TypeError:  # not only strings: below
            pass
    try:
        keys = list(zip(map(type, values), values))  # True == 1 == 1.0: tell them apart by type
        encoded = {key: compact_json(key[1]) for key in set(keys)}
    except TypeError:  # unhashable values (lists, dicts): each object once
        objects = {id(value): value for value in values}
        texts = {identity: compact_json(value) for identity, value in objects.items()}
        return [texts[id(value)] for value in values]
    return list(map(encoded.__getitem__, keys))


def json_objects(columns: Mapping[str, Sequence[str]]) -> str:
    """A JSON array of objects, one per row, with the keys of `columns` in their order,
    from columns of values already encoded (`json_texts`): what `compact_json` writes for
    the same list of dicts, built a row at a time by one `%` each."""
    row = "{" + ",".join(f"{compact_json(key).replace('%', '%%')}:%s" for key in columns) + "}"
    return "[" + ",".join(map(row.__mod__, zip(*columns.values()))) + "]"
