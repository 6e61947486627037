"""Stopping what an agent left running in its worktree slot before the slot is reused."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from sage_stream.process.tree import has_terminal, is_running, stop_slot_strays

SLEEPER = "import sys, time; handle = open(sys.argv[1], 'a') if len(sys.argv) > 1 else None; time.sleep(600)"


@pytest.fixture
def started() -> Iterator[list[psutil.Process]]:
    processes: list[psutil.Process] = []
    yield processes
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()


def start(started: list[psutil.Process], *, cwd: Path, env: dict[str, str], opened: Path | None = None,
          code: str = SLEEPER) -> psutil.Process:
    """A sleeper that is no descendant of ours (its launcher exits: init adopts it), as
    a daemon an agent double-forked is."""
    argv = [sys.executable, "-c", code, *([str(opened)] if opened else [])]
    clean = {key: value for key, value in os.environ.items() if not key.startswith("SAGE_")}
    launcher = ("import subprocess, sys\n"
                f"process = subprocess.Popen({argv!r}, cwd={str(cwd)!r}, env={ {**clean, **env}!r}, "
                "start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, "
                "stderr=subprocess.DEVNULL)\nprint(process.pid)")
    pid = int(subprocess.run([sys.executable, "-c", launcher], capture_output=True, text=True, check=True).stdout)
    process = psutil.Process(pid)
    started.append(process)
    return process


def test_strays_working_in_a_slot_are_stopped_and_nothing_else(tmp_path: Path, started) -> None:
    root = tmp_path / "worktrees"
    slot, other = root / "slot-0", root / "slot-1"
    slot.mkdir(parents=True)
    other.mkdir()
    by_env = start(started, cwd=tmp_path, env={"SAGE_WORKTREE": str(slot), "SAGE_RUN_ID": "r1"})
    daemon = start(started, cwd=slot, env={})  # exec'd with a clean environment: known by where it works
    writer = start(started, cwd=tmp_path, env={}, opened=slot / "log.txt")
    neighbour = start(started, cwd=other, env={"SAGE_WORKTREE": str(other), "SAGE_RUN_ID": "r1"})
    bystander = start(started, cwd=tmp_path, env={}, opened=other / "log.txt")
    for _ in range(200):  # the writers have opened their files
        if (slot / "log.txt").exists() and (other / "log.txt").exists():
            break
        time.sleep(0.05)
    stopped = stop_slot_strays(slot, grace_s=2.0)
    assert sorted(stopped) == sorted([by_env.pid, daemon.pid, writer.pid])
    psutil.wait_procs([by_env, daemon, writer], timeout=10)
    assert not any(is_running(process) for process in (by_env, daemon, writer))
    assert is_running(neighbour) and is_running(bystander)


def test_a_slot_that_does_not_exist_has_no_strays(tmp_path: Path) -> None:
    assert stop_slot_strays(tmp_path / "worktrees" / "slot-9") == []


# takes a terminal of its own as its controlling terminal, as a login shell has one
WITH_TERMINAL = ("import fcntl, os, sys, termios, time; master, terminal = os.openpty(); "
                 "fcntl.ioctl(terminal, termios.TIOCSCTTY, 0); open(sys.argv[1], 'w').close(); time.sleep(600)")


def test_a_person_s_shell_in_a_slot_is_spared(tmp_path: Path, started) -> None:
    """Someone looking at an agent's work from a terminal (cwd inside the slot) is not a
    daemon: it keeps running; a detached process in the same place is stopped."""
    slot = tmp_path / "worktrees" / "slot-0"
    slot.mkdir(parents=True)
    shell = start(started, cwd=slot, env={}, opened=tmp_path / "ready", code=WITH_TERMINAL)
    daemon = start(started, cwd=slot, env={})
    for _ in range(200):
        if (tmp_path / "ready").exists():
            break
        time.sleep(0.05)
    assert has_terminal(shell) and not has_terminal(daemon)
    assert stop_slot_strays(slot, grace_s=2.0) == [daemon.pid]
    assert is_running(shell)
