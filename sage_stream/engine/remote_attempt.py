"""One attempt on a Dask worker (`sage stream --executor dask://`): the task's side.

The task runs in the worker process, never on the coordinator: it does not import the
loop (engine/stream.py). It fetches the base commit from the hub into a scratch clone
kept per worker and hub, prepares a worktree slot there, and runs the attempt with the
very `LocalRunner` a local run uses (same environment rules, timeouts, process-tree
supervision, checks and fix turns), with one addition: every agent gets
PR_SET_PDEATHSIG, so it dies with the worker. The result is pushed to the hub, never
forced: `refs/sage/attempts/<ID>/<N>` when it may land, `refs/sage/kept/<ID>/<N>` when it
is unlanded work kept. Live lines and events go to the coordinator through
`log_event(topic)`; the full log stays on the worker (its path is in the result).
Stopping is cooperative (Dask's cancel does not stop a running task): the task polls the
attempt's `distributed.Event` and cancels its agent, which kills the process group.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import queue
import re
import tempfile
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sage_stream.agents.base import Agent, AgentJob
from sage_stream.agents.prompt import write_prompt_file
from sage_stream.engine.local_runner import LocalRunner, RunnerSettings
from sage_stream.engine.verification import Check
from sage_stream.engine.work import AttemptCrashed, AttemptDone, AttemptSpec, Message, TicketWork
from sage_stream.engine.worktrees import TicketWorkspaces
from sage_stream.git import Git
from sage_stream.git.remote import PUSHED
from sage_stream.process.supervise import EXITED
from sage_stream.tickets.models import Ticket

CANCEL_POLL_S = 0.25
LOG_TAIL_BYTES = 64 * 1024
ATTEMPTS_PREFIX = "refs/sage/attempts/"
KEPT_PREFIX = "refs/sage/kept/"
TASK_PREFIX = "sage-attempt/"


def attempt_ref(ticket_id: str, attempt: int) -> str:
    return f"{ATTEMPTS_PREFIX}{ticket_id}/{attempt}"


def kept_ref(ticket_id: str, attempt: int) -> str:
    return f"{KEPT_PREFIX}{ticket_id}/{attempt}"


def task_key(ticket_id: str, attempt: int, run_id: str) -> str:
    """The Dask key of an attempt: its ticket first, so that any run can find it on the workers."""
    return f"{TASK_PREFIX}{ticket_id}/{attempt}/{run_id}"


def running_attempts(dask_worker: Any, prefix: str) -> list[str]:
    """On a worker (`client.run`): keys under `prefix` still executing, including those the
    scheduler forgot when their client died (the worker marks them cancelled and runs on)."""
    return [key for key, task in dask_worker.state.tasks.items()
            if isinstance(key, str) and key.startswith(prefix) and task.state in ("executing", "long-running",
                                                                                  "cancelled")]


def cancel_event_name(run_id: str, ticket_id: str, attempt: int) -> str:
    return f"sage-cancel-{run_id}-{ticket_id}-{attempt}"


@dataclass(frozen=True)
class RemoteAttempt:
    """Everything a worker needs, decided by the coordinator (small and picklable)."""

    ticket: Ticket
    attempt: int  # N of refs/sage/attempts/<ID>/<N>
    base: str  # the commit to start from (on the hub)
    hub: str  # git URL or path the worker fetches from and pushes to
    prompt: str
    stem: str
    run_id: str
    topic: str  # log_event topic the coordinator listens on
    agent: Agent
    checks: tuple[Check, ...] = ()
    max_fix_turns: int = 0
    session_id: str | None = None
    timeout_s: float = 3600.0
    idle_timeout_s: float = 900.0
    grace_s: float = 5.0
    check_timeout_s: float = 600.0
    check_parallel: int = 4
    check_env: tuple[str, ...] = ()


@dataclass(frozen=True)
class RemoteResult:
    """What comes back: the pushed commit and the attempt's verdict, not its files."""

    worker: str
    work: TicketWork | None  # None when the attempt crashed
    crashed: str | None = None
    on_setup: bool = False
    prepared: bool = False
    pushed_ref: str | None = None  # where the commit is on the hub
    push_error: str | None = None
    log: str | None = None  # the full log, on the worker
    log_tail: str = ""  # its last LOG_TAIL_BYTES, for the coordinator's copy


def run_remote_attempt(attempt: RemoteAttempt) -> RemoteResult:
    """The Dask task. Never raises for the attempt's own failures: they are the result."""
    from distributed import Event, get_worker

    worker = get_worker()
    name = str(worker.name)
    cancel = Event(cancel_event_name(attempt.run_id, attempt.ticket.id, attempt.attempt))

    def send(message: Message) -> None:
        worker.log_event(attempt.topic, {"worker_name": name, "attempt": attempt.attempt,
                                         "message": pickle.dumps(message)})

    return run_in_scratch(attempt, worker_name=name, root=scratch_root(name, attempt.hub), send=send,
                          cancelled=cancel.is_set)


def scratch_root(worker_name: str, hub: str) -> Path:
    """One scratch clone per worker and hub, kept between attempts (fetches stay small)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", worker_name)[:60]
    digest = hashlib.sha1(hub.encode()).hexdigest()[:12]
    base = Path(os.environ.get("SAGE_WORKER_DIR") or Path(tempfile.gettempdir()) / f"sage-worker-{os.getuid()}")
    return base / f"{safe}-{digest}"


_slots_lock = threading.Lock()
_slots_taken: set[tuple[Path, int]] = set()


def _take_slot(root: Path) -> int:
    with _slots_lock:
        slot = 1
        while (root, slot) in _slots_taken:
            slot += 1
        _slots_taken.add((root, slot))
        return slot


def _return_slot(root: Path, slot: int) -> None:
    with _slots_lock:
        _slots_taken.discard((root, slot))


def run_in_scratch(attempt: RemoteAttempt, *, worker_name: str, root: Path, send: Callable[[Message], None],
                   cancelled: Callable[[], bool]) -> RemoteResult:
    """Fetch, run with a LocalRunner, push. `send` forwards messages; `cancelled()` polls the stop flag."""
    repo = root / "repo"
    slot = _take_slot(root)
    try:
        git = _scratch_git(repo)
        with _fetch_lock(repo):  # concurrent fetches into one repository race ("did not send all necessary objects")
            git.fetch_commit(attempt.hub, attempt.base)
        return _run(attempt, git, repo, slot, worker_name, send, cancelled)
    except Exception as error:
        detail = getattr(error, "message", None) or traceback.format_exc()
        return RemoteResult(worker=worker_name, work=None, crashed=f"on worker {worker_name}: {detail}")
    finally:
        _return_slot(root, slot)


_fetch_locks: dict[Path, threading.Lock] = {}


def _fetch_lock(repo: Path) -> threading.Lock:
    with _slots_lock:
        return _fetch_locks.setdefault(repo, threading.Lock())


def _scratch_git(repo: Path) -> Git:
    with _slots_lock:  # the first attempts of a worker make its clone once
        if not (repo / ".git").is_dir():
            repo.mkdir(parents=True, exist_ok=True)
            Git(repo).run("init", "--quiet", cwd=repo)
    return Git(repo, worktree_lock=repo / ".git" / "sage-worktree.lock")


def _run(attempt: RemoteAttempt, git: Git, repo: Path, slot: int, worker_name: str, send: Callable[[Message], None],
         cancelled: Callable[[], bool]) -> RemoteResult:
    run_dir = repo / ".sage" / "workers" / attempt.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    prompt_file = run_dir / f"{attempt.stem}.prompt.md"
    write_prompt_file(prompt_file, attempt.prompt)
    result_file = run_dir / f"{attempt.stem}.result.json"
    result_file.unlink(missing_ok=True)
    job = AgentJob(ticket=attempt.ticket, worktree=repo, prompt_file=prompt_file, result_file=result_file,
                   log_path=run_dir / f"{attempt.stem}.log", run_id=attempt.run_id, session_id=attempt.session_id)
    inbox: queue.Queue[Message] = queue.Queue()
    runner = LocalRunner(git, TicketWorkspaces(git, repo / ".sage" / "worktrees"), RunnerSettings(
        agent=attempt.agent, run_id=attempt.run_id, run_dir=run_dir, target="", timeout_s=attempt.timeout_s,
        idle_timeout_s=attempt.idle_timeout_s, grace_s=attempt.grace_s, check_timeout_s=attempt.check_timeout_s,
        check_parallel=attempt.check_parallel, check_env=attempt.check_env, die_with_parent=True), inbox)
    handle = runner.start(AttemptSpec(ticket=attempt.ticket, attempt=attempt.attempt, worker=0, slot=slot,
                                      stem=attempt.stem, job=job, checks=attempt.checks,
                                      max_fix_turns=attempt.max_fix_turns, start=attempt.base))
    while True:
        try:
            message = inbox.get(timeout=CANCEL_POLL_S)
        except queue.Empty:
            if not handle.cancelled.is_set() and cancelled():
                handle.cancel()  # the agent's process group is killed by its supervisor
            continue
        if isinstance(message, AttemptCrashed):
            return RemoteResult(worker=worker_name, work=None, crashed=message.detail, on_setup=message.on_setup,
                                prepared=message.workspace is not None, log=str(job.log_path),
                                log_tail=log_tail(job.log_path))
        if isinstance(message, AttemptDone):
            return _push(attempt, git, message.work, worker_name)
        send(message)


def _push(attempt: RemoteAttempt, git: Git, work: TicketWork, worker_name: str) -> RemoteResult:
    """The attempt's commit to the hub; the workspace stays on the worker (its paths mean nothing elsewhere)."""
    log = str(work.log) if work.log else None
    result = replace(work, workspace=None)
    tail = log_tail(work.log) if work.log else ""
    if work.tip is None or work.tip == attempt.base:
        return RemoteResult(worker=worker_name, work=result, prepared=True, log=log, log_tail=tail)
    landable = work.result.success and work.exit.outcome == EXITED and not work.tampered and (
        work.verification is None or work.verification.passed)
    ref = attempt_ref(attempt.ticket.id, attempt.attempt) if landable else kept_ref(attempt.ticket.id, attempt.attempt)
    pushed = git.push_new_ref(attempt.hub, work.tip, ref)
    if pushed.outcome != PUSHED:
        return RemoteResult(worker=worker_name, work=result, prepared=True, log=log, log_tail=tail,
                            push_error=f"could not push {ref} to {attempt.hub}: {pushed.outcome} {pushed.detail}")
    return RemoteResult(worker=worker_name, work=result, prepared=True, pushed_ref=ref, log=log, log_tail=tail)


def log_tail(path: Path) -> str:
    """The end of an agent's log (the whole log stays on the worker)."""
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - LOG_TAIL_BYTES))
            return log.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
