"""Attempts on this machine: one thread per attempt, in a worktree slot of this repository.

A ticket's thread switches its slot to the ticket's branch, runs the agent and then the
checks (engine/verification.py): when a check fails, the agent gets the failing output
and another turn (continuing its session when it has one), up to the ticket's fix turns.
Then everything the agent left is committed on the ticket's branch, and the thread hands
back the last turn and the verdict as one `AttemptDone` (or `AttemptCrashed`). Checks run
in the ticket's thread, so its worker stays busy and other tickets go on meanwhile.
"""

from __future__ import annotations

import os
import queue
import random
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sage_stream.agents import environment
from sage_stream.agents.base import (
    SETUP_ERROR_KINDS,
    Agent,
    AgentJob,
    AgentResult,
    AgentState,
    agent_state,
    read_log_tail,
)
from sage_stream.agents.credentials import setup_fix
from sage_stream.agents.prompt import write_prompt_file
from sage_stream.engine import events as ev
from sage_stream.engine.attempt_sandbox import AttemptPaths, SandboxedLaunch, sandboxed_launch
from sage_stream.engine.repo_guard import RepoGuard, restore_worktree_link, worktree_link
from sage_stream.engine.slots import SlotRelease
from sage_stream.engine.target_watch import TargetWatch, TurnRefs, refusing_pushes
from sage_stream.engine.verification import Verification, fix_prompt, run_checks
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
    SpareReady,
    TicketWork,
    TurnDone,
)
from sage_stream.engine.worktrees import TicketWorkspaces, Workspace
from sage_stream.errors import AgentSetupError, SageError
from sage_stream.faults import crash_point
from sage_stream.git import Git
from sage_stream.process.sandbox import Sandbox, wrote_read_only
from sage_stream.process.supervise import EXITED, AgentExit, AgentLaunch, run_agent
from sage_stream.process.tree import stop_slot_strays

_JITTER = random.Random()  # its own: a run never moves the random state of whoever hosts it

START_AGAIN_TRIES = 3
START_AGAIN_DELAY_S = 1.0
"""An agent that could not get going for a moment's local reason (`AgentResult.start_again`:
OpenCode turned away by its own database's lock while another OpenCode starts) is started
again up to START_AGAIN_TRIES times, after about 1, 2 and 3 s (jittered, so that two such
agents do not meet again), before its ticket is deferred."""

LINE_INTERVAL_S = 0.25


@dataclass(frozen=True)
class RunnerSettings:
    """What running an attempt here needs beyond the attempt itself."""

    agent: Agent
    run_id: str
    run_dir: Path  # .sage/workers/<run-id>: prompts, logs, result files
    target: str
    timeout_s: float
    idle_timeout_s: float
    grace_s: float
    check_timeout_s: float = 600.0
    check_parallel: int = 4
    check_env: tuple[str, ...] = ()  # names passed to checks beyond the standard set
    sandbox: Sandbox | None = None  # agents, checks and fix turns run in it (engine/attempt_sandbox.py)
    writable: tuple[str, ...] = ()  # [agent] writable: more paths they may write in it
    start_tip: Callable[[], str | None] | None = None  # where tickets start (--remote: the fetched remote tip)
    die_with_parent: bool = False  # on a Dask worker: agents die with it (process/supervise.py)


class _Running:
    """One attempt's own state, kept by its thread."""

    def __init__(self, spec: AttemptSpec, handle: AttemptHandle) -> None:
        self.spec = spec
        self.ticket = spec.ticket
        self.cancel = handle.cancelled
        self.job = spec.job
        self.workspace: Workspace | None = None
        self.git_link: bytes | None = None  # the worktree's `.git` file as sage made it
        self.delete_later: list[str] = []  # landed branches to delete once the agent runs
        self.refs_before: TurnRefs | None = None  # the branch tips when its latest turn started
        self.line_sent_at = 0.0

    def line_due(self) -> bool:
        """The live view shows an agent's latest line; four a second is plenty."""
        now = time.monotonic()
        if now - self.line_sent_at < LINE_INTERVAL_S:
            return False
        self.line_sent_at = now
        return True


class LocalRunner:
    def __init__(self, git: Git, workspaces: TicketWorkspaces, settings: RunnerSettings,
                 inbox: queue.Queue[Message], watch: TargetWatch | None = None) -> None:
        self.git = git
        self.watch = watch  # branch tips before and after each turn (engine/target_watch.py)
        self.workspaces = workspaces
        self.settings = settings
        self.inbox = inbox
        self.guard: RepoGuard | None = None  # taken at the first start: after recovery, before any agent
        self._common_dir: Path | None = None

    # ------------------------------------------------------------ the Runner interface

    def start(self, spec: AttemptSpec) -> AttemptHandle:
        if self.guard is None:
            self.guard = RepoGuard.start(self.git.common_dir())
        handle = AttemptHandle()
        thread = threading.Thread(target=self._run, args=(_Running(spec, handle),), name=f"agent-{spec.ticket.id}",
                                  daemon=True)
        thread.start()
        return handle

    def make_spare_slot(self, slot: int) -> None:
        threading.Thread(target=self._make_spare, args=(slot,), name="spare-slot", daemon=True).start()

    def keep_work(self, workspace: Workspace, ticket_id: str) -> None:
        try:
            self.git.snapshot(workspace.path, f"wip: {ticket_id} (unlanded attempt, kept by sage)")
        except Exception:
            pass  # the worktree itself is kept; the snapshot is a convenience

    def finish_releases(self, releases: list[SlotRelease]) -> list[tuple[str, str]]:
        """The run is over: reset every slot at once (one thread each; slots are independent)."""
        warnings: list[tuple[str, str]] = []
        threads = [threading.Thread(target=self._release_at_end, args=(item, warnings.append),
                                    name=f"release-{item.workspace.path.name}") for item in releases]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return warnings

    def close(self) -> None:
        pass  # nothing held beyond the attempts' threads, which end with their attempts

    # ------------------------------------------------------------ a ticket's thread

    def _run(self, running: _Running) -> None:
        """Agent turns and checks to the end, then report back. Never raises."""
        ticket_id = running.ticket.id
        try:
            self.inbox.put(AttemptDone(ticket_id, self._work_on_ticket(running)))
        except Exception as error:  # includes SageError from an agent that cannot run this ticket
            detail = error.message if isinstance(error, SageError) else traceback.format_exc()
            self.inbox.put(AttemptCrashed(ticket_id, detail, running.workspace,
                                          on_setup=isinstance(error, AgentSetupError)))

    def _work_on_ticket(self, running: _Running) -> TicketWork:
        """Prepare the worktree; the agent's turn, then the checks; while they fail and fix
        turns are left, the agent gets their output and another turn. Then everything the
        agent left is committed on the ticket's branch."""
        self._prepare(running)
        try:
            work = self._agent_turns(running)
        finally:
            self._delete_landed_branches(running)  # when no agent started
        if looks_landable(work):  # the snapshot needs no worker
            self.inbox.put(AgentsDone(running.ticket.id))
        self._snapshot(running, work)
        return work

    def _prepare(self, running: _Running) -> None:
        """Switch the slot's worktree to the ticket's branch at the start commit (in the
        ticket's thread: worktree changes are serialized by their own lock, not the loop)."""
        spec = running.spec
        self._stop_strays(self.workspaces.slot_path(spec.slot), spec.ticket.id, self._warn)
        self._release_all(list(spec.releases), self._warn)
        start_tip = self.settings.start_tip or (lambda: self.git.rev_parse(f"refs/heads/{self.settings.target}"))
        start = spec.start or start_tip()
        if start is None:
            raise SageError(f"the target branch {self.settings.target!r} is gone")
        workspace = None
        if spec.after_landed is not None:
            workspace = self.workspaces.switch_after_landing(spec.after_landed, spec.ticket.id, start, slot=spec.slot,
                                                             delete_later=running.delete_later)
            if workspace is None:
                self._release_all([SlotRelease(spec.after_landed, landed=True)], self._warn)
        if workspace is None:
            workspace = self.workspaces.prepare(spec.ticket.id, start, slot=spec.slot)
        running.workspace = workspace
        running.git_link = worktree_link(workspace.path)
        running.job = replace(running.job, worktree=workspace.path)
        self.inbox.put(Prepared(spec.ticket.id, workspace))

    def _agent_turns(self, running: _Running) -> TicketWork:
        spec, job, turn, results = running.spec, running.job, 0, []
        while True:
            turn_started = time.time()
            exit, result = self._agent_turn(running, job)
            results.append(result)
            self.inbox.put(TurnDone(spec.ticket.id, exit, result, turn, turn_started))
            work = TicketWork(exit=exit, result=over_turns(results), turn_started=turn_started,
                              workspace=running.workspace, log=job.log_path, fix_turns=turn)
            work.tampered, work.suspected = self._undo_tampering(running)  # before git touches its work
            work.moved_refs = self._undo_ref_moves(running)
            work.refused_writes = self._refused_writes(work)
            if work.tampered or work.suspected or work.moved_refs or not result.success or not spec.checks:
                return work
            self.guard.turn_started(spec.ticket.id)  # its checks run in the repository too
            try:
                work.verification = self._verify(running, turn)
            finally:
                checked = self.guard.turn_ended(spec.ticket.id)
            work.tampered, work.suspected = list(checked.tampered), list(checked.suspected)
            if work.tampered or work.suspected:
                return work
            if work.verification.cancelled or running.cancel.is_set():
                work.cancelled = True
                return work
            fix_next = not work.verification.passed and turn < spec.max_fix_turns
            self.inbox.put(Progress(spec.ticket.id, ev.TICKET_CHECKED, dict(
                passed=work.verification.passed, failed=[item.check.name for item in work.verification.failed],
                turn=turn, fix_turn_next=fix_next,
                duration_s=round(max((item.duration_s for item in work.verification.results), default=0), 2))))
            if not fix_next:
                return work
            turn += 1
            job = self._fix_job(running, result, work.verification, turn)

    def _agent_turn(self, running: _Running, job: AgentJob) -> tuple[AgentExit, AgentResult]:
        ticket_id = running.ticket.id
        invocation = self.settings.agent.invocation(job)
        sandboxed = self._sandboxed(running, invocation.env, invocation.argv,
                                    agent_state(self.settings.agent, invocation.env),
                                    layer_dir=job.log_path.with_suffix(".home"))
        launch = AgentLaunch(argv=invocation.argv, cwd=running.workspace.path, env=refusing_pushes(invocation.env),
                             log_path=job.log_path, timeout_s=self.settings.timeout_s,
                             idle_timeout_s=self.settings.idle_timeout_s, grace_s=min(self.settings.grace_s, 5.0),
                             sandbox=sandboxed.prefix, die_with_parent=self.settings.die_with_parent)
        def on_line(line: str) -> None:
            if running.line_due():
                self.inbox.put(AgentLine(ticket_id, line))

        if sandboxed.home_layer is not None:
            sandboxed.home_layer.copy_in()
        running.refs_before = self.watch.before_turn() if self.watch is not None else None
        self.guard.turn_started(ticket_id)
        try:
            for again in range(START_AGAIN_TRIES + 1):
                if again and running.cancel.wait(START_AGAIN_DELAY_S * again * _JITTER.uniform(0.5, 1.5)):
                    break  # (stopped while waiting: the last result stands)
                exit = run_agent(launch, cancel=running.cancel, on_line=on_line,
                                 on_start=lambda pid, created: self._delete_landed_branches(running))
                result = self.settings.agent.parse_result(job, exit)
                if not result.start_again or again == START_AGAIN_TRIES:
                    break
                _note_in_log(job.log_path, f"the agent could not get going ({result.message}): "
                                           f"starting it again ({again + 1} of {START_AGAIN_TRIES})")
        except BaseException:
            self.guard.turn_ended(ticket_id)  # undoes its changes; the attempt crashed: none of it lands
            raise
        finally:
            if sandboxed.home_layer is not None:
                sandboxed.home_layer.copy_back()
        if result.error_kind in SETUP_ERROR_KINDS and result.fix is None:
            result = replace(result, fix=setup_fix(self.settings.agent, result.error_kind, result.message))
        return exit, result

    def _sandboxed(self, running: _Running, env: dict[str, str], argv: Sequence[str], state: AgentState, *,
                   layer_dir: Path | None = None) -> SandboxedLaunch:
        """The sandbox of one process of this attempt (none when the run has no sandbox)."""
        if self.settings.sandbox is None:
            return SandboxedLaunch(())
        if self._common_dir is None:
            self._common_dir = self.git.common_dir()
        paths = AttemptPaths(worktree=Path(running.workspace.path).absolute(), repo=self.git.repo.absolute(),
                             common_dir=self._common_dir,
                             run_dir=Path(self.settings.run_dir).absolute(), extra=self.settings.writable)
        return sandboxed_launch(self.settings.sandbox, paths, env=env, argv=argv, state=state, layer_dir=layer_dir)

    def _refused_writes(self, work: TicketWork) -> bool:
        """The sandbox refused a write of a turn that failed: its log says so."""
        if self.settings.sandbox is None or work.result.success or work.log is None:
            return False
        return wrote_read_only([read_log_tail(work.log), work.exit.last_line or ""])

    def _undo_tampering(self, running: _Running) -> tuple[list[str], list[str]]:
        """Git control files changed during the turn, put back as they were: those only
        this turn's agent could have changed, and those another agent running beside it
        could have (see repo_guard). The worktree's own `.git` file is this agent's alone."""
        verdict = self.guard.turn_ended(running.ticket.id)
        changed = list(verdict.tampered)
        path = running.workspace.path
        if running.git_link is not None and worktree_link(path) != running.git_link:
            restore_worktree_link(path, running.git_link)
            changed.append(f"{path}/.git")
        return changed, list(verdict.suspected)

    def _undo_ref_moves(self, running: _Running) -> list[str]:
        """Branches the agent moved during its turn, put back (see engine/target_watch.py)."""
        if self.watch is None or running.refs_before is None:
            return []
        return [move.describe() for move in self.watch.after_turn(running.refs_before, running.workspace.path)]

    def _verify(self, running: _Running, turn: int) -> Verification:
        """Run the checks on exactly what would land: the agent's work is committed first,
        and whatever the checks leave behind (caches, reports) is removed after them."""
        spec, path = running.spec, running.workspace.path
        checked = self.git.snapshot(path, f"{spec.ticket.id}: {spec.ticket.title}")
        self.inbox.put(Progress(spec.ticket.id, ev.TICKET_CHECKING,
                                dict(checks=[check.name for check in spec.checks], turn=turn)))
        env = environment.agent_environment(os.environ, passthrough=self.settings.check_env, sage={
            environment.SAGE_TICKET_ID: spec.ticket.id,
            environment.SAGE_RUN_ID: self.settings.run_id,
            environment.SAGE_WORKTREE: str(Path(path).absolute()),
        })
        named = [argument for check in spec.checks for argument in check.argv]
        sandbox = self._sandboxed(running, env, named, AgentState()).prefix
        try:
            return run_checks(spec.checks, worktree=path, env=env, log_dir=self.settings.run_dir, stem=spec.stem,
                              timeout_s=self.settings.check_timeout_s, cancel=running.cancel,
                              max_parallel=self.settings.check_parallel, label=f"turn {turn}", sandbox=sandbox)
        finally:
            self.git.run("reset", "--quiet", "--hard", checked, cwd=path)
            self.git.run("clean", "-q", "-fd", cwd=path)  # not -x: ignored files never land anyway

    def _fix_job(self, running: _Running, previous: AgentResult, verification: Verification, turn: int) -> AgentJob:
        """The next turn: the failing output as its prompt, in the same session when the
        agent has one (else after the ticket's own prompt, for an agent that starts cold)."""
        spec, run_dir = running.spec, self.settings.run_dir
        session = previous.session_id if self.settings.agent.supports_sessions() else None
        stem = f"{spec.stem}.fix-{turn}"
        original = None if session else spec.job.prompt_file.read_text(encoding="utf-8")
        prompt_file = run_dir / f"{stem}.prompt.md"
        write_prompt_file(prompt_file, fix_prompt(spec.ticket, verification, fix_turn=turn,
                                                  max_fix_turns=spec.max_fix_turns, original_prompt=original))
        result_file = run_dir / f"{stem}.result.json"
        result_file.unlink(missing_ok=True)
        return AgentJob(ticket=spec.ticket, worktree=running.workspace.path, prompt_file=prompt_file,
                        result_file=result_file, log_path=run_dir / f"{stem}.log", run_id=self.settings.run_id,
                        session_id=session)

    def _snapshot(self, running: _Running, work: TicketWork) -> None:
        """Commit the agent's work on its branch: what lands, or what is kept when it does not."""
        ticket = running.ticket
        untouched = not (work.tampered or work.suspected or work.moved_refs)
        succeeded = work.result.success and work.exit.outcome == EXITED and untouched and (
            work.verification is None or work.verification.passed)
        message = f"{ticket.id}: {ticket.title}" if succeeded else f"wip: {ticket.id} (unlanded attempt, kept by sage)"
        try:
            work.tip = self.git.snapshot(running.workspace.path, message)
        except Exception as error:
            work.snapshot_error = str(error)
            return
        if succeeded:
            crash_point("after_snapshot")

    def _delete_landed_branches(self, running: _Running) -> None:
        """Branches of tickets that landed, deleted while the next agent works (not
        between a landing and the next start)."""
        while running.delete_later:
            branch = running.delete_later.pop()
            try:
                self.git.branch_delete(branch)
            except Exception as error:  # a leftover branch of landed work costs nothing
                self.inbox.put(Progress(running.ticket.id, ev.MESSAGE, dict(
                    level="warning", text=f"could not delete {branch} (it landed): {error}")))

    # ------------------------------------------------------------ slots

    def _make_spare(self, slot: int) -> None:
        error = None
        try:
            tip = self.settings.start_tip() if self.settings.start_tip else None  # --remote: the fetched tip
            self.workspaces.make_spare(slot, tip or f"refs/heads/{self.settings.target}")
        except Exception as failure:  # the ticket that needs the slot tries again, and says why
            error = failure.message if isinstance(failure, SageError) else repr(failure)
        self.inbox.put(SpareReady(slot, error))

    def _release_all(self, releases: list[SlotRelease], warn: Any) -> None:
        for item in releases:
            try:
                self.workspaces.release(item.workspace, landed=item.landed)
            except Exception as error:  # the next prepare secures and resets the slot anyway
                warn((item.workspace.ticket, f"could not reset worktree {item.workspace.path}: {error}"))

    def _release_at_end(self, item: SlotRelease, warn: Any) -> None:
        """The run is over: nothing it started keeps writing in the slot, which is reset."""
        self._stop_strays(item.workspace.path, item.workspace.ticket, warn)
        self._release_all([item], warn)

    @staticmethod
    def _stop_strays(slot: Path, ticket_id: str, warn: Any) -> None:
        strays = stop_slot_strays(slot)
        if strays:
            warn((ticket_id, f"stopped {len(strays)} process(es) an agent left running in {slot.name} (pids "
                             f"{', '.join(map(str, strays))}) before resetting it"))

    def _warn(self, warning: tuple[str, str]) -> None:
        ticket_id, text = warning
        self.inbox.put(Progress(ticket_id, ev.MESSAGE, dict(level="warning", text=text)))


def looks_landable(work: TicketWork) -> bool:
    """Its agent succeeded, its checks passed and it touched nothing it must not: what the
    loop decides for it may still keep it from landing (no changes, its scope), but nothing
    that halts or pauses the run (a setup error, a rate limit), which must come before the
    next ticket starts."""
    return (work.result.success and work.exit.outcome == "exited" and not work.cancelled
            and not (work.tampered or work.suspected or work.moved_refs)
            and (work.verification is None or work.verification.passed))


def over_turns(results: list[AgentResult]) -> AgentResult:
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


def _note_in_log(log_path: Path, text: str) -> None:
    """A line of sage-stream's own in the agent's log (written beside the agent's output)."""
    try:
        with open(log_path, "ab") as log:
            log.write(f"\n[sage-stream] {text}\n".encode("utf-8", "replace"))
    except OSError:
        pass
