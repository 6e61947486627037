"""The commit queue: finished work waiting to land, written durably."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from sage_stream.engine import commit_queue
from sage_stream.engine.commit_queue import CommitQueue, QueueEntry, QueueWriteError
from sage_stream.errors import SageError


def entry() -> QueueEntry:
    return QueueEntry(ticket="A-1", branch="sage/A-1", tip="a" * 40, base="b" * 40, run_id="r", worktree="w", log="l")


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
