"""What a finished attempt means: one pure function per question, plain values in and out.

The loop (engine/stream.py) asks, and carries the answer out; nothing here touches the
index, git, a clock or a process. Every row of the README's "what can go wrong" table is
a row of tests/engine/test_outcomes.py.

- `decide(finished, policy)`: a ticket's thread is over -> Land, Defer, Requeue,
  RateLimited (the dispatch controller has its say, then `decide_rate_limit`) or
  Interrupted. A setup error (credentials, the CLI missing or refusing its command line,
  an exec ticket without a command) is not the ticket's: Requeue with a Halt (exit 4).
- `decide_rate_limit(...)`: a rate limit or quota -> Requeue (and maybe pause or halt
  the run) or Defer (and maybe halt).
- `decide_landing(verdict, ...)`: a landing that did not land -> Requeue (a conflict with
  reruns left) or Defer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sage_stream.agents.base import SETUP_ERROR_KINDS
from sage_stream.engine.dispatch_control import DEFER, RATE_LIMIT_KINDS, STOP, RateLimitDecision
from sage_stream.errors import EXIT_DEFERRED, EXIT_INTERRUPTED, EXIT_OK, EXIT_SETUP
from sage_stream.text import describe_exit


@dataclass(frozen=True)
class Halt:
    """Start no more tickets in this run; running ones finish and land."""

    reason: str
    exit_code: int | None = None  # the exit code the halt asks for, at least


@dataclass(frozen=True)
class Land:
    """Queue the ticket's work and land it."""


@dataclass(frozen=True)
class Defer:
    """DEFERRED in the index, with a reason a person can act on."""

    category: str
    message: str
    last_error: str | None = None
    log: str | None = None
    retryable: bool = False
    not_before: str | None = None
    with_result: bool = False  # keep the agent's result (summary, cost, session) in the index
    clip: int = 2000  # how much of last_error the index keeps (its tail)
    halt: Halt | None = None


@dataclass(frozen=True)
class Requeue:
    """Back to UNPROCESSED and ready again in this run; not counted as an attempt."""

    category: str
    reason: str
    pause: RateLimitDecision | None = None  # a new rate-limit pause that starts now
    halt: Halt | None = None
    alone: bool = False  # it runs again with no other agent beside it


@dataclass(frozen=True)
class RateLimited:
    """The agent hit a rate limit or quota: the dispatch controller decides next."""

    kind: str
    detail: str
    reset_at: str | None


@dataclass(frozen=True)
class Interrupted:
    """Stopped by Ctrl-C / SIGTERM: UNPROCESSED again, its work kept on its branch."""


Decision = Land | Defer | Requeue | RateLimited | Interrupted


@dataclass(frozen=True)
class OutcomePolicy:
    """The settings the decisions depend on."""

    timeout_s: float
    idle_timeout_s: float
    max_attempts: int
    retry_backoff_s: float
    rate_limit_stop_after: int = 5


@dataclass(frozen=True)
class FinishedAttempt:
    """Everything known about an attempt once its thread is over, as plain values."""

    ticket_id: str
    attempts_before: int  # the ticket's `attempts` in the index when it started
    log: str  # the log of its last agent turn
    now: datetime  # when it is decided (for backoffs)
    crashed: str | None = None  # the thread failed: its error text
    crashed_on_setup: bool = False  # ... because the agent cannot run as set up (errors.AgentSetupError)
    prepared: bool = True  # its worktree was ready (else a crash is the worktree's fault)
    branch: str = ""
    tampered: tuple[str, ...] = ()  # git control files the agent changed (undone)
    suspected: tuple[str, ...] = ()  # ... that it or another agent running beside it changed (undone)
    moved_refs: tuple[str, ...] = ()  # branches the agent moved, as sentences (engine/target_watch.py)
    cancelled: bool = False
    exit_outcome: str = "exited"  # exited | timeout | idle_timeout | cancelled | failed_to_start
    returncode: int | None = 0
    last_line: str | None = None
    exit_error: str | None = None
    success: bool = True
    error_kind: str | None = None
    retryable: bool = False
    result_message: str | None = None
    reset_at: str | None = None
    fix: str | None = None  # the agent's advice for a setup error
    checks_failed: tuple[str, ...] | None = None  # None: no checks ran, or they passed
    checks_tail: str | None = None
    checks_log: str | None = None
    fix_turns: int = 0
    tip: str | None = None  # the branch commit with all of its work
    snapshot_error: str | None = None
    refused_writes: bool = False  # the sandbox refused a write of the failed agent ("Read-only file system")


def decide(done: FinishedAttempt, policy: OutcomePolicy) -> Decision:
    if done.crashed is not None:
        last = done.crashed.strip().splitlines()[-1] if done.crashed.strip() else "unknown error"
        if done.crashed_on_setup:
            return setup_halt(last)
        if not done.prepared:
            return Defer("error", f"could not prepare the worktree: {last}", last_error=done.crashed[-2000:],
                         log=done.log)
        return Defer("agent_failed", f"the agent could not run: {last}", last_error=done.crashed[-2000:], log=done.log)
    if done.tampered:  # no other agent ran when they changed (engine/repo_guard.py)
        shown = ", ".join(done.tampered[:10])
        return Defer("scope_violation", (
            "git control files (the repository's or your git configuration) changed while its agent or its "
            f"checks ran: {shown} (undone: hooks and config written there would run code in your next git command); "
            f"its work is kept on {done.branch}"), log=done.log, with_result=True)
    if done.moved_refs:  # only sage's compare-and-swap moves the target; other branches are the user's
        return Defer("scope_violation", f"{'; '.join(done.moved_refs)}; its work is kept on {done.branch}",
                     log=done.log, with_result=True)
    if done.cancelled or done.exit_outcome == "cancelled":
        return Interrupted()
    if done.exit_outcome in ("timeout", "idle_timeout"):
        what = (f"ran longer than {policy.timeout_s / 60:g} min" if done.exit_outcome == "timeout"
                else f"printed nothing for {policy.idle_timeout_s / 60:g} min")
        return transient_defer(done, policy, category="timeout", message=f"the agent {what} and was stopped",
                               last_error=done.last_line)
    if not done.success:
        return _agent_failed(done, policy)
    if done.checks_failed is not None:
        names = ", ".join(done.checks_failed)
        turns = done.fix_turns
        after = f"after {turns} fix turn{'s' if turns != 1 else ''}" if turns else "(no fix turns allowed)"
        return Defer("persistent_test_failure", f"checks still fail {after}: {names}", last_error=done.checks_tail,
                     log=done.checks_log, with_result=True, clip=4096)
    if done.tip is None:
        return Defer("error", f"could not record the agent's changes: {done.snapshot_error}",
                     last_error=done.snapshot_error, log=done.log)
    if done.suspected:  # it would land, but may be the agent that changed them: the answer is certain alone
        return Requeue("run_alone", (
            "git control files changed while its agent (or its checks) and others ran: "
            f"{', '.join(done.suspected[:10])} (undone); which agent changed them is not known, so it runs again "
            "with no other agent beside it"), alone=True)
    return Land()


def _agent_failed(done: FinishedAttempt, policy: OutcomePolicy) -> Decision:
    if done.error_kind in SETUP_ERROR_KINDS:  # the agent says so (a CLI that cannot start is `setup`)
        return setup_halt(done.result_message or done.exit_error or done.last_line or "the agent could not start",
                          fix=done.fix)
    if done.error_kind in RATE_LIMIT_KINDS:
        return RateLimited(kind=done.error_kind, detail=done.result_message or done.error_kind.replace("_", " "),
                           reset_at=done.reset_at)
    if done.retryable:
        return transient_defer(done, policy, category=done.error_kind or "agent_failed",
                               message=done.result_message or "the agent hit a transient error",
                               last_error=done.last_line, not_before=done.reset_at, with_result=True)
    detail = done.result_message or (describe_exit(done.returncode) if done.exit_outcome == "exited"
                                     else done.exit_error)
    failed = ("the agent tried to write outside its worktree (the sandbox refused: \"Read-only file system\" in "
              "its log) and failed" if done.refused_writes else "the agent failed")
    return Defer("agent_failed", f"{failed}: {detail}", last_error=done.last_line or done.exit_error,
                 log=done.log, with_result=True)


def setup_halt(problem: str, *, fix: str | None = None) -> Requeue:
    """Not the ticket's failure but the setup's: the ticket goes back unspent, and the run
    starts nothing new and ends with EXIT_SETUP, saying what to fix."""
    said = problem.strip()
    return Requeue("setup", f"setup error (not the ticket's): {said}",
                   halt=Halt(f"setup error: {said}" + (f"; to fix: {fix}" if fix else ""), EXIT_SETUP))


def transient_defer(done: FinishedAttempt, policy: OutcomePolicy, *, category: str, message: str,
                    last_error: str | None, not_before: str | None = None, with_result: bool = False) -> Defer:
    """A failure that may pass: retried by a later run after a backoff, until the
    ticket's attempts are used up; then it waits for `sage retry`."""
    retryable = done.attempts_before + 1 < policy.max_attempts
    if not retryable:
        message += f" ({done.attempts_before + 1} attempts: waits for `sage retry {done.ticket_id}`)"
    return Defer(category, message, last_error=last_error, log=done.log, retryable=retryable,
                 not_before=(not_before or backoff_until(done.now, policy.retry_backoff_s, done.attempts_before))
                 if retryable else None,
                 with_result=with_result)


def backoff_until(now: datetime, backoff_s: float, attempts: int) -> str:
    """Exponential backoff: `backoff_s` doubled per attempt so far, from `now`."""
    when = now.astimezone(timezone.utc) + timedelta(seconds=backoff_s * (2 ** attempts))
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def decide_rate_limit(done: FinishedAttempt, limited: RateLimited, control: RateLimitDecision, *,
                      times_this_run: int, policy: OutcomePolicy, not_before: str | None) -> Defer | Requeue:
    """After the dispatch controller's decision: `times_this_run` counts this limit too
    (except when the controller defers: a far reset is not the ticket's doing).
    `not_before` is the controller's resume time as an ISO stamp, when it defers."""
    reason = f"{limited.detail}: {control.reason}"
    if control.action == DEFER:
        return Defer(limited.kind, reason, last_error=done.last_line, log=done.log, retryable=True,
                     not_before=not_before, with_result=True, halt=Halt(control.reason))
    if control.action == STOP:
        return Requeue(limited.kind, reason, halt=Halt(control.reason, EXIT_DEFERRED))
    if times_this_run >= policy.rate_limit_stop_after:  # this one keeps failing while others get through
        return transient_defer(done, policy, category=limited.kind,
                               message=f"{limited.detail} ({times_this_run} times in this run)",
                               last_error=done.last_line, not_before=limited.reset_at, with_result=True)
    return Requeue(limited.kind, reason, pause=control if control.pause_s > 0 else None)


@dataclass(frozen=True)
class LandingVerdict:
    """A landing that did not land, as plain values."""

    outcome: str  # conflict | no_changes | scope_violation | error
    paths: tuple[str, ...] = ()
    message: str = ""  # landing's own words (or the error, for `error`)
    log: str | None = None


def decide_landing(verdict: LandingVerdict, *, rerun_left: bool, attempts_before: int, now: datetime,
                   retry_backoff_s: float) -> Defer | Requeue:
    """A conflict reruns on the new tip while reruns are left, then is deferred (retried
    by a later run); no changes, out-of-scope changes and failures are deferred."""
    if verdict.outcome == "conflict":
        paths = ", ".join(verdict.paths[:10])
        if rerun_left:
            return Requeue("conflict", f"conflict with what landed meanwhile: {paths}")
        return Defer("conflict", f"conflicts with the target branch in {paths}", last_error=verdict.message,
                     log=verdict.log, retryable=True,
                     not_before=backoff_until(now, retry_backoff_s, attempts_before))
    if verdict.outcome == "target_dirty":  # the run stopped while its landing waited: it stays queued
        return Requeue("target_dirty", f"the run stopped while it waited to land; it lands at the next run "
                                       f"({verdict.message})")
    if verdict.outcome == "no_changes":
        return Defer("no_changes", "the agent finished without changing anything (set allow_empty to accept that)",
                     log=verdict.log)
    if verdict.outcome == "error":
        return Defer("error", f"landing failed: {verdict.message}", last_error=verdict.message, log=verdict.log)
    paths = ", ".join(verdict.paths[:20])
    # landing says what was wrong (outside the `files` globs, or symbolic links leaving
    # the repository); without its words, name the paths
    return Defer("scope_violation", verdict.message or f"changed files outside its `files` globs: {paths}",
                 last_error=verdict.message, log=verdict.log)


def run_exit_code(*, interrupted: bool, deferred: int, halt_exit: int | None) -> int:
    """130 when a signal stopped the run, 4 when a setup error halted it, 3 when a ticket
    was deferred or a halt asks for it (rate limits), else 0 (a --max-cost halt is not a
    failure)."""
    if interrupted:
        return EXIT_INTERRUPTED
    if halt_exit == EXIT_SETUP:
        return EXIT_SETUP
    if deferred or halt_exit == EXIT_DEFERRED:
        return EXIT_DEFERRED
    return EXIT_OK
