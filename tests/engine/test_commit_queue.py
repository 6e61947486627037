"""engine/commit_queue.py: an entry keeps the target it lands on; older entries still read."""

from __future__ import annotations

import json
from pathlib import Path

from sage_stream.engine.commit_queue import CommitQueue, QueueEntry


def entry(**fields) -> QueueEntry:
    return QueueEntry(ticket="T-1", branch="sage/T-1", tip="a" * 40, base="b" * 40, run_id="run", worktree="/w",
                      log="/l", **fields)


def test_an_entry_keeps_its_target(tmp_path: Path) -> None:
    queue = CommitQueue(tmp_path)
    queue.put(entry(target="main"))
    [read] = queue.entries()
    assert read.target == "main"


def test_an_entry_written_before_targets_were_recorded_still_reads_and_has_none(tmp_path: Path) -> None:
    old = {"ticket": "T-1", "branch": "sage/T-1", "tip": "a" * 40, "base": "b" * 40, "run_id": "run",
           "worktree": "/w", "log": "/l", "finished_at": 1.0, "result": {}, "sequence": 7}
    (tmp_path / f"{7:020d}-T-1.json").write_text(json.dumps(old))
    [read] = CommitQueue(tmp_path).entries()
    assert (read.ticket, read.target) == ("T-1", "")  # the lander lands it on the run's target
