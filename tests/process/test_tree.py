"""Stopping what an agent left running in its worktree slot before the slot is reused."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sage_stream.process.tree import stop_slot_strays

SLEEPER = "import sys, time; handle = open(sys.argv[1], 'a') if len(sys.argv) > 1 else None; time.sleep(600)"


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen]]:
    processes: list[subprocess.Popen] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def start(started: list[subprocess.Popen], *, cwd: Path, env: dict[str, str], opened: Path | None = None
          ) -> subprocess.Popen:
    argv = [sys.executable, "-c", SLEEPER, *([str(opened)] if opened else [])]
    clean = {key: value for key, value in os.environ.items() if not key.startswith("SAGE_")}
    process = subprocess.Popen(argv, cwd=cwd, env={**clean, **env}, start_new_session=True)
    started.append(process)
    return process


def test_strays_working_in_a_slot_are_stopped_and_nothing_else(tmp_path: Path, started) -> None:
    root = tmp_path / "worktrees"
    slot, other = root / "slot-0", root / "slot-1"
    slot.mkdir(parents=True)
    other.mkdir()
    daemon = start(started, cwd=slot, env={"SAGE_WORKTREE": str(slot), "SAGE_RUN_ID": "r1"})
    writer = start(started, cwd=tmp_path, env={"SAGE_WORKTREE": str(other), "SAGE_RUN_ID": "r1"},
                   opened=slot / "log.txt")
    neighbour = start(started, cwd=other, env={"SAGE_WORKTREE": str(other), "SAGE_RUN_ID": "r1"})
    users_shell = start(started, cwd=slot, env={})
    for _ in range(100):  # the writer has opened its file
        if (slot / "log.txt").exists():
            break
        time.sleep(0.05)
    stopped = stop_slot_strays(slot, root, grace_s=2.0)
    assert sorted(stopped) == sorted([daemon.pid, writer.pid])
    assert daemon.wait(timeout=5) is not None and writer.wait(timeout=5) is not None
    assert neighbour.poll() is None and users_shell.poll() is None
