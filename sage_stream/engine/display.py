"""Everything the user sees while `sage stream` runs: it renders events, never decides.

Three renderings of the same event stream (see `engine/events.py`):

- live: a table redrawn about four times a second on a terminal, one row per worker
  slot, totals and an ETA, with landed/deferred lines printed as they happen;
- plain: one timestamped line per event, for cron jobs and log files;
- json: one JSON object per line, for programs.

Ticket titles, agent output and error messages are text we did not write: every piece
is reduced to one line without terminal escapes before it is shown, and the live table
builds `rich.text.Text` objects so that `[bold]` in a title stays literal.

`rich` is imported only by the live display, so commands that never stream do not
pay for it.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Protocol, TextIO

from sage_stream.engine import events as ev
from sage_stream.errors import EXIT_DEFERRED, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_SETUP
from sage_stream.text import describe_exit, format_duration, iso_utc, one_line

MODES = ("auto", "live", "plain", "json")
TITLE_WIDTH = 40
LINE_WIDTH = 300

EXIT_MEANINGS = {
    EXIT_OK: "no ticket was deferred",
    EXIT_ERROR: "the run failed",
    EXIT_DEFERRED: "some tickets were deferred",
    EXIT_SETUP: "setup error: fix it and run again",
    EXIT_INTERRUPTED: "interrupted",
}


class Display(Protocol):
    def handle(self, event: ev.Event) -> None: ...

    def close(self) -> None: ...


def make_display(mode: str, *, stream: TextIO | None = None) -> Display:
    """The display for `--display MODE`: "auto" is live on a terminal, plain otherwise."""
    out = stream if stream is not None else sys.stdout
    if mode == "auto":
        mode = "live" if _is_terminal(out) else "plain"
    if mode == "live":
        return LiveDisplay.on_stream(out)
    if mode == "plain":
        return PlainDisplay(out)
    if mode == "json":
        return JsonDisplay(out)
    raise ValueError(f"unknown display mode {mode!r}; expected one of {', '.join(MODES)}")


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


# ---------------------------------------------------------------- spans and values


def format_minutes(minutes: float) -> str:
    """A rough span: <1m, ~3m, ~1h05m (rounded up: an ETA should not promise too early)."""
    if minutes < 1:
        return "<1m"
    whole = math.ceil(minutes)
    if whole < 60:
        return f"~{whole}m"
    return f"~{whole // 60}h{whole % 60:02d}m"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _when(value: Any) -> str:
    """A `not_before`/`until` value, which may be epoch seconds or already ISO text."""
    number = _number(value)
    return iso_utc(number) if number is not None else one_line(value, 40)


# ---------------------------------------------------------------- one line per event


def describe(event: ev.Event) -> str | None:
    """The line a person reads for `event`, without a timestamp; None for agent output."""
    data = event.data
    ticket = one_line(event.ticket, 60)
    kind = event.kind
    if kind == ev.RUN_STARTED:
        return _describe_run_started(data)
    if kind == ev.TICKET_STARTED:
        row = _worker_row(data)
        worktree = data.get("worktree")
        where = f" in {one_line(PurePath(worktree).name, 40)}" if isinstance(worktree, str) and worktree else ""
        worker = row + 1 if row is not None else "?"
        return (f'started {ticket} "{one_line(data.get("title"), 80)}" '
                f'(worker {worker}{where}, attempt {one_line(data.get("attempt", "?"), LINE_WIDTH)})')
    if kind == ev.AGENT_OUTPUT:
        return None
    if kind == ev.AGENT_FINISHED:
        return _describe_agent_finished(ticket, data)
    if kind == ev.TICKET_CHECKING:
        return _describe_checking(ticket, data)
    if kind == ev.TICKET_CHECKED:
        return _describe_checked(ticket, data)
    if kind == ev.TICKET_QUEUED:
        return f"queued {ticket} to land"
    if kind == ev.TICKET_LANDED:
        commit = one_line(data.get("commit"), 40)[:7] or "?"
        return f"landed {ticket} as {commit} in {format_duration(_number(data.get('duration_s')))}"
    if kind == ev.TICKET_REQUEUED:
        return (f"requeued {ticket}: {one_line(data.get('reason'), LINE_WIDTH)} "
                f"(attempt {one_line(data.get('attempt', '?'), LINE_WIDTH)})")
    if kind == ev.TICKET_DEFERRED:
        return _describe_deferred(ticket, data)
    if kind == ev.TICKET_STOPPED:
        kept = (f"work kept on {one_line(data.get('branch'), 80)}" if data.get("branch")
                else "stopped before it had a branch: nothing to keep")
        return f"warning: {ticket} stopped; it stays UNPROCESSED ({kept})"
    if kind == ev.DISPATCH_PAUSED:
        until = data.get("until")
        tail = f" until {_when(until)}" if until is not None else ""
        return f"paused starting new tickets: {one_line(data.get('reason'), LINE_WIDTH)}{tail}"
    if kind == ev.DISPATCH_RESUMED:
        return f"resumed starting tickets with {_workers_text(data.get('workers'))}"
    if kind == ev.MESSAGE:
        level = one_line(data.get("level") or "info", 10)
        whole = 4 * LINE_WIDTH if data.get("whole") else LINE_WIDTH  # a message with a command: never cut
        return f"{level}: {one_line(data.get('text'), whole)}"
    if kind == ev.RUN_FINISHED:
        return _describe_run_finished(data)
    return f"{one_line(kind, 40)}" + (f" {ticket}" if ticket else "")


def _workers_text(count: Any) -> str:
    """`1 worker`, `3 workers`; `? workers` when the event does not say."""
    if isinstance(count, int) and not isinstance(count, bool):
        return f"{count} worker{'' if count == 1 else 's'}"
    return f"{one_line(count if count is not None else '?', LINE_WIDTH)} workers"


def _describe_run_started(data: dict[str, Any]) -> str:
    tickets = data.get("tickets")
    ready = data.get("ready")
    count = len(tickets) if isinstance(tickets, dict) else 0
    ready_count = len(ready) if isinstance(ready, list) else 0
    makespan = _number(data.get("predicted_makespan_minutes"))
    predicted = f", predicted makespan {format_minutes(makespan)}" if makespan is not None else ""
    why = f" ({one_line(data.get('target_reason'), 160)})" if data.get("target_reason") else ""
    target = f" onto {one_line(data.get('target'), 80)}{why}" if data.get("target") else ""
    return (f"run {one_line(data.get('run_id'), 60)}{target}: {_workers_text(data.get('workers'))} "
            f"({one_line(data.get('workers_reason') or 'no reason given', LINE_WIDTH)}), "
            f"{count} ticket{'s' if count != 1 else ''} ({ready_count} ready), "
            f"schedule {one_line(data.get('schedule'), 40)}, "
            f"agent {one_line(data.get('agent'), 40)}{predicted}{_page_text(data)}")


def _page_text(data: dict[str, Any]) -> str:
    """Where the run's HTML page is (a browser tab on it is a live dashboard)."""
    return f"; live report {one_line(data.get('report_path'), LINE_WIDTH)}" if data.get("report_path") else ""


def _describe_agent_finished(ticket: str, data: dict[str, Any]) -> str:
    outcome = one_line(data.get("outcome") or "exited", 40)
    code = data.get("returncode")
    code_text = f" ({describe_exit(code)})" if isinstance(code, int) and not isinstance(code, bool) else ""
    verdict = "succeeded" if data.get("success") else "did not succeed"
    line = (f"agent for {ticket} {outcome}{code_text} after "
            f"{format_duration(_number(data.get('duration_s')))}: {verdict}")
    summary = one_line(data.get("summary"), 160)
    return f"{line}: {summary}" if summary else line


def _names(value: Any) -> str:
    return ", ".join(one_line(item, 60) for item in value) if isinstance(value, list) else ""


def _describe_checking(ticket: str, data: dict[str, Any]) -> str:
    checks = data.get("checks")
    count = len(checks) if isinstance(checks, list) else 0
    turn = data.get("turn")
    after = f" after fix turn {one_line(turn, LINE_WIDTH)}" if isinstance(turn, int) and turn > 0 else ""
    return f"checking {ticket}{after}: {count} check{'s' if count != 1 else ''} ({_names(checks)})"


def _describe_checked(ticket: str, data: dict[str, Any]) -> str:
    if data.get("passed"):
        return f"checks passed for {ticket}"
    tail = ": the agent gets another turn" if data.get("fix_turn_next") else ""
    return f"checks failed for {ticket} ({_names(data.get('failed'))}){tail}"


def _describe_deferred(ticket: str, data: dict[str, Any]) -> str:
    category = one_line(data.get("category") or "error", 40)
    message = one_line(data.get("message"), LINE_WIDTH)
    reason = f"{category}: {message}" if message else category
    if data.get("not_before") is not None:
        tail = f" (will retry after {_when(data.get('not_before'))})"
    elif data.get("retryable"):
        tail = " (will retry)"
    else:
        tail = f" (`sage retry {ticket}` to try again)"
    return f"deferred {ticket}: {reason}{tail}"


def _describe_run_finished(data: dict[str, Any]) -> str:
    code = data.get("exit_code")
    meaning = EXIT_MEANINGS.get(code, "") if isinstance(code, int) else ""
    exit_text = f"exit {code}" + (f": {meaning}" if meaning else "")
    parts = []
    for key in ("completed", "deferred", "interrupted", "remaining"):
        value = data.get(key, 0)
        if isinstance(value, bool):  # `interrupted` may be a flag rather than a count
            parts.extend([key] if value else [])
        else:
            parts.append(f"{one_line(value, LINE_WIDTH)} {key}")
    summary = f"; summary {one_line(data.get('summary_path'), LINE_WIDTH)}" if data.get("summary_path") else ""
    cost = _number(data.get("total_cost_usd"))
    cost_text = f", ${cost:.2f} spent" if cost else ""
    stopped = f"; {one_line(data.get('stopped'), LINE_WIDTH)}" if data.get("stopped") else ""
    return (f"finished: {', '.join(parts)} in {format_duration(_number(data.get('duration_s')))}{cost_text} "
            f"({exit_text}){stopped}{summary}{_page_text(data).replace('live report', 'report')}")


# ---------------------------------------------------------------- plain and json


class _LineWriter:
    """Writes whole lines; after the first failed write (closed pipe, full disk) it goes
    quiet, because losing the log must not stop tickets from landing."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.broken = False

    def write(self, line: str) -> None:
        if self.broken:
            return
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # ValueError: write to a closed file
            self.broken = True


class PlainDisplay:
    def __init__(self, stream: TextIO) -> None:
        self._out = _LineWriter(stream)

    def handle(self, event: ev.Event) -> None:
        line = describe(event)
        if line is not None:
            self._out.write(f"{iso_utc(event.time)} {line}")

    def close(self) -> None:
        pass


class JsonDisplay:
    def __init__(self, stream: TextIO) -> None:
        self._out = _LineWriter(stream)

    def handle(self, event: ev.Event) -> None:
        self._out.write(ev.json_line(event))

    def close(self) -> None:
        pass


# ---------------------------------------------------------------- the state the live view shows

# A ticket's stage, in the order a ticket moves through them.
STARTING, RUNNING, CHECKING, QUEUED = "starting", "running", "checking", "queued"
AGENT_STAGES = (STARTING, RUNNING, CHECKING)


@dataclass
class ActiveTicket:
    ticket: str
    title: str
    slot: int | None
    started: float
    stage: str = STARTING
    last_line: str = ""


@dataclass
class RunView:
    """What the run looks like from its events: a pure fold, no clocks, no I/O."""

    run_id: str = ""
    target: str = ""
    workers: int = 0
    workers_reason: str = ""
    report_path: str = ""
    estimates: dict[str, float] = field(default_factory=dict)
    titles: dict[str, str] = field(default_factory=dict)
    active: dict[str, ActiveTicket] = field(default_factory=dict)
    slots: dict[int, str] = field(default_factory=dict)  # slot -> ticket using it now
    landed: dict[str, float | None] = field(default_factory=dict)  # ticket -> seconds taken
    deferred: set[str] = field(default_factory=set)
    paused: str | None = None
    finished: bool = False

    def apply(self, event: ev.Event) -> None:
        handler = _VIEW_UPDATES.get(event.kind)
        if handler is not None:
            handler(self, event)

    # -------- totals

    @property
    def total(self) -> int:
        return len(self.estimates | dict.fromkeys(self.landed) | dict.fromkeys(self.deferred)
                   | dict.fromkeys(self.active))

    @property
    def running(self) -> int:
        return sum(1 for item in self.active.values() if item.stage in AGENT_STAGES)

    @property
    def to_land(self) -> int:
        return sum(1 for item in self.active.values() if item.stage not in AGENT_STAGES)

    @property
    def remaining(self) -> int:
        return self.total - len(self.landed) - len(self.deferred)

    @property
    def waiting(self) -> int:
        return max(self.remaining - len(self.active), 0)

    def eta_minutes(self, now: float) -> float | None:
        """Remaining estimated minutes over the workers, scaled by how long finished
        tickets really took per estimated minute; None until one has landed."""
        ratio = self.observed_ratio()
        if ratio is None or self.workers <= 0:
            return None
        left = 0.0
        for ticket, estimate in self.estimates.items():
            if ticket in self.landed or ticket in self.deferred:
                continue
            minutes = estimate * ratio
            item = self.active.get(ticket)
            if item is not None:
                spent = (now - item.started) / 60 if item.stage in AGENT_STAGES else minutes
                minutes = max(minutes - spent, 0.0)
            left += minutes
        return left / self.workers

    def observed_ratio(self) -> float | None:
        actual = estimated = 0.0
        for ticket, seconds in self.landed.items():
            estimate = self.estimates.get(ticket)
            if seconds is None or not estimate:
                continue
            actual += seconds / 60
            estimated += estimate
        return actual / estimated if estimated > 0 else None

    def rows(self) -> list[tuple[int | None, ActiveTicket | None]]:
        """One row per worker slot (idle ones too), then tickets that left their slot
        to wait for landing while another ticket took it."""
        slot_count = max([self.workers, *(slot + 1 for slot in self.slots)], default=0)
        rows: list[tuple[int | None, ActiveTicket | None]] = []
        for slot in range(slot_count):
            ticket = self.slots.get(slot)
            rows.append((slot, self.active.get(ticket) if ticket else None))
        shown = {item.ticket for _, item in rows if item is not None}
        rows.extend((None, item) for item in self.active.values() if item.ticket not in shown)
        return rows


def _on_run_started(view: RunView, event: ev.Event) -> None:
    data = event.data
    view.run_id = one_line(data.get("run_id"), 60)
    view.target = one_line(data.get("target"), 80)
    view.workers = _count(data.get("workers"))
    view.workers_reason = one_line(data.get("workers_reason"), LINE_WIDTH)
    view.report_path = one_line(data.get("report_path") or "", LINE_WIDTH)
    tickets = data.get("tickets")
    for ticket, info in (tickets.items() if isinstance(tickets, dict) else ()):
        info = info if isinstance(info, dict) else {}
        estimate = _number(info.get("estimate"))
        view.estimates[str(ticket)] = estimate if estimate is not None and estimate > 0 else 1.0
        view.titles[str(ticket)] = one_line(info.get("title"), TITLE_WIDTH * 2)


def _worker_row(data: dict) -> int | None:
    """The row a started ticket takes: its worker (`row`); events of older runs have
    only `slot`, which was the worker then."""
    for key in ("row", "slot"):
        value = data.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1024:
            return value
    return None


def _on_ticket_started(view: RunView, event: ev.Event) -> None:
    ticket = event.ticket or "?"
    slot = _worker_row(event.data)
    title = one_line(event.data.get("title"), TITLE_WIDTH * 2) or view.titles.get(ticket, "")
    view.active[ticket] = ActiveTicket(ticket=ticket, title=title, slot=slot, started=event.time)
    view.deferred.discard(ticket)
    if slot is not None:
        view.slots[slot] = ticket


def _set_stage(stage: str) -> Callable[[RunView, ev.Event], None]:
    def update(view: RunView, event: ev.Event) -> None:
        item = view.active.get(event.ticket or "")
        if item is not None:
            item.stage = stage
    return update


def _on_ticket_checked(view: RunView, event: ev.Event) -> None:
    item = view.active.get(event.ticket or "")
    if item is not None and event.data.get("fix_turn_next"):
        item.stage = RUNNING  # the agent's fix turn


def _on_agent_output(view: RunView, event: ev.Event) -> None:
    item = view.active.get(event.ticket or "")
    if item is not None:
        item.last_line = one_line(event.data.get("line"), LINE_WIDTH)
        if item.stage == STARTING:
            item.stage = RUNNING


def _release(view: RunView, ticket: str) -> None:
    item = view.active.pop(ticket, None)
    if item is not None and item.slot is not None and view.slots.get(item.slot) == ticket:
        del view.slots[item.slot]


def _on_ticket_landed(view: RunView, event: ev.Event) -> None:
    ticket = event.ticket or "?"
    _release(view, ticket)
    view.landed[ticket] = _number(event.data.get("duration_s"))


def _on_ticket_requeued(view: RunView, event: ev.Event) -> None:
    _release(view, event.ticket or "?")


def _on_ticket_deferred(view: RunView, event: ev.Event) -> None:
    ticket = event.ticket or "?"
    _release(view, ticket)
    view.deferred.add(ticket)


def _on_dispatch_paused(view: RunView, event: ev.Event) -> None:
    until = event.data.get("until")
    tail = f" until {_when(until)}" if until is not None else ""
    view.paused = f"{one_line(event.data.get('reason'), 120)}{tail}"


def _on_dispatch_resumed(view: RunView, event: ev.Event) -> None:
    view.paused = None
    workers = _count(event.data.get("workers"))
    if workers:
        view.workers = workers


def _on_run_finished(view: RunView, event: ev.Event) -> None:
    view.finished = True


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1024 else 0


_VIEW_UPDATES: dict[str, Callable[[RunView, ev.Event], None]] = {
    ev.RUN_STARTED: _on_run_started,
    ev.TICKET_STARTED: _on_ticket_started,
    ev.AGENT_OUTPUT: _on_agent_output,
    ev.AGENT_FINISHED: _set_stage(CHECKING),
    ev.TICKET_CHECKING: _set_stage(CHECKING),
    ev.TICKET_CHECKED: _on_ticket_checked,
    ev.TICKET_QUEUED: _set_stage(QUEUED),
    ev.TICKET_LANDED: _on_ticket_landed,
    ev.TICKET_REQUEUED: _on_ticket_requeued,
    ev.TICKET_DEFERRED: _on_ticket_deferred,
    ev.TICKET_STOPPED: _on_ticket_requeued,  # its row is free; it is neither landed nor deferred
    ev.DISPATCH_PAUSED: _on_dispatch_paused,
    ev.DISPATCH_RESUMED: _on_dispatch_resumed,
    ev.RUN_FINISHED: _on_run_finished,
}


# ---------------------------------------------------------------- live


_LINE_STYLES = {
    ev.TICKET_LANDED: "green",
    ev.TICKET_DEFERRED: "yellow",
    ev.TICKET_STOPPED: "yellow",
    ev.TICKET_REQUEUED: "yellow",
    ev.DISPATCH_PAUSED: "yellow",
    ev.RUN_FINISHED: "bold",
}
_SHOWN_IN_TABLE_ONLY = {ev.AGENT_OUTPUT, ev.AGENT_FINISHED, ev.TICKET_QUEUED, ev.TICKET_CHECKING}
_STAGE_STYLES = {STARTING: "dim", RUNNING: "cyan", CHECKING: "magenta", QUEUED: "blue"}


class LiveDisplay:
    """A table of worker slots redrawn in place; event lines are printed above it."""

    def __init__(self, console: Any, *, clock: Callable[[], float] = time.time,
                 refresh_per_second: float = 4) -> None:
        from rich.live import Live

        self.console = console
        self.view = RunView()
        self._clock = clock
        self._lock = threading.Lock()
        self._closed = False
        self._live = Live(console=console, refresh_per_second=refresh_per_second, transient=False,
                          redirect_stdout=False, redirect_stderr=False, get_renderable=self.render)

    @classmethod
    def on_stream(cls, stream: TextIO) -> LiveDisplay:
        from rich.console import Console

        return cls(Console(file=stream, highlight=False))

    def handle(self, event: ev.Event) -> None:
        if self._closed:
            return
        # The state changes under our lock; printing happens outside it, because the
        # refresh thread holds rich's lock while it asks us for the table.
        with self._lock:
            self.view.apply(event)
        if not self._live.is_started:
            self._live.start()
        # the table already shows these; the lines are for what a person wants in scrollback
        if event.kind not in _SHOWN_IN_TABLE_ONLY:
            line = describe(event)
            if line is not None:
                # rich prints above the last table it drew: draw the updated one first
                self._live.refresh()
                self._print_line(event, line)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._live.is_started:
            self._live.stop()

    def _print_line(self, event: ev.Event, line: str) -> None:
        from rich.text import Text

        if event.kind == ev.MESSAGE:
            level = event.data.get("level")
            style = "red" if level == "error" else "yellow" if level == "warning" else ""
        else:
            style = _LINE_STYLES.get(event.kind, "")
        stamp = time.strftime("%H:%M:%S", time.localtime(event.time))
        self._live.console.print(Text(f"{stamp} {line}", style=style), soft_wrap=False, overflow="fold")

    def render(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        now = self._clock()
        with self._lock:
            view = self.view
            header = Text(self._header(view), style="bold", no_wrap=True, overflow="ellipsis")
            table = Table(expand=True, show_edge=False, pad_edge=False, box=None)
            table.add_column("worker", justify="right", no_wrap=True, min_width=2)
            table.add_column("ticket", no_wrap=True, overflow="ellipsis", max_width=24)
            table.add_column("title", no_wrap=True, overflow="ellipsis", ratio=2, max_width=TITLE_WIDTH)
            table.add_column("elapsed", justify="right", no_wrap=True)
            table.add_column("state", no_wrap=True)
            table.add_column("last output", no_wrap=True, overflow="ellipsis", ratio=3)
            for slot, item in view.rows():
                slot_text = str(slot + 1) if slot is not None else "-"
                if item is None:
                    table.add_row(slot_text, "", "", "", Text("idle", style="dim"), "")
                    continue
                table.add_row(slot_text, Text(item.ticket), Text(item.title),
                              format_duration(max(now - item.started, 0.0)),
                              Text(item.stage, style=_STAGE_STYLES.get(item.stage, "")),
                              Text(item.last_line, style="dim"))
            totals = Text(self._totals(view, now), no_wrap=True, overflow="ellipsis")
            parts: list[Any] = [header, table, totals]
            if view.paused:
                parts.append(Text(f"paused: {view.paused}", style="yellow", no_wrap=True, overflow="ellipsis"))
        return Group(*parts)

    @staticmethod
    def _header(view: RunView) -> str:
        target = f" onto {view.target}" if view.target else ""
        reason = f" ({view.workers_reason})" if view.workers_reason else ""
        page = f" · report {view.report_path}" if view.report_path else ""
        return f"sage stream {view.run_id}{target}: {_workers_text(view.workers)}{reason}{page}"

    @staticmethod
    def _totals(view: RunView, now: float) -> str:
        eta = view.eta_minutes(now)
        if view.remaining == 0 and view.total:
            eta_text = "done"
        else:
            eta_text = f"ETA {format_minutes(eta)}" if eta is not None else "ETA unknown"
        return (f"landed {len(view.landed)} · deferred {len(view.deferred)} · running {view.running}"
                f" · to land {view.to_land} · waiting {view.waiting} · remaining {view.remaining}"
                f" · {eta_text}")
