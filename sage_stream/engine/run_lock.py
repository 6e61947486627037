"""One `sage stream` per repository: a kernel lock (released even on kill -9) plus an owner file."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import psutil
from filelock import FileLock, Timeout

from sage_stream.durable import write_json_atomic
from sage_stream.paths import SagePaths


@dataclass
class RunOwner:
    pid: int
    pid_create_time: float
    run_id: str
    started: str


class RunLock:
    def __init__(self, sage_dir: Path) -> None:
        self.lock_path = SagePaths(sage_dir).run_lock
        self.owner_path = SagePaths(sage_dir).run_owner
        self._lock = FileLock(str(self.lock_path), is_singleton=True)

    def acquire(self, *, wait: bool) -> bool:
        try:
            self._lock.acquire(timeout=-1 if wait else 0)
        except Timeout:
            return False
        return True

    def write_owner(self, owner: RunOwner) -> None:
        write_json_atomic(self.owner_path, owner.__dict__)

    def owner(self) -> RunOwner | None:
        try:
            data = json.loads(self.owner_path.read_text())
            return RunOwner(**{key: data[key] for key in ("pid", "pid_create_time", "run_id", "started")})
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def release(self) -> None:
        with contextlib.suppress(OSError):
            self.owner_path.unlink()
        self._lock.release()


def process_identity() -> tuple[int, float]:
    pid = os.getpid()
    return pid, psutil.Process(pid).create_time()


CREATE_TIME_TOLERANCE_S = 1.0  # psutil derives create time from boot time, which moves if the clock steps


def is_alive(pid: int | None, create_time: float | None) -> bool:
    """True only for that very process: a reused pid with another create time is not it."""
    if not isinstance(pid, int) or pid <= 0 or create_time is None:
        return False
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return abs(process.create_time() - float(create_time)) < CREATE_TIME_TOLERANCE_S
    except (psutil.Error, ValueError, TypeError):
        return False


def describe_owner(owner: RunOwner | None) -> str:
    if owner is None:
        return "already running"
    return f"already running (pid {owner.pid}, since {owner.started}, run {owner.run_id})"
