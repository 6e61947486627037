"""What the user sees during a run: plain lines, JSON lines, and the live table."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

import pytest
from rich.console import Console

from sage_stream.engine.display import (
    JsonDisplay,
    LiveDisplay,
    PlainDisplay,
    RunView,
    format_minutes,
    make_display,
)
from sage_stream.engine.events import Event
from sage_stream.text import one_line

T0 = 1795252443.0  # 2026-11-21T09:14:03Z
HOSTILE_TITLE = "Add [bold red]addition[/] \x1b]0;pwned\x07\x1b[31mred\nsecond line\r\u202eevil"

CSI_OR_OSC = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[()][0-9A-B]")


def run_started(**overrides) -> Event:
    data = dict(
        run_id="20261121T091403Z-abc123", target="main", workers=2,
        workers_reason="2 usable CPUs, 3 ready tickets", schedule="critical-path", agent="exec",
        tickets={"CALC-001": {"title": "Parse numbers", "estimate": 2},
                 "CALC-002": {"title": "Add addition", "estimate": 2},
                 "CALC-003": {"title": "Add subtraction", "estimate": 2}},
        ready=["CALC-001", "CALC-002"], predicted_makespan_minutes=4.2,
    )
    data.update(overrides)
    return Event("run_started", data=data, time=T0)


def started(ticket: str, slot: int, at: float, title: str = "Add addition", attempt: int = 1) -> Event:
    return Event("ticket_started", ticket, dict(title=title, slot=slot, attempt=attempt, branch="b",
                                                worktree="/r/.sage/worktrees/slot-3",
                                                log=f".sage/workers/{ticket}.log"), time=at)


def landed(ticket: str, at: float, seconds: float, commit: str = "3f2a1c9d0e8b7a6f") -> Event:
    return Event("ticket_landed", ticket, dict(commit=commit, duration_s=seconds), time=at)


def deferred(ticket: str, at: float, **data) -> Event:
    payload = dict(category="conflict", message="calc/parse.py", retryable=True, not_before=None)
    payload.update(data)
    return Event("ticket_deferred", ticket, payload, time=at)


def plain_lines(events: list[Event]) -> list[str]:
    stream = io.StringIO()
    display = PlainDisplay(stream)
    for event in events:
        display.handle(event)
    display.close()
    return stream.getvalue().splitlines()


def live_output(events: list[Event], *, width: int = 100, now: float = T0 + 90) -> str:
    stream = io.StringIO()
    display = LiveDisplay(Console(file=stream, force_terminal=True, width=width), clock=lambda: now)
    for event in events:
        display.handle(event)
    display.close()
    return stream.getvalue()


def visible(output: str) -> str:
    return CSI_OR_OSC.sub("", output)


def final_table(output: str) -> str:
    """The last frame rich drew (the one left on screen after the run)."""
    return visible(output).rsplit("sage stream ", 1)[1]


# ---------------------------------------------------------------- plain


def test_plain_prints_one_timestamped_line_per_ticket_event():
    lines = plain_lines([
        started("CALC-002", 0, T0),
        landed("CALC-002", T0 + 12.4, 12.4),
        deferred("CALC-004", T0 + 20, not_before="2026-11-21T09:30:00Z"),
    ])
    assert lines == [
        '2026-11-21T09:14:03Z started CALC-002 "Add addition" (worker 1 in slot-3, attempt 1)',
        "2026-11-21T09:14:15Z landed CALC-002 as 3f2a1c9 in 12.4s",
        "2026-11-21T09:14:23Z deferred CALC-004: conflict: calc/parse.py"
        " (will retry after 2026-11-21T09:30:00Z)",
    ]


def test_plain_deferred_line_says_how_the_ticket_comes_back():
    epoch_not_before = deferred("CALC-004", T0, not_before=T0 + 960)
    final = deferred("CALC-005", T0, category="agent_failed", message="exit 2", retryable=False)
    lines = plain_lines([epoch_not_before, final])
    assert lines[0].endswith("(will retry after 2026-11-21T09:30:03Z)")
    assert lines[1].endswith("deferred CALC-005: agent_failed: exit 2 (`sage retry CALC-005` to try again)")


def test_plain_leaves_out_agent_output():
    lines = plain_lines([Event("agent_output", "CALC-002", {"line": "thinking hard"}, time=T0)])
    assert lines == []


def test_plain_run_started_gives_the_worker_decision_and_predicted_makespan():
    (line,) = plain_lines([run_started()])
    assert "2 workers (2 usable CPUs, 3 ready tickets)" in line
    assert "3 tickets (2 ready)" in line
    assert "predicted makespan ~5m" in line


def test_one_worker_is_one_worker_in_the_log_and_in_the_live_header():
    (line,) = plain_lines([run_started(workers=1, workers_reason="requested 1")])
    assert "1 worker (requested 1)" in line and "1 workers" not in line
    (resumed,) = plain_lines([Event("dispatch_resumed", None, {"workers": 1, "reason": "r"}, time=T0)])
    assert resumed.endswith("resumed starting tickets with 1 worker")


def test_plain_run_finished_gives_totals_and_what_the_exit_code_means():
    finished = Event("run_finished", data=dict(completed=5, deferred=1, interrupted=0, remaining=2,
                                                exit_code=3, duration_s=192.0,
                                                summary_path=".sage/runs/x.json"), time=T0)
    (line,) = plain_lines([finished])
    assert "5 completed, 1 deferred, 0 interrupted, 2 remaining in 3m12s" in line
    assert "exit 3: some tickets were deferred" in line
    assert ".sage/runs/x.json" in line
    stopped = Event("run_finished", data=dict(completed=1, deferred=0, interrupted=True, remaining=4,
                                               exit_code=130, duration_s=3.0), time=T0)
    (line,) = plain_lines([stopped])
    assert "finished: 1 completed, 0 deferred, interrupted, 4 remaining in 3.0s (exit 130: interrupted)" in line


def test_plain_keeps_hostile_text_on_one_line_without_escapes():
    lines = plain_lines([started("CALC-002", 0, T0, title=HOSTILE_TITLE),
                         deferred("CALC-002", T0, message="boom\n\x1b[2J\x1b[Hcleared")])
    assert len(lines) == 2
    text = "\n".join(lines)
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text and "\u202e" not in text
    assert "Add [bold red]addition[/]" in lines[0] and "second line" in lines[0]
    assert "boom cleared" in lines[1]


class BrokenPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError


def test_a_closed_output_does_not_stop_the_run():
    for display in (PlainDisplay(BrokenPipe()), JsonDisplay(BrokenPipe())):
        display.handle(landed("CALC-002", T0, 1.0))
        display.handle(landed("CALC-003", T0, 1.0))
        display.close()


# ---------------------------------------------------------------- json


class CountingStream(io.StringIO):
    flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def test_json_writes_one_flushed_object_per_event_including_agent_output():
    stream = CountingStream()
    display = make_display("json", stream=stream)
    events = [run_started(), started("CALC-002", 0, T0, title=HOSTILE_TITLE),
              Event("agent_output", "CALC-002", {"line": "editing calc/add.py"}, time=T0 + 1),
              landed("CALC-002", T0 + 2, 2.0)]
    for event in events:
        display.handle(event)
    display.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4 and stream.flushes >= 4
    objects = [json.loads(line) for line in lines]
    assert [item["event"] for item in objects] == ["run_started", "ticket_started", "agent_output",
                                                   "ticket_landed"]
    assert objects[1]["title"] == HOSTILE_TITLE  # machines get the exact text
    assert objects[2] == {"event": "agent_output", "time": "2026-11-21T09:14:04.000Z",
                          "ticket": "CALC-002", "line": "editing calc/add.py"}


# ---------------------------------------------------------------- live


def test_live_shows_a_row_per_worker_slot_with_state_and_last_output():
    table = final_table(live_output([
        run_started(),
        started("CALC-001", 0, T0, title="Parse numbers"),
        Event("agent_output", "CALC-001", {"line": "running pytest"}, time=T0 + 5),
        started("CALC-002", 1, T0 + 1),
        Event("agent_finished", "CALC-002", dict(outcome="exited", returncode=0, duration_s=30,
                                                 success=True, summary="ok"), time=T0 + 31),
    ]))
    rows = table.splitlines()
    row1 = next(row for row in rows if "CALC-001" in row)
    row2 = next(row for row in rows if "CALC-002" in row)
    assert re.search(r"^\s*1\s+CALC-001\s+Parse numbers\s+1m30s\s+running\s+running pytest", row1)
    assert re.search(r"^\s*2\s+CALC-002\s+Add addition\s+1m29s\s+checking", row2)
    assert "running 2" in table and "waiting 1" in table and "remaining 3" in table
    assert "ETA unknown" in table


def test_live_prints_landed_and_deferred_lines_and_counts_them():
    output = visible(live_output([
        run_started(),
        started("CALC-001", 0, T0),
        started("CALC-002", 1, T0),
        landed("CALC-001", T0 + 60, 60.0),
        deferred("CALC-002", T0 + 61, message="calc/parse.py changed on main"),
    ]))
    assert "landed CALC-001 as 3f2a1c9 in 1m00s" in output
    assert "deferred CALC-002: conflict: calc/parse.py changed on main (will retry)" in output
    table = final_table(output)
    assert "landed 1" in table and "deferred 1" in table and "running 0" in table
    assert re.search(r"^\s*1\s+idle", table, re.MULTILINE)


def test_live_does_not_interpret_markup_or_escapes_in_ticket_text():
    output = live_output([
        run_started(),
        started("CALC-002", 0, T0, title="[bold red]x[/] [link=http://evil]y[/link]"),
        Event("agent_output", "CALC-002", {"line": "\x1b]0;pwned\x07\x1b[2J[blink]z[/blink]"}, time=T0),
        deferred("CALC-002", T0, message="[red]boom[/red]\n\x1b[31mred"),
    ])
    assert "pwned" not in output and "\x1b[2J" not in output and "\x1b]8;" not in output
    text = visible(output)
    assert "[bold red]x[/] [link=http://evil]y[/link]" in text
    assert "[red]boom[/red] red" in text


def test_live_survives_a_narrow_terminal_and_very_long_text():
    long_title = "word " * 400
    output = live_output([
        run_started(workers=3),
        started("CALC-001", 0, T0, title=long_title),
        Event("agent_output", "CALC-001", {"line": "x" * 5000}, time=T0),
        started("CALC-002", 2, T0, title=HOSTILE_TITLE),
        landed("CALC-001", T0 + 5, 5.0),
    ], width=12)
    assert "CALC" in visible(output)


def test_live_keeps_a_queued_ticket_visible_when_its_slot_starts_another():
    table = final_table(live_output([
        run_started(workers=1),
        started("CALC-001", 0, T0),
        Event("ticket_queued", "CALC-001", {}, time=T0 + 10),
        started("CALC-002", 0, T0 + 11),
    ]))
    assert re.search(r"^\s*1\s+CALC-002\s.*starting", table, re.MULTILINE)
    assert re.search(r"^\s*-\s+CALC-001\s.*queued", table, re.MULTILINE)
    assert "running 1" in table and "to land 1" in table
    assert ": 1 worker " in visible(table) and "1 workers" not in visible(table)
    assert re.search(r"^\s*worker\s+ticket", table, re.MULTILINE)  # rows are workers, not slot directories


def test_make_display_auto_picks_plain_off_a_terminal_and_live_on_one():
    assert isinstance(make_display("auto", stream=io.StringIO()), PlainDisplay)
    primary, secondary = os.openpty()
    with os.fdopen(secondary, "w") as terminal:
        display = make_display("auto", stream=terminal)
        assert isinstance(display, LiveDisplay)
        display.close()
    os.close(primary)
    with pytest.raises(ValueError, match="unknown display mode"):
        make_display("fancy", stream=io.StringIO())


def test_importing_the_display_does_not_import_rich():
    code = "import sys, sage_stream.engine.display; sys.exit('rich' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ---------------------------------------------------------------- the view behind the table


def test_eta_is_unknown_until_a_ticket_lands_then_scales_estimates_by_the_observed_ratio():
    view = RunView()
    view.apply(run_started())  # three tickets of 2 estimated minutes, 2 workers
    view.apply(started("CALC-001", 0, T0))
    assert view.eta_minutes(now=T0 + 60) is None
    # CALC-001 took 4 minutes for an estimate of 2: everything takes twice as long
    view.apply(landed("CALC-001", T0 + 240, 240.0))
    view.apply(started("CALC-002", 0, T0 + 240))
    # CALC-002: 4 minutes expected, 1 spent -> 3; CALC-003: 4 -> 7 minutes over 2 workers
    assert view.eta_minutes(now=T0 + 300) == pytest.approx(3.5)
    assert format_minutes(3.5) == "~4m"


def test_a_requeued_ticket_goes_back_to_waiting():
    view = RunView()
    view.apply(run_started())
    view.apply(started("CALC-001", 0, T0))
    view.apply(Event("ticket_requeued", "CALC-001", {"reason": "conflict", "attempt": 2}, time=T0 + 1))
    assert view.running == 0 and view.waiting == 3 and view.slots == {}


def test_one_line_strips_controls_and_truncates():
    assert one_line("a\nb\r\n\tc \x1b[1mD\x1b[0m\x00") == "a b c D"
    assert one_line("x" * 50, 10) == "x" * 9 + "…"
    assert one_line(None) == ""
    assert one_line("bad \udcff byte") == "bad ? byte"


def test_a_ticket_stopped_before_it_had_a_branch_does_not_claim_work_was_kept():
    (kept,) = plain_lines([Event("ticket_stopped", "T-1", {"branch": "sage/T-1"}, time=T0)])
    assert kept.endswith("(work kept on sage/T-1)")
    (none,) = plain_lines([Event("ticket_stopped", "T-2", {"branch": None}, time=T0)])
    assert "work kept" not in none and none.endswith("(stopped before it had a branch: nothing to keep)")


def test_a_json_run_started_line_carries_the_plan_encoded_once_with_the_run_record(tmp_path) -> None:
    import json

    from sage_stream.engine import events as ev
    from sage_stream.engine.run_record import _encoded_plan

    tickets = {f"T-{n}": {"title": f"é {n}", "estimate": 1.0, "deps": [f"T-{n - 1}"] if n else []} for n in range(5)}
    event = run_started(tickets=tickets, ready=["T-0"])
    line = ev.json_line(event)
    assert line.isascii() and "\n" not in line
    assert json.loads(line) == event.as_json()  # every key, whatever the order
    plan = {"tickets": tickets, "ready": ["T-0"], "predicted_makespan_minutes": 5.0}
    assert json.loads(_encoded_plan(plan)) == plan
    assert ev.plan_tickets_json(tickets) in line and ev.plan_tickets_json(tickets) in _encoded_plan(plan)
    assert json.loads(ev.json_line(started("T-1", 0, T0))) == started("T-1", 0, T0).as_json()
