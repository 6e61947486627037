"""What every agent provides (the `Agent` protocol) and the helpers agents share.

An agent is one file in this package, like a language in pre-commit: it turns a job
into the argv and environment of one process (`invocation`), and that process's exit,
output log and result file into an `AgentResult` (`parse_result`). An agent whose CLI can
continue a conversation says so (`supports_sessions`); it then resumes `job.session_id`
when one is given and reports the session it used in `AgentResult.session_id`, so that a
chain of dependent tickets can keep one agent's context. It names the paths its CLI keeps
state in (`state`: `~/.claude`, OpenCode's XDG directories...), which a sandboxed agent may
write (process/sandbox.py, engine/attempt_sandbox.py).

Starting, watching and stopping the process is not an agent's business: the engine does
that with `process.supervise.run_agent`, which never uses a shell.

Shared here: the `[agent] env` names, the standard environment, the `SAGE-RESULT` block the
prompt asks for, the optional JSON result file, and the result of a plain process (exit 0 =
success). What only the CLI agents share is in agents/cli_support.py.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sage_stream.agents import environment
from sage_stream.errors import SageError
from sage_stream.process.supervise import EXITED, FAILED_TO_START, IDLE_TIMEOUT, TIMEOUT, AgentExit
from sage_stream.text import describe_exit, parse_timestamp
from sage_stream.tickets.models import Ticket

ERROR_KINDS = ("rate_limit", "quota", "auth", "setup", "timeout", "api", "other")
# about the setup, not the ticket: credentials (`auth`), the CLI missing or refusing its command
# line (`setup`: a bad flag, an unknown model); `sage stream` halts at the first one
SETUP_ERROR_KINDS = ("auth", "setup")
RESULT_FILE_LIMIT = 1_000_000
LOG_TAIL_BYTES = 64_000
RESULT_BLOCK_TAG = "SAGE-RESULT"


@dataclass
class AgentJob:
    ticket: Ticket
    worktree: Path
    prompt_file: Path
    result_file: Path
    log_path: Path
    run_id: str
    session_id: str | None = None  # a session to continue, for agents that support sessions


@dataclass
class Invocation:
    argv: list[str]
    env: dict[str, str]  # the complete environment of the process


@dataclass
class AgentResult:
    success: bool
    summary: str | None = None
    session_id: str | None = None
    cost_usd: float | None = None
    tokens: int | None = None
    turns: int | None = None
    error_kind: str | None = None  # one of ERROR_KINDS when success is False
    retryable: bool = False  # worth running again later (rate limit, transient API error)
    message: str | None = None  # what went wrong, or notes about the result
    reset_at: str | None = None  # ISO-8601: when a rate limit or quota resets, if the agent said
    fix: str | None = None  # for a setup error (SETUP_ERROR_KINDS): what the user should do about it
    # The CLI could not get going for a moment's local reason (another of its processes held
    # its database) and did nothing: start it again at once rather than defer the ticket.
    start_again: bool = False


@dataclass(frozen=True)
class AgentState:
    """Where an agent's CLI keeps state of its own: a sandboxed agent may write these
    (process/sandbox.py). `files` are single files in HOME that the CLI saves by writing a
    temporary file beside them and renaming it; they get a private copy of HOME's directory
    level, copied back after each turn."""

    dirs: tuple[Path, ...] = ()
    files: tuple[Path, ...] = ()


class Agent(Protocol):
    name: str

    def invocation(self, job: AgentJob) -> Invocation:
        """The process to run in `job.worktree`; SageError when the job cannot be run."""
        ...

    def parse_result(self, job: AgentJob, exit: AgentExit) -> AgentResult:
        """The outcome, from the exit and whatever the agent wrote (log, result file)."""
        ...

    def supports_sessions(self) -> bool: ...

    def state(self, env: Mapping[str, str]) -> AgentState:
        """The CLI's own state paths, for a process with environment `env` (HOME, XDG_*...)."""
        ...


def agent_state(agent: Agent, env: Mapping[str, str]) -> AgentState:
    """`agent.state(env)`; nothing for an agent that declares no state (a plain program)."""
    state = getattr(agent, "state", None)
    return state(env) if state is not None else AgentState()


def env_passthrough(config: Mapping[str, Any]) -> list[str]:
    """The names `[agent] env` lists (checked later by environment.check_passthrough)."""
    names = config.get("env") or []
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise SageError(f"[agent] env must be a list of environment variable names, found {names!r}")
    return names


def standard_environment(job: AgentJob, passthrough: Sequence[str] = ()) -> dict[str, str]:
    """Our allow-listed environment plus the job's SAGE_* variables (see agents/environment.py)."""
    return environment.agent_environment(
        os.environ,
        passthrough=passthrough,
        sage={
            environment.SAGE_TICKET_ID: job.ticket.id,
            environment.SAGE_RUN_ID: job.run_id,
            environment.SAGE_WORKTREE: str(Path(job.worktree).absolute()),
            environment.SAGE_PROMPT_FILE: str(Path(job.prompt_file).absolute()),
            environment.SAGE_RESULT_FILE: str(Path(job.result_file).absolute()),
        },
    )


@dataclass(frozen=True)
class ResultBlock:
    """The fenced `SAGE-RESULT` block the prompt asks an agent to end with."""

    status: str | None  # "done" | "blocked" | None when missing or not one of them
    summary: str | None


_BLOCK = re.compile(r"^[ \t]*```+[ \t]*" + RESULT_BLOCK_TAG + r"[^\n]*\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)
_PLACEHOLDER = re.compile(r"^<.*>$")


def find_result_block(text: str) -> ResultBlock | None:
    """The last SAGE-RESULT block in `text`; a copy of the prompt's template counts as none."""
    blocks = _BLOCK.findall(text)
    if not blocks:
        return None
    fields: dict[str, str] = {}
    for line in blocks[-1].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip().lower()] = value.strip()
    status = fields.get("status", "").lower()
    summary = fields.get("summary") or None
    if summary is not None and _PLACEHOLDER.match(summary):
        summary = None
    return ResultBlock(status if status in ("done", "blocked") else None, summary)


def read_log_tail(path: Path, limit: int = LOG_TAIL_BYTES) -> str:
    """The end of a log as text ('' when missing); enough to find a final result block."""
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            size = log.tell()
            log.seek(max(0, size - limit))
            return log.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


@dataclass(frozen=True)
class ResultFile:
    """What a process wrote to SAGE_RESULT_FILE, or a note on why it was ignored.

    Keys (all optional): `success` (bool), `summary` (string), `cost_usd` (number >= 0),
    `error_kind` (one of ERROR_KINDS), `retryable` (bool),
    `reset_at` (ISO-8601 time the rate limit or quota resets).
    """

    success: bool | None = None
    summary: str | None = None
    note: str | None = None
    cost_usd: float | None = None
    error_kind: str | None = None
    retryable: bool | None = None
    reset_at: str | None = None


def read_result_file(job: AgentJob, exit: AgentExit) -> ResultFile:
    """The job's result file, if this run wrote one; never raises on bad content."""
    path = Path(job.result_file)
    try:
        stat = path.stat()
        data = path.read_bytes()[:RESULT_FILE_LIMIT]
    except FileNotFoundError:
        return ResultFile()
    except OSError as error:
        return ResultFile(note=f"result file {path} ignored: {error.strerror or error}")
    started = time.time() - exit.duration_s
    if stat.st_mtime < started - 2:  # left over from an earlier attempt
        return ResultFile(note=f"result file {path} ignored: written before this run started")
    try:
        value: Any = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return ResultFile(note=f"result file {path} ignored: not valid JSON")
    if not isinstance(value, dict):
        return ResultFile(note=f"result file {path} ignored: expected a JSON object")
    return _result_file_fields(path, value)


def _result_file_fields(path: Path, value: Mapping[str, Any]) -> ResultFile:
    notes = []
    success = value.get("success")
    if success is not None and not isinstance(success, bool):
        notes.append(f"`success` ignored: expected true or false, found {success!r}")
        success = None
    summary = value.get("summary")
    if summary is not None and not isinstance(summary, str):
        notes.append("`summary` ignored: expected a string")
        summary = None
    cost = value.get("cost_usd")
    if cost is not None and (isinstance(cost, bool) or not isinstance(cost, (int, float))
                             or not math.isfinite(cost) or cost < 0):
        notes.append(f"`cost_usd` ignored: expected a number >= 0, found {cost!r}")
        cost = None
    error_kind = _optional_text(value, "error_kind", notes)
    if error_kind is not None and error_kind not in ERROR_KINDS:
        notes.append(f"`error_kind` ignored: expected one of {', '.join(ERROR_KINDS)}, found {error_kind!r}")
        error_kind = None
    retryable = value.get("retryable")
    if retryable is not None and not isinstance(retryable, bool):
        notes.append(f"`retryable` ignored: expected true or false, found {retryable!r}")
        retryable = None
    reset_at = _optional_text(value, "reset_at", notes)
    if reset_at is not None:
        try:
            parse_timestamp(reset_at)
        except ValueError as error:
            notes.append(f"`reset_at` ignored: {error}")
            reset_at = None
    note = f"result file {path}: " + "; ".join(notes) if notes else None
    return ResultFile(success=success, summary=(summary or "").strip() or None, note=note,
                      cost_usd=float(cost) if cost is not None else None,
                      error_kind=error_kind, retryable=retryable, reset_at=reset_at)


def _optional_text(value: Mapping[str, Any], key: str, notes: list[str]) -> str | None:
    text = value.get(key)
    if text is None:
        return None
    if not isinstance(text, str) or not text.strip():
        notes.append(f"`{key}` ignored: expected a non-empty string")
        return None
    return text.strip()


def stopped_result(exit: AgentExit, *, session_id: str | None = None, cost_usd: float | None = None) -> AgentResult:
    """The result of a run that did not exit by itself (timeout, cancel, failed to start),
    with the session it used and what it cost so far when the agent knows them."""
    kind = "timeout" if exit.outcome in (TIMEOUT, IDLE_TIMEOUT) else "setup" if exit.outcome == FAILED_TO_START \
        else "other"
    return AgentResult(
        success=False,
        summary=exit.last_line or None,
        session_id=session_id,
        cost_usd=cost_usd,
        error_kind=kind,
        message=exit.error or exit.outcome,
    )


def reported_problems(written: ResultFile, block: ResultBlock | None) -> list[str]:
    """Why the agent itself says it did not succeed: its result file or its SAGE-RESULT block."""
    problems = []
    if written.success is False:
        problems.append("the result file says it failed")
    if block is not None and block.status == "blocked":
        problems.append("the agent reported it is blocked")
    return problems


def join_notes(notes: Sequence[str | None]) -> str | None:
    """Notes as one message ("a; b"); None when there are none."""
    return "; ".join(note for note in notes if note) or None


def process_result(job: AgentJob, exit: AgentExit) -> AgentResult:
    """A plain process: success = it exited 0, unless its result file or block says otherwise.

    The summary is, in order: the result file's `summary`, the last SAGE-RESULT block's
    summary, the last line of output. The result file may also give `cost_usd`, and for a
    failure `error_kind`, `retryable` and `reset_at` (a wrapper around a model API can say
    it was rate limited: the engine then pauses dispatch instead of deferring the ticket).
    """
    if exit.outcome != EXITED:
        return stopped_result(exit)
    written = read_result_file(job, exit)
    block = find_result_block(read_log_tail(job.log_path))
    summary = written.summary or (block.summary if block else None) or exit.last_line or None
    problems = []
    if exit.returncode != 0:
        ending = f": {exit.last_line}" if exit.last_line else ""
        problems.append(describe_returncode(exit.returncode) + ending)
    problems += reported_problems(written, block)
    failed = bool(problems)
    kind = (written.error_kind or "other") if failed else None
    retryable = written.retryable if written.retryable is not None else kind in ("rate_limit", "quota", "api")
    return AgentResult(
        success=not failed,
        summary=summary,
        cost_usd=written.cost_usd,
        error_kind=kind,
        retryable=failed and retryable,
        message=join_notes([*problems, written.note]),
        reset_at=written.reset_at if failed else None,
    )


def describe_returncode(returncode: int | None) -> str:
    return describe_exit(returncode)
