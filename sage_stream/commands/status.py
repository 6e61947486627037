"""`sage status`: the current run if one is alive, else the last one, and the index counts."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import click

from sage_stream.engine.display import EXIT_MEANINGS, LINE_WIDTH
from sage_stream.engine.run_record import RUNNING, RunRecord, TicketRecord, alive_run, latest_run
from sage_stream.errors import EXIT_ERROR, EXIT_OK, SageError
from sage_stream.text import format_duration, one_line, parse_timestamp
from sage_stream.tickets.models import State
from sage_stream.tickets.store import load_index, resolve_index_path

CRASHED = "crashed"


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--index", "index_option", type=click.Path(dir_okay=False),
              help="The ticket index (default: .sage/tickets/index.json here or above).")
def command(as_json: bool, index_option: str | None) -> int:
    """Show the current or last run, and how many tickets are in each state."""
    index_path = resolve_index_path(index_option)
    sage_dir = index_path.parent.parent
    record, alive = find_run(sage_dir)
    counts, index_error = _state_counts(index_path)
    now = time.time()
    waiting = landings_waiting(sage_dir, record, alive)
    if as_json:
        data = status_json(record, alive, counts, index_error, index_path)
        click.echo(json.dumps({**data, "landings_waiting": waiting}, indent=2))
    else:
        for line in status_lines(record, alive, repo_root=sage_dir.parent, now=now):
            click.echo(line)
        if waiting:
            click.echo(waiting)
        click.echo(f"tickets: {index_error}" if index_error else counts_line(counts))
    return EXIT_ERROR if index_error else EXIT_OK


def find_run(sage_dir: Path) -> tuple[RunRecord | None, bool]:
    """The alive run if there is one, else the newest; and whether it is alive."""
    current = alive_run(sage_dir)
    if current is not None:
        return current, True
    return latest_run(sage_dir), False


def landings_waiting(sage_dir: Path, record: RunRecord | None, alive: bool) -> str | None:
    """Why landings wait, when they do: work is queued (or a run is alive) and a checkout of
    the run's target has uncommitted changes (engine/checkout_wait.py)."""
    from sage_stream.engine.checkout_wait import dirty_checkouts, waiting_message
    from sage_stream.git import Git, GitError
    from sage_stream.paths import SagePaths

    queue = SagePaths(sage_dir).commit_queue
    if record is None or not record.target or not (alive or any(queue.glob("*.json"))):
        return None
    try:
        dirty = dirty_checkouts(Git(sage_dir.parent), record.target)
    except (GitError, OSError):
        return None  # not a repository any more: nothing can land anyway
    return waiting_message(record.target, dirty) if dirty else None


def run_state(record: RunRecord, alive: bool) -> str:
    """The record's status, except that a "running" run whose process is gone crashed."""
    if record.status == RUNNING and not alive:
        return CRASHED
    return record.status


# ---------------------------------------------------------------- text


def status_lines(record: RunRecord | None, alive: bool, *, repo_root: Path, now: float) -> list[str]:
    if record is None:
        return ["no runs yet"]
    lines = [_headline(record, alive, now), _settings_line(record)]
    rows = list(record.tickets.values())
    width = max((len(one_line(row.id, 40)) for row in rows), default=0)
    lines.extend(_ticket_line(row, width, repo_root, now) for row in rows)
    if not rows:
        lines.append("  no tickets started")
    return lines


def _headline(record: RunRecord, alive: bool, now: float) -> str:
    state = run_state(record, alive)
    name = f"{'current' if alive else 'last'} run {one_line(record.run_id, 80)}"
    pid = record.pid if record.pid is not None else "?"
    started = one_line(record.started or "?", 40)
    if state == RUNNING:
        so_far = _seconds_between(record.started, None, now)
        return f"{name}: running (pid {pid}) since {started}" + (
            f" ({format_duration(so_far)} so far)" if so_far is not None else "")
    if state == CRASHED:
        return (f"{name}: crashed (pid {pid} gone), started {started}; "
                "the next `sage stream` will recover it")
    took = _seconds_between(record.started, record.finished, now)
    code = record.exit_code
    exit_text = f"exit {code}" if code is not None else "no exit code"
    if code in EXIT_MEANINGS:
        exit_text += f": {EXIT_MEANINGS[code]}"
    return (f"{name}: {one_line(state, 20)} at {one_line(record.finished or '?', 40)} ({exit_text})"
            + (f", took {format_duration(took)}" if took is not None else ""))


def _settings_line(record: RunRecord) -> str:
    parts = []
    if record.target:
        parts.append(f"onto {one_line(record.target, 80)}")
    if record.workers is not None:
        reason = f" ({one_line(record.workers_reason, 120)})" if record.workers_reason else ""
        parts.append(f"{record.workers} worker{'' if record.workers == 1 else 's'}{reason}")
    if record.schedule:
        parts.append(f"schedule {one_line(record.schedule, 40)}")
    if record.agent:
        parts.append(f"agent {one_line(record.agent, 40)}")
    if record.total_cost_usd:  # 0.0 is what a run writes before any agent reports a cost
        parts.append(f"cost ${record.total_cost_usd:.2f}")
    return "  " + (", ".join(parts) or "no settings recorded")


def _ticket_line(row: TicketRecord, width: int, repo_root: Path, now: float) -> str:
    seconds = row.duration_s
    if seconds is None:
        seconds = _seconds_between(row.start, row.end, now)
    duration = format_duration(seconds) if seconds is not None else "-"
    parts = [f"  {one_line(row.id, 40):<{width}}  {one_line(row.outcome, 12):<11} {duration:>7}"]
    if row.title:
        parts.append(f'"{one_line(row.title, 60)}"')
    if row.commit:
        parts.append(one_line(row.commit, 40)[:7])
    if row.outcome in ("deferred", "requeued", "interrupted") and (row.category or row.message):
        reason = ": ".join(one_line(part, 200) for part in (row.category, row.message) if part)
        parts.append(reason)
    if row.attempts > 1:
        parts.append(f"attempt {row.attempts}")
    if row.worker:
        parts.append(f"on worker {one_line(row.worker, 60)}")
    if row.log and row.outcome != "landed":
        parts.append(f"log {_shown_path(row.log, repo_root)}")
    return "  ".join(parts)


def counts_line(counts: Counter[str]) -> str:
    known = ", ".join(f"{counts.get(state.value, 0)} {state.value}" for state in State)
    return f"tickets: {known}"


def _shown_path(path_text: str, repo_root: Path) -> str:
    path = Path(path_text)
    try:
        return one_line(path.relative_to(repo_root), LINE_WIDTH) if path.is_absolute() else one_line(path_text, LINE_WIDTH)
    except ValueError:
        return one_line(path_text, LINE_WIDTH)


def _seconds_between(start: str | None, end: str | None, now: float) -> float | None:
    try:
        begin = parse_timestamp(start).timestamp() if start else None
        finish = parse_timestamp(end).timestamp() if end else now
    except ValueError:
        return None
    return max(finish - begin, 0.0) if begin is not None else None


# ---------------------------------------------------------------- json and index


def status_json(record: RunRecord | None, alive: bool, counts: Counter[str], index_error: str | None,
                index_path: Path) -> dict[str, Any]:
    run: dict[str, Any] | None = None
    if record is not None:
        run = {**record.to_json(), "state": run_state(record, alive), "alive": alive}
    index: dict[str, Any] = {"path": str(index_path)}
    if index_error:
        index["error"] = index_error
    else:
        index["counts"] = {state.value: counts.get(state.value, 0) for state in State}
    return {"run": run, "index": index}


def _state_counts(index_path: Path) -> tuple[Counter[str], str | None]:
    """Tickets per state; an unreadable index is reported beside the run, not instead of it."""
    try:
        loaded = load_index(index_path)
    except SageError as error:
        return Counter(), error.message
    return Counter(ticket.state.value for ticket in loaded.tickets), None

