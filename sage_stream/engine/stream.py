"""`sage stream`'s loop: joins the plan, a runner, the lander and the display.

    commands/stream.py -> StreamRun.execute
        plan (scheduler.DispatchPlan)        what is ready, what starts next
        slots (slots.Slots)                  workers and worktree slots
        runner (work.Runner)                 where attempts run; messages back on one queue
        outcomes.decide*                     what a finished attempt or landing means
        lander (lander.Lander)               queue -> one commit -> COMPLETED
        states (ticket_state.TicketStates)   every index write
        emit -> record (run_record) + display (display)

One thread (this one) decides, lands and writes state; attempts report back through
typed messages (engine/work.py). Landing happens here, one ticket at a time, under the
commit lock, so the commit queue is serial by construction. Dispatch is gated by the
slots, by `DispatchControl` (rate limits pause it for everyone and shrink the worker
count), by `--max-cost` and by `--max-load`.
"""

from __future__ import annotations

import math
import queue
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sage_stream.engine import events as ev
from sage_stream.engine import ticket_state
from sage_stream.engine.commit_queue import CommitQueue, QueueEntry
from sage_stream.engine.dispatch_control import DEFER, DispatchControl, LoadGate
from sage_stream.engine.display import Display
from sage_stream.engine.lander import Landed, Lander
from sage_stream.engine.landing import TARGET_DIRTY
from sage_stream.engine.dask_runner import dask_runner
from sage_stream.engine.local_runner import LocalRunner, RunnerSettings
from sage_stream.engine.remote_landing import RemoteTarget
from sage_stream.engine.outcomes import (
    Defer,
    FinishedAttempt,
    Halt,
    Interrupted,
    Land,
    LandingVerdict,
    OutcomePolicy,
    RateLimited,
    Requeue,
    decide,
    decide_landing,
    decide_rate_limit,
)
from sage_stream.engine.prompts import attempt_stem, write_attempt_job
from sage_stream.engine.recovery import Recovery
from sage_stream.engine.run_lock import process_identity
from sage_stream.engine.run_record import RunRecord, RunReport
from sage_stream.engine.scheduler import DispatchPlan
from sage_stream.engine.sessions import SessionBook
from sage_stream.engine.settings import StreamSettings
from sage_stream.engine.slots import Slots, spare_is_useful
from sage_stream.engine.stopping import Stopping, stop_all_and_wait
from sage_stream.engine.target_watch import TargetWatch
from sage_stream.engine.verification import Check, CheckDefinitionError, fix_turns_allowed, ticket_checks
from sage_stream.engine.work import (
    AgentLine,
    AgentsDone,
    AttemptCrashed,
    AttemptDone,
    AttemptHandle,
    AttemptSpec,
    Message,
    Prepared,
    Progress,
    Runner,
    SpareReady,
    TicketWork,
    TurnDone,
    Wake,
    finished_attempt,
)
from sage_stream.engine.worktrees import TicketWorkspaces, Workspace
from sage_stream.faults import crash_point
from sage_stream.git import Git
from sage_stream.paths import SagePaths
from sage_stream.text import epoch_of, iso_utc, now_iso
from sage_stream.tickets.models import Ticket
from sage_stream.tickets.naming import ticket_branch
from sage_stream.tickets.store import IndexStore


@dataclass
class Running:
    """The loop's own view of a started attempt."""

    spec: AttemptSpec
    handle: AttemptHandle
    started: float
    workspace: Workspace | None = None  # once the runner says it is prepared
    released: bool = False  # its worktree slot was handed back
    worker_returned: bool = False  # its agents are done and unblock nothing: its worker took another ticket

    @property
    def ticket(self) -> Ticket:
        return self.spec.ticket

    def give_back_worker(self, slots: Slots) -> None:
        """Its worker is free for another ticket (once: it may be taken again at once)."""
        if not self.worker_returned:
            self.worker_returned = True
            slots.return_worker(self.spec.worker)


class StreamRun:
    def __init__(self, settings: StreamSettings, *, states: ticket_state.TicketStates, lander: Lander,
                 runner: Runner, inbox: queue.Queue[Message], display: Display, run_id: str,
                 tickets_dir: Path) -> None:
        self.settings = settings
        self.states = states
        self.lander = lander
        self.runner = runner
        self.inbox = inbox
        self.run_id = run_id
        self.run_dir = SagePaths(settings.sage_dir).run_logs(run_id)
        self.tickets_dir = tickets_dir
        self.slots = Slots(settings.workers)
        self.control = DispatchControl(settings.workers, settings.rate_limits, clock=settings.clock)
        self.stopping = Stopping(settings.grace_s, wake=lambda: inbox.put(Wake()))
        self.sessions = SessionBook(enabled=settings.reuse_sessions and settings.agent.supports_sessions())
        self.policy = OutcomePolicy(timeout_s=settings.timeout_s, idle_timeout_s=settings.idle_timeout_s,
                                    max_attempts=settings.max_attempts, retry_backoff_s=settings.retry_backoff_s,
                                    rate_limit_stop_after=settings.rate_limits.stop_after)
        self.pid, self.pid_create_time = process_identity()
        self.report = RunReport(settings.sage_dir, RunRecord(
            run_id=run_id, pid=self.pid, pid_create_time=self.pid_create_time, started=now_iso()), display)
        self.emit = self.report.emit
        self.attempts: dict[str, Running] = {}
        self.plan: DispatchPlan | None = None  # set by execute(); recovery lands before there is one
        self.halted: Halt | None = None  # why this run starts no more tickets (cost, rate limits)
        self.halt_exit: int | None = None  # the exit code the halts ask for, at least
        self.starts: dict[str, int] = {}  # agent starts per ticket in this run (file names)
        self.rate_limited: dict[str, int] = {}  # rate limits per ticket in this run
        self.load_gate = LoadGate(settings.max_load)
        self._spare_pending = False
        self._tip_now: str | None = None  # the target's tip while a landing dispatches what it unblocked
        self.landing_waits: list[tuple[Running, QueueEntry]] = []  # finished, queued: the target's checkout is dirty

    # ---------------------------------------------------------------- entry

    def execute(self, plan: DispatchPlan, tickets_meta: dict[str, dict[str, Any]], ready: list[str],
                predicted_makespan: float | None) -> int:
        self.plan = plan
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.emit(ev.RUN_STARTED, None, run_id=self.run_id, **self.settings.described(), tickets=tickets_meta,
                  ready=ready, predicted_makespan_minutes=predicted_makespan)
        self.stopping.install()
        try:
            self._loop()
        except BaseException:
            self._stop_agents_after_failure()
            raise
        finally:
            self.stopping.restore()
            self._wait_for_spare()
            for ticket_id, text in self.runner.finish_releases(self.slots.take_all_pending()):
                self.emit(ev.MESSAGE, ticket_id, level="warning", text=text)
        return self._finish()

    def _loop(self) -> None:
        while True:
            if not self.stopping.requested:
                self._dispatch()
            if self.landing_waits and (self.stopping.requested or self.lander.may_land_again()):
                waiting, self.landing_waits = self.landing_waits, []
                for running, entry in waiting:  # in the order they queued
                    self._land(running, entry)
            if not self.attempts and not self.landing_waits and (
                    self.stopping.requested or self.halted or self.plan.is_finished() or not self._waiting_to_dispatch()):
                return
            try:
                message = self.inbox.get(timeout=min(self.control.poll_s(), self.states.flush_if_due() or math.inf))
            except queue.Empty:
                self._check_stop()
                self.report.flush()
                continue
            self._handle(message)
            self._check_stop()

    def _stop_agents_after_failure(self) -> None:
        """The loop failed (the index cannot be written, say): stop every agent. Their tickets
        stay IN_PROGRESS; the next run's recovery keeps their work and puts them back."""
        stop_all_and_wait(self.attempts, self.inbox, wait_s=self.settings.grace_s + 15)
        self.report.failed()

    def _wait_for_spare(self) -> None:
        """The spare slot being made: one checkout at most; the slot is then made or not."""
        while self._spare_pending:
            message = self.inbox.get()
            if isinstance(message, SpareReady):
                self._handle(message)

    def _waiting_to_dispatch(self) -> bool:
        # With nothing running, only a pause (load average, rate limit) makes the loop wait.
        return self.load_gate.paused or self.control.paused_until is not None

    def _check_stop(self) -> None:
        announce, stop_now = self.stopping.due()
        if announce:
            self.emit(ev.MESSAGE, None, level="warning",
                      text=f"stopping: nothing new starts; running agents get {self.settings.grace_s:g}s to finish")
        if stop_now:
            for running in self.attempts.values():
                running.handle.cancel()

    # ---------------------------------------------------------------- dispatch

    def _dispatch(self) -> None:
        if self.halted:
            return
        if self.control.take_resume():
            self.emit(ev.DISPATCH_RESUMED, None, workers=self.control.workers, reason="the rate-limit pause is over")
        capacity = min(self.slots.capacity(), self.control.startable(self.slots.busy_workers()))
        if capacity <= 0 or self._load_too_high():
            return
        for ticket_id in self.plan.next_to_start(capacity):
            if self.stopping.requested:
                return
            ticket = self.plan.tickets[ticket_id]
            if self.settings.confirm is not None:
                answer = self.settings.confirm(ticket)
                if answer == "quit":
                    self.stopping.quit()
                    return
                if answer == "skip":
                    self.plan.gave_up(ticket_id, why="skipped")
                    self.emit(ev.MESSAGE, ticket_id, level="info", text=f"skipped {ticket_id} (its dependents wait)")
                    continue
            self._start(ticket)

    def _load_too_high(self) -> bool:
        held, paused, resumed = self.load_gate.check()
        if paused:
            self.emit(ev.DISPATCH_PAUSED, None, reason=paused, until=None)
        if resumed:
            self.emit(ev.DISPATCH_RESUMED, None, workers=self.control.workers, reason=resumed)
        if held and not self.attempts:
            time.sleep(1.0)
        return held

    def _start(self, ticket: Ticket) -> None:
        crash_point("before_start_edit")
        checks = self._mark_started(ticket)
        self.plan.started(ticket.id)
        if isinstance(checks, Defer):  # found before any agent spends anything
            self._defer(ticket, checks)
            return
        crash_point("after_start_edit")
        continuation = self.sessions.for_ticket(ticket)
        worker = self.slots.take_worker()
        slot = self.slots.take_slot(continuation.slot if continuation else None)
        count = self.starts[ticket.id] = self.starts.get(ticket.id, 0) + 1
        stem = attempt_stem(ticket.id, count)
        job = write_attempt_job(ticket, stem=stem, run_dir=self.run_dir, run_id=self.run_id,
                                tickets_dir=self.tickets_dir, repo=self.settings.repo,
                                current=self.states.current() if ticket.dependencies else {},
                                continuation=continuation)
        if continuation is not None:
            self.sessions.continue_with(continuation, ticket.id)
        releases, after_landed = self.slots.releases_for(slot, ticket_branch(ticket.id))
        spec = AttemptSpec(
            ticket=ticket, attempt=ticket.attempts + 1 + self.plan.reruns.get(ticket.id, 0), worker=worker, slot=slot,
            stem=stem, job=job, checks=checks,
            max_fix_turns=fix_turns_allowed(ticket, self.settings.max_fix_turns),
            continued_from=continuation.ticket if continuation else None, start=self._tip_now,
            releases=tuple(releases), after_landed=after_landed)
        self.attempts[ticket.id] = Running(spec=spec, handle=self.runner.start(spec), started=time.time())

    def _mark_started(self, ticket: Ticket) -> tuple[Check, ...] | Defer:
        """IN_PROGRESS in the index, and the ticket's checks; or why it cannot start (a
        check that cannot run, a disk failure for this one ticket)."""
        try:
            checks = (*ticket_checks(ticket), *self.settings.checks)
        except CheckDefinitionError as error:
            return Defer("error", error.message)
        try:
            self.states.apply({ticket.id: ticket_state.start(
                run_id=self.run_id, pid=self.pid, pid_create_time=self.pid_create_time,
                branch=ticket_branch(ticket.id), target=self.settings.target)})
        except Exception as error:
            return Defer("error", f"could not mark it IN_PROGRESS: {error}", last_error=str(error))
        return checks

    def _make_spare_if_useful(self) -> None:
        """Make the spare slot in the background once it may be needed (see
        `spare_is_useful`) and every running ticket has its worktree (not to slow their
        checkouts). A new slot's first checkout writes every file of the repository
        (hundreds of ms on a slow disk); made on demand, it would sit between one agent
        and the next."""
        if self._spare_pending or self.slots.all_made() or self.stopping.requested or self.halted:
            return
        prepared = all(running.workspace is not None for running in self.attempts.values())
        if not prepared or not spare_is_useful(self.plan, self.attempts):
            return
        slot = self.slots.reserve_spare()
        if slot is not None:
            self._spare_pending = True
            self.runner.make_spare_slot(slot)

    # ---------------------------------------------------------------- messages

    def _handle(self, message: Message) -> None:
        if isinstance(message, SpareReady):
            self._spare_pending = False
            self.slots.spare_made(message.slot)
            if message.error:
                self.emit(ev.MESSAGE, None, level="warning", text=f"could not make worktree slot {message.slot} "
                          f"ahead of time ({message.error}); it is made when needed")
            return
        if isinstance(message, Wake):
            return
        running = self.attempts.get(message.ticket_id) if message.ticket_id else None
        if isinstance(message, Progress):
            self.emit(message.kind, message.ticket_id, **message.data)
        elif running is None:
            return
        elif isinstance(message, AgentLine):
            self.emit(ev.AGENT_OUTPUT, message.ticket_id, line=message.line)
        elif isinstance(message, Prepared):
            self._prepared(running, message.workspace)
        elif isinstance(message, TurnDone):
            self._turn_done(message)
        elif isinstance(message, AgentsDone):  # committing and landing need no worker: it may start the
            if not self.plan.would_unblock(running.ticket.id):  # next ticket (one that unblocks something
                running.give_back_worker(self.slots)  # keeps it for what it unblocks)
        else:
            del self.attempts[message.ticket_id]
            running.give_back_worker(self.slots)
            try:
                self._attempt_over(running, message)
            finally:
                self._release(running, landed=False)  # every outcome releases its slot; never leaks

    def _prepared(self, running: Running, workspace: Workspace) -> None:
        running.workspace = workspace
        spec, prepare_s = running.spec, round(time.time() - running.started, 2)  # dispatch to worktree ready
        self.emit(ev.TICKET_STARTED, spec.ticket.id, title=spec.ticket.title, row=spec.worker, slot=spec.slot,
                  attempt=spec.attempt, branch=workspace.branch, worktree=str(workspace.path),
                  log=str(spec.job.log_path), continues=spec.continued_from, prepare_s=prepare_s)
        self._make_spare_if_useful()

    def _turn_done(self, message: TurnDone) -> None:
        """One agent turn is over: its cost counts now (for --max-cost), whatever follows."""
        result = message.result
        self.emit(ev.AGENT_FINISHED, message.ticket_id, outcome=message.exit.outcome,
                  returncode=message.exit.returncode, duration_s=round(message.exit.duration_s, 2),
                  success=result.success, summary=result.summary, turn=message.turn, cost_usd=result.cost_usd,
                  session_id=result.session_id, error_kind=result.error_kind, tokens=result.tokens)
        if result.success:
            workers = self.control.on_success(started_at=message.turn_started)
            if workers is not None:
                self.emit(ev.DISPATCH_RESUMED, None, workers=workers,
                          reason=f"{self.settings.rate_limits.raise_after} agent runs in a row without a rate limit")
        limit, spent = self.settings.max_cost_usd, self.report.record.total_cost_usd or 0.0
        if limit is not None and spent >= limit:
            self._halt(Halt(f"cost ${spent:.2f} reached --max-cost ${limit:.2f}"))

    def _halt(self, halt: Halt) -> None:
        """Start no more tickets in this run; running ones finish and land."""
        if halt.exit_code is not None:
            self.halt_exit = max(self.halt_exit or 0, halt.exit_code)
        if self.halted is not None and (halt.exit_code or 0) <= (self.halted.exit_code or 0):
            return  # said already; a graver halt (a setup error after --max-cost) is said and kept
        self.halted = halt
        running = f"; {len(self.attempts)} running ticket(s) finish and land" if self.attempts else ""
        self.emit(ev.MESSAGE, None, level="warning", text=f"stopped starting tickets: {halt.reason}{running}",
                  halt=halt.reason)  # a mark on the report's timeline

    # ---------------------------------------------------------------- outcomes

    def _attempt_over(self, running: Running, message: AttemptDone | AttemptCrashed) -> None:
        """A ticket's attempt is over: land its work, or defer, requeue or keep it."""
        work = message.work if isinstance(message, AttemptDone) else None
        workspace = work.workspace if work is not None else message.workspace
        running.workspace = running.workspace or workspace
        if work is not None:
            crash_point("after_agent_exit")
        finished = finished_attempt(running.spec, message, running.workspace, now=datetime.now(timezone.utc))
        decision = decide(finished, self.policy)
        if isinstance(decision, RateLimited):
            decision = self._rate_limit_decision(finished, decision, work)
        if not isinstance(decision, Land) and running.workspace is not None and finished.tip is None \
                and not finished.tampered:
            self.runner.keep_work(running.workspace, running.ticket.id)  # commit what the agent left: lose nothing
        if isinstance(decision, Land):
            self._queue_and_land(running, work)
        elif isinstance(decision, Interrupted):
            self._interrupted(running)
        elif isinstance(decision, Requeue):
            self._requeue(running, decision)
        else:
            self._defer(running.ticket, decision, result=work.result if work and decision.with_result else None)
            self._release(running, landed=False)
            if decision.halt is not None:
                self._halt(decision.halt)

    def _rate_limit_decision(self, finished: FinishedAttempt, limited: RateLimited,
                             work: TicketWork) -> Defer | Requeue:
        """Not the ticket's fault: the dispatch controller pauses dispatch for everyone,
        or, when the limit resets far in the future, stops it."""
        control = self.control.on_rate_limit(kind=limited.kind, started_at=work.turn_started,
                                             reset_at=epoch_of(limited.reset_at))
        count = self.rate_limited.get(finished.ticket_id, 0)
        if control.action != DEFER:
            count = self.rate_limited[finished.ticket_id] = count + 1
        return decide_rate_limit(finished, limited, control, times_this_run=count, policy=self.policy,
                                 not_before=iso_utc(control.not_before))

    def _interrupted(self, running: Running) -> None:
        ticket_id = running.ticket.id
        self.states.apply({ticket_id: ticket_state.release(count_attempt=False,
                                                           note=f"interrupted in run {self.run_id}")})
        self.plan.gave_up(ticket_id, why="interrupted")
        branch = running.workspace.branch if running.workspace else None  # stopped before its branch was made
        self.emit(ev.TICKET_STOPPED, ticket_id, message="stopped by Ctrl-C / SIGTERM", branch=branch)
        self._release(running, landed=False)

    def _requeue(self, running: Running, decision: Requeue) -> None:
        """Ready again in this run; not an attempt (its work is kept on its branch). A rate
        limit puts it back to UNPROCESSED; a conflict rerun keeps it IN_PROGRESS."""
        ticket_id, attempt = running.ticket.id, running.spec.attempt
        if decision.category == "conflict":  # it stays IN_PROGRESS: it runs again at once, on the new tip
            attempt = self.plan.reruns[ticket_id] + 1
        else:
            self.states.apply({ticket_id: ticket_state.release(
                count_attempt=False, note=f"{decision.category} in run {self.run_id}: {decision.reason}")})
            self.plan.requeue(ticket_id, alone=decision.alone)
        self._release(running, landed=False)
        if decision.pause is not None:
            self.emit(ev.DISPATCH_PAUSED, None, reason=decision.pause.reason, until=decision.pause.until)
        self.emit(ev.TICKET_REQUEUED, ticket_id, reason=decision.reason, attempt=attempt,
                  category=decision.category)
        if decision.halt is not None:
            self._halt(decision.halt)

    def _defer(self, ticket: Ticket, decision: Defer, *, result: Any = None) -> None:
        self.states.defer(ticket.id, decision, result=result)
        if self.plan is not None:
            self.plan.gave_up(ticket.id)
        self.emit(ev.TICKET_DEFERRED, ticket.id, category=decision.category, message=decision.message,
                  retryable=decision.retryable, not_before=decision.not_before)

    def _release(self, running: Running, *, landed: bool) -> None:
        """Done with the attempt's worktree slot: its reset waits for the slot's next ticket."""
        if not running.released:
            running.released = True
            self.slots.release(running.spec.slot, running.workspace, landed=landed)

    # ---------------------------------------------------------------- landing

    def _queue_and_land(self, running: Running, work: TicketWork) -> None:
        ticket, workspace = running.ticket, running.workspace
        entry = QueueEntry(ticket=ticket.id, branch=workspace.branch, tip=work.tip, base=workspace.base,
                           run_id=self.run_id, worktree=str(workspace.path), log=str(running.spec.job.log_path),
                           target=self.settings.target, result=ticket_state.agent_result_json(
                               work.result, fix_turns=work.fix_turns or None,
                               continued_from=running.spec.continued_from))
        self.lander.queue.put(entry)
        crash_point("after_queue_put")
        self.emit(ev.TICKET_QUEUED, ticket.id)
        if not self.stopping.requested and not self.plan.would_unblock(ticket.id):
            # the ready set is the same before and after this landing: the freed worker
            # starts the next ticket now (in another slot) instead of after it
            self._dispatch()
        self._land(running, entry)

    def _land(self, running: Running, entry: QueueEntry) -> None:
        ticket = running.ticket
        outcome = self.lander.land(entry, ticket, started=running.started, owned=True, wait=False,
                                   on_recorded=lambda landed: self._landed(running, entry, landed))
        if isinstance(outcome, LandingVerdict):
            if outcome.outcome == TARGET_DIRTY and not self.stopping.requested:
                self.landing_waits.append((running, entry))  # queued; the loop lands it once the checkout is clean
                return
            self._release(running, landed=False)
            decision = decide_landing(outcome, rerun_left=outcome.outcome == "conflict" and self.plan.rerun(ticket.id),
                                      attempts_before=ticket.attempts, now=datetime.now(timezone.utc),
                                      retry_backoff_s=self.settings.retry_backoff_s)
            if isinstance(decision, Requeue):
                self._requeue(running, decision)
            else:
                self._defer(ticket, decision)

    def _landed(self, running: Running, entry: QueueEntry, landed: Landed) -> None:
        """Recorded COMPLETED: what it unblocked starts now (the commit lock is still held
        while landing brings the checked-out work trees along; not in interactive mode,
        where a start waits for an answer)."""
        self._release(running, landed=True)
        self.plan.landed(running.ticket.id)
        self.sessions.landed_with(running.ticket, entry.result.get("session_id"), running.spec.slot)
        if not self.stopping.requested and self.settings.confirm is None:
            self._tip_now = landed.commit  # the commit lock is held: no landing can move it meanwhile
            try:
                self._dispatch()
            finally:
                self._tip_now = None

    def _finish(self) -> int:
        self.states.flush()  # the COMPLETED edits held for the next write
        for ticket_id, waiting in sorted(self.plan.blocked_by_failures().items()):
            self.emit(ev.MESSAGE, ticket_id, level="info",
                      text=f"{ticket_id} not started: blocked by {self.plan.describe_failed(waiting)}")
        return self.report.finish(remaining=self.plan.pending_count(), interrupted=self.stopping.interrupted,
                                  halt_exit=self.halt_exit, halted=self.halted.reason if self.halted else None)


def local_stream_run(store: IndexStore, git: Git, settings: StreamSettings, display: Display,
                     run_id: str) -> tuple[StreamRun, Recovery]:
    """A run whose attempts run on this machine, in worktree slots of `git`'s repository,
    and the recovery to carry out before it starts."""
    inbox: queue.Queue[Message] = queue.Queue()
    paths = SagePaths(settings.sage_dir)
    remote = (RemoteTarget(git, name=settings.remote, branch=settings.target, push_branches=settings.push_branches,
                           warn=lambda text: emit(ev.MESSAGE, None, level="warning", text=text))
              if settings.remote else None)
    workspaces = TicketWorkspaces(git, paths.worktrees)
    states = ticket_state.TicketStates(store, hold_s=ticket_state.HOLD_COMPLETED_S)
    watch = TargetWatch(git, settings.target)  # refs an agent moves (local attempts), rewinds before landing
    runner: Runner = dask_runner(git, settings, run_id, inbox, start_tip=remote.tip_for_dispatch if remote else None) \
        if settings.executor is not None else LocalRunner(git, workspaces, RunnerSettings(
        agent=settings.agent, run_id=run_id, run_dir=paths.run_logs(run_id), target=settings.target,
        timeout_s=settings.timeout_s, idle_timeout_s=settings.idle_timeout_s, grace_s=settings.grace_s,
        check_timeout_s=settings.check_timeout_s, check_parallel=settings.check_parallel,
        check_env=tuple(settings.check_env), sandbox=settings.sandbox.sandbox, writable=settings.writable,
        start_tip=remote.tip_for_dispatch if remote else None), inbox, watch=watch)
    run: StreamRun | None = None

    def emit(kind: str, ticket_id: str | None, **data: Any) -> None:
        run.emit(kind, ticket_id, **data)

    lander = Lander(git, target=settings.target, queue=CommitQueue(paths.commit_queue), states=states,
                    landing_lock=paths.commit_lock, emit=emit, remote=remote, watch=watch)
    run = StreamRun(settings, states=states, lander=lander, runner=runner, inbox=inbox, display=display,
                    run_id=run_id, tickets_dir=store.path.parent)
    lander.should_stop = lambda: run.stopping.requested
    return run, Recovery(lander=lander, workspaces=workspaces, emit=run.emit, run_id=run_id, pid=run.pid,
                         retry_backoff_s=settings.retry_backoff_s)

