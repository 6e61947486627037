"""The values that cross between the loop and where attempts run: plain, typed, small.

The loop hands a runner an `AttemptSpec` (everything the attempt needs, decided) and
hears back through one queue of messages: `Prepared`, `AgentLine`, `Progress`,
`TurnDone`, `AgentsDone` (from runners that send it), then exactly one of `AttemptDone`
or `AttemptCrashed`. Nothing here is shared mutable state: the loop keeps its own
bookkeeping, the runner its own.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from sage_stream.agents.base import AgentJob, AgentResult
from sage_stream.engine.outcomes import FinishedAttempt
from sage_stream.engine.slots import SlotRelease
from sage_stream.engine.verification import Check, Verification
from sage_stream.engine.worktrees import Workspace
from sage_stream.process.supervise import AgentExit
from sage_stream.tickets.models import Ticket


@dataclass(frozen=True)
class AttemptSpec:
    """One attempt of one ticket, as the loop decided it."""

    ticket: Ticket
    attempt: int  # 1-based, over runs (the index's attempts) and reruns in this run
    worker: int
    slot: int  # .sage/worktrees/slot-<slot>
    stem: str  # file names of this attempt in the run directory: <stem>.log, .prompt.md...
    job: AgentJob  # prompt, result file, log, session to continue (its worktree is set once prepared)
    checks: tuple[Check, ...] = ()
    max_fix_turns: int = 0
    continued_from: str | None = None  # the dependency whose session this attempt continues
    start: str | None = None  # the commit to start from, if known at dispatch (else the target's tip)
    releases: tuple[SlotRelease, ...] = ()  # earlier slot resets to finish first
    after_landed: Workspace | None = None  # the slot's previous ticket, landed: reset while switching


@dataclass
class TicketWork:
    """What an attempt hands back: its last agent turn and the checks' verdict."""

    exit: AgentExit
    result: AgentResult  # the last turn's, with cost and tokens summed over all turns
    turn_started: float  # when the last turn started (time.time())
    workspace: Workspace | None = None
    log: Path | None = None  # the log of the last agent turn
    verification: Verification | None = None  # None: no checks, or the agent did not succeed
    fix_turns: int = 0
    cancelled: bool = False
    tip: str | None = None  # the branch commit holding all of the ticket's work (snapshot)
    tampered: list[str] = field(default_factory=list)  # git control files the agent changed (undone)
    suspected: list[str] = field(default_factory=list)  # ... that it or an agent beside it changed (undone)
    moved_refs: list[str] = field(default_factory=list)  # branches the agent moved, as sentences (undone)
    snapshot_error: str | None = None
    refused_writes: bool = False  # the sandbox refused a write of the failed last turn (its log says so)


# ---------------------------------------------------------------- messages to the loop


@dataclass(frozen=True)
class Prepared:
    """The attempt's worktree is ready and its agent starts now."""

    ticket_id: str
    workspace: Workspace


@dataclass(frozen=True)
class AgentLine:
    ticket_id: str
    line: str


@dataclass(frozen=True)
class Progress:
    """An event of the attempt for the display and the run record (checks, warnings)."""

    ticket_id: str | None
    kind: str
    data: dict[str, Any]


@dataclass(frozen=True)
class TurnDone:
    """One agent turn is over (its cost counts now, whatever follows)."""

    ticket_id: str
    exit: AgentExit
    result: AgentResult
    turn: int
    turn_started: float


@dataclass(frozen=True)
class AgentsDone:
    """The attempt's agent turns and checks are over: what is left of it (committing its
    work, by sage's own git) needs no worker, so another ticket's agent may start now."""

    ticket_id: str


@dataclass(frozen=True)
class AttemptDone:
    ticket_id: str
    work: TicketWork


@dataclass(frozen=True)
class AttemptCrashed:
    """The attempt could not run to its end (the worktree, the agent's command...)."""

    ticket_id: str
    detail: str
    workspace: Workspace | None
    on_setup: bool = False  # the agent cannot run as set up (errors.AgentSetupError), not this ticket


@dataclass(frozen=True)
class SpareReady:
    """The spare worktree slot made ahead of need (or not, and why)."""

    slot: int
    error: str | None


@dataclass(frozen=True)
class Wake:
    """Nothing happened but the loop should look again (a signal arrived)."""


Message = Prepared | AgentLine | Progress | TurnDone | AgentsDone | AttemptDone | AttemptCrashed | SpareReady | Wake


# ---------------------------------------------------------------- where attempts run


class AttemptHandle:
    """A started attempt: the loop may only ask it to stop."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()

    def cancel(self) -> None:
        self.cancelled.set()


class Runner(Protocol):
    """Where attempts run: this machine's threads (engine/local_runner.py), a fake in
    tests, other machines later. Every result comes back as messages on the queue the
    runner was made with."""

    def start(self, spec: AttemptSpec) -> AttemptHandle: ...

    def make_spare_slot(self, slot: int) -> None:
        """Make worktree slot `slot` ahead of need; answers with `SpareReady`."""

    def keep_work(self, workspace: Workspace, ticket_id: str) -> None:
        """Commit whatever an attempt left in `workspace` to its branch (nothing is lost)."""

    def finish_releases(self, releases: list[SlotRelease]) -> list[tuple[str, str]]:
        """Reset slots at the end of the run; returns (ticket, warning) for those that failed."""

    def close(self) -> None:
        """The run is over: let go of what the runner holds (a connection to a cluster)."""


def finished_attempt(spec: AttemptSpec, message: AttemptDone | AttemptCrashed, workspace: Workspace | None, *,
                     now: datetime) -> FinishedAttempt:
    """What engine/outcomes.py decides on, from the attempt's last message."""
    common = dict(ticket_id=spec.ticket.id, attempts_before=spec.ticket.attempts, now=now,
                  branch=workspace.branch if workspace else "")
    if isinstance(message, AttemptCrashed):
        return FinishedAttempt(log=str(spec.job.log_path), crashed=message.detail, crashed_on_setup=message.on_setup,
                               prepared=message.workspace is not None, **common)
    work = message.work
    exit, result, checks = work.exit, work.result, work.verification
    failed = checks.failed if checks is not None and not checks.passed else None
    return FinishedAttempt(
        log=str(work.log or spec.job.log_path), tampered=tuple(work.tampered), cancelled=work.cancelled,
        suspected=tuple(work.suspected),
        moved_refs=tuple(work.moved_refs),
        exit_outcome=exit.outcome, returncode=exit.returncode, last_line=exit.last_line, exit_error=exit.error,
        success=result.success, error_kind=result.error_kind, retryable=result.retryable,
        result_message=result.message, reset_at=result.reset_at, fix=result.fix,
        checks_failed=tuple(item.check.name for item in failed) if failed is not None else None,
        checks_tail=checks.failure_tail() if failed is not None else None,
        checks_log=str(failed[0].log_path) if failed else None, fix_turns=work.fix_turns, tip=work.tip,
        snapshot_error=work.snapshot_error, refused_writes=work.refused_writes, **common)
