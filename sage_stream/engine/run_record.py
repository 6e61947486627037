"""The run summary: `.sage/runs/<run-id>.json`, written during and after each run.

`sage status` reads it; the engine rewrites it atomically as tickets move, so a reader
sees either the previous or the next version, never half of one. Reading is tolerant:
a missing or mistyped key becomes its default (an older or newer sage-stream wrote the
file); only a file that is not a JSON object at all is an error, naming the file.

    {
      "format": 1,
      "run_id": "20261121T091403Z-3f2a1c",
      "pid": 4242, "pid_create_time": 1795252443.12,
      "started": "2026-11-21T09:14:03Z", "finished": null,
      "status": "running",                 # running | finished | interrupted | failed
      "target": "main", "workers": 3, "workers_reason": "...",
      "schedule": "critical-path", "agent": "claude",
      "exit_code": null, "total_cost_usd": 0.42,
      "tickets": {
        "CALC-002": {"id": "CALC-002", "title": "...",
                     "outcome": "landed",  # running | queued | landed | deferred | interrupted | requeued
                     "start": "...", "end": "...", "duration_s": 12.4, "commit": "3f2a1c9...",
                     "attempts": 1, "category": null, "message": null,
                     "log": ".sage/workers/CALC-002/agent.log", "summary": "...",
                     "cost_usd": 0.14, "session_id": "..."}
      }
    }

A ticket's outcome "queued" means its agent finished and it waits in the commit queue
to land; tickets the run has not started yet are not listed. Beside them, `plan`,
`attempts` (each with its phases), `marks` and `updated` hold the run's timeline, which
`sage report` draws (engine/run_timeline.py documents them); a record without them reads.
"""

from __future__ import annotations

import html
import json
import math
import re
import secrets
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from sage_stream.durable import TEMP_PREFIX, write_atomic, write_json_atomic
from sage_stream.engine import events as ev
from sage_stream.engine.outcomes import run_exit_code
from sage_stream.engine.run_lock import is_alive, process_identity
from sage_stream.engine.run_timeline import RunTimeline
from sage_stream.errors import EXIT_ERROR, EXIT_INTERRUPTED, SageError
from sage_stream.paths import SagePaths
from sage_stream.text import PRETTY_JSON_LIMIT, epoch_of, iso_utc

FORMAT_VERSION = 1
RUN_ID_PATTERN = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,127}$")
# psutil derives a create time from the boot time, which the kernel shifts when the wall
# clock is stepped; a PID reused within the same second is not a practical risk.

RUNNING, FINISHED, INTERRUPTED, FAILED = "running", "finished", "interrupted", "failed"
RUN_STATUSES = (RUNNING, FINISHED, INTERRUPTED, FAILED)
TICKET_OUTCOMES = ("running", "queued", "landed", "deferred", "interrupted", "requeued")


@dataclass
class TicketRecord:
    id: str
    title: str = ""
    outcome: str = "running"
    start: str | None = None
    end: str | None = None
    commit: str | None = None
    attempts: int = 0
    category: str | None = None
    message: str | None = None
    log: str | None = None
    summary: str | None = None
    cost_usd: float | None = None
    session_id: str | None = None
    duration_s: float | None = None
    worker: str | None = None  # --executor dask://: the Dask worker of its last attempt

    def to_json(self) -> dict[str, Any]:
        return {item.name: getattr(self, item.name) for item in fields(self)}

    @classmethod
    def from_json(cls, ticket_id: str, data: Any) -> TicketRecord:
        data = data if isinstance(data, dict) else {}
        return cls(
            id=_text(data.get("id")) or ticket_id,
            title=_text(data.get("title")) or "",
            outcome=_text(data.get("outcome")) or "unknown",
            start=_text(data.get("start")),
            end=_text(data.get("end")),
            commit=_text(data.get("commit")),
            attempts=_integer(data.get("attempts")) or 0,
            category=_text(data.get("category")),
            message=_text(data.get("message")),
            log=_text(data.get("log")),
            summary=_text(data.get("summary")),
            cost_usd=_real(data.get("cost_usd")),
            session_id=_text(data.get("session_id")),
            duration_s=_real(data.get("duration_s")),
            worker=_text(data.get("worker")),
        )


@dataclass
class RunRecord:
    run_id: str
    pid: int | None = None
    pid_create_time: float | None = None
    started: str | None = None
    finished: str | None = None
    status: str = RUNNING
    target: str | None = None
    target_reason: str | None = None  # why this run lands there (engine/settings.py backlog_target)
    workers: int | None = None
    workers_reason: str | None = None
    schedule: str | None = None
    agent: str | None = None
    exit_code: int | None = None
    tickets: dict[str, TicketRecord] = field(default_factory=dict)
    total_cost_usd: float | None = None
    timeline: RunTimeline = field(default_factory=RunTimeline)  # plan, attempts, marks, updated

    @classmethod
    def for_this_process(cls, run_id: str, *, started: str | None = None) -> RunRecord:
        """A new record owned by the calling process (pid + create time, for liveness)."""
        pid, create_time = process_identity()
        return cls(run_id=run_id, pid=pid, pid_create_time=create_time,
                   started=started or iso_utc(time.time()))

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"format": FORMAT_VERSION}
        for item in fields(self):
            data[item.name] = getattr(self, item.name)
        data["tickets"] = {ticket_id: record.to_json() for ticket_id, record in self.tickets.items()}
        del data["timeline"]
        data.update(self.timeline.to_json())
        return data

    @classmethod
    def from_json(cls, data: Any) -> RunRecord:
        """The record in `data`; missing or mistyped keys get defaults. Raises SageError
        (without a path: `read_run` adds it) when `data` is not a run record at all."""
        if not isinstance(data, dict):
            raise SageError(f"not a run record: expected a JSON object, found {type(data).__name__}")
        run_id = _text(data.get("run_id"))
        if not run_id:
            raise SageError("not a run record: no run_id")
        raw_tickets = data.get("tickets")
        tickets = {
            str(ticket_id): TicketRecord.from_json(str(ticket_id), value)
            for ticket_id, value in (raw_tickets.items() if isinstance(raw_tickets, dict) else ())
        }
        return cls(
            run_id=run_id,
            pid=_integer(data.get("pid")),
            pid_create_time=_real(data.get("pid_create_time")),
            started=_text(data.get("started")),
            finished=_text(data.get("finished")),
            status=_text(data.get("status")) or RUNNING,
            target=_text(data.get("target")), target_reason=_text(data.get("target_reason")),
            workers=_integer(data.get("workers")),
            workers_reason=_text(data.get("workers_reason")),
            schedule=_text(data.get("schedule")),
            agent=_text(data.get("agent")),
            exit_code=_integer(data.get("exit_code")),
            tickets=tickets,
            total_cost_usd=_real(data.get("total_cost_usd")),
            timeline=RunTimeline.from_json(data),
        )

    def apply(self, event: ev.Event) -> None:
        """Fold one engine event into the record (the engine writes it after)."""
        handler = _RECORD_UPDATES.get(event.kind)
        if handler is not None:
            handler(self, event)
        self.timeline.apply(event)

    def ticket(self, ticket_id: str) -> TicketRecord:
        record = self.tickets.get(ticket_id)
        if record is None:
            record = self.tickets[ticket_id] = TicketRecord(id=ticket_id)
        return record

    def _sum_costs(self) -> None:
        costs = [record.cost_usd for record in self.tickets.values() if record.cost_usd is not None]
        self.total_cost_usd = round(sum(costs), 6) if costs else None


# ---------------------------------------------------------------- events -> record


def record_from_events(run_id: str, events: Iterable[ev.Event], *, pid: int | None = None,
                       pid_create_time: float | None = None) -> RunRecord:
    record = RunRecord(run_id=run_id, pid=pid, pid_create_time=pid_create_time)
    for event in events:
        record.apply(event)
    return record


def _on_run_started(record: RunRecord, event: ev.Event) -> None:
    data = event.data
    record.started = record.started or iso_utc(event.time)
    record.status = RUNNING
    record.target = _text(data.get("target"))
    record.target_reason = _text(data.get("target_reason"))
    record.workers = _integer(data.get("workers"))
    record.workers_reason = _text(data.get("workers_reason"))
    record.schedule = _text(data.get("schedule"))
    record.agent = _text(data.get("agent"))


def _on_ticket_started(record: RunRecord, event: ev.Event) -> None:
    ticket = record.ticket(event.ticket or "?")
    data = event.data
    ticket.title = _text(data.get("title")) or ticket.title
    ticket.outcome = "running"
    ticket.start = iso_utc(event.time)
    ticket.end = None
    ticket.duration_s = None
    ticket.attempts = _integer(data.get("attempt")) or ticket.attempts + 1
    ticket.log = _text(data.get("log")) or ticket.log
    ticket.category = ticket.message = None


def _on_worker_named(record: RunRecord, event: ev.Event) -> None:
    """A remote attempt's runner says which worker runs it (a message with a `worker`)."""
    worker = _text(event.data.get("worker"))
    if event.ticket and worker:
        record.ticket(event.ticket).worker = worker


def _on_agent_finished(record: RunRecord, event: ev.Event) -> None:
    ticket = record.ticket(event.ticket or "?")
    data = event.data
    ticket.summary = _text(data.get("summary")) or ticket.summary
    # optional keys: what the agent reported about itself
    cost = _real(data.get("cost_usd"))
    if cost is not None:
        ticket.cost_usd = (ticket.cost_usd or 0.0) + cost  # a requeued ticket pays twice
        record._sum_costs()
    ticket.session_id = _text(data.get("session_id")) or ticket.session_id


def _on_ticket_queued(record: RunRecord, event: ev.Event) -> None:
    record.ticket(event.ticket or "?").outcome = "queued"


def _finish_ticket(record: RunRecord, event: ev.Event, outcome: str) -> TicketRecord:
    ticket = record.ticket(event.ticket or "?")
    ticket.outcome = outcome
    ticket.end = iso_utc(event.time)
    return ticket


def _on_ticket_landed(record: RunRecord, event: ev.Event) -> None:
    ticket = _finish_ticket(record, event, "landed")
    ticket.commit = _text(event.data.get("commit"))
    ticket.duration_s = _real(event.data.get("duration_s"))


def _on_ticket_requeued(record: RunRecord, event: ev.Event) -> None:
    ticket = _finish_ticket(record, event, "requeued")
    ticket.category = _text(event.data.get("category")) or "conflict"
    ticket.message = _text(event.data.get("reason"))


def _on_ticket_deferred(record: RunRecord, event: ev.Event) -> None:
    ticket = _finish_ticket(record, event, "deferred")
    ticket.category = _text(event.data.get("category"))
    ticket.message = _text(event.data.get("message"))


def _on_ticket_stopped(record: RunRecord, event: ev.Event) -> None:
    ticket = _finish_ticket(record, event, "interrupted")
    ticket.message = _text(event.data.get("message"))


def _on_run_finished(record: RunRecord, event: ev.Event) -> None:
    code = _integer(event.data.get("exit_code"))
    record.exit_code = code
    record.finished = iso_utc(event.time)
    record.status = {EXIT_INTERRUPTED: INTERRUPTED, EXIT_ERROR: FAILED}.get(code, FINISHED)
    for ticket in record.tickets.values():
        if ticket.outcome in ("running", "queued", "requeued"):
            ticket.outcome = "interrupted"
            ticket.end = ticket.end or record.finished


_RECORD_UPDATES = {
    ev.RUN_STARTED: _on_run_started,
    ev.TICKET_STARTED: _on_ticket_started,
    ev.AGENT_FINISHED: _on_agent_finished,
    ev.TICKET_QUEUED: _on_ticket_queued,
    ev.TICKET_LANDED: _on_ticket_landed,
    ev.TICKET_REQUEUED: _on_ticket_requeued,
    ev.TICKET_DEFERRED: _on_ticket_deferred,
    ev.TICKET_STOPPED: _on_ticket_stopped,
    ev.RUN_FINISHED: _on_run_finished,
    ev.MESSAGE: _on_worker_named,
}


# what the timeline folds that the ticket records do not: worth a write of the record too
_TIMELINE_ONLY = frozenset({ev.TICKET_CHECKING, ev.TICKET_CHECKED, ev.DISPATCH_PAUSED, ev.DISPATCH_RESUMED})


# ---------------------------------------------------------------- files


def runs_dir(sage_dir: Path) -> Path:
    return SagePaths(Path(sage_dir)).runs


def new_run_id() -> str:
    """Sorts by start time: 20261121T091403Z-3f2a1c."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def run_path(sage_dir: Path, run_id: str) -> Path:
    if not RUN_ID_PATTERN.match(run_id):
        raise SageError(f"invalid run id {run_id!r}: expected letters, digits, '.', '_' or '-'")
    return SagePaths(Path(sage_dir)).run_record(run_id)


def run_page_path(sage_dir: Path, run_id: str) -> Path:
    """The run's HTML page, beside its record: `.sage/runs/<run-id>.html`."""
    return run_path(sage_dir, run_id).with_suffix(".html")


DRAWN_PAGE_LIMIT = 10_000
"""Above this many planned tickets the run does not draw its page itself: at 70,000 one
drawing took 3-5 s and 270 MB, for a 52 MB page. It writes a short page saying so and
`sage report RUN_ID` draws the whole one, at the same path, when asked."""


def write_run_page(sage_dir: Path, record: RunRecord, *, live: bool) -> Path:
    """The run's page, written atomically; `live`: it reloads itself every few seconds."""
    path = run_page_path(sage_dir, record.run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    planned = planned_count(record)
    if planned > DRAWN_PAGE_LIMIT:
        write_atomic(path, _undrawn_page(record, planned).encode("utf-8"))
        return path
    from sage_stream.report.html import report_html  # here: `sage status` reads records without it
    from sage_stream.report.model import build_report
    write_atomic(path, report_html(build_report(record.to_json(), live=live)).encode("utf-8"))
    return path


def _undrawn_page(record: RunRecord, planned: int) -> str:
    run_id = html.escape(record.run_id)
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>sage run " + run_id + "</title></head>"
            "<body><p>Run " + run_id + f" plans {planned:,} tickets, more than the {DRAWN_PAGE_LIMIT:,} a run "
            "draws its own page for. <code>sage report " + run_id + "</code> draws it here (or "
            "<code>--format text</code>: the totals in a terminal).</p></body></html>\n")


def planned_count(record: RunRecord) -> int:
    """The tickets the run's plan (its run_started event) lists."""
    plan = record.timeline.plan
    tickets = plan.get("tickets") if isinstance(plan, dict) else None
    return len(tickets) if isinstance(tickets, dict) else 0


def write_run(sage_dir: Path, record: RunRecord) -> Path:
    """The record, atomically: indented for a reader up to PRETTY_JSON_LIMIT planned tickets,
    one compact line above (json's C encoder: at 70,000 planned tickets the indenting one
    took seconds of the run's start, before its first agent)."""
    path = run_path(sage_dir, record.run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = record.to_json()
    if planned_count(record) + len(record.tickets) <= PRETTY_JSON_LIMIT:
        write_json_atomic(path, data)
        return path
    plan = data.pop("plan", None)
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    if plan is not None:
        text = f'{text[:-1]},"plan":{_encoded_plan(plan)}}}'
    write_atomic(path, (text + "\n").encode("utf-8"))
    return path


_plan_encoded: tuple[Any, str] | None = None  # the last plan written, and its JSON


def _encoded_plan(plan: Any) -> str:
    """`plan` as compact JSON, encoded once per run: it never changes once the run has
    started, and at 100,000 tickets encoding it was most of every record write (10 ms per
    ticket of a 50-ticket drain). Its tickets are those of the run_started event, encoded
    once for both (events.py `plan_tickets_json`)."""
    global _plan_encoded
    if _plan_encoded is None or _plan_encoded[0] is not plan:
        tickets = plan.get("tickets") if isinstance(plan, dict) else None
        if isinstance(tickets, dict):
            rest = json.dumps({key: value for key, value in plan.items() if key != "tickets"},
                              ensure_ascii=False, separators=(",", ":"))
            text = '{"tickets":' + ev.plan_tickets_json(tickets) + ("," + rest[1:] if rest != "{}" else "}")
        else:
            text = json.dumps(plan, ensure_ascii=False, separators=(",", ":"))
        _plan_encoded = (plan, text)
    return _plan_encoded[1]


def read_run(path: Path) -> RunRecord:
    """The record in `path`; SageError naming the file when it is unreadable or garbage."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SageError(f"{path}: cannot read run record: {getattr(error, 'strerror', None) or error}")
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        raise SageError(f"{path}: not a run record: invalid JSON ({error}); delete the file to go on")
    try:
        return RunRecord.from_json(data)
    except SageError as error:
        raise SageError(f"{path}: {error.message}; delete the file to go on")


def run_files(sage_dir: Path) -> list[Path]:
    """Run record files, newest first (by run id, then by modification time)."""
    directory = runs_dir(sage_dir)
    try:
        paths = [path for path in directory.iterdir()
                 if path.suffix == ".json" and not path.name.startswith((TEMP_PREFIX, "."))]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(paths, key=lambda path: (path.stem[:16], _mtime(path), path.stem), reverse=True)


def latest_run(sage_dir: Path) -> RunRecord | None:
    files = run_files(sage_dir)
    return read_run(files[0]) if files else None


def iter_runs(sage_dir: Path, *, skip_unreadable: bool = True) -> Iterator[RunRecord]:
    """Records newest first; unreadable files are skipped unless asked otherwise."""
    for path in run_files(sage_dir):
        try:
            yield read_run(path)
        except SageError:
            if not skip_unreadable:
                raise


def alive_run(sage_dir: Path) -> RunRecord | None:
    """The newest run whose process is still alive, if any."""
    for record in iter_runs(sage_dir):
        if record.status == RUNNING and is_run_alive(record):
            return record
    return None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


# ---------------------------------------------------------------- liveness


def is_run_alive(record: RunRecord) -> bool:
    """Whether the process that wrote `record` still runs (pid *and* create time)."""

    return is_alive(record.pid, record.pid_create_time)


# ---------------------------------------------------------------- tolerant field readers


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    return value if isinstance(value, str) else str(value)


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _real(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


# ---------------------------------------------------------------- the live record


PAGE_AT_START_LIMIT = 1000
"""Up to this many planned tickets the run's page is written with its first event; above,
once the loop has started the first agents, and no sooner than its cost allows (below)."""
PAGE_S_PER_PLANNED_TICKET = 40e-6
"""What drawing the page costs per planned ticket until one was drawn (measured: 0.29 s for
7,050 planned tickets), so that a big run's first page waits `page_cost_factor` times that
too: drawn at once, a 50-ticket drain in a 10,000-ticket index spent 11% of its time on it."""


class RunReport:
    """Every event of the run goes here: folded into the run's record, which is rewritten
    atomically at most twice a second, and at least `record_cost_factor` (20) times as long
    as the last write took (it is a report: the index is what recovery trusts; at 100,000
    tickets one write encodes the whole plan, 0.1 s), and shown by the display, which
    decides nothing. The run's HTML page
    (`sage report`'s) is rewritten from the record too, less often: at least every
    `page_interval_s` and at least `page_cost_factor` (20) times as long as the last page
    took to render, so a big run's page costs the loop at most ~5% of its time."""

    def __init__(self, sage_dir: Path, record: RunRecord, display: Any, *, min_interval_s: float = 0.5,
                 page_interval_s: float = 2.0, page_cost_factor: float = 20.0,
                 record_cost_factor: float = 20.0) -> None:
        self.sage_dir = sage_dir
        self.record = record
        self.display = display
        self.min_interval_s = min_interval_s
        self.record_cost_factor = record_cost_factor
        self._save_cost_s = 0.0
        self.page_interval_s = page_interval_s
        self.page_cost_factor = page_cost_factor
        self._saved_at = 0.0
        self._pending = False
        self._page_at = -math.inf
        self._page_cost_s = 0.0
        self._page_failed = False

    def emit(self, kind: str, ticket_id: str | None, **data: Any) -> None:
        if kind == ev.RUN_STARTED:
            data.setdefault("report_path", str(run_page_path(self.sage_dir, self.record.run_id)))
        event = ev.Event(kind=kind, ticket=ticket_id, data=data)
        self.record.apply(event)
        self.display.handle(event)
        worth_a_write = event.kind != ev.MESSAGE or "worker" in data  # of messages, only a worker's name
        if (event.kind in _RECORD_UPDATES and worth_a_write) or event.kind in _TIMELINE_ONLY:
            # A big run's first page waits for the loop (`flush`) or the next save: drawn here
            # it would hold back the first agent by seconds (70,000 planned tickets: 3 s).
            held_back = kind == ev.RUN_STARTED and planned_count(self.record) > PAGE_AT_START_LIMIT
            if held_back:
                self._page_at = time.monotonic()
                self._page_cost_s = planned_count(self.record) * PAGE_S_PER_PLANNED_TICKET
            self._warn(self._save(page=not held_back))

    def flush(self) -> None:
        """A write that was held back, now that the loop is idle."""
        if self._pending:
            self._warn(self._save())
        elif self._page_due(time.monotonic()):
            self._write_page(force=False)

    def failed(self) -> None:
        """The engine itself failed: the record says so (its write may fail the same way)."""
        self.record.apply(ev.Event(kind=ev.RUN_FINISHED, ticket=None, data={"exit_code": EXIT_ERROR}))
        self._save(force=True)

    def finish(self, *, remaining: int, interrupted: bool, halt_exit: int | None, halted: str | None) -> int:
        """The run is over: its exit code, the last event, and the record written."""
        tickets = self.record.tickets.values()
        landed = sum(1 for record in tickets if record.outcome == "landed")
        deferred = sum(1 for record in tickets if record.outcome == "deferred")
        code = run_exit_code(interrupted=interrupted, deferred=deferred, halt_exit=halt_exit)
        self.emit(ev.RUN_FINISHED, None, completed=landed, deferred=deferred, interrupted=interrupted,
                  remaining=max(remaining - deferred, 0), exit_code=code,  # as the live view counts them
                  duration_s=round(time.time() - (epoch_of(self.record.started) or time.time()), 1),
                  summary_path=str(run_path(self.sage_dir, self.record.run_id)),
                  report_path=str(run_page_path(self.sage_dir, self.record.run_id)),
                  total_cost_usd=self.record.total_cost_usd,
                  stopped=f"stopped starting tickets: {halted}" if halted else None)
        error = self._save(force=True)
        if error is not None:
            raise error
        return code

    def _save(self, *, force: bool = False, page: bool = True) -> OSError | None:
        now = time.monotonic()
        if not force and now - self._saved_at < max(self.min_interval_s, self.record_cost_factor * self._save_cost_s):
            self._pending = True  # written by `flush` when the loop is idle
            return None
        self._saved_at, self._pending = now, False
        try:
            write_run(self.sage_dir, self.record)
        except OSError as error:
            return error
        finally:
            self._save_cost_s = time.monotonic() - now
        if page:
            self._write_page(force=force)
        return None

    def _page_due(self, now: float) -> bool:
        return now - self._page_at >= max(self.page_interval_s, self.page_cost_factor * self._page_cost_s)

    def _write_page(self, *, force: bool) -> None:
        started = time.monotonic()
        if self._page_failed or not (force or self._page_due(started)):
            return
        self._page_at = started
        try:
            write_run_page(self.sage_dir, self.record, live=self.record.status == RUNNING)
        except Exception as error:  # the page is a view: its failure must not stop the run it shows
            self._page_failed = True
            self.display.handle(ev.Event(kind=ev.MESSAGE, ticket=None, data=dict(
                level="warning", text=f"could not write the run's report page (no more tries this run): {error}")))
        self._page_cost_s = time.monotonic() - started

    def _warn(self, error: OSError | None) -> None:
        if error is not None:
            self.display.handle(ev.Event(kind=ev.MESSAGE, ticket=None, data=dict(
                level="warning", text=f"could not write the run summary: {error}")))

