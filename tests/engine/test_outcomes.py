"""What a finished attempt means: every decision of engine/outcomes.py, as tables of plain
values in and the decision out. No git, no clock, no process."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from sage_stream.engine.dispatch_control import DEFER, REQUEUE, STOP, RateLimitDecision
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
    backoff_until,
    decide,
    decide_landing,
    decide_rate_limit,
    run_exit_code,
)
from sage_stream.errors import EXIT_DEFERRED, EXIT_INTERRUPTED, EXIT_OK, EXIT_SETUP

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)
LOG = ".sage/workers/run-1/T-1.log"
POLICY = OutcomePolicy(timeout_s=1800, idle_timeout_s=600, max_attempts=3, retry_backoff_s=60,
                       rate_limit_stop_after=5)
# with retry_backoff_s=60 from NOW: after 0 attempts 1 min, after 1 attempt 2 min
BACKOFF_0 = "2026-11-21T12:01:00Z"
BACKOFF_1 = "2026-11-21T12:02:00Z"
RESET = "2026-11-21T13:30:00Z"
CRASH = "Traceback (most recent call last):\n  File \"x.py\", line 1\nOSError: [Errno 28] No space left on device\n"


def finished(**fields: object) -> FinishedAttempt:
    """A successful attempt of T-1 (its first), with `fields` changed."""
    values: dict[str, object] = dict(ticket_id="T-1", attempts_before=0, log=LOG, now=NOW, branch="sage/T-1",
                                     tip="0123abcd")
    values.update(fields)
    return FinishedAttempt(**values)  # type: ignore[arg-type]


def failed(**fields: object) -> FinishedAttempt:
    """An attempt whose agent exited 1 with a last line of output."""
    values: dict[str, object] = dict(success=False, returncode=1, last_line="error: it broke", tip=None)
    values.update(fields)
    return finished(**values)


# ---------------------------------------------------------------- decide

DECIDE_CASES = [
    pytest.param(
        finished(crashed=CRASH, prepared=False, tip=None),
        Defer("error", "could not prepare the worktree: OSError: [Errno 28] No space left on device",
              last_error=CRASH, log=LOG),
        id="crashed before the worktree was prepared: error, blamed on the worktree"),
    pytest.param(
        finished(crashed=CRASH, tip=None),
        Defer("agent_failed", "the agent could not run: OSError: [Errno 28] No space left on device",
              last_error=CRASH, log=LOG),
        id="crashed once the worktree was ready: agent_failed"),
    pytest.param(
        finished(crashed="   \n", tip=None),
        Defer("agent_failed", "the agent could not run: unknown error", last_error="   \n", log=LOG),
        id="crashed without an error text: unknown error"),
    pytest.param(
        finished(crashed="x" * 2500 + "\nboom", tip=None),
        Defer("agent_failed", "the agent could not run: boom", last_error=("x" * 2500 + "\nboom")[-2000:], log=LOG),
        id="a crash keeps the last 2000 characters of its error"),
    pytest.param(
        finished(crashed=CRASH, tampered=(".git/config",), tip=None),
        Defer("agent_failed", "the agent could not run: OSError: [Errno 28] No space left on device",
              last_error=CRASH, log=LOG),
        id="a crash is reported before anything else"),
    pytest.param(
        finished(tampered=(".git/hooks/pre-commit", ".git/config")),
        Defer("scope_violation",
              "git control files (the repository's or your git configuration) changed while its agent or its checks ran: .git/hooks/pre-commit, .git/config "
              "(undone: hooks and config written there would run code in your next git command); its work is kept "
              "on sage/T-1", log=LOG, with_result=True),
        id="tampered git control files: scope_violation naming the files and the branch"),
    pytest.param(
        failed(tampered=(".git/config",), cancelled=True),
        Defer("scope_violation",
              "git control files (the repository's or your git configuration) changed while its agent or its checks ran: .git/config (undone: hooks and "
              "config written there would run code in your next git command); its work is kept on sage/T-1",
              log=LOG, with_result=True),
        id="tampering is reported even when the attempt was cancelled or failed"),
    pytest.param(
        finished(suspected=(".git/hooks/pre-commit",)),
        Requeue("run_alone", "git control files changed while its agent (or its checks) and others ran: .git/hooks/pre-commit "
                "(undone); which agent changed them is not known, so it runs again with no other agent beside it",
                alone=True),
        id="a suspect of a control-file change that would land runs again alone"),
    pytest.param(
        failed(suspected=(".git/config",), exit_outcome="timeout", returncode=-9, last_line="still thinking"),
        Defer("timeout", "the agent ran longer than 30 min and was stopped", last_error="still thinking", log=LOG,
              retryable=True, not_before="2026-11-21T12:01:00Z"),
        id="a suspect that failed on its own is decided by its own failure"),
    pytest.param(
        finished(tampered=(".git/config",), suspected=(".git/hooks/pre-commit",)),
        Defer("scope_violation",
              "git control files (the repository's or your git configuration) changed while its agent or its checks ran: .git/config (undone: hooks and "
              "config written there would run code in your next git command); its work is kept on sage/T-1",
              log=LOG, with_result=True),
        id="a change only this agent could have made is its own, whatever it was suspected of before"),
    pytest.param(failed(cancelled=True, returncode=-15), Interrupted(), id="cancelled flag: interrupted"),
    pytest.param(failed(exit_outcome="cancelled", returncode=None), Interrupted(),
                 id="exit outcome cancelled: interrupted"),
    pytest.param(
        failed(exit_outcome="timeout", returncode=None, last_line="still thinking"),
        Defer("timeout", "the agent ran longer than 30 min and was stopped", last_error="still thinking", log=LOG,
              retryable=True, not_before=BACKOFF_0),
        id="timeout: retryable after the backoff"),
    pytest.param(
        failed(exit_outcome="idle_timeout", returncode=None, last_line="waiting for input", attempts_before=1),
        Defer("timeout", "the agent printed nothing for 10 min and was stopped", last_error="waiting for input",
              log=LOG, retryable=True, not_before=BACKOFF_1),
        id="idle timeout: retryable after a doubled backoff on the second attempt"),
    pytest.param(
        failed(exit_outcome="timeout", returncode=None, last_line="still thinking", attempts_before=2),
        Defer("timeout", "the agent ran longer than 30 min and was stopped (3 attempts: waits for `sage retry T-1`)",
              last_error="still thinking", log=LOG),
        id="timeout with the attempts used up: not retryable, waits for sage retry"),
    pytest.param(
        failed(returncode=2),
        Defer("agent_failed", "the agent failed: exit code 2", last_error="error: it broke", log=LOG,
              with_result=True),
        id="agent exits non-zero: agent_failed with its exit code"),
    pytest.param(
        failed(result_message="the tests do not compile"),
        Defer("agent_failed", "the agent failed: the tests do not compile", last_error="error: it broke", log=LOG,
              with_result=True),
        id="agent failed with a message: agent_failed with its message"),
    pytest.param(
        failed(refused_writes=True),
        Defer("agent_failed", "the agent tried to write outside its worktree (the sandbox refused: \"Read-only file "
              "system\" in its log) and failed: exit code 1", last_error="error: it broke", log=LOG, with_result=True),
        id="agent failed after the sandbox refused a write: says it tried to write outside its worktree"),
    pytest.param(
        failed(refused_writes=True, result_message="could not save the cache"),
        Defer("agent_failed", "the agent tried to write outside its worktree (the sandbox refused: \"Read-only file "
              "system\" in its log) and failed: could not save the cache", last_error="error: it broke", log=LOG,
              with_result=True),
        id="a refused write and the agent's own message: both"),
    pytest.param(
        finished(refused_writes=True),
        Land(),
        id="a refused write of an agent that succeeded anyway: it lands"),
    pytest.param(
        failed(exit_outcome="failed_to_start", returncode=None, last_line=None, exit_error="my-script: not found"),
        Defer("agent_failed", "the agent failed: my-script: not found", last_error="my-script: not found", log=LOG,
              with_result=True),
        id="a ticket's own program failed to start (exec says `other`): agent_failed with the start error"),
    pytest.param(
        failed(exit_outcome="failed_to_start", returncode=None, last_line=None, exit_error="claude: not found",
               error_kind="setup"),
        Requeue("setup", "setup error (not the ticket's): claude: not found",
                halt=Halt("setup error: claude: not found", EXIT_SETUP)),
        id="the agent's CLI failed to start (`setup`): back unspent, the run halts with exit 4"),
    pytest.param(
        failed(exit_outcome="failed_to_start", returncode=None, last_line=None, error_kind="setup",
               result_message="cannot start 'claude': program not found on PATH (/usr/bin)",
               fix="install it and put it on PATH"),
        Requeue("setup", "setup error (not the ticket's): cannot start 'claude': program not found on PATH (/usr/bin)",
                halt=Halt("setup error: cannot start 'claude': program not found on PATH (/usr/bin); to fix: install "
                          "it and put it on PATH", EXIT_SETUP)),
        id="the CLI is not on PATH: the halt says what to fix"),
    pytest.param(
        failed(error_kind="auth", result_message="claude: Not logged in · Please run /login",
               fix="export ANTHROPIC_API_KEY in the shell that runs sage, or log in once: run `claude`, then /login"),
        Requeue("setup", "setup error (not the ticket's): claude: Not logged in · Please run /login",
                halt=Halt("setup error: claude: Not logged in · Please run /login; to fix: export ANTHROPIC_API_KEY "
                          "in the shell that runs sage, or log in once: run `claude`, then /login", EXIT_SETUP)),
        id="not logged in (auth): a setup error, not DEFERRED, naming the variable and the login"),
    pytest.param(
        failed(error_kind="auth", result_message="claude: Invalid API key (HTTP 401)", attempts_before=2),
        Requeue("setup", "setup error (not the ticket's): claude: Invalid API key (HTTP 401)",
                halt=Halt("setup error: claude: Invalid API key (HTTP 401)", EXIT_SETUP)),
        id="a rejected key on the last attempt: still not the ticket's, its attempts are not burned"),
    pytest.param(
        failed(error_kind="setup", result_message="claude printed no result JSON (exit code 1): error: unknown "
               "option '--bogus'"),
        Requeue("setup", "setup error (not the ticket's): claude printed no result JSON (exit code 1): error: "
                "unknown option '--bogus'",
                halt=Halt("setup error: claude printed no result JSON (exit code 1): error: unknown option '--bogus'",
                          EXIT_SETUP)),
        id="a bad flag (setup): halts"),
    pytest.param(
        finished(crashed="ticket T-1 has no `command`: the exec agent runs a ticket's command argv", tip=None,
                 crashed_on_setup=True),
        Requeue("setup", "setup error (not the ticket's): ticket T-1 has no `command`: the exec agent runs a "
                "ticket's command argv",
                halt=Halt("setup error: ticket T-1 has no `command`: the exec agent runs a ticket's command argv",
                          EXIT_SETUP)),
        id="exec agent meets a ticket without a command: halts instead of failing every ticket"),
    pytest.param(
        failed(checks_failed=("pytest",), fix_turns=2),
        Defer("agent_failed", "the agent failed: exit code 1", last_error="error: it broke", log=LOG,
              with_result=True),
        id="a failed agent is reported as such, not as failing checks"),
    pytest.param(
        failed(retryable=True, error_kind="overloaded", result_message="API overloaded", reset_at=RESET),
        Defer("overloaded", "API overloaded", last_error="error: it broke", log=LOG, retryable=True,
              not_before=RESET, with_result=True),
        id="agent failed retryable: its error kind, not before the reset time"),
    pytest.param(
        failed(retryable=True, error_kind="server_error"),
        Defer("server_error", "the agent hit a transient error", last_error="error: it broke", log=LOG,
              retryable=True, not_before=BACKOFF_0, with_result=True),
        id="agent failed retryable without a reset time: after the backoff"),
    pytest.param(
        failed(retryable=True),
        Defer("agent_failed", "the agent hit a transient error", last_error="error: it broke", log=LOG,
              retryable=True, not_before=BACKOFF_0, with_result=True),
        id="agent failed retryable without an error kind: agent_failed"),
    pytest.param(
        failed(retryable=True, error_kind="overloaded", result_message="API overloaded", reset_at=RESET,
               attempts_before=2),
        Defer("overloaded", "API overloaded (3 attempts: waits for `sage retry T-1`)", last_error="error: it broke",
              log=LOG, with_result=True),
        id="agent failed retryable with the attempts used up: waits for sage retry"),
    pytest.param(
        failed(error_kind="rate_limit", result_message="429 Too Many Requests", reset_at=RESET),
        RateLimited("rate_limit", "429 Too Many Requests", RESET),
        id="rate limit: rate limited, with the reset time"),
    pytest.param(
        failed(error_kind="rate_limit", retryable=True),
        RateLimited("rate_limit", "rate limit", None),
        id="rate limit without a message: named after its kind"),
    pytest.param(
        failed(error_kind="quota"),
        RateLimited("quota", "quota", None),
        id="quota: rate limited"),
    pytest.param(
        finished(checks_failed=("pytest", "ruff"), checks_tail="FAILED test_add", checks_log="checks.log",
                 fix_turns=2),
        Defer("persistent_test_failure", "checks still fail after 2 fix turns: pytest, ruff",
              last_error="FAILED test_add", log="checks.log", with_result=True, clip=4096),
        id="checks failed after fix turns: persistent_test_failure"),
    pytest.param(
        finished(checks_failed=("pytest",), checks_tail="FAILED", checks_log="checks.log", fix_turns=1),
        Defer("persistent_test_failure", "checks still fail after 1 fix turn: pytest", last_error="FAILED",
              log="checks.log", with_result=True, clip=4096),
        id="checks failed after one fix turn: singular"),
    pytest.param(
        finished(checks_failed=("pytest",), checks_tail="FAILED", checks_log="checks.log", fix_turns=0),
        Defer("persistent_test_failure", "checks still fail (no fix turns allowed): pytest", last_error="FAILED",
              log="checks.log", with_result=True, clip=4096),
        id="checks failed with no fix turns allowed"),
    pytest.param(
        finished(tip=None, snapshot_error="git add: index.lock exists"),
        Defer("error", "could not record the agent's changes: git add: index.lock exists",
              last_error="git add: index.lock exists", log=LOG),
        id="snapshot failed: error"),
    pytest.param(finished(), Land(), id="success with a tip: land"),
]


@pytest.mark.parametrize(("done", "expected"), DECIDE_CASES)
def test_decide(done: FinishedAttempt, expected: object) -> None:
    assert decide(done, POLICY) == expected


# ---------------------------------------------------------------- decide_rate_limit

LIMITED_ATTEMPT = failed(error_kind="rate_limit", result_message="429 Too Many Requests", last_line="429")
LIMITED = RateLimited("rate_limit", "429 Too Many Requests", None)
FAR = "quota exhausted until 2026-11-22T00:00:00Z (nothing else would succeed before then)"
PAUSING = "rate limit: pausing 30 s, then 2 workers"

RATE_LIMIT_CASES = [
    pytest.param(
        RateLimitDecision(DEFER, FAR, workers=4, not_before=1.0), 1, "2026-11-22T00:00:00Z",
        Defer("rate_limit", f"429 Too Many Requests: {FAR}", last_error="429", log=LOG, retryable=True,
              not_before="2026-11-22T00:00:00Z", with_result=True, halt=Halt(FAR)),
        id="defer: deferred until the reset, the run halts without asking for an exit code"),
    pytest.param(
        RateLimitDecision(DEFER, FAR, workers=4, not_before=1.0), 7, "2026-11-22T00:00:00Z",
        Defer("rate_limit", f"429 Too Many Requests: {FAR}", last_error="429", log=LOG, retryable=True,
              not_before="2026-11-22T00:00:00Z", with_result=True, halt=Halt(FAR)),
        id="defer: a far reset is not the ticket's doing, however often it was limited"),
    pytest.param(
        RateLimitDecision(STOP, "5 rate limits in a row", workers=1), 5, None,
        Requeue("rate_limit", "429 Too Many Requests: 5 rate limits in a row",
                halt=Halt("5 rate limits in a row", EXIT_DEFERRED)),
        id="stop: requeued, the run halts with exit code 3"),
    pytest.param(
        RateLimitDecision(REQUEUE, PAUSING, workers=2, pause_s=30.0, until=1030.0), 1, None,
        Requeue("rate_limit", f"429 Too Many Requests: {PAUSING}",
                pause=RateLimitDecision(REQUEUE, PAUSING, workers=2, pause_s=30.0, until=1030.0)),
        id="requeue with a pause: requeued, carrying the new pause"),
    pytest.param(
        RateLimitDecision(REQUEUE, "rate limit (hit before the pause began)", workers=2, until=1030.0), 1, None,
        Requeue("rate_limit", "429 Too Many Requests: rate limit (hit before the pause began)"),
        id="requeue without a pause: requeued, no new pause"),
    pytest.param(
        RateLimitDecision(REQUEUE, PAUSING, workers=2, pause_s=30.0, until=1030.0), 4, None,
        Requeue("rate_limit", f"429 Too Many Requests: {PAUSING}",
                pause=RateLimitDecision(REQUEUE, PAUSING, workers=2, pause_s=30.0, until=1030.0)),
        id="requeue: one limit below rate_limit_stop_after is still requeued"),
    pytest.param(
        RateLimitDecision(REQUEUE, PAUSING, workers=2, pause_s=30.0, until=1030.0), 5, None,
        Defer("rate_limit", "429 Too Many Requests (5 times in this run)", last_error="429", log=LOG,
              retryable=True, not_before=BACKOFF_0, with_result=True),
        id="limited rate_limit_stop_after times in this run: a transient defer"),
]


@pytest.mark.parametrize(("control", "times", "not_before", "expected"), RATE_LIMIT_CASES)
def test_decide_rate_limit(control: RateLimitDecision, times: int, not_before: str | None, expected: object) -> None:
    assert decide_rate_limit(LIMITED_ATTEMPT, LIMITED, control, times_this_run=times, policy=POLICY,
                             not_before=not_before) == expected


def test_a_ticket_limited_too_often_waits_for_the_reset_it_was_told() -> None:
    limited = RateLimited("rate_limit", "429 Too Many Requests", RESET)
    control = RateLimitDecision(REQUEUE, PAUSING, workers=2, pause_s=30.0)
    decision = decide_rate_limit(LIMITED_ATTEMPT, limited, control, times_this_run=6, policy=POLICY, not_before=None)
    assert isinstance(decision, Defer) and decision.retryable and decision.not_before == RESET
    assert decision.message == "429 Too Many Requests (6 times in this run)"


def test_a_ticket_limited_too_often_on_its_last_attempt_waits_for_sage_retry() -> None:
    control = RateLimitDecision(REQUEUE, PAUSING, workers=2, pause_s=30.0)
    decision = decide_rate_limit(failed(attempts_before=2, last_line="429"), LIMITED, control, times_this_run=5,
                                 policy=POLICY, not_before=None)
    assert decision == Defer("rate_limit", "429 Too Many Requests (5 times in this run) (3 attempts: waits for "
                             "`sage retry T-1`)", last_error="429", log=LOG, with_result=True)


# ---------------------------------------------------------------- decide_landing

PATHS = tuple(f"src/file{n:02}.py" for n in range(12))
FIRST_TEN = ", ".join(PATHS[:10])

LANDING_CASES = [
    pytest.param(
        LandingVerdict("conflict", ("calc/add.py", "calc/sub.py"), "CONFLICT (content)", "land.log"), True,
        Requeue("conflict", "conflict with what landed meanwhile: calc/add.py, calc/sub.py"),
        id="conflict with reruns left: requeued"),
    pytest.param(
        LandingVerdict("conflict", ("calc/add.py",), "CONFLICT (content)", "land.log"), False,
        Defer("conflict", "conflicts with the target branch in calc/add.py", last_error="CONFLICT (content)",
              log="land.log", retryable=True, not_before=BACKOFF_1),
        id="conflict without reruns left: deferred, retried after the backoff"),
    pytest.param(
        LandingVerdict("conflict", PATHS), True,
        Requeue("conflict", f"conflict with what landed meanwhile: {FIRST_TEN}"),
        id="a requeued conflict names its first 10 paths"),
    pytest.param(
        LandingVerdict("conflict", PATHS), False,
        Defer("conflict", f"conflicts with the target branch in {FIRST_TEN}", last_error="", retryable=True,
              not_before=BACKOFF_1),
        id="a deferred conflict names its first 10 paths"),
    pytest.param(
        LandingVerdict("no_changes", log="land.log"), False,
        Defer("no_changes", "the agent finished without changing anything (set allow_empty to accept that)",
              log="land.log"),
        id="no changes: deferred, with the allow_empty hint"),
    pytest.param(
        LandingVerdict("scope_violation", ("README.md",), "a symbolic link leaves the repository: docs/x"), False,
        Defer("scope_violation", "a symbolic link leaves the repository: docs/x",
              last_error="a symbolic link leaves the repository: docs/x"),
        id="scope violation in landing's words"),
    pytest.param(
        LandingVerdict("scope_violation", ("README.md", "setup.py")), False,
        Defer("scope_violation", "changed files outside its `files` globs: README.md, setup.py", last_error=""),
        id="scope violation without landing's words: the paths"),
    pytest.param(
        LandingVerdict("error", message="update-ref: cannot lock ref", log="land.log"), True,
        Defer("error", "landing failed: update-ref: cannot lock ref", last_error="update-ref: cannot lock ref",
              log="land.log"),
        id="landing error: deferred, whatever reruns are left"),
]


@pytest.mark.parametrize(("verdict", "rerun_left", "expected"), LANDING_CASES)
def test_decide_landing(verdict: LandingVerdict, rerun_left: bool, expected: object) -> None:
    assert decide_landing(verdict, rerun_left=rerun_left, attempts_before=1, now=NOW, retry_backoff_s=60) == expected


# ---------------------------------------------------------------- backoff and exit code


@pytest.mark.parametrize(("attempts", "expected"), [
    (0, "2026-11-21T12:01:00Z"),
    (1, "2026-11-21T12:02:00Z"),
    (2, "2026-11-21T12:04:00Z"),
    (3, "2026-11-21T12:08:00Z"),
], ids=["first attempt: the backoff", "then twice", "then four times", "then eight times"])
def test_backoff_doubles_per_attempt(attempts: int, expected: str) -> None:
    assert backoff_until(NOW, 60, attempts) == expected


def test_backoff_is_written_in_utc() -> None:
    berlin = NOW.astimezone(timezone(timedelta(hours=1)))
    assert backoff_until(berlin, 60, 0) == "2026-11-21T12:01:00Z"


@pytest.mark.parametrize(("interrupted", "deferred", "halt_exit", "expected"), [
    pytest.param(True, 2, EXIT_DEFERRED, EXIT_INTERRUPTED, id="interrupted beats deferred tickets and halts"),
    pytest.param(True, 0, None, EXIT_INTERRUPTED, id="interrupted"),
    pytest.param(False, 1, None, EXIT_DEFERRED, id="a deferred ticket"),
    pytest.param(False, 0, EXIT_DEFERRED, EXIT_DEFERRED, id="a halt asking for 3 (rate limits)"),
    pytest.param(False, 0, None, EXIT_OK, id="a clean run, or a halt asking for nothing (--max-cost)"),
    pytest.param(False, 3, EXIT_SETUP, EXIT_SETUP, id="a setup error beats deferred tickets: fix it first"),
    pytest.param(True, 0, EXIT_SETUP, EXIT_INTERRUPTED, id="interrupted beats a setup error"),
])
def test_run_exit_code(interrupted: bool, deferred: int, halt_exit: int | None, expected: int) -> None:
    assert run_exit_code(interrupted=interrupted, deferred=deferred, halt_exit=halt_exit) == expected


def test_exit_codes_are_the_documented_ones() -> None:
    assert (EXIT_OK, EXIT_DEFERRED, EXIT_SETUP, EXIT_INTERRUPTED) == (0, 3, 4, 130)


# ---------------------------------------------------------------- the README's table

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_cases() -> list[str]:
    """The `case` column of "What can go wrong, and what happens"."""
    section = README.read_text(encoding="utf-8").split("What can go wrong, and what happens:", 1)[1]
    return re.findall(r"^\| (.+?) \| .+ \|$", section.split("\n\n", 2)[1], flags=re.MULTILINE)


def _agent_exits_non_zero() -> None:
    decision = decide(failed(returncode=1, last_line="error: it broke"), POLICY)
    assert isinstance(decision, Defer) and decision.category == "agent_failed"
    assert decision.last_error == "error: it broke" and decision.log == LOG  # last output line and log path
    assert not decision.retryable and decision.halt is None  # the others go on


def _timeout_or_no_output() -> None:
    for outcome in ("timeout", "idle_timeout"):
        first = decide(failed(exit_outcome=outcome, returncode=None), POLICY)
        assert isinstance(first, Defer) and first.category == "timeout"
        assert first.retryable and first.not_before == BACKOFF_0  # retried by a later run after a backoff
        last = decide(failed(exit_outcome=outcome, returncode=None, attempts_before=POLICY.max_attempts - 1), POLICY)
        assert isinstance(last, Defer) and not last.retryable  # up to max_attempts


def _conflict_with_what_landed_meanwhile() -> None:
    verdict = LandingVerdict("conflict", ("calc/add.py",))
    rerun = decide_landing(verdict, rerun_left=True, attempts_before=0, now=NOW, retry_backoff_s=60)
    assert isinstance(rerun, Requeue)  # rerun on the new tip
    then = decide_landing(verdict, rerun_left=False, attempts_before=0, now=NOW, retry_backoff_s=60)
    assert isinstance(then, Defer) and then.category == "conflict" and "calc/add.py" in then.message
    assert then.retryable and then.not_before == BACKOFF_0  # retried later


def _no_changes() -> None:
    decision = decide_landing(LandingVerdict("no_changes"), rerun_left=True, attempts_before=0, now=NOW,
                              retry_backoff_s=60)
    assert isinstance(decision, Defer) and decision.category == "no_changes" and "allow_empty" in decision.message


def _changes_outside_files() -> None:
    decision = decide_landing(LandingVerdict("scope_violation", ("setup.py",)), rerun_left=True, attempts_before=0,
                              now=NOW, retry_backoff_s=60)
    assert isinstance(decision, Defer) and decision.category == "scope_violation" and "setup.py" in decision.message


def _setup_error() -> None:
    for done in (failed(error_kind="auth", result_message="Not logged in"),
                 failed(exit_outcome="failed_to_start", error_kind="setup"),
                 finished(crashed="no `command`", crashed_on_setup=True, tip=None)):
        decision = decide(done, POLICY)
        assert isinstance(decision, Requeue) and decision.category == "setup"  # UNPROCESSED, not an attempt
        assert decision.halt is not None and decision.halt.exit_code == EXIT_SETUP == 4


def _planted_hook_or_config() -> None:
    alone = decide(finished(tampered=(".git/hooks/pre-commit",)), POLICY)
    assert isinstance(alone, Defer) and alone.category == "scope_violation" and ".git/hooks/pre-commit" in alone.message
    beside_others = decide(finished(suspected=(".git/hooks/pre-commit",)), POLICY)
    assert isinstance(beside_others, Requeue) and beside_others.category == "run_alone" and beside_others.alone


README_ROWS = {
    "the agent exits non-zero": _agent_exits_non_zero,
    "timeout / no output for too long": _timeout_or_no_output,
    "conflict with what landed meanwhile": _conflict_with_what_landed_meanwhile,
    "no changes": _no_changes,
    "changes outside `files`": _changes_outside_files,
    "a setup error: no credentials, the CLI missing, a bad flag or model": _setup_error,
    "the agent plants a hook or config in `.git` or your git config (unsandboxed)": _planted_hook_or_config,
}


@pytest.mark.parametrize("row", list(README_ROWS), ids=list(README_ROWS))
def test_readme_what_can_go_wrong(row: str) -> None:
    assert row in readme_cases(), "the README's table no longer has this row"
    README_ROWS[row]()
