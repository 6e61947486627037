"""Attempts on other machines: a `Runner` (engine/work.py) that sends each attempt to a Dask
cluster (`sage stream --executor dask://HOST:PORT`).

The coordinator (this process) keeps deciding and landing, one ticket at a time, exactly
as in a local run; only where agents run changes. Git is the durable channel: a worker
fetches the base commit from the hub and pushes its result to
`refs/sage/attempts/<ID>/<N>` (engine/remote_attempt.py); this runner fetches that ref
and hands the loop an `AttemptDone` whose tip the Lander lands. Dask is only the
transport:

- Reruns are off: `retries=0` here, and the scheduler must have
  `distributed.scheduler.allowed-failures: 0` (checked at start, warned about otherwise),
  so a dead worker never makes Dask start the same agent twice behind sage's back.
- A worker that dies mid-attempt: when the attempt's ref is on the hub, it lands; else
  the ticket is sent again as attempt N+1 (at most `MAX_REDISPATCH` times per start).
- An attempt whose ref is already on the hub when it is dispatched (pushed by a worker
  after the previous coordinator died) lands without running an agent again. Attempt
  numbers are in the refs and never reused: a late push of an orphaned attempt lands on
  its own number, which is never dispatched again, so it is never taken for another one.
- Ctrl-C / SIGTERM: Dask's cancel does not stop a running task, so each attempt has a
  `distributed.Event` its task polls; setting it kills the agent's process group.
- Live lines arrive through `subscribe_topic`; the worker's name is said for every attempt
  (run record, live view) and a continued session prefers the worker that holds it.
"""

from __future__ import annotations

import contextlib
import pickle
import queue
import threading
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sage_stream.agents.base import Agent, AgentResult
from sage_stream.engine import events as ev
from sage_stream.engine.remote_attempt import (
    ATTEMPTS_PREFIX,
    KEPT_PREFIX,
    TASK_PREFIX,
    RemoteAttempt,
    RemoteResult,
    attempt_ref,
    cancel_event_name,
    run_remote_attempt,
    running_attempts,
    task_key,
)
from sage_stream.engine.settings import StreamSettings
from sage_stream.engine.slots import SlotRelease
from sage_stream.engine.work import (
    AgentLine,
    AttemptCrashed,
    AttemptDone,
    AttemptHandle,
    AttemptSpec,
    Message,
    Prepared,
    Progress,
    SpareReady,
    TicketWork,
    TurnDone,
)
from sage_stream.engine.worktrees import Workspace
from sage_stream.errors import SageError
from sage_stream.git import Git
from sage_stream.process.supervise import EXITED, AgentExit
from sage_stream.tickets.naming import ticket_branch

MAX_REDISPATCH = 2  # a ticket whose workers keep dying is deferred, not sent round forever
WAIT_POLL_S = 0.25
CONNECT_TIMEOUT_S = 10.0
ORPHAN_POLL_S = 1.0
RECEIVED_PREFIX = "refs/sage/received/"  # here, on the coordinator: attempts a run took in hand


@dataclass(frozen=True)
class DaskSettings:
    address: str  # tcp://HOST:PORT or tls://HOST:PORT
    hub: str  # git URL or path workers fetch from and push to
    agent: Agent
    run_id: str
    target: str
    timeout_s: float
    idle_timeout_s: float
    grace_s: float
    check_timeout_s: float = 600.0
    check_parallel: int = 4
    check_env: tuple[str, ...] = ()
    tls: tuple[str, str, str] | None = None  # (ca, cert, key) files
    insecure: bool = False  # a plain tcp:// address beyond loopback, acknowledged
    start_tip: Any = None  # --remote: the fetched remote tip (a callable), like LocalRunner's
    sandboxed: bool = False  # the run would sandbox local agents: workers do not (yet), and say so


class _Attempt:
    """One started ticket's remote state, kept by its thread."""

    def __init__(self, spec: AttemptSpec, handle: AttemptHandle, number: int, base: str) -> None:
        self.spec = spec
        self.base = base  # the commit the worker starts from, decided once
        self.handle = handle
        self.number = number  # N of refs/sage/attempts/<ID>/<N>
        self.worker: str | None = None
        self.prepared = False


class DaskRunner:
    def __init__(self, git: Git, settings: DaskSettings, inbox: queue.Queue[Message], *, client: Any = None) -> None:
        self.git = git
        self.settings = settings
        self.inbox = inbox
        self.topic = f"sage-{settings.run_id}"
        self.client = client if client is not None else _connect(settings)
        self._owns_client = client is None
        self._lock = threading.Lock()
        self._by_number: dict[tuple[str, int], _Attempt] = {}
        self._session_workers: dict[str, str] = {}  # session id -> the worker that made it
        self.client.subscribe_topic(self.topic, self._on_event)
        self.allowed_failures = self._check_reruns_off()
        if settings.sandboxed:
            self._warn(None, "agents on Dask workers run without the bwrap sandbox (it applies to agents on this "
                             "machine only): they can write anything the worker's user can")

    # ------------------------------------------------------------ the Runner interface

    def start(self, spec: AttemptSpec) -> AttemptHandle:
        handle = AttemptHandle()
        threading.Thread(target=self._drive, args=(spec, handle), name=f"dask-{spec.ticket.id}", daemon=True).start()
        return handle

    def make_spare_slot(self, slot: int) -> None:
        self.inbox.put(SpareReady(slot, None))  # slots are the workers' business

    def keep_work(self, workspace: Workspace, ticket_id: str) -> None:
        pass  # the worker pushed its unlanded work to refs/sage/kept/<ID>/<N> already

    def finish_releases(self, releases: list[SlotRelease]) -> list[tuple[str, str]]:
        return []

    def close(self) -> None:
        """Close the client this runner opened, once the run is over: the run's outcome is
        in the index and its record already, and a scheduler gone meanwhile leaves nothing
        to close (distributed's CommClosedError is an OSError)."""
        if self._owns_client:
            with contextlib.suppress(OSError, TimeoutError):
                self.client.close()

    # ------------------------------------------------------------ one ticket

    def _drive(self, spec: AttemptSpec, handle: AttemptHandle) -> None:
        ticket_id = spec.ticket.id
        try:
            self._wait_for_earlier_runs(spec, handle)
            orphan, number = self._numbers(spec)
            landed = None
            if orphan is not None:
                landed = self._land_if_pushed(spec, orphan, why="pushed after its coordinator stopped")
            redispatched, lost = 0, None
            while landed is None:
                outcome = lost = self._run_once(spec, handle, number)
                if not isinstance(outcome, _WorkerLost):
                    self.inbox.put(outcome)
                    return
                landed = self._land_if_pushed(spec, number, why=f"pushed before worker {outcome.worker} was lost")
                if landed is not None or redispatched >= MAX_REDISPATCH or handle.cancelled.is_set():
                    break
                redispatched += 1
                number += 1
                self._warn(ticket_id, f"worker {outcome.worker} was lost during attempt {number - 1} of {ticket_id} "
                                      f"({outcome.detail}); sent again as attempt {number}")
            self.inbox.put(landed or AttemptCrashed(ticket_id, f"the Dask workers running it were lost "
                                                               f"{redispatched + 1} times", lost.workspace))
        except Exception as error:
            detail = error.message if isinstance(error, SageError) else traceback.format_exc()
            self.inbox.put(AttemptCrashed(ticket_id, detail, None))

    def _wait_for_earlier_runs(self, spec: AttemptSpec, handle: AttemptHandle) -> None:
        """An attempt of this ticket that a dead coordinator left running goes on and pushes
        when it ends: wait for it (the grace period: at most the agent's timeout) rather
        than pay for the agent twice; what it pushes then lands."""
        prefix = f"{TASK_PREFIX}{spec.ticket.id}/"
        deadline = time.monotonic() + self.settings.timeout_s + self.settings.grace_s
        said = False
        while time.monotonic() < deadline and not handle.cancelled.is_set():
            running = [key for keys in self.client.run(running_attempts, prefix=prefix).values() for key in keys
                       if not key.endswith(f"/{self.settings.run_id}")]
            if not running:
                return
            if not said:
                said = True
                self._warn(spec.ticket.id, f"an attempt of {spec.ticket.id} from an earlier run is still running on the "
                                           f"cluster ({running[0]}): waiting for it; what it pushes lands", level="info")
            time.sleep(ORPHAN_POLL_S)

    def _numbers(self, spec: AttemptSpec) -> tuple[int | None, int]:
        """(an orphaned attempt to land, the number of the next one). An attempt whose ref
        is on the hub but that no coordinator received (its run died) lands as it is;
        numbers on the hub are never used again, so a late push lands on its own number only."""
        ticket_id = spec.ticket.id
        landable = _numbered(self.git.hub_refs(self.settings.hub, f"{ATTEMPTS_PREFIX}{ticket_id}/"))
        kept = _numbered(self.git.hub_refs(self.settings.hub, f"{KEPT_PREFIX}{ticket_id}/"))
        received = _numbered(self.git.local_refs(f"{RECEIVED_PREFIX}{ticket_id}/"))
        orphans = sorted(set(landable) - set(received))
        return (orphans[-1] if orphans else None), max([spec.attempt, *(n + 1 for n in [*landable, *kept])])

    def _land_if_pushed(self, spec: AttemptSpec, number: int, *, why: str) -> AttemptDone | None:
        """The attempt's ref on the hub lands as it is: its agent does not run twice."""
        tip = self._receive(spec.ticket.id, attempt_ref(spec.ticket.id, number), number)
        if tip is None:
            return None
        base = self.git.merge_base(tip, self._base(spec)) or tip
        workspace = Workspace(path=Path(attempt_ref(spec.ticket.id, number)), branch=ticket_branch(spec.ticket.id),
                              base=base, ticket=spec.ticket.id)
        self.inbox.put(Prepared(spec.ticket.id, workspace))
        self._warn(spec.ticket.id, f"attempt {number} of {spec.ticket.id} was {why}: it lands as it is", level="info")
        exit = AgentExit(outcome=EXITED, returncode=0, duration_s=0.0, last_line="", error=None, pid=None)
        result = AgentResult(success=True, summary=f"attempt {number}, {why}")
        return AttemptDone(spec.ticket.id, TicketWork(exit=exit, result=result, turn_started=0.0, workspace=workspace,
                                                      tip=tip))

    def _receive(self, ticket_id: str, ref: str, number: int) -> str | None:
        """Fetch an attempt's ref and note here that this coordinator took it in hand."""
        tip = self.git.fetch_ref(self.settings.hub, ref)
        if tip is not None:
            self.git.run("update-ref", f"{RECEIVED_PREFIX}{ticket_id}/{number}", tip)
        return tip

    def _base(self, spec: AttemptSpec) -> str:
        start_tip = self.settings.start_tip or (lambda: self.git.rev_parse(f"refs/heads/{self.settings.target}"))
        base = spec.start or start_tip()
        if base is None:
            raise SageError(f"the target branch {self.settings.target!r} is gone")
        return base

    def _run_once(self, spec: AttemptSpec, handle: AttemptHandle, number: int) -> Message | _WorkerLost:
        from distributed import Event

        attempt = _Attempt(spec, handle, number, self._base(spec))
        key = (spec.ticket.id, number)
        with self._lock:
            self._by_number[key] = attempt
        try:
            future = self._submit(self._remote_attempt(spec, number, attempt.base))
            stop_sent = False
            while True:
                if handle.cancelled.is_set() and not stop_sent:
                    stop_sent = True  # the task polls this Event and kills its agent's process group
                    Event(cancel_event_name(self.settings.run_id, spec.ticket.id, number), client=self.client).set()
                try:
                    result: RemoteResult = future.result(timeout=WAIT_POLL_S)
                    break
                except TimeoutError:
                    continue
                except Exception as error:  # KilledWorker, a lost connection...
                    return _WorkerLost(attempt.worker or "?", f"{type(error).__name__}: {error}", self._workspace(attempt))
            return self._finished(attempt, result)
        finally:
            with self._lock:
                self._by_number.pop(key, None)

    def _remote_attempt(self, spec: AttemptSpec, number: int, base: str) -> RemoteAttempt:
        s = self.settings
        return RemoteAttempt(
            ticket=spec.ticket, attempt=number, base=base, hub=s.hub,
            prompt=spec.job.prompt_file.read_text(encoding="utf-8"), stem=spec.stem, run_id=s.run_id, topic=self.topic,
            agent=s.agent, checks=spec.checks, max_fix_turns=spec.max_fix_turns, session_id=spec.job.session_id,
            timeout_s=s.timeout_s, idle_timeout_s=s.idle_timeout_s, grace_s=s.grace_s,
            check_timeout_s=s.check_timeout_s, check_parallel=s.check_parallel, check_env=s.check_env)

    def _submit(self, attempt: RemoteAttempt) -> Any:
        """No reruns (retries=0), one `agent` slot of a worker; a continued session
        prefers the worker that holds it."""
        preferred = self._session_workers.get(attempt.session_id or "")
        placement = dict(workers=[preferred], allow_other_workers=True) if preferred else {}
        return self.client.submit(run_remote_attempt, attempt, key=task_key(attempt.ticket.id, attempt.attempt,
                                                                            attempt.run_id),
                                  pure=False, retries=0, resources={"agent": 1}, **placement)

    def _finished(self, attempt: _Attempt, result: RemoteResult) -> Message:
        spec, ticket_id = attempt.spec, attempt.spec.ticket.id
        attempt.worker = result.worker
        workspace = self._workspace(attempt)
        if (result.prepared or result.work is not None) and self._first_prepared(attempt):
            self.inbox.put(Prepared(ticket_id, workspace))
        if result.work is None:
            self._copy_log(spec, result)
            return AttemptCrashed(ticket_id, result.crashed or "the attempt failed", workspace if result.prepared
                                  else None, on_setup=result.on_setup)
        work = replace(result.work, workspace=workspace, log=self._copy_log(spec, result))
        if result.work.result.session_id:
            self._session_workers[result.work.result.session_id] = result.worker
        if result.push_error:
            work.snapshot_error = result.push_error  # not landable: it is not on the hub
            work.tip = None
        elif result.pushed_ref is not None:
            fetched = self._receive(ticket_id, result.pushed_ref, attempt.number)
            if fetched != work.tip:
                work.snapshot_error = f"{result.pushed_ref} on the hub is at {fetched}, not {work.tip}"
                work.tip = None
        return AttemptDone(ticket_id, work)

    @staticmethod
    def _copy_log(spec: AttemptSpec, result: RemoteResult) -> Path:
        """The attempt's log here: where the worker keeps the whole of it, then its end."""
        path = spec.job.log_path
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as log:  # the attempt's own log file: appended, like locally
            log.write(f"[sage] the whole log is on worker {result.worker}: {result.log or '(none)'}; its end:\n")
            log.write(result.log_tail)
        return path

    def _workspace(self, attempt: _Attempt) -> Workspace:
        """The attempt's place as the coordinator names it: its worker and ref (no worktree here)."""
        spec = attempt.spec
        where = Path(f"{attempt.worker or 'dask'}:{attempt_ref(spec.ticket.id, attempt.number)}")
        return Workspace(path=where, branch=ticket_branch(spec.ticket.id), base=attempt.base,
                         ticket=spec.ticket.id)

    # ------------------------------------------------------------ events from workers

    def _on_event(self, event: tuple[float, dict[str, Any]]) -> None:
        _, payload = event
        try:
            message = pickle.loads(payload["message"])
        except Exception:
            return
        ticket_id = getattr(message, "ticket_id", None)
        with self._lock:
            attempt = self._by_number.get((ticket_id, payload.get("attempt")))
        if attempt is None:
            return  # a late event of an attempt this run no longer follows
        if isinstance(message, Prepared):
            attempt.worker = payload.get("worker_name")  # Dask sets "worker" to the address
            if not self._first_prepared(attempt):
                return
            self.inbox.put(Prepared(ticket_id, self._workspace(attempt)))
            self._warn(ticket_id, f"attempt {attempt.number} of {ticket_id} runs on worker {attempt.worker}",
                       level="info", worker=attempt.worker)
        elif isinstance(message, (AgentLine, Progress, TurnDone)):
            self.inbox.put(message)

    def _first_prepared(self, attempt: _Attempt) -> bool:
        with self._lock:
            first, attempt.prepared = not attempt.prepared, True
            return first

    def _warn(self, ticket_id: str | None, text: str, *, level: str = "warning", **data: Any) -> None:
        self.inbox.put(Progress(ticket_id, ev.MESSAGE, dict(level=level, text=text, **data)))

    def _check_reruns_off(self) -> Any:
        """Dask reruns a task whose worker died (`allowed-failures`, default 3): an agent
        paid for twice, behind sage's back. Said at start when the scheduler allows it."""
        try:
            allowed = self.client.run_on_scheduler(_allowed_failures)
        except Exception as error:
            allowed = f"unknown ({error})"
        if allowed != 0:
            self._warn(None, f"the Dask scheduler at {self.settings.address} has distributed.scheduler.allowed-failures"
                           f" = {allowed}: a task whose worker dies may be rerun by Dask and its agent start twice; "
                           "start the scheduler with DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=0")
        return allowed


def _numbered(refs: Any) -> list[int]:
    """The attempt numbers of refs named .../<ID>/<N>."""
    return [int(ref.rsplit("/", 1)[1]) for ref in refs if ref.rsplit("/", 1)[1].isdigit()]


@dataclass(frozen=True)
class _WorkerLost:
    worker: str
    detail: str
    workspace: Workspace


def _allowed_failures() -> Any:
    import dask

    return dask.config.get("distributed.scheduler.allowed-failures")


def _connect(settings: DaskSettings) -> Any:
    try:
        from distributed import Client
        from distributed.security import Security
    except ImportError:
        raise SageError("--executor dask:// needs Dask distributed: pip install 'sage-stream[dask]'") from None
    security = None
    if settings.tls is not None:
        ca, cert, key = settings.tls
        security = Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key, require_encryption=True)
    try:
        return Client(settings.address, security=security, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except Exception as error:
        raise SageError(f"cannot reach the Dask scheduler at {settings.address}: {error}") from None


def dask_runner(git: Git, settings: StreamSettings, run_id: str, inbox: queue.Queue[Message], *,
                start_tip: Any = None, client: Any = None) -> DaskRunner:
    """The run's runner for `--executor dask://`: the hub defaults to the --remote's URL,
    else this repository's own path (workers on this machine or a shared filesystem)."""
    choice = settings.executor
    hub = choice.hub or (git.remote_url(settings.remote) if settings.remote else None) or str(settings.repo.absolute())
    return DaskRunner(git, DaskSettings(
        address=choice.address, hub=hub, agent=settings.agent, run_id=run_id, target=settings.target,
        timeout_s=settings.timeout_s, idle_timeout_s=settings.idle_timeout_s, grace_s=settings.grace_s,
        check_timeout_s=settings.check_timeout_s, check_parallel=settings.check_parallel,
        check_env=tuple(settings.check_env), tls=choice.tls, insecure=choice.insecure, start_tip=start_tip,
        sandboxed=settings.sandbox.sandbox is not None),
        inbox, client=client)
