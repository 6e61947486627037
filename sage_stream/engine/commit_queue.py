"""The persistent commit queue: finished work waiting to land, in finish order.

An entry is written (atomically) the moment a ticket's work is snapshotted on its
branch, and removed only after the ticket is COMPLETED in the index, so a crash
between finishing and landing loses nothing: the next run lands what is queued.
"""

from __future__ import annotations

import contextlib
import errno
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sage_stream.durable import TEMP_PREFIX, write_json_atomic
from sage_stream.errors import SageError


class QueueWriteError(SageError):
    """A commit-queue entry could not be written: the run stops (exit 1), nothing is lost
    (the ticket's work is on its branch; the next run gives it back to the backlog)."""

    def __init__(self, entry: QueueEntry, path: Path, error: OSError) -> None:
        reason = error.strerror or str(error)
        if error.errno == errno.ENOSPC:
            fix = (f"free some space on the file system holding {path.parent} (`df -h {path.parent}`; old run "
                   f"logs under .sage/runs can go) and run `sage stream` again")
        else:
            fix = f"make {path.parent} writable and run `sage stream` again"
        super().__init__(f"could not write the commit-queue entry of {entry.ticket} ({path}): {reason}. Nothing "
                         f"is lost: its work is on branch {entry.branch} ({entry.tip[:12]}), kept by the next run, "
                         f"which gives the ticket back to the backlog; {fix}")
        self.ticket = entry.ticket


@dataclass
class QueueEntry:
    ticket: str
    branch: str
    tip: str  # the branch commit holding all of the ticket's work
    base: str  # the target commit the worktree started from
    run_id: str
    worktree: str
    log: str
    finished_at: float = field(default_factory=time.time)
    result: dict = field(default_factory=dict)  # the agent's parsed result (summary, cost...)
    sequence: int = field(default_factory=time.time_ns)
    made: str | None = None  # remote landing: the commit made for it before the push (engine/remote_landing.py)
    target: str = ""  # the branch it lands on, recorded when queued ("" in entries of older versions)


class CommitQueue:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, entry: QueueEntry) -> Path:
        return self.directory / f"{entry.sequence:020d}-{entry.ticket}.json"

    def put(self, entry: QueueEntry) -> None:
        """Write the entry durably; a failed write (full disk, permissions) is a
        `QueueWriteError` saying what to free, with nothing half written left behind."""
        path = self._path(entry)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, asdict(entry))
        except OSError as error:
            raise QueueWriteError(entry, path, error) from error

    def remove(self, entry: QueueEntry) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(entry).unlink()

    def entries(self) -> list[QueueEntry]:
        """Queued entries in finish order; unreadable leftovers are skipped, not fatal."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in sorted(self.directory.glob("*.json")):
            if path.name.startswith(TEMP_PREFIX):
                continue
            try:
                found.append(QueueEntry(**json.loads(path.read_text())))
            except (OSError, ValueError, TypeError):
                continue
        return found
