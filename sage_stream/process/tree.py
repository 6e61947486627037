"""Finding processes and the trees they started, and stopping what a dead run left behind.

A process that called `setsid` has left its parent's process group but is still its
descendant, and what any agent starts inherits its SAGE_* environment: the two ways a
process of ours is recognised after its group or its parent is gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterable
from pathlib import Path

import psutil

from sage_stream.git import GIT_OF_VAR, GIT_REPO_VAR


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def is_running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def processes_with_environment(wanted: dict[str, str]) -> list[psutil.Process]:
    """Live processes of this user whose environment has every `wanted` variable, with
    that value (a value ending in `/` matches as a path prefix)."""
    found = []
    for pid, env in _environments():
        if pid == os.getpid():
            continue
        if all(_env_matches(env.get(key), value) for key, value in wanted.items()):
            with contextlib.suppress(psutil.Error):
                process = psutil.Process(pid)
                if is_running(process):
                    found.append(process)
    return found


def _env_matches(value: str | None, wanted: str) -> bool:
    if value is None:
        return False
    if wanted.endswith(os.sep):
        return (os.path.realpath(value) + os.sep).startswith(wanted)
    return value == wanted


def _environments() -> Iterable[tuple[int, dict[str, str]]]:
    """(pid, environment) of every process whose environment we may read. Straight from
    /proc where there is one: about 1 ms for a hundred processes (psutil: ~13 ms)."""
    if not os.path.isdir("/proc/self"):
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error, OSError):
                yield process.pid, process.environ()
        return
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as handle:
                data = handle.read()
        except OSError:
            continue
        env = {}
        for item in data.split(b"\0"):
            key, sep, value = item.partition(b"=")
            if sep and key.startswith(b"SAGE_"):  # only ours are ever looked at
                env[key.decode(errors="replace")] = value.decode(errors="replace")
        if env:
            yield int(name), env


def stop_strays(worktrees_root: Path, *, keep_run_id: str | None, grace_s: float = 2.0) -> list[int]:
    """Stop agents, and whatever they started, that a dead run left running; their pids.

    A scheduler killed with SIGKILL cannot stop its agents: each leads its own process
    group and goes on writing in its worktree, where the next run would mix that output
    into another ticket's work. They are recognised by the `SAGE_WORKTREE` of their
    environment (every agent gets it, what it starts inherits it) lying under
    `worktrees_root`, and a `SAGE_RUN_ID` other than `keep_run_id`; the processes of their
    groups and their descendants go with them. Only processes whose environment this user
    may read are looked at.
    """
    root = os.path.realpath(worktrees_root) + os.sep
    found: dict[int, psutil.Process] = {}
    for process in processes_with_environment({"SAGE_WORKTREE": root}):
        with contextlib.suppress(psutil.Error, OSError):
            if keep_run_id is None or process.environ().get("SAGE_RUN_ID") != keep_run_id:
                found[process.pid] = process
    for process in list(found.values()):
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(process.pid) == process.pid:  # an agent: its whole group goes
                for member in group_members(process.pid):
                    found.setdefault(member.pid, member)
            for child in process.children(recursive=True):
                found.setdefault(child.pid, child)
    terminate([process for process in found.values() if is_running(process)], grace_s=grace_s)
    return sorted(found)


def stop_slot_strays(slot: Path, *, grace_s: float = 1.0) -> list[int]:
    """Stop what still works in a worktree slot whose attempt is over: its pids.

    A daemon an agent double-forked is a child of init, and one that exec'd itself with
    a clean environment carries no SAGE_* variable either: the agent's own sweep
    (supervise.py) misses it, and its writes would land in the slot's next ticket. Stopped
    here: every process (but this one, its ancestors and descendants) whose `SAGE_WORKTREE`
    is the slot, or whose working directory or an open file is inside it - the slot is
    sage's private directory, about to be reset. A process found only by its directory
    or files is spared when it has a controlling terminal: that is a person's shell or
    editor looking at the slot, not a daemon (which detaches from any terminal). Call
    before the slot is reset for its next ticket."""
    inside = os.path.realpath(slot) + os.sep
    if not os.path.isdir(inside):
        return []
    found = {process.pid: process for process in processes_with_environment({"SAGE_WORKTREE": inside})}
    for pid in _working_in(inside):
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(pid)
            if pid not in found and not has_terminal(process):
                found[pid] = process
    if not found:
        return []
    # this process, what runs it, and its own children (a git of another thread)
    spared = {os.getpid(), *(process.pid for process in [*_ancestors(), *descendants(os.getpid())])}
    strays = [process for pid, process in found.items() if pid not in spared and is_running(process)]
    terminate(strays, grace_s=grace_s)
    return sorted(process.pid for process in strays)


def has_terminal(process: psutil.Process) -> bool:
    """Whether `process` has a controlling terminal (tty_nr in /proc/PID/stat; psutil
    elsewhere, which only knows the terminals it finds under /dev)."""
    try:
        with open(f"/proc/{process.pid}/stat", "rb") as handle:
            after_name = handle.read().rsplit(b")", 1)[1].split()
        return int(after_name[4]) != 0
    except (OSError, IndexError, ValueError):
        with contextlib.suppress(psutil.Error):
            return process.terminal() is not None
    return False


def _ancestors() -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return psutil.Process().parents()
    return []


def _working_in(inside: str) -> list[int]:
    """Pids whose working directory or an open file lies under `inside` (ends in /).
    Straight from /proc where there is one (readlinks only); psutil elsewhere."""
    def under(path: str) -> bool:
        return (path + os.sep).startswith(inside)

    found = []
    if not os.path.isdir("/proc/self"):
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error, OSError):
                if under(process.cwd()) or any(under(item.path) for item in process.open_files()):
                    found.append(process.pid)
        return found
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if under(os.readlink(f"/proc/{name}/cwd")):
                found.append(int(name))
                continue
            descriptors = os.listdir(f"/proc/{name}/fd")
        except OSError:
            continue
        for fd in descriptors:
            with contextlib.suppress(OSError):
                if under(os.readlink(f"/proc/{name}/fd/{fd}")):
                    found.append(int(name))
                    break
    return found


def terminate(processes: list[psutil.Process], *, grace_s: float) -> None:
    """SIGTERM, `grace_s` to finish, then SIGKILL for what is still running."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        for process in processes:
            with contextlib.suppress(psutil.Error):
                process.send_signal(signum)
        _, processes = psutil.wait_procs(processes, timeout=grace_s if signum == signal.SIGTERM else 1.0)
        processes = [process for process in processes if is_running(process)]
        if not processes:
            break


def wait_for_leftover_git(repo: Path, *, timeout_s: float = 60.0) -> tuple[list[int], list[int]]:
    """Wait for the git processes other sage processes started in `repo` to finish:
    (pids waited for, pids still running after `timeout_s`).

    A scheduler killed with SIGKILL leaves its git children running (a `worktree add`,
    a `checkout` in a slot, an `update-ref`): the next run would read their half-written
    files ("failed to read .../commondir") or take their locks from under them. They are
    waited for, never killed: a git killed in the middle of a write is what leaves the
    half-written files. They are recognised by the variables `Git` gives every git it
    starts (git.py: `SAGE_GIT_REPO`, `SAGE_GIT_OF`)."""
    ours = str(os.getpid())
    leftover = []
    for process in processes_with_environment({GIT_REPO_VAR: os.path.realpath(repo)}):
        with contextlib.suppress(psutil.Error, OSError):
            if process.environ().get(GIT_OF_VAR) != ours:
                leftover.append(process)
    if not leftover:
        return [], []
    _, running = psutil.wait_procs(leftover, timeout=timeout_s)
    return sorted(process.pid for process in leftover), sorted(p.pid for p in running if is_running(p))


def group_members(pgid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes of a process group."""
    members = []
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) != pgid:
                continue
            process = psutil.Process(pid)
        except (OSError, psutil.Error):
            continue
        if is_running(process):
            members.append(process)
    return members
