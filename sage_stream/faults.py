"""Named points where tests can kill the scheduler with SIGKILL, to prove nothing is lost.

Set `SAGE_TEST_CRASH_AT=<point>` (first time the point is reached) or `<point>#<n>`
(the n-th time). Set `SAGE_TEST_CRASH_TRACE=<file>` to have every point reached
appended to that file, one name per line, in order: the reliability harness
(tests/reliability/crash_harness.py) picks its kill points from such a trace, so every
point it picks is one a real run reaches.

`SAGE_TEST_FAULT_AT=<point>[#<n>]` with `SAGE_TEST_FAULT_CMD=<JSON argv>` runs that
command (no shell) once, when the point is reached the n-th time, and waits for it: the
moment a test fills the disk, makes the index read-only or commits on the target.

Unset, a crash point costs three dictionary lookups.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from sage_stream.paths import REPO_RELATIVE

ENV = "SAGE_TEST_CRASH_AT"
TRACE_ENV = "SAGE_TEST_CRASH_TRACE"
FAULT_ENV = "SAGE_TEST_FAULT_AT"
FAULT_CMD_ENV = "SAGE_TEST_FAULT_CMD"
FAULT_TIMEOUT_S = 120

# Where each point is, grouped by the part of a run it interrupts.
POINTS = {
    # dispatch (engine/stream.py, engine/worktrees.py)
    "before_start_edit": "a ticket was chosen, nothing written yet",
    "worktree_prepared": "the slot is on the ticket's new branch, the index not yet IN_PROGRESS",
    "after_start_edit": "IN_PROGRESS written, agent not started",
    # agent run (process/supervise.py, engine/stream.py)
    "agent_started": "the agent process was just started",
    "agent_running": "the agent is running (reached about every 50 ms while it runs)",
    "after_agent_exit": "the agent finished, nothing recorded",
    # commit queue (engine/stream.py, durable.py)
    "after_snapshot": "work committed on the ticket branch, not queued",
    "before_replace:queue": "queue entry written to its temp file, not renamed into place",
    "after_queue_put": "queued, not landed",
    # landing (engine/landing.py, engine/stream.py, engine/worktrees.py)
    "landing_locked": "the commit lock is held, nothing merged yet",
    "after_commit_tree": "the landing commit exists, the target ref not moved",
    "after_update_ref": "the target ref moved, the checked-out tree not brought along",
    "after_land": "the target ref moved, the index not yet COMPLETED",
    "after_hold_edit": "COMPLETED held for the index's next write, queue entry kept (engine/ticket_state.py)",
    "after_complete_edit": "COMPLETED written, queue entry not yet removed",
    "worktree_released": "the slot was reset after its ticket, its branch not yet deleted",
    # landing onto a remote (engine/remote_landing.py)
    "remote_commit_made": "the landing commit is made and recorded in its queue entry, not pushed",
    "after_remote_push": "the remote has the landing commit, the index not yet COMPLETED",
    # index and run-record writes (durable.py, engine/stream.py)
    "before_replace:index": "a new index is in its temp file, not renamed into place",
    "after_replace:index": "the new index is in place, its directory not yet fsynced",
    "before_replace:run": "a run record is in its temp file, not renamed into place",
    "after_defer_edit": "DEFERRED written",
    # recovery of a dead run (engine/recovery.py)
    "recovery_landed": "recovery landed one queued entry, others may wait",
    "recovery_released": "recovery put one IN_PROGRESS ticket back to UNPROCESSED",
}
_hits: dict[str, int] = {}
_fault_hits: dict[str, int] = {}
_lock = threading.Lock()


def _enabled() -> bool:
    return bool(os.environ.get(ENV) or os.environ.get(TRACE_ENV) or os.environ.get(FAULT_ENV))


def crash_point(name: str) -> None:
    if not _enabled():
        return
    with _lock:
        trace = os.environ.get(TRACE_ENV)
        if trace:
            _append(trace, name)
        if _reached(os.environ.get(FAULT_ENV), name, _fault_hits, exactly=True):
            _run_fault(os.environ.get(FAULT_CMD_ENV))
        if _reached(os.environ.get(ENV), name, _hits, exactly=False):
            os.kill(os.getpid(), signal.SIGKILL)


def _reached(wanted: str | None, name: str, hits: dict[str, int], *, exactly: bool) -> bool:
    point, _, nth = (wanted or "").partition("#")
    if point != name:
        return False
    hits[name] = hits.get(name, 0) + 1
    target = int(nth) if nth.isdigit() else 1
    return hits[name] == target if exactly else hits[name] >= target


def _run_fault(command: str | None) -> None:
    import json
    import subprocess

    argv = json.loads(command or "[]")
    if argv:
        subprocess.run([str(arg) for arg in argv], check=False, timeout=FAULT_TIMEOUT_S,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


def write_point(stage: str, path: Path) -> None:
    """`before_replace:<kind>` / `after_replace:<kind>` for an atomic write of `path`."""
    if _enabled():
        crash_point(f"{stage}:{_file_kind(path)}")


def _file_kind(path: Path) -> str:
    if path.name == REPO_RELATIVE.index.name:
        return "index"
    return {REPO_RELATIVE.commit_queue.name: "queue", REPO_RELATIVE.runs.name: "run"}.get(path.parent.name, "file")


def _append(trace: str, name: str) -> None:
    # one write() per line on an O_APPEND descriptor: whole lines even across threads,
    # and on disk the moment the call returns (a SIGKILL right after loses nothing)
    fd = os.open(trace, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{name}\n".encode())
    finally:
        os.close(fd)
