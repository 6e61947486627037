"""Checks before landing: the ticket's verification scripts, its sub-tasks' validation
scripts and the project's `[checks] commands`, run in the ticket's worktree.

Where checks come from, in this order:

1. `validation_config.verification_scripts[i]`: `command`, and optionally
   `success_pattern`, a Python regular expression that must match the check's output
   (`re.search`, `^`/`$` match at line ends);
2. `tasks[i].validation_script` of each sub-task (an empty one is skipped);
3. `[checks] commands` in `.sage/config.toml`, for every ticket.

A check passes when it exits 0 and, when it has a `success_pattern`, its output (stdout
and stderr together) matches it.

A command is a string someone wrote. It is split into arguments with `shlex` (quotes group
words, a backslash escapes) and that argument list is run directly - never by a shell. So
pipes, `&&`, `;`, redirections, `$VARIABLES` and `*` globs are not interpreted: `echo ok;
rm -rf x` prints `ok; rm -rf x`. A command that needs the shell goes in a script file in
the repository, and the check runs the script (`sh scripts/check.sh`). A stand-alone
operator such as `|` or `&&` is refused with a message saying so, rather than handed to
the program as an argument. A relative program path (`./check.sh`) starts at the worktree.

Each check runs like an agent (`process.supervise.run_agent`: its own process group,
the wall-clock timeout, the whole tree stopped at the end), logs to
`<log_dir>/<stem>.check-<n>.log` (appended per fix turn, each run under a header line),
and gets the agents' allow-listed environment. Checks of one ticket run in parallel, at
most `max_parallel` at once.
"""

from __future__ import annotations

import re
import shlex
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sage_stream.errors import SageError
from sage_stream.paths import REPO_RELATIVE
from sage_stream.process.supervise import CANCELLED, EXITED, FAILED_TO_START, AgentLaunch, run_agent
from sage_stream.tickets.models import Ticket

MAX_PARALLEL = 4
OUTPUT_TAIL_BYTES = 4096  # of a failing check's output, shown to the agent and recorded
PATTERN_SCAN_BYTES = 4 * 1024 * 1024  # success_pattern is searched in at most this much output
GRACE_S = 5.0
LOG_HEADER = "[sage-stream]"
SHELL_OPERATORS = frozenset({"|", "||", "&&", "&", ";;", ">", ">>", "<", "<<", "<<<", "2>", "2>>", "&>",
                             "&>>", "2>&1", ">&", "|&"})

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


class CheckDefinitionError(SageError):
    """A check that cannot be run as written (the message names where it was written)."""


@dataclass(frozen=True)
class Check:
    name: str
    source: str  # where it was written: "validation_config.verification_scripts[0].command"
    command: str  # as written
    argv: tuple[str, ...]
    success_pattern: str | None = None


@dataclass(frozen=True)
class CheckResult:
    check: Check
    passed: bool
    reason: str  # "passed", "exit code 1", "timed out after 600 s", ...
    outcome: str  # process.supervise ExitOutcome: exited | timeout | cancelled | failed_to_start
    returncode: int | None
    duration_s: float
    output_tail: str  # the end of this run's output (at most OUTPUT_TAIL_BYTES)
    log_path: Path


@dataclass(frozen=True)
class Verification:
    results: tuple[CheckResult, ...]
    cancelled: bool = False

    @property
    def passed(self) -> bool:
        return not self.cancelled and all(result.passed for result in self.results)

    @property
    def failed(self) -> list[CheckResult]:
        return [result for result in self.results if not result.passed]

    def failure_report(self) -> str:
        """Each failing check: what ran, why it failed, the end of its output (markdown)."""
        parts = []
        for result in self.failed:
            fence = _fence_for(result.output_tail)
            parts.append(
                f"### {result.check.name}: {result.reason}\n\n"
                f"Command: `{result.check.command}` (from {result.check.source})\n\n"
                f"{fence}\n{result.output_tail.rstrip() or '(no output)'}\n{fence}"
            )
        return "\n\n".join(parts)

    def failure_tail(self) -> str:
        """The failing checks' output tails, one after another, for `defer_reason.last_error`."""
        return "\n".join(f"[{r.check.name}: {r.reason}]\n{r.output_tail.rstrip()}" for r in self.failed)


# ---------------------------------------------------------------- where checks come from


def parse_check(*, name: str, source: str, command: str, success_pattern: str | None = None,
                where: str) -> Check:
    """One check; CheckDefinitionError naming `where` (ticket or file) and `source` (the key)."""
    if not isinstance(command, str) or not command.strip():
        raise CheckDefinitionError(f"{where}: {source} is empty: give the command to run")
    try:
        argv = shlex.split(command)
    except ValueError as error:
        raise CheckDefinitionError(f"{where}: {source} {command!r} cannot be split into arguments: {error}") from None
    operators = [arg for arg in argv if arg in SHELL_OPERATORS]
    if operators:
        raise CheckDefinitionError(
            f"{where}: {source} {command!r} uses shell syntax ({' '.join(operators)}), but checks never run"
            " through a shell: put the commands in a script file in the repository and run that"
            " (e.g. `sh scripts/check.sh`)")
    if success_pattern is not None:
        try:
            re.compile(success_pattern, re.MULTILINE)
        except re.error as error:
            raise CheckDefinitionError(
                f"{where}: {source.rsplit('.', 1)[0]}.success_pattern {success_pattern!r} is not a valid regular"
                f" expression: {error}") from None
    return Check(name=name, source=source, command=command, argv=tuple(argv), success_pattern=success_pattern)


def ticket_checks(ticket: Ticket) -> list[Check]:
    """The checks a ticket asks for itself: verification scripts, then sub-task scripts."""
    where = f"ticket {ticket.id}"
    checks: list[Check] = []
    config = ticket.validation_config
    for index, script in enumerate(config.verification_scripts if config else []):
        source = f"validation_config.verification_scripts[{index}].command"
        checks.append(parse_check(name=script.name or f"verification script {index + 1}", source=source,
                                  command=script.command, success_pattern=script.success_pattern or None,
                                  where=where))
    for index, task in enumerate(ticket.tasks):
        if not (task.validation_script or "").strip():
            continue
        checks.append(parse_check(name=f"sub-task {task.id or index + 1}",
                                  source=f"tasks[{index}].validation_script",
                                  command=task.validation_script or "", where=where))
    return checks


def project_checks(commands: Sequence[str], *, config_path: str = str(REPO_RELATIVE.config)) -> list[Check]:
    """`[checks] commands` of the config, for every ticket."""
    return [parse_check(name=f"check {index + 1}", source=f"[checks] commands[{index}]", command=command,
                        where=config_path) for index, command in enumerate(commands)]


def fix_turns_allowed(ticket: Ticket, default: int) -> int:
    """How many fix turns the agent gets when the checks fail: the ticket's
    `validation_config.max_retries`, else `default`; none when it says `auto_fix: false`."""
    config = ticket.validation_config
    if config is not None and config.auto_fix is False:
        return 0
    if config is not None and config.max_retries is not None and config.max_retries >= 0:
        return config.max_retries
    return default


# ---------------------------------------------------------------- running them


def run_checks(
    checks: Sequence[Check],
    *,
    worktree: Path,
    env: Mapping[str, str],
    log_dir: Path,
    stem: str,
    timeout_s: float | None,
    cancel: threading.Event,
    max_parallel: int = MAX_PARALLEL,
    label: str = "",
    sandbox: tuple[str, ...] = (),
) -> Verification:
    """Run every check in `worktree`, in parallel; never raises for a check that misbehaves."""
    if not checks:
        return Verification(results=())
    logs = [Path(log_dir) / f"{stem}.check-{number}.log" for number in range(1, len(checks) + 1)]
    workers = max(1, min(len(checks), max_parallel, MAX_PARALLEL))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="check") as pool:
        futures = [pool.submit(run_check, check, worktree=worktree, env=env, log_path=log, timeout_s=timeout_s,
                               cancel=cancel, label=label, sandbox=sandbox) for check, log in zip(checks, logs)]
        results = tuple(future.result() for future in futures)
    return Verification(results=results, cancelled=cancel.is_set())


def run_check(check: Check, *, worktree: Path, env: Mapping[str, str], log_path: Path, timeout_s: float | None,
              cancel: threading.Event, label: str = "", sandbox: tuple[str, ...] = ()) -> CheckResult:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        heading = f"{LOG_HEADER} {check.name}{f' ({label})' if label else ''}: {shlex.join(check.argv)}\n"
        log.write(heading.encode("utf-8", errors="replace"))
        start = log.tell()
    launch = AgentLaunch(argv=list(check.argv), cwd=Path(worktree), env=dict(env), log_path=log_path,
                         timeout_s=timeout_s, idle_timeout_s=None, grace_s=GRACE_S, sandbox=sandbox)
    exit = run_agent(launch, cancel=cancel)
    output = _read_from(log_path, start, PATTERN_SCAN_BYTES)
    passed, reason = _judge(check, exit.outcome, exit.returncode, exit.error, output)
    return CheckResult(check=check, passed=passed, reason=reason, outcome=exit.outcome, returncode=exit.returncode,
                       duration_s=exit.duration_s, output_tail=_tail(output), log_path=log_path)


def _judge(check: Check, outcome: str, returncode: int | None, error: str | None, output: str) -> tuple[bool, str]:
    if outcome == CANCELLED:
        return False, "cancelled"
    if outcome == FAILED_TO_START:
        return False, error or "could not start"
    if outcome != EXITED:
        return False, error or outcome
    if returncode != 0:
        from sage_stream.agents.base import describe_returncode

        return False, describe_returncode(returncode)
    if check.success_pattern is not None and not re.search(check.success_pattern, output, re.MULTILINE):
        return False, f"exit code 0, but the output does not match success_pattern {check.success_pattern!r}"
    return True, "passed"


def _read_from(path: Path, offset: int, limit: int) -> str:
    try:
        with open(path, "rb") as log:
            log.seek(0, 2)
            size = log.tell()
            log.seek(max(offset, size - limit))
            data = log.read()
    except OSError:
        return ""
    return data.decode("utf-8", errors="replace")


def _tail(output: str) -> str:
    data = _ANSI.sub("", output).encode("utf-8", errors="replace")
    if len(data) <= OUTPUT_TAIL_BYTES:
        return data.decode("utf-8", errors="replace")
    cut = data[-OUTPUT_TAIL_BYTES:]
    newline = cut.find(b"\n")
    if 0 <= newline < 200:  # start at a line when one begins soon
        cut = cut[newline + 1:]
    return "...\n" + cut.decode("utf-8", errors="replace")


def _fence_for(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


# ---------------------------------------------------------------- the fix turn's prompt


def fix_prompt(ticket: Ticket, verification: Verification, *, fix_turn: int, max_fix_turns: int,
               original_prompt: str | None) -> str:
    """The prompt of a fix turn. With `original_prompt` (an agent that cannot continue its
    session), the ticket's prompt comes first, so the agent knows what it was doing."""
    failed = verification.failed
    names = ", ".join(result.check.name for result in failed)
    body = (
        f"## The checks failed ({fix_turn} of {max_fix_turns} fix turns)\n\n"
        f"Your changes for ticket {ticket.id} were checked in this worktree before landing, and "
        f"{len(failed)} of {len(verification.results)} checks failed: {names}. "
        "Nothing lands until every check passes.\n\n"
        f"{verification.failure_report()}\n\n"
        "Fix it: the checks must pass. Change the code (not the checks), keep the work within the "
        "ticket, then end with the SAGE-RESULT block as before."
    )
    if original_prompt:
        return original_prompt.rstrip() + "\n\n" + body + "\n"
    return f"# {ticket.id}: fix the failing checks\n\n" + body + "\n"
