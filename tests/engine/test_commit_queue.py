"""The commit queue: finished work waiting to land, written durably; an entry keeps the
target it lands on, and older entries still read."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from sage_stream.engine import commit_queue
from sage_stream.engine.commit_queue import CommitQueue, QueueEntry, QueueWriteError
from sage_stream.errors import SageError


def entry(**fields) -> QueueEntry:
    return QueueEntry(ticket="A-1", branch="sage/A-1", tip="a" * 40, base="b" * 40, run_id="r", worktree="w",
                      log="l", **fields)


def test_a_full_disk_is_a_clear_error_naming_what_to_free_and_nothing_is_half_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    queue = CommitQueue(tmp_path / "queue")

    def full(path: Path, value: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(commit_queue, "write_json_atomic", full)
    with pytest.raises(QueueWriteError) as raised:
        queue.put(entry())
    assert isinstance(raised.value, SageError) and raised.value.exit_code == 1
    message = str(raised.value)
    assert "A-1" in message and "No space left on device" in message and str(tmp_path / "queue") in message
    assert "free some space" in message and "sage/A-1" in message
    assert queue.entries() == []


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
