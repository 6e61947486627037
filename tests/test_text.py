"""text: one line of foreign text, clipped output, UTC times and durations."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from hypothesis import given
from hypothesis import strategies as st

from sage_stream.text import (
    PRETTY_JSON_LIMIT,
    JsonRows,
    clip_tail,
    compact_json,
    epoch_of,
    format_duration,
    iso_utc,
    json_objects,
    json_texts,
    now_iso,
    one_line,
    output_json,
    parse_timestamp,
)
from sage_stream.tickets.models import State

T0 = 1795252443.0  # 2026-11-21T09:14:03Z


class TestOneLine:
    def test_newlines_tabs_and_runs_of_spaces_become_one_space(self) -> None:
        assert one_line("  Parse\n numbers\r\n\tand   sums  ") == "Parse numbers and sums"

    def test_escape_sequences_are_dropped_and_controls_become_spaces(self) -> None:
        assert one_line("\x1b]0;title\x07\x1b[31mred\x1b[0m\x00text\u202eevil") == "red text evil"

    def test_no_limit_keeps_everything(self) -> None:
        assert one_line("x" * 5000) == "x" * 5000

    def test_a_limit_cuts_with_an_ellipsis_inside_the_limit(self) -> None:
        assert one_line("abcdef", 6) == "abcdef"
        assert one_line("abcdefg", 6) == "abcde…"
        assert len(one_line("a b " * 100, 10)) == 10

    def test_none_is_empty_and_other_values_show_as_str(self) -> None:
        assert one_line(None) == ""
        assert one_line(42) == "42"

    def test_lone_surrogates_become_question_marks(self) -> None:
        assert one_line("bad \udcff byte") == "bad ? byte"


class TestClipTail:
    def test_short_text_and_none_are_unchanged(self) -> None:
        assert clip_tail(None) is None
        assert clip_tail("") == ""
        assert clip_tail("x" * 2000) == "x" * 2000

    def test_long_text_keeps_its_end_after_dots(self) -> None:
        assert clip_tail("0123456789", 4) == "...6789"
        assert clip_tail("a" * 10 + "b" * 2000) == "..." + "b" * 2000


class TestTimes:
    def test_iso_utc_writes_whole_seconds_in_utc(self) -> None:
        assert iso_utc(T0) == "2026-11-21T09:14:03Z"
        assert iso_utc(T0 + 0.9) == "2026-11-21T09:14:03Z"
        assert iso_utc(None) is None

    def test_now_iso_is_the_current_second(self) -> None:
        before = int(time.time())
        stamp = now_iso()
        after = time.time()
        assert len(stamp) == 20 and stamp.endswith("Z")
        assert before <= epoch_of(stamp) <= after

    @pytest.mark.parametrize(
        "stamp",
        ["2026-11-21T09:14:03Z", "2026-11-21T09:14:03+00:00", "2026-11-21T10:14:03+01:00", "2026-11-21T09:14:03"],
    )
    def test_parse_timestamp_reads_z_offsets_and_naive_times_as_utc(self, stamp: str) -> None:
        parsed = parse_timestamp(stamp)
        assert parsed.utcoffset() is not None
        assert parsed.astimezone(timezone.utc) == datetime(2026, 11, 21, 9, 14, 3, tzinfo=timezone.utc)

    def test_parse_timestamp_says_what_it_expected(self) -> None:
        with pytest.raises(ValueError, match="expected an ISO-8601 time.*'tomorrow'"):
            parse_timestamp("tomorrow")

    def test_epoch_of_round_trips_iso_utc(self) -> None:
        assert epoch_of(iso_utc(T0)) == T0
        assert epoch_of("2026-11-21T10:14:03+01:00") == T0

    @pytest.mark.parametrize("stamp", [None, "", "soon", "2026-13-01T00:00:00Z"])
    def test_epoch_of_is_none_for_missing_or_unreadable_times(self, stamp: str | None) -> None:
        assert epoch_of(stamp) is None

    def test_offsets_are_kept_apart_from_the_local_zone(self) -> None:
        moment = datetime(2026, 11, 21, 9, 14, 3, tzinfo=timezone(timedelta(hours=-5)))
        assert iso_utc(moment.timestamp()) == "2026-11-21T14:14:03Z"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, "?"), (0, "0.0s"), (12.44, "12.4s"), (59.9, "59.9s"), (60, "1m00s"), (185.7, "3m05s"),
     (3599, "59m59s"), (3600, "1h00m"), (3725, "1h02m"), (90000, "25h00m")],
)
def test_format_duration(seconds: float | None, shown: str) -> None:
    assert format_duration(seconds) == shown


def test_one_line_output_survives_json() -> None:
    assert json.loads(json.dumps(one_line("a\nb\x1b[1m c"))) == "a b c"


def test_an_exit_by_signal_reads_the_same_from_popen_and_from_a_shell() -> None:
    from sage_stream.text import describe_exit

    assert describe_exit(-15) == describe_exit(143) == "killed by SIGTERM (exit 143)"
    assert describe_exit(-9) == "killed by SIGKILL (exit 137)"
    assert describe_exit(1) == "exit code 1" and describe_exit(None) == "no exit code"


def test_the_live_log_shows_a_killed_agent_in_that_one_form() -> None:
    from sage_stream.engine import events as ev
    from sage_stream.engine.display import describe

    for code in (-15, 143):
        line = describe(ev.Event(kind=ev.AGENT_FINISHED, ticket="T-1",
                                 data={"outcome": "timeout", "returncode": code, "duration_s": 3, "success": False}))
        assert "(killed by SIGTERM (exit 143))" in line


# ---------------------------------------------------------------- JSON written column by column

_SCALARS = [st.text(), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.integers(), st.none(),
            st.sampled_from(State)]  # a str enum: written as its value
_COLUMN = st.one_of(
    *(st.lists(kind, max_size=6) for kind in _SCALARS),  # one kind of value: the fast paths
    st.lists(st.one_of(*_SCALARS), max_size=6),  # mixed: True, 1 and 1.0 are told apart
    st.lists(st.lists(st.text(), max_size=2), max_size=4),  # unhashable
)


@given(_COLUMN)
def test_a_column_is_encoded_as_json_encodes_each_value(values: list[object]) -> None:
    assert json_texts(values) == [compact_json(value) for value in values]


@given(st.integers(0, 5).flatmap(lambda rows: st.dictionaries(
    st.text(max_size=4), st.lists(st.one_of(*_SCALARS), min_size=rows, max_size=rows), min_size=1, max_size=4)))
def test_rows_from_encoded_columns_are_the_text_of_the_list_of_dicts(columns: dict[str, list[object]]) -> None:
    rows = [dict(zip(columns, row)) for row in zip(*columns.values())]
    assert json_objects({key: json_texts(values) for key, values in columns.items()}) == compact_json(rows)


def test_rows_held_as_columns_are_written_as_their_list_of_objects_small_or_big() -> None:
    shared = [{"id": "R-1", "why": "in progress"}]  # one object in many rows: encoded once, same text
    for count in (2, PRETTY_JSON_LIMIT + 1):
        columns = {"id": [f"T-{n}" for n in range(count)], "n": list(map(float, range(count))),
                   "on": [["A", f"B-{n}"] for n in range(count)], "roots": [shared] * count,
                   "odd": [None if n % 2 else True for n in range(count)]}
        plain = {"index": "x.json", "rows": [dict(zip(columns, row)) for row in zip(*columns.values())], "n": 1}
        written = output_json({"index": "x.json", "rows": JsonRows(columns), "n": 1}, entries=count)
        assert written == output_json(plain, entries=count)
        assert json.loads(written) == plain


def test_rows_need_one_value_per_row_in_every_column() -> None:
    with pytest.raises(ValueError, match="one value per row"):
        JsonRows({"id": ["T-1", "T-2"], "title": ["one"]})
