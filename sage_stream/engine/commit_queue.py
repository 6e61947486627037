"""The persistent commit queue: finished work waiting to land, in finish order.

An entry is written (atomically) the moment a ticket's work is snapshotted on its
branch, and removed only after the ticket is COMPLETED in the index, so a crash
between finishing and landing loses nothing: the next run lands what is queued.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sage_stream.durable import TEMP_PREFIX, write_json_atomic


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
    target: str = ""  # the branch it lands on, recorded when queued ("" in entries of older versions)


class CommitQueue:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, entry: QueueEntry) -> Path:
        return self.directory / f"{entry.sequence:020d}-{entry.ticket}.json"

    def put(self, entry: QueueEntry) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self._path(entry), asdict(entry))

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
