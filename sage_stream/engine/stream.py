"""`sage stream`: the loop that joins the plan, the agent runners, landing and the display.

One thread per running ticket (blocking in `run_agent`), one main thread that decides,
lands and writes state. Landing happens in the main thread, one ticket at a time,
under the commit lock, so the commit queue is serial by construction.

A ticket's thread runs its agent and then its checks (engine/verification.py): when a
check fails, the agent gets the failing output and another turn (continuing its session
when it has one), up to the ticket's fix turns; the thread hands back the last turn and
the verdict, and only a ticket whose checks passed is queued to land. Checks run in the
ticket's thread, so its worker slot stays busy and other tickets go on meanwhile.

Dispatch is gated by `DispatchControl` (rate limits pause it for everyone and shrink the
worker count), by `--max-cost` (once spent, nothing new starts) and by `--max-load`.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sage_stream.agents import environment
from sage_stream.agents.base import Agent, AgentJob, AgentResult
from sage_stream.agents.prompt import build_prompt, write_prompt_file
from sage_stream.config import SageConfig
from sage_stream.engine import events as ev
from sage_stream.engine import ticket_state
from sage_stream.process.supervise import CANCELLED, EXITED, AgentExit, AgentLaunch, run_agent
from sage_stream.faults import crash_point
from sage_stream.engine.commit_queue import CommitQueue, QueueEntry
from sage_stream.engine.dispatch_control import (
    DEFER,
    RATE_LIMIT_KINDS,
    STOP,
    DispatchControl,
    RateLimitPolicy,
)
from sage_stream.engine.display import Display
from sage_stream.engine.landing import LandingResult, commit_message, land_ticket
from sage_stream.engine.run_lock import is_alive, process_identity
from sage_stream.engine.repo_guard import RepoGuard, restore_worktree_link, worktree_link
from sage_stream.engine.run_record import RunRecord, TicketRecord, write_run
from sage_stream.engine.scheduler import DispatchPlan
from sage_stream.engine.settings import StreamSettings
from sage_stream.engine.verification import (
    Check,
    CheckDefinitionError,
    Verification,
    fix_prompt,
    fix_turns_allowed,
    run_checks,
    ticket_checks,
)
from sage_stream.engine.worktrees import TicketWorkspaces, Workspace
from sage_stream.errors import EXIT_DEFERRED, EXIT_INTERRUPTED, EXIT_OK, SageError
from sage_stream.git import Git
from sage_stream.text import now_iso, parse_timestamp
from sage_stream.tickets.models import State, Ticket
from sage_stream.tickets.naming import ticket_branch
from sage_stream.tickets.store import IndexStore

TRAILER_KEY = "Sage-Ticket"


@dataclass
class Continuation:
    """A landed ticket's agent session that a dependent ticket may continue."""

    ticket: str
    title: str
    session_id: str
    slot: int  # the worktree slot (and so the working directory) the session ran in


@dataclass
class Attempt:
    ticket: Ticket
    slot: int  # the worktree slot: .sage/worktrees/slot-<slot>
    row: int  # the worker it occupies while its agent and checks run (0 .. workers-1)
    workspace: Workspace | None  # set by the ticket's thread once the slot is switched to its branch
    job: AgentJob
    cancel: threading.Event
    started: float
    attempt: int
    stem: str = ""  # file names of this attempt in the run directory: <stem>.log, .prompt.md...
    checks: Sequence[Check] = ()
    max_fix_turns: int = 0
    continued_from: str | None = None  # the dependency whose session this attempt continues
    cleanup: list[tuple[Workspace, bool]] = field(default_factory=list)  # releases to finish first
    after_landed: Workspace | None = None  # the slot's previous ticket, landed, not yet released
    start: str | None = None  # the target's tip when it was dispatched, if known then (else read at prepare)
    delete_later: list[str] = field(default_factory=list)  # landed branches to delete once the agent runs
    git_link: bytes | None = None  # the worktree's `.git` file as sage made it
    released: bool = False  # its worktree slot was handed back


@dataclass
class TicketWork:
    """What a ticket's thread hands back: its last agent turn and the checks' verdict."""

    exit: AgentExit
    result: AgentResult  # the last turn's, with cost and tokens summed over all turns
    turn_started: float  # when the last turn started (time.time())
    verification: Verification | None = None  # None: no checks, or the agent did not succeed
    fix_turns: int = 0
    cancelled: bool = False
    tip: str | None = None  # the branch commit holding all of the ticket's work (snapshot)
    tampered: list[str] = field(default_factory=list)  # git control files the agent changed (undone)
    snapshot_error: str | None = None


class StreamRun:
    def __init__(self, store: IndexStore, git: Git, settings: StreamSettings, display: Display, run_id: str) -> None:
        self.store = store
        self.git = git
        self.settings = settings
        self.display = display
        self.run_id = run_id
        self.run_dir = settings.sage_dir / "workers" / run_id
        self.queue = CommitQueue(settings.sage_dir / "commit-queue")
        self.workspaces = TicketWorkspaces(git, settings.sage_dir / "worktrees")
        self.landing_lock = settings.sage_dir / "commit.lock"
        self.inbox: queue.Queue[tuple[str, str, Any]] = queue.Queue()
        self.attempts: dict[str, Attempt] = {}
        # Workers and worktree slots are counted apart: a worker is free once its agent
        # and checks are done, its worktree slot once the ticket has landed (or not).
        # A finished ticket that unblocks nothing lets its worker start the next ticket
        # in the one spare slot while it lands (a slot of a large repository costs disk
        # and its first checkout: one spare, since landings go one at a time).
        self.free_rows = list(range(settings.workers))
        self.free_worktrees = list(range(settings.workers))
        self.worktree_slots = settings.workers
        self.max_worktree_slots = settings.workers + 1
        self._spare_maker: threading.Thread | None = None  # makes the spare slot ahead of need
        self.stopping = False
        self.stop_deadline: float | None = None
        self.interrupted = False
        self.deferred: list[str] = []
        self.landed: list[str] = []
        self.pid, self.pid_create_time = process_identity()
        self.started_at = now_iso()
        self.record = RunRecord(
            run_id=run_id, pid=self.pid, pid_create_time=self.pid_create_time, started=self.started_at,
            finished=None, status="running", target=settings.target, workers=settings.workers,
            workers_reason=settings.workers_reason, schedule=settings.schedule, agent=settings.agent.name,
            exit_code=None, tickets={}, total_cost_usd=0.0,
        )
        self._paused_for_load = False
        self._last_line_sent: dict[str, float] = {}
        self.plan: DispatchPlan | None = None  # set by execute(); recovery lands before there is one
        self.control = DispatchControl(settings.workers, settings.rate_limits, clock=settings.clock)
        self.halted: str | None = None  # why this run starts no more tickets (cost, rate limits)
        self.halt_exit: int | None = None  # the exit code the halt asks for, at least
        self.spent_usd = 0.0
        self.starts: dict[str, int] = {}  # agent starts per ticket in this run (file names)
        self.rate_limited: dict[str, int] = {}  # rate limits per ticket in this run
        self.sessions: dict[str, Continuation] = {}  # landed in this run, by ticket id
        self.continued: dict[str, str] = {}  # session id -> the ticket that continues it
        self._tickets_now: dict[str, Ticket] | None = None  # the index as of our last write
        self._record_saved_at = 0.0
        self._record_pending = False
        # Slot releases wait for the next ticket that takes the slot, so that resetting a
        # worktree never delays the loop (it sits between one landing and the next start).
        self.pending_release: dict[int, tuple[Workspace, bool]] = {}
        self._tip_now: str | None = None  # the target's tip while a landing dispatches what it unblocked

    # ---------------------------------------------------------------- entry

    def execute(self, plan: DispatchPlan, tickets_meta: dict[str, dict[str, Any]], ready: list[str],
                predicted_makespan: float | None) -> int:
        self.plan = plan
        self.guard = RepoGuard.start(self.git.common_dir())
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.emit(ev.RUN_STARTED, None, run_id=self.run_id, target=self.settings.target,
                  workers=self.settings.workers, workers_reason=self.settings.workers_reason,
                  schedule=self.settings.schedule, agent=self.settings.agent.name, tickets=tickets_meta,
                  ready=ready, predicted_makespan_minutes=predicted_makespan)
        self.save_record()
        previous = self._install_signal_handlers()
        try:
            self._loop()
        except BaseException:
            self._stop_agents_after_failure()
            raise
        finally:
            self._restore_signal_handlers(previous)
            if self._spare_maker is not None:
                self._spare_maker.join()  # one checkout at most; the slot is then made or not
            releases = list(self.pending_release.values())
            self.pending_release.clear()
            self._finish_releases_in_parallel(releases)
        return self._finish()

    def _loop(self) -> None:
        while True:
            if not self.stopping:
                self._dispatch()
            if not self.attempts:
                if self.stopping or self.halted or self.plan.is_finished() or not self._waiting_to_dispatch():
                    return
            try:
                kind, ticket_id, payload = self.inbox.get(timeout=self._wait_s())
            except queue.Empty:
                self._check_stop_deadline()
                if self._record_pending:
                    self.save_record()
                continue
            self._handle(kind, ticket_id, payload)
            self._check_stop_deadline()

    def _stop_agents_after_failure(self) -> None:
        """The loop itself failed (say, the index cannot be written): stop every agent and
        wait for its process tree to be gone. Their tickets stay IN_PROGRESS in the index;
        the next run's recovery keeps their work on their branches and puts them back."""
        for attempt in self.attempts.values():
            attempt.cancel.set()
        deadline = time.monotonic() + self.settings.grace_s + 15
        while self.attempts and time.monotonic() < deadline:
            try:
                kind, ticket_id, _ = self.inbox.get(timeout=0.25)
            except queue.Empty:
                continue
            if kind in ("finished", "crashed"):
                self.attempts.pop(ticket_id, None)
        self.record.status = "failed"
        self.record.finished = now_iso()
        try:
            write_run(self.settings.sage_dir, self.record)
        except OSError:
            pass  # the same disk failure, most likely; the index is what recovery trusts

    def _waiting_to_dispatch(self) -> bool:
        # With nothing running, only a pause (load average, rate limit) makes the loop wait.
        return self._paused_for_load or self.control.paused_until is not None

    def _wait_s(self) -> float:
        until_resume = self.control.seconds_to_resume()
        return 0.25 if until_resume is None else min(0.25, max(0.01, until_resume))

    # ---------------------------------------------------------------- dispatch

    def _dispatch(self) -> None:
        if self.halted:
            return
        if self.control.take_resume():
            self.emit(ev.DISPATCH_RESUMED, None, workers=self.control.workers, reason="the rate-limit pause is over")
        capacity = min(len(self.free_rows), self._worktrees_available(), self.control.startable(len(self.attempts)))
        if capacity <= 0:
            return
        if self._load_too_high():
            return
        for ticket_id in self.plan.next_to_start(capacity):
            if self.stopping:
                return
            ticket = self.plan.tickets[ticket_id]
            if self.settings.confirm is not None:
                answer = self.settings.confirm(ticket)
                if answer == "quit":
                    self.stopping = True
                    self.interrupted = False
                    return
                if answer == "skip":
                    self.plan.gave_up(ticket_id)
                    self.emit(ev.MESSAGE, ticket_id, level="info", text=f"skipped {ticket_id} (its dependents wait)")
                    continue
            self._start(ticket)

    def _load_too_high(self) -> bool:
        limit = self.settings.max_load
        if limit is None:
            return False
        load = os.getloadavg()[0]
        if load > limit:
            if not self._paused_for_load:
                self._paused_for_load = True
                self.emit(ev.DISPATCH_PAUSED, None, reason=f"load average {load:.2f} is above --max-load {limit}",
                          until=None)
            if not self.attempts:
                time.sleep(1.0)
            return True
        if self._paused_for_load:
            self._paused_for_load = False
            self.emit(ev.DISPATCH_RESUMED, None, workers=self.control.workers, reason="the load average is down")
        return False

    def _start(self, ticket: Ticket) -> None:
        crash_point("before_start_edit")
        continuation = self._continuation(ticket)
        row = self._take_row()
        slot = self._take_worktree(continuation.slot if continuation else None)
        attempt_number = ticket.attempts + 1 + self.plan.reruns.get(ticket.id, 0)
        try:
            checks = [*ticket_checks(ticket), *self.settings.checks]
        except CheckDefinitionError as error:  # found before any agent spends anything
            self._return_row(row)
            self._return_worktree(slot)
            self.plan.started(ticket.id)
            self._defer(ticket, category="error", message=error.message)
            return
        branch = ticket_branch(ticket.id)
        try:
            edit = ticket_state.start(run_id=self.run_id, pid=self.pid, pid_create_time=self.pid_create_time,
                                      branch=branch)
            self._apply({ticket.id: edit})
        except Exception as error:  # a disk failure for this one ticket: defer it, go on
            self._return_row(row)
            self._return_worktree(slot)
            self.plan.started(ticket.id)
            self._defer(ticket, category="error", message=f"could not mark it IN_PROGRESS: {error}",
                        last_error=str(error))
            return
        self.plan.started(ticket.id)
        crash_point("after_start_edit")
        count = self.starts[ticket.id] = self.starts.get(ticket.id, 0) + 1
        stem = ticket.id if count == 1 else f"{ticket.id}.rerun-{count - 1}"  # each attempt its own files
        prompt_file = self.run_dir / f"{stem}.prompt.md"
        log_path = self.run_dir / f"{stem}.log"
        result_file = self.run_dir / f"{stem}.result.json"
        result_file.unlink(missing_ok=True)
        summaries, titles = self._dependency_context(ticket)
        prompt = build_prompt(ticket, tickets_dir=self.store.path.parent, repo_root=self.settings.repo,
                              dependency_summaries=summaries, dependency_titles=titles)
        if continuation is not None:
            prompt += continuation_note(continuation)
            self.continued[continuation.session_id] = ticket.id
        write_prompt_file(prompt_file, prompt)
        job = AgentJob(ticket=ticket, worktree=Path(), prompt_file=prompt_file, result_file=result_file,
                       log_path=log_path, run_id=self.run_id,
                       session_id=continuation.session_id if continuation else None)
        cleanup, after_landed = self._take_releases(slot, branch)
        attempt = Attempt(ticket=ticket, slot=slot, row=row, workspace=None, job=job, cancel=threading.Event(),
                          cleanup=cleanup, after_landed=after_landed, start=self._tip_now,
                          started=time.time(), attempt=attempt_number, stem=stem, checks=checks,
                          max_fix_turns=fix_turns_allowed(ticket, self.settings.max_fix_turns),
                          continued_from=continuation.ticket if continuation else None)
        self.attempts[ticket.id] = attempt
        self.record.tickets[ticket.id] = TicketRecord(
            id=ticket.id, title=ticket.title, outcome="running", start=now_iso(), end=None, commit=None,
            attempts=attempt_number, category=None, message=None, log=str(log_path), summary=None,
            cost_usd=None, session_id=continuation.session_id if continuation else None)
        self.save_record()
        thread = threading.Thread(target=self._run_attempt, args=(attempt,), name=f"agent-{ticket.id}", daemon=True)
        thread.start()

    def _take_row(self) -> int:
        return self.free_rows.pop(0)

    def _return_row(self, row: int) -> None:
        self.free_rows.append(row)
        self.free_rows.sort()

    def _take_worktree(self, preferred: int | None) -> int:
        """A free worktree slot: `preferred` when it is free (a continued session's
        directory), else the lowest free one, else a new one (`_dispatch` starts no more
        tickets than there are slots available)."""
        if preferred is not None and preferred in self.free_worktrees:
            self.free_worktrees.remove(preferred)
            return preferred
        if self.free_worktrees:
            return self.free_worktrees.pop(0)
        self.worktree_slots += 1
        return self.worktree_slots - 1

    def _worktrees_available(self) -> int:
        return len(self.free_worktrees) + self.max_worktree_slots - self.worktree_slots

    def _return_worktree(self, slot: int) -> None:
        if slot not in self.free_worktrees:
            self.free_worktrees.append(slot)
            self.free_worktrees.sort()

    def _make_spare_if_useful(self) -> None:
        """Make the spare slot in the background once it may be needed: when every
        running ticket has its worktree (not to slow their checkouts), more tickets may
        start, and a running ticket unblocks nothing when it lands (its worker takes the
        spare while it lands). A new slot's first checkout writes every file of the
        repository (hundreds of ms on a slow disk); made on demand, it would sit between
        one agent and the next."""
        if self._spare_maker is not None or self.worktree_slots >= self.max_worktree_slots:
            return
        if self.stopping or self.halted:  # nothing new starts
            return
        if any(attempt.workspace is None for attempt in self.attempts.values()) or not self.plan.may_start_more():
            return
        if all(self.plan.would_unblock(ticket_id) for ticket_id in self.attempts):
            return
        slot = self.worktree_slots
        self.worktree_slots += 1  # taken until it is ready: `_dispatch` does not count it yet
        self._spare_maker = threading.Thread(target=self._make_spare, args=(slot,), name="spare-slot", daemon=True)
        self._spare_maker.start()

    def _make_spare(self, slot: int) -> None:
        error = None
        try:
            self.workspaces.make_spare(slot, f"refs/heads/{self.settings.target}")
        except Exception as failure:  # the ticket that needs the slot tries again, and says why
            error = failure.message if isinstance(failure, SageError) else repr(failure)
        self.inbox.put(("spare_ready", "", (slot, error)))

    def _continuation(self, ticket: Ticket) -> Continuation | None:
        """The session to continue: its only dependency's, landed in this run, not yet
        continued by another ticket (two tickets continuing one session would fork it)."""
        if not self.settings.reuse_sessions or not self.settings.agent.supports_sessions():
            return None
        if len(ticket.dependencies) != 1:
            return None
        landed = self.sessions.get(ticket.dependencies[0])
        if landed is None or self.continued.get(landed.session_id, ticket.id) != ticket.id:
            return None
        return landed

    def _apply(self, edits: dict[str, ticket_state.Edit]) -> None:
        """Write ticket edits to the index (the store re-reads it under its lock) and keep
        the result, so that reading it back costs nothing."""
        self._tickets_now = ticket_state.apply(self.store, edits).index.by_id()

    def _current_tickets(self) -> dict[str, Ticket]:
        if self._tickets_now is None:
            self._tickets_now = self.store.load().index.by_id()
        return self._tickets_now

    def _dependency_context(self, ticket: Ticket) -> tuple[dict[str, str], dict[str, str]]:
        """What each dependency did (its agent's summary) and its title, for the prompt."""
        summaries: dict[str, str] = {}
        titles: dict[str, str] = {}
        current = self._current_tickets() if ticket.dependencies else {}
        for dep in ticket.dependencies:
            other = current.get(dep)
            if other is None:
                continue
            result = (other.model_extra or {}).get("agent_result")
            summary = result.get("summary") if isinstance(result, dict) else None
            summaries[dep] = str(summary or other.summary or "(no summary recorded)")
            titles[dep] = other.title
        return summaries, titles

    # ---------------------------------------------------------------- a ticket's thread

    def _run_attempt(self, attempt: Attempt) -> None:
        """Worker thread: agent turns and checks to the end, then report back. Never raises."""
        ticket_id = attempt.ticket.id
        try:
            self.inbox.put(("finished", ticket_id, self._work_on_ticket(attempt)))
        except Exception as error:  # includes SageError from an agent that cannot run this ticket
            detail = error.message if isinstance(error, SageError) else traceback.format_exc()
            self.inbox.put(("crashed", ticket_id, detail))

    def _prepare(self, attempt: Attempt) -> None:
        """Switch the slot's worktree to the ticket's branch at the target's tip (in the
        ticket's thread: worktree changes are serialized by their own lock, not the loop)."""
        ticket = attempt.ticket
        self._finish_releases(attempt.cleanup)
        start = attempt.start or self.git.rev_parse(f"refs/heads/{self.settings.target}")
        if start is None:
            raise SageError(f"the target branch {self.settings.target!r} is gone")
        workspace = None
        if attempt.after_landed is not None:
            workspace = self.workspaces.switch_after_landing(attempt.after_landed, ticket.id, start, slot=attempt.slot,
                                                             delete_later=attempt.delete_later)
            if workspace is None:
                self._finish_releases([(attempt.after_landed, True)])
        if workspace is None:
            workspace = self.workspaces.prepare(ticket.id, start, slot=attempt.slot)
        attempt.workspace = workspace
        attempt.git_link = worktree_link(workspace.path)
        attempt.job = replace(attempt.job, worktree=workspace.path)
        self._post(ev.TICKET_STARTED, ticket.id, title=ticket.title, row=attempt.row, slot=attempt.slot,
                   attempt=attempt.attempt,
                   branch=workspace.branch, worktree=str(workspace.path), log=str(attempt.job.log_path),
                   continues=attempt.continued_from)

    def _work_on_ticket(self, attempt: Attempt) -> TicketWork:
        """Prepare the worktree; the agent's turn, then the checks; while they fail and fix
        turns are left, the agent gets their output and another turn. Then everything the
        agent left is committed on the ticket's branch."""
        self._prepare(attempt)
        try:
            work = self._agent_turns(attempt)
        finally:
            self._delete_landed_branches(attempt)  # when no agent started
        self._snapshot(attempt, work)
        return work

    def _delete_landed_branches(self, attempt: Attempt) -> None:
        """Branches of tickets that landed, deleted while the next agent works (not
        between a landing and the next start)."""
        while attempt.delete_later:
            branch = attempt.delete_later.pop()
            try:
                self.git.branch_delete(branch)
            except Exception as error:  # a leftover branch of landed work costs nothing
                self._post(ev.MESSAGE, attempt.ticket.id, level="warning",
                           text=f"could not delete {branch} (it landed): {error}")

    def _snapshot(self, attempt: Attempt, work: TicketWork) -> None:
        """Commit the agent's work on its branch: what lands, or what is kept when it does not."""
        ticket = attempt.ticket
        succeeded = work.result.success and work.exit.outcome == EXITED and not work.tampered and (
            work.verification is None or work.verification.passed)
        message = f"{ticket.id}: {ticket.title}" if succeeded else f"wip: {ticket.id} (unlanded attempt, kept by sage)"
        try:
            work.tip = self.git.snapshot(attempt.workspace.path, message)
        except Exception as error:
            work.snapshot_error = str(error)
            return
        if succeeded:
            crash_point("after_snapshot")

    def _agent_turns(self, attempt: Attempt) -> TicketWork:
        job, turn, results = attempt.job, 0, []
        while True:
            turn_started = time.time()
            exit, result = self._agent_turn(attempt, job)
            results.append(result)
            self.inbox.put(("turn", attempt.ticket.id, (exit, result, turn, turn_started)))
            work = TicketWork(exit=exit, result=_over_turns(results), turn_started=turn_started, fix_turns=turn)
            work.tampered = self._undo_tampering(attempt)  # before any git command touches its work
            if work.tampered or not result.success or not attempt.checks:
                return work
            work.verification = self._verify(attempt, turn)
            if work.verification.cancelled or attempt.cancel.is_set():
                work.cancelled = True
                return work
            fix_next = not work.verification.passed and turn < attempt.max_fix_turns
            self._post(ev.TICKET_CHECKED, attempt.ticket.id, passed=work.verification.passed,
                       failed=[item.check.name for item in work.verification.failed], turn=turn,
                       fix_turn_next=fix_next,
                       duration_s=round(max((item.duration_s for item in work.verification.results), default=0), 2))
            if not fix_next:
                return work
            turn += 1
            job = self._fix_job(attempt, result, work.verification, turn)

    def _undo_tampering(self, attempt: Attempt) -> list[str]:
        """Git control files changed during the turn, put back as they were (see repo_guard)."""
        changed = self.guard.check_and_restore()
        path = attempt.workspace.path
        if attempt.git_link is not None and worktree_link(path) != attempt.git_link:
            restore_worktree_link(path, attempt.git_link)
            changed.append(f"{path}/.git")
        return changed

    def _agent_turn(self, attempt: Attempt, job: AgentJob) -> tuple[AgentExit, AgentResult]:
        ticket_id = attempt.ticket.id
        invocation = self.settings.agent.invocation(job)
        launch = AgentLaunch(argv=invocation.argv, cwd=attempt.workspace.path, env=invocation.env,
                             log_path=job.log_path, timeout_s=self.settings.timeout_s,
                             idle_timeout_s=self.settings.idle_timeout_s, grace_s=min(self.settings.grace_s, 5.0))
        exit = run_agent(launch, cancel=attempt.cancel, on_line=lambda line: self.inbox.put(("line", ticket_id, line)),
                         on_start=lambda pid, created: self._delete_landed_branches(attempt))
        return exit, self.settings.agent.parse_result(job, exit)

    def _verify(self, attempt: Attempt, turn: int) -> Verification:
        """Run the checks on exactly what would land: the agent's work is committed first,
        and whatever the checks leave behind (caches, reports) is removed after them."""
        path = attempt.workspace.path
        checked = self.git.snapshot(path, f"{attempt.ticket.id}: {attempt.ticket.title}")
        self._post(ev.TICKET_CHECKING, attempt.ticket.id, checks=[check.name for check in attempt.checks], turn=turn)
        env = environment.agent_environment(os.environ, passthrough=self.settings.check_env, sage={
            environment.SAGE_TICKET_ID: attempt.ticket.id,
            environment.SAGE_RUN_ID: self.run_id,
            environment.SAGE_WORKTREE: str(Path(path).absolute()),
        })
        try:
            return run_checks(attempt.checks, worktree=path, env=env, log_dir=self.run_dir, stem=attempt.stem,
                              timeout_s=self.settings.check_timeout_s, cancel=attempt.cancel,
                              max_parallel=self.settings.check_parallel, label=f"turn {turn}")
        finally:
            self.git.run("reset", "--quiet", "--hard", checked, cwd=path)
            self.git.run("clean", "-q", "-fd", cwd=path)  # not -x: ignored files never land anyway

    def _fix_job(self, attempt: Attempt, previous: AgentResult, verification: Verification, turn: int) -> AgentJob:
        """The next turn: the failing output as its prompt, in the same session when the
        agent has one (else after the ticket's own prompt, for an agent that starts cold)."""
        session = previous.session_id if self.settings.agent.supports_sessions() else None
        stem = f"{attempt.stem}.fix-{turn}"
        original = None if session else attempt.job.prompt_file.read_text(encoding="utf-8")
        prompt_file = self.run_dir / f"{stem}.prompt.md"
        write_prompt_file(prompt_file, fix_prompt(attempt.ticket, verification, fix_turn=turn,
                                                  max_fix_turns=attempt.max_fix_turns, original_prompt=original))
        result_file = self.run_dir / f"{stem}.result.json"
        result_file.unlink(missing_ok=True)
        return AgentJob(ticket=attempt.ticket, worktree=attempt.workspace.path, prompt_file=prompt_file,
                        result_file=result_file, log_path=self.run_dir / f"{stem}.log", run_id=self.run_id,
                        session_id=session)

    def _post(self, kind: str, ticket_id: str, **data: Any) -> None:
        """An event from a ticket's thread: the main thread emits it (displays are not shared)."""
        self.inbox.put(("event", ticket_id, (kind, data)))

    # ---------------------------------------------------------------- results

    def _handle(self, kind: str, ticket_id: str, payload: Any) -> None:
        if kind == "spare_ready":
            slot, error = payload
            self._return_worktree(slot)
            if error:
                self.emit(ev.MESSAGE, None, level="warning",
                          text=f"could not make worktree slot {slot} ahead of time ({error}); it is made when needed")
            return
        attempt = self.attempts.get(ticket_id)
        if attempt is None:
            return
        if kind == "line":
            now = time.monotonic()
            if now - self._last_line_sent.get(ticket_id, 0.0) >= 0.25:
                self._last_line_sent[ticket_id] = now
                self.emit(ev.AGENT_OUTPUT, ticket_id, line=payload)
            return
        if kind == "event":
            event_kind, data = payload
            self.emit(event_kind, ticket_id, **data)
            if event_kind == ev.TICKET_STARTED:
                self._make_spare_if_useful()
            return
        if kind == "turn":
            self._turn_finished(attempt, *payload)
            return
        del self.attempts[ticket_id]
        self._return_row(attempt.row)
        try:
            self._ticket_done(attempt, kind, payload)
        finally:
            if not attempt.released:  # every outcome releases its slot; a slot must never leak
                self._release(attempt, landed=False)

    def _ticket_done(self, attempt: Attempt, kind: str, payload: Any) -> None:
        """A ticket's thread is over: land its work, or defer, requeue or keep it."""
        ticket_id = attempt.ticket.id
        if kind == "crashed":
            self._keep_work(attempt)
            last = payload.strip().splitlines()[-1] if payload.strip() else "unknown error"
            if attempt.workspace is None:
                category, message = "error", f"could not prepare the worktree: {last}"
            else:
                category, message = "agent_failed", f"the agent could not run: {last}"
            self._defer(attempt.ticket, category=category, message=message, last_error=payload[-2000:],
                        log=str(attempt.job.log_path))
            self._release(attempt, landed=False)
            return
        work: TicketWork = payload
        exit, result = work.exit, work.result
        crash_point("after_agent_exit")
        if work.tampered:
            # with several agents at work, the change is caught by the first turn that ends
            # after it: the message says so rather than claim more than sage knows
            shown = ", ".join(work.tampered[:10])
            self._defer(attempt.ticket, category="scope_violation", message=(
                f"the repository's git control files changed while its agent ran: {shown} (undone: hooks and "
                "config written there would run code in your next git command); its work is kept on "
                f"{attempt.workspace.branch}"), log=str(work_log(attempt, work)), result=result)
            self._release(attempt, landed=False)
            return
        if work.cancelled or exit.outcome == CANCELLED:
            self._keep_work(attempt, work)
            self._apply({ticket_id: ticket_state.release(
                count_attempt=False, note=f"interrupted in run {self.run_id}")})
            self.plan.gave_up(ticket_id)
            self._set_outcome(ticket_id, "interrupted", message="stopped by Ctrl-C / SIGTERM")
            self.emit(ev.MESSAGE, ticket_id, level="warning", text=f"{ticket_id} stopped; it stays UNPROCESSED (work kept on {attempt.workspace.branch})")
            self._release(attempt, landed=False)
            return
        if exit.outcome in ("timeout", "idle_timeout"):
            self._keep_work(attempt, work)
            what = (f"ran longer than {self.settings.timeout_s / 60:g} min" if exit.outcome == "timeout"
                    else f"printed nothing for {self.settings.idle_timeout_s / 60:g} min")
            self._defer_transient(attempt, category="timeout", message=f"the agent {what} and was stopped",
                                  last_error=exit.last_line, log=work_log(attempt, work))
            return
        if not result.success:
            self._keep_work(attempt, work)
            if result.error_kind in RATE_LIMIT_KINDS:
                self._rate_limited(attempt, work)
                return
            if result.retryable:
                self._defer_transient(attempt, category=result.error_kind or "agent_failed",
                                      message=result.message or "the agent hit a transient error",
                                      last_error=exit.last_line, not_before=result.reset_at, result=result,
                                      log=work_log(attempt, work))
                return
            detail = result.message or (f"exit code {exit.returncode}" if exit.outcome == "exited" else exit.error)
            self._defer(attempt.ticket, category="agent_failed", message=f"the agent failed: {detail}",
                        last_error=exit.last_line or exit.error, log=str(work_log(attempt, work)), result=result)
            self._release(attempt, landed=False)
            return
        if work.verification is not None and not work.verification.passed:
            self._checks_failed(attempt, work)
            return
        self._queue_and_land(attempt, work)

    def _turn_finished(self, attempt: Attempt, exit: AgentExit, result: AgentResult, turn: int,
                       turn_started: float) -> None:
        """One agent turn is over: its cost counts now (for --max-cost), whatever follows."""
        ticket_id = attempt.ticket.id
        record = self.record.tickets.get(ticket_id)
        if record is not None:
            record.summary = result.summary or record.summary
            record.session_id = result.session_id or record.session_id
            if result.cost_usd is not None:
                record.cost_usd = round((record.cost_usd or 0.0) + result.cost_usd, 6)
        if result.cost_usd:
            self.spent_usd += result.cost_usd
            self.record.total_cost_usd = round(self.spent_usd, 6)
        self.emit(ev.AGENT_FINISHED, ticket_id, outcome=exit.outcome, returncode=exit.returncode,
                  duration_s=round(exit.duration_s, 2), success=result.success, summary=result.summary,
                  turn=turn, cost_usd=result.cost_usd, session_id=result.session_id, error_kind=result.error_kind)
        if result.success:
            workers = self.control.on_success(started_at=turn_started)
            if workers is not None:
                self.emit(ev.DISPATCH_RESUMED, None, workers=workers,
                          reason=f"{self.settings.rate_limits.raise_after} agent runs in a row without a rate limit")
        limit = self.settings.max_cost_usd
        if limit is not None and self.spent_usd >= limit:
            self._halt(f"cost ${self.spent_usd:.2f} reached --max-cost ${limit:.2f}")
        self.save_record()

    def _halt(self, reason: str, *, exit_code: int | None = None) -> None:
        """Start no more tickets in this run; running ones finish and land."""
        if exit_code is not None:
            self.halt_exit = max(self.halt_exit or 0, exit_code)
        if self.halted is not None:
            return
        self.halted = reason
        running = f"; {len(self.attempts)} running ticket(s) finish and land" if self.attempts else ""
        self.emit(ev.MESSAGE, None, level="warning", text=f"stopped starting tickets: {reason}{running}")

    # ---------------------------------------------------------------- rate limits

    def _rate_limited(self, attempt: Attempt, work: TicketWork) -> None:
        """Not the ticket's fault: back to ready and pause dispatch for everyone, or, when
        the limit resets far in the future, defer it until then and stop starting tickets."""
        ticket, result = attempt.ticket, work.result
        kind = result.error_kind or "rate_limit"
        detail = result.message or kind.replace("_", " ")
        decision = self.control.on_rate_limit(kind=kind, started_at=work.turn_started,
                                              reset_at=_epoch_or_none(result.reset_at))
        if decision.action == DEFER:
            self._defer(ticket, category=kind, message=f"{detail}: {decision.reason}", last_error=work.exit.last_line,
                        log=str(work_log(attempt, work)), retryable=True, not_before=_iso(decision.not_before),
                        result=result)
            self._release(attempt, landed=False)
            self._halt(decision.reason)
            return
        count = self.rate_limited[ticket.id] = self.rate_limited.get(ticket.id, 0) + 1
        if decision.action == STOP:
            self._requeue(attempt, category=kind, reason=f"{detail}: {decision.reason}")
            self._halt(decision.reason, exit_code=EXIT_DEFERRED)
            return
        if count >= self.settings.rate_limits.stop_after:  # this one keeps failing while others get through
            self._defer_transient(attempt, category=kind, message=f"{detail} ({count} times in this run)",
                                  last_error=work.exit.last_line, not_before=result.reset_at, result=result,
                                  log=work_log(attempt, work))
            return
        if decision.pause_s > 0:
            self.emit(ev.DISPATCH_PAUSED, None, reason=decision.reason, until=decision.until)
        self._requeue(attempt, category=kind, reason=f"{detail}: {decision.reason}")

    def _requeue(self, attempt: Attempt, *, category: str, reason: str) -> None:
        """Back to UNPROCESSED and ready in this run; not an attempt (its work is kept on its branch)."""
        ticket_id = attempt.ticket.id
        self._apply({ticket_id: ticket_state.release(
            count_attempt=False, note=f"{category} in run {self.run_id}: {reason}")})
        self.plan.requeue(ticket_id)
        self._release(attempt, landed=False)
        self._set_outcome(ticket_id, "requeued", category=category, message=reason)
        self.emit(ev.TICKET_REQUEUED, ticket_id, reason=reason, attempt=attempt.attempt, category=category)

    # ---------------------------------------------------------------- checks

    def _checks_failed(self, attempt: Attempt, work: TicketWork) -> None:
        verification = work.verification
        assert verification is not None
        failed = verification.failed
        names = ", ".join(item.check.name for item in failed)
        turns = work.fix_turns
        after = f"after {turns} fix turn{'s' if turns != 1 else ''}" if turns else "(no fix turns allowed)"
        self._keep_work(attempt, work)
        self._defer(attempt.ticket, category="persistent_test_failure", message=f"checks still fail {after}: {names}",
                    last_error=verification.failure_tail(), log=str(failed[0].log_path) if failed else None,
                    result=work.result, clip=4096)
        self._release(attempt, landed=False)

    def _release(self, attempt: Attempt, *, landed: bool) -> None:
        """Done with the attempt's worktree slot: its reset waits for the slot's next ticket."""
        if attempt.released:
            return
        attempt.released = True
        if attempt.workspace is not None:
            self.pending_release[attempt.slot] = (attempt.workspace, landed)
        self._return_worktree(attempt.slot)

    def _take_releases(self, slot: int, branch: str) -> tuple[list[tuple[Workspace, bool]], Workspace | None]:
        """The pending releases a new attempt on `slot` for `branch` must finish first,
        and apart from them the slot's own previous ticket when it landed (released in
        one pass with the switch to the new branch)."""
        due = [key for key, (workspace, _) in self.pending_release.items()
               if key == slot or workspace.branch == branch]
        releases = [self.pending_release.pop(key) for key in due]
        own = next((item for item in releases if item[1] and item[0].path.name == f"slot-{slot}"), None)
        if own is None:
            return releases, None
        return [item for item in releases if item is not own], own[0]

    def _finish_releases(self, releases: list[tuple[Workspace, bool]], *,
                         report: Callable[..., None] | None = None) -> None:
        for workspace, landed in releases:
            try:
                self.workspaces.release(workspace, landed=landed)
            except Exception as error:  # the next prepare secures and resets the slot anyway
                (report or self._post)(ev.MESSAGE, workspace.ticket, level="warning",
                                       text=f"could not reset worktree {workspace.path}: {error}")

    def _finish_releases_in_parallel(self, releases: list[tuple[Workspace, bool]]) -> None:
        """The run is over: reset every slot at once (one thread each; slots are independent)."""
        warnings: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()

        def report(kind: str, ticket_id: str, **data: Any) -> None:
            warnings.put((ticket_id, data))  # the display belongs to this thread: emitted below

        threads = [threading.Thread(target=self._finish_releases, args=([item],), kwargs={"report": report},
                                    name=f"release-{item[0].path.name}") for item in releases]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        while not warnings.empty():
            ticket_id, data = warnings.get()
            self.emit(ev.MESSAGE, ticket_id, **data)

    def _keep_work(self, attempt: Attempt, work: TicketWork | None = None) -> None:
        """Commit whatever the agent left in its worktree to its branch, so nothing is lost
        (the ticket's thread did already, unless it could not)."""
        if attempt.workspace is None or (work is not None and work.tip is not None):
            return
        try:
            self.git.snapshot(attempt.workspace.path, f"wip: {attempt.ticket.id} (unlanded attempt, kept by sage)")
        except Exception:
            pass  # the worktree itself is kept; the snapshot is a convenience

    def _queue_and_land(self, attempt: Attempt, work: TicketWork) -> None:
        ticket, result = attempt.ticket, work.result
        tip = work.tip
        if tip is None:
            self._defer(ticket, category="error",
                        message=f"could not record the agent's changes: {work.snapshot_error}",
                        last_error=work.snapshot_error, log=str(attempt.job.log_path))
            self._release(attempt, landed=False)
            return
        entry = QueueEntry(ticket=ticket.id, branch=attempt.workspace.branch, tip=tip, base=attempt.workspace.base,
                           run_id=self.run_id, worktree=str(attempt.workspace.path), log=str(attempt.job.log_path),
                           result=_result_json(result, fix_turns=work.fix_turns or None,
                                               continued_from=attempt.continued_from))
        self.queue.put(entry)
        crash_point("after_queue_put")
        self._set_outcome(ticket.id, "queued")
        self.emit(ev.TICKET_QUEUED, ticket.id)
        if not self.stopping and not self.plan.would_unblock(ticket.id):
            # the ready set is the same before and after this landing: the freed worker
            # starts the next ticket now (in another slot) instead of after it
            self._dispatch()
        self.land(entry, ticket, attempt=attempt)

    # ---------------------------------------------------------------- landing

    def land(self, entry: QueueEntry, ticket: Ticket, *, attempt: Attempt | None = None) -> str:
        """Land one queued entry; returns the landing outcome. Used by the loop and by recovery."""
        message = commit_message(ticket, docs_paths=_docs_paths(ticket), summary=entry.result.get("summary"))
        started = attempt.started if attempt else entry.finished_at
        recorded: list[BaseException | None] = []  # one item once the landing was recorded (or failed to be)

        def on_landed(result: LandingResult) -> None:
            try:
                self._record_landing(entry, ticket, result, message, started, attempt=attempt)
                recorded.append(None)
            except BaseException as error:  # the loop's failure, not landing's: no checkout is touched now
                recorded.append(error)    # (the next run's recovery brings them along)
                raise

        try:
            result = land_ticket(self.git, target_branch=self.settings.target, ticket_tip=entry.tip,
                                 base=entry.base, ticket=ticket, message=message, allowed_globs=ticket.files,
                                 allow_empty=ticket.allow_empty, landing_lock=self.landing_lock,
                                 summary=entry.result.get("summary"), on_landed=on_landed,
                                 check_earlier=attempt is None)
        except BaseException as error:
            if recorded and recorded[0] is not None:
                raise
            if recorded:  # it landed and was recorded; only bringing checkouts along failed
                self.emit(ev.MESSAGE, ticket.id, level="warning",
                          text=f"{ticket.id} landed, but checkouts of {self.settings.target} were not updated: {error}")
                return "landed"
            if not isinstance(error, Exception):
                raise
            self.queue.remove(entry)
            if attempt is not None:
                self._release(attempt, landed=False)
            self._defer(ticket, category="error", message=f"landing failed: {error}", last_error=str(error),
                        log=entry.log)
            return "error"
        if recorded:
            if result.message and result.brought_along is False:
                self.emit(ev.MESSAGE, ticket.id, level="warning", text=result.message)
            return result.outcome
        if result.outcome == "already_landed":
            self._record_landing(entry, ticket, result, message, started, attempt=attempt)
            return result.outcome
        self.queue.remove(entry)
        if attempt is not None:
            self._release(attempt, landed=False)
        if result.outcome == "conflict":
            paths = ", ".join(result.paths[:10])
            if self.plan is not None and self.plan.rerun(ticket.id):
                self._set_outcome(ticket.id, "requeued", message=f"conflict with what landed: {paths}")
                self.emit(ev.TICKET_REQUEUED, ticket.id, reason=f"conflict with what landed meanwhile: {paths}",
                          attempt=self.plan.reruns[ticket.id] + 1, category="conflict")
                return "requeued"
            self._defer(ticket, category="conflict", message=f"conflicts with the target branch in {paths}",
                        last_error=result.message, log=entry.log, retryable=True, not_before=self._backoff(ticket))
            return "conflict"
        if result.outcome == "no_changes":
            self._defer(ticket, category="no_changes",
                        message="the agent finished without changing anything (set allow_empty to accept that)",
                        log=entry.log)
            return "no_changes"
        paths = ", ".join(result.paths[:20])
        # landing says what was wrong (outside the `files` globs, or symbolic links leaving
        # the repository); without its words, name the paths
        message = result.message or f"changed files outside its `files` globs: {paths}"
        self._defer(ticket, category="scope_violation", message=message, last_error=result.message,
                    log=entry.log)
        return "scope_violation"

    def _record_landing(self, entry: QueueEntry, ticket: Ticket, result: LandingResult, message: str,
                        started: float, *, attempt: Attempt | None) -> None:
        """The target has the ticket: COMPLETED in the index, out of the queue, and what
        it unblocked starts now (the commit lock is still held while landing brings the
        checked-out work trees along; not in interactive mode, where a start waits for
        an answer)."""
        crash_point("after_land")
        edit = ticket_state.complete(commit=result.commit, message=message, branch=entry.branch,
                                     result=entry.result or None)
        self._apply({ticket.id: edit})
        crash_point("after_complete_edit")
        self.queue.remove(entry)
        if attempt is not None:
            self._release(attempt, landed=True)
        if self.plan is not None:
            self.plan.landed(ticket.id)
        session = entry.result.get("session_id")
        if attempt is not None and isinstance(session, str) and session:
            self.sessions[ticket.id] = Continuation(ticket=ticket.id, title=ticket.title, session_id=session,
                                                    slot=attempt.slot)
        self.landed.append(ticket.id)
        self._set_outcome(ticket.id, "landed", commit=result.commit)
        self.emit(ev.TICKET_LANDED, ticket.id, commit=result.commit, duration_s=round(time.time() - started, 2))
        if attempt is not None and self.plan is not None and not self.stopping and self.settings.confirm is None:
            self._tip_now = result.commit  # the commit lock is held: no landing can move it meanwhile
            try:
                self._dispatch()
            finally:
                self._tip_now = None

    # ---------------------------------------------------------------- deferring

    def _backoff(self, ticket: Ticket) -> str:
        when = datetime.now(timezone.utc) + timedelta(seconds=self.settings.retry_backoff_s * (2 ** ticket.attempts))
        return when.strftime("%Y-%m-%dT%H:%M:%SZ")

    def _defer_transient(self, attempt: Attempt, *, category: str, message: str, last_error: str | None,
                         not_before: str | None = None, result: AgentResult | None = None,
                         log: Path | None = None) -> None:
        ticket = attempt.ticket
        retryable = ticket.attempts + 1 < self.settings.max_attempts
        if not retryable:
            message += f" ({ticket.attempts + 1} attempts: waits for `sage retry {ticket.id}`)"
        self._defer(ticket, category=category, message=message, last_error=last_error,
                    log=str(log or attempt.job.log_path), retryable=retryable,
                    not_before=(not_before or self._backoff(ticket)) if retryable else None, result=result)
        self._release(attempt, landed=False)

    def _defer(self, ticket: Ticket, *, category: str, message: str, last_error: str | None = None,
               log: str | None = None, retryable: bool = False, not_before: str | None = None,
               result: AgentResult | None = None, clip: int = 2000) -> None:
        edit = ticket_state.defer(category=category, message=message, last_error=_clip(last_error, clip), log=log,
                                  retryable=retryable, not_before=not_before,
                                  result=_result_json(result) if result else None)
        self._apply({ticket.id: edit})
        crash_point("after_defer_edit")
        if self.plan is not None:
            self.plan.gave_up(ticket.id)
        self.deferred.append(ticket.id)
        self._set_outcome(ticket.id, "deferred", category=category, message=message)
        self.emit(ev.TICKET_DEFERRED, ticket.id, category=category, message=message, retryable=retryable,
                  not_before=not_before)

    # ---------------------------------------------------------------- stopping

    def _install_signal_handlers(self) -> dict[int, Any]:
        previous: dict[int, Any] = {}
        if threading.current_thread() is not threading.main_thread():
            return previous
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, self._on_signal)
        return previous

    def _restore_signal_handlers(self, previous: dict[int, Any]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.interrupted = True
        if self.stopping:  # a second Ctrl-C: stop the agents now
            self.stop_deadline = time.monotonic()
            return
        self.stopping = True
        self.stop_deadline = time.monotonic() + self.settings.grace_s
        self.inbox.put(("wake", "", None))

    def _check_stop_deadline(self) -> None:
        if self.stopping and self.interrupted and self.stop_deadline is not None:
            if not getattr(self, "_stop_announced", False):
                self._stop_announced = True
                self.emit(ev.MESSAGE, None, level="warning",
                          text=f"stopping: nothing new starts; running agents get {self.settings.grace_s:g}s to finish")
            if time.monotonic() >= self.stop_deadline:
                for attempt in self.attempts.values():
                    attempt.cancel.set()

    # ---------------------------------------------------------------- reporting

    def emit(self, kind: str, ticket_id: str | None, **data: Any) -> None:
        self.display.handle(ev.Event(kind=kind, ticket=ticket_id, data=data))

    def _set_outcome(self, ticket_id: str, outcome: str, **fields: Any) -> None:
        record = self.record.tickets.get(ticket_id)
        if record is None:
            ticket = self.plan.tickets.get(ticket_id) if self.plan is not None else None
            record = TicketRecord(id=ticket_id, title=ticket.title if ticket else "", outcome=outcome,
                                  start=None, end=None, commit=None, attempts=0, category=None, message=None,
                                  log=None, summary=None, cost_usd=None, session_id=None)
            self.record.tickets[ticket_id] = record
        record.outcome = outcome
        if outcome in ("landed", "deferred", "interrupted"):
            record.end = now_iso()
        for key, value in fields.items():
            setattr(record, key, value)
        self.save_record()

    def save_record(self, *, force: bool = False) -> None:
        """Write the run summary; at most twice a second unless forced (it is a report:
        the index is what recovery trusts)."""
        now = time.monotonic()
        if not force and now - self._record_saved_at < 0.5:
            self._record_pending = True  # written by the loop when it is idle
            return
        self._record_saved_at, self._record_pending = now, False
        try:
            write_run(self.settings.sage_dir, self.record)
        except OSError as error:
            self.emit(ev.MESSAGE, None, level="warning", text=f"could not write the run summary: {error}")

    def _finish(self) -> int:
        if self.interrupted:
            code = EXIT_INTERRUPTED
        elif self.deferred or self.halt_exit == EXIT_DEFERRED:
            code = EXIT_DEFERRED
        else:
            code = EXIT_OK
        blocked = self.plan.blocked_by_failures()
        remaining = [tid for tid, t in self.plan.tickets.items()
                     if tid not in self.plan.done and (self.plan.only is None or tid in self.plan.only)]
        self.record.finished = now_iso()
        self.record.status = "interrupted" if self.interrupted else "finished"
        self.record.exit_code = code
        path = write_run(self.settings.sage_dir, self.record)
        for ticket_id, waiting in sorted(blocked.items()):
            self.emit(ev.MESSAGE, ticket_id, level="info",
                      text=f"{ticket_id} not started: blocked by {', '.join(waiting)} (deferred in this run)")
        self.emit(ev.RUN_FINISHED, None, completed=len(self.landed), deferred=len(self.deferred),
                  interrupted=self.interrupted, remaining=len(remaining), exit_code=code,
                  duration_s=round(time.time() - _epoch(self.started_at), 1), summary_path=str(path),
                  total_cost_usd=self.record.total_cost_usd,
                  stopped=f"stopped starting tickets: {self.halted}" if self.halted else None)
        return code


def _epoch(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


def _docs_paths(ticket: Ticket) -> list[str]:
    if ticket.docs is None:
        return []
    return [path for path in (ticket.docs.spec, ticket.docs.plan, ticket.docs.tasks, ticket.docs.breakdown) if path]


def _result_json(result: AgentResult | None, **extra: Any) -> dict[str, Any]:
    """What the index keeps of an agent's result (`agent_result`), without empty keys."""
    if result is None:
        return {}
    data = {"summary": result.summary, "session_id": result.session_id, "cost_usd": result.cost_usd,
            "tokens": result.tokens, "turns": result.turns, "error_kind": result.error_kind,
            "note": result.message if result.success else None,  # e.g. why a result file was ignored
            **extra}
    return {key: value for key, value in data.items() if value is not None}


def _over_turns(results: list[AgentResult]) -> AgentResult:
    """The last turn's result, with cost, tokens and turns summed over every turn."""
    def total(values: list[Any]) -> Any:
        present = [value for value in values if value is not None]
        return sum(present) if present else None

    last = results[-1]
    if len(results) == 1:
        return last
    session = next((r.session_id for r in reversed(results) if r.session_id), None)
    return replace(last, cost_usd=total([r.cost_usd for r in results]), tokens=total([r.tokens for r in results]),
                   turns=total([r.turns for r in results]), session_id=session)


def work_log(attempt: Attempt, work: TicketWork) -> Path:
    """The log of the ticket's last agent turn."""
    if work.fix_turns:
        return attempt.job.log_path.parent / f"{attempt.stem}.fix-{work.fix_turns}.log"
    return attempt.job.log_path


def continuation_note(continuation: Continuation) -> str:
    """Appended to the prompt of a ticket that continues its dependency's session."""
    title = " ".join(continuation.title.split())
    return (f"\n## Continuing from {continuation.ticket}\n\n"
            f"This session continues from ticket {continuation.ticket} (\"{title}\"), which you finished "
            "earlier in this run. It has landed: this worktree starts from it. Work on the ticket above now; "
            "what was asked for the earlier ticket no longer applies.\n")


def _epoch_or_none(stamp: str | None) -> float | None:
    if not stamp:
        return None
    try:
        return parse_timestamp(stamp).timestamp()
    except ValueError:
        return None


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _clip(text: str | None, limit: int = 2000) -> str | None:
    if text is None:
        return None
    return text if len(text) <= limit else "..." + text[-limit:]


def is_in_progress_elsewhere(ticket: Ticket) -> bool:
    info = (ticket.model_extra or {}).get(ticket_state.RUN_KEY)
    if ticket.state is not State.IN_PROGRESS or not isinstance(info, dict):
        return False
    return is_alive(info.get("pid"), info.get("pid_create_time"))
