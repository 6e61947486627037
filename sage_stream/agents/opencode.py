"""The `opencode` agent: OpenCode, headless (`opencode run --format json`).

The command, run in the ticket's worktree with stdin from /dev/null:

    opencode run --format json [-m PROVIDER/MODEL] (--title=ID: TITLE | --session SES_ID) [EXTRA_ARGS...] -- MESSAGE

with `OPENCODE_CONFIG_CONTENT` in its environment: your OpenCode configuration (when you pass
`OPENCODE_CONFIG_CONTENT` through `[agent] env`) with sage-stream's permissions laid over it.

- Permissions: OpenCode answers "ask" with a refusal under `opencode run` (nobody is there),
  so what the agent may do is decided by the configuration. sage-stream sets, on top of
  yours (which otherwise stays as written, providers and models included):
      permission.edit = "allow"                 edits (inside the worktree)
      permission.external_directory = "deny"    nothing outside the worktree (but the run's
                                                directory, holding the whole prompt, when the
                                                prompt had to be shortened)
      permission.bash = {"*": "allow", "git push*": "deny"}   only when you set no bash rule
  A `permission` given as one string ("allow") becomes `{"*": that string}` first. OpenCode
  gives `OPENCODE_CONFIG_CONTENT` precedence over the global and the project configuration,
  so the worktree's own opencode.json cannot loosen these.
- The prompt is one argument after `--`; a prompt over 128 KiB (Linux's limit for one
  argument) keeps its beginning and its end and names the file holding all of it.
- `--title` names a new session after the ticket, which also spares a model call
  (OpenCode otherwise asks the model for a title first).
- Sessions: OpenCode chooses the id (`ses_...`, in every event); `--session ID` continues
  it. A session belongs to the directory it started in: checked with OpenCode 1.18.33,
  `--session` from another directory runs the tools in the session's first directory and
  `opencode run` never exits. So a session is continued only when OpenCode's database
  (`~/.local/share/opencode/opencode.db`, read-only) says it ran in this same worktree;
  otherwise the ticket starts a new session and the log says why.

Configuration (`[agent]` in `.sage/config.toml`):

    preset = "opencode"
    model = "anthropic/claude-sonnet-4-5"   # -> -m, as PROVIDER/MODEL
    extra_args = [...]                       # after ours, before the message
    env = ["OPENCODE_CONFIG_CONTENT", "ANTHROPIC_API_KEY"]   # names to pass through
    timeout_minutes = 30

The environment is the standard allow list (with `HOME`: OpenCode keeps its credentials,
`opencode auth login`, and its sessions under it) plus the names in `env`. For another
endpoint, declare a provider in the configuration you pass, e.g.
`OPENCODE_CONFIG_CONTENT='{"provider": {"mine": {"npm": "@ai-sdk/openai-compatible",
"options": {"baseURL": "http://127.0.0.1:8000/v1", "apiKey": "..."}, "models": {"m": {}}}},
"model": "mine/m"}'` and `OPENCODE_DISABLE_MODELS_FETCH=1`, both listed in `env`.

The result: JSON events, one per line (`step_start`, `tool_use`, `text`, `step_finish`,
`error`), found among the other lines of the log. There is no final event: the summary is
the SAGE-RESULT block of the last `text` (else that text), the cost the sum of the
`step_finish` costs (`part.cost`, USD), the tokens the sum of their `part.tokens`, the
turns the number of steps. An `error` event (`error.name`, `error.data.message`,
`statusCode`, `isRetryable`, `responseHeaders`) is the failure; OpenCode then exits 1.
A 429 is `rate_limit` (its `retry-after` is the reset time), quota and billing messages
`quota`, 401/403 and `ProviderAuthError` `auth`, 5xx / retryable `api`.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from sage_stream.agents import cli_support
from sage_stream.agents.base import (
    AgentJob,
    AgentResult,
    AgentState,
    Invocation,
    find_result_block,
    join_notes,
    read_log_tail,
    read_result_file,
    standard_environment,
    stopped_result,
)
from sage_stream.agents.cli_support import RATE_LIMIT_WORDS, SERVER_ERRORS, CliAgent, ErrorRule, words
from sage_stream.agents.environment import agent_environment
from sage_stream.errors import SageError
from sage_stream.process.supervise import EXITED, AgentExit
from sage_stream.text import one_line

EXECUTABLE = "opencode"
ARGUMENT_LIMIT_BYTES = cli_support.ARGUMENT_LIMIT_BYTES  # the longest prompt argument
CONFIG_VARIABLE = "OPENCODE_CONFIG_CONTENT"
SAGE_PERMISSIONS = {"edit": "allow", "external_directory": "deny"}
DEFAULT_BASH = {"*": "allow", "git push*": "deny"}
MODEL_FLAGS = ("-m", "--model")
MANAGED_FLAGS = ("--format", "-s", "--session", "-c", "--continue", "--fork", "--attach", "-i", "--interactive")
TITLE_CHARS = 100
DATABASE_TIMEOUT_S = 2.0
_SESSION_ID = re.compile(r"^ses_[A-Za-z0-9]{6,64}$")


def make_agent(config: Mapping[str, Any]) -> OpenCodeAgent:
    reserved = [(MANAGED_FLAGS, "the JSON output and the session")]
    settings = cli_support.read_cli_config(config, cli="opencode", model_flags=MODEL_FLAGS, reserved=reserved)
    if settings.model and "/" not in settings.model:
        raise SageError(f"[agent] model {settings.model!r}: opencode wants PROVIDER/MODEL, "
                        'e.g. "anthropic/claude-sonnet-4-5"')
    agent = OpenCodeAgent.configured(settings)
    agent.user_config(os.environ)  # a broken OPENCODE_CONFIG_CONTENT stops the run before any ticket starts
    return agent


def cli_version(executable: str | None = None) -> str | None:
    """What `opencode --version` prints (e.g. "1.18.33"); None when it does not run."""
    return cli_support.version_line(executable or EXECUTABLE, last=True)


class OpenCodeAgent(CliAgent):
    name = "opencode"
    executable = EXECUTABLE

    def state(self, env: Mapping[str, str]) -> AgentState:
        """Its XDG directories: data (the session database), config, cache (plugins), state."""
        home = cli_support.home_of(env)
        return AgentState(dirs=tuple(Path(env.get(variable) or home / default) / "opencode" for variable, default in (
            ("XDG_DATA_HOME", ".local/share"), ("XDG_CONFIG_HOME", ".config"), ("XDG_CACHE_HOME", ".cache"),
            ("XDG_STATE_HOME", ".local/state"))))

    def user_config(self, source: Mapping[str, str]) -> dict[str, Any]:
        """The user's OpenCode configuration passed through `[agent] env`, or {}."""
        text = agent_environment(source, passthrough=self.passthrough, sage={}).get(CONFIG_VARIABLE)
        if not text:
            return {}
        try:
            value = json.loads(text)
        except ValueError as error:
            raise SageError(f"{CONFIG_VARIABLE} (passed to opencode by [agent] env) is not valid JSON: "
                            f"{error}") from None
        if not isinstance(value, dict):
            raise SageError(f"{CONFIG_VARIABLE} (passed to opencode by [agent] env) must be a JSON object")
        return value

    def invocation(self, job: AgentJob) -> Invocation:
        env = standard_environment(job, self.passthrough)
        message, shortened = cli_support.prompt_argument(job)
        # OpenCode matches external_directory rules against "<directory>/*", not a file's path
        readable = [f"{Path(job.prompt_file).absolute().parent}/*"] if shortened else []
        env[CONFIG_VARIABLE] = json.dumps(with_sage_permissions(self.user_config(env), readable=readable))
        argv = [self.executable, "run", "--format", "json"]
        if self.model:
            argv += ["-m", self.model]
        session = continuable_session(job, env)
        if session:
            argv += ["--session", session]
        else:
            argv.append(f"--title={_title(job)}")
        argv += [*self.extra_args, "--", message]
        return Invocation(argv=argv, env=env)

    def parse_result(self, job: AgentJob, exit: AgentExit) -> AgentResult:
        events = read_events(Path(job.log_path))
        if exit.outcome != EXITED:
            return stopped_result(exit, session_id=run_session(job, events), cost_usd=events.cost_usd)
        return result_from_events(job, exit, events)


# ---------------------------------------------------------------- the command


def with_sage_permissions(config: Mapping[str, Any], *, readable: Sequence[str] = ()) -> dict[str, Any]:
    """`config` with the permissions sage-stream needs laid over it (see the module docstring);
    `readable`: external_directory patterns to allow, e.g. "/path/to/dir/*"."""
    merged = dict(config)
    permission = merged.get("permission")
    if isinstance(permission, str):
        permission = {"*": permission}
    permission = dict(permission) if isinstance(permission, dict) else {}
    permission.update(SAGE_PERMISSIONS)
    if readable:  # "the last matching rule wins": the prompt file after the catch-all
        permission["external_directory"] = {"*": "deny", **{path: "allow" for path in readable}}
    permission.setdefault("bash", dict(DEFAULT_BASH))
    merged["permission"] = permission
    return merged


def _title(job: AgentJob) -> str:
    return one_line(f"{job.ticket.id}: {job.ticket.title}", TITLE_CHARS)


def opencode_database(env: Mapping[str, str]) -> Path:
    data_home = env.get("XDG_DATA_HOME") or str(cli_support.home_of(env) / ".local" / "share")
    return Path(data_home) / "opencode" / "opencode.db"


def session_directory(session: str, env: Mapping[str, str]) -> str | None:
    """The directory OpenCode ran `session` in, from its database; None when unknown."""
    path = opencode_database(env)
    if not path.is_file():
        return None
    try:
        connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=DATABASE_TIMEOUT_S)
        try:
            row = connection.execute("SELECT directory FROM session WHERE id = ?", (session,)).fetchone()
        finally:
            connection.close()
    except sqlite3.Error:
        return None
    return str(row[0]) if row and row[0] else None


def continuable_session(job: AgentJob, env: Mapping[str, str]) -> str | None:
    """`job.session_id` when OpenCode can continue it here, else None (and the log says why)."""
    if not job.session_id:
        return None
    session = cli_support.checked_session(job, _SESSION_ID, "an OpenCode session id (ses_...)")
    directory = session_directory(session, env)
    here = os.path.realpath(Path(job.worktree).absolute())
    if directory is not None and os.path.realpath(directory) == here:
        return session
    where = f"ran in {directory}" if directory else "is not in OpenCode's database"
    cli_support.note_in_log(job, f"{_NOT_CONTINUING} {session}: it {where}, not in this worktree "
                                 "(OpenCode runs a session only in its own directory); starting a new session")
    return None


_NOT_CONTINUING = "opencode: not continuing session"


# ---------------------------------------------------------------- the events


@dataclass
class OpenCodeEvents:
    """What the JSON events of one run said."""

    count: int = 0
    session_id: str | None = None
    last_text: str | None = None
    cost_usd: float | None = None  # sum of step_finish costs
    tokens: int | None = None  # sum of step_finish tokens
    steps: int = 0
    error: dict[str, Any] | None = None  # the last error event's `error`
    notes: tuple[str, ...] = ()  # our own notes in the log


def read_events(path: Path) -> OpenCodeEvents:
    events = OpenCodeEvents(notes=tuple(note for note in cli_support.log_notes(path) if note.startswith("opencode: ")))
    for event in cli_support.iter_json_events(path):
        events.count += 1
        _take_event(events, event)
    return events


def _take_event(events: OpenCodeEvents, event: Mapping[str, Any]) -> None:
    if isinstance(event.get("sessionID"), str):
        events.session_id = event["sessionID"]
    part = event.get("part") if isinstance(event.get("part"), dict) else {}
    kind = event["type"]
    if kind == "text" and isinstance(part.get("text"), str) and part["text"].strip():
        events.last_text = part["text"]
    elif kind == "step_finish":
        events.steps += 1
        if cli_support.is_number(part.get("cost")):
            events.cost_usd = (events.cost_usd or 0.0) + float(part["cost"])
        tokens = _tokens(part.get("tokens"))
        if tokens is not None:
            events.tokens = (events.tokens or 0) + tokens
    elif kind == "error":
        events.error = event.get("error") if isinstance(event.get("error"), dict) else {"name": "UnknownError"}


def run_session(job: AgentJob, events: OpenCodeEvents) -> str | None:
    """The session the run used: from its events, else the one it was asked to continue
    (unless it started a new one instead, see continuable_session)."""
    if events.session_id:
        return events.session_id
    refused = any(note.startswith(_NOT_CONTINUING) for note in events.notes)
    return None if refused or not job.session_id else str(job.session_id)


def _tokens(tokens: Any) -> int | None:
    if not isinstance(tokens, dict):
        return None
    cache = tokens.get("cache") if isinstance(tokens.get("cache"), dict) else {}
    return cli_support.int_sum([tokens.get("input"), tokens.get("output"), tokens.get("reasoning"),
                                cache.get("read"), cache.get("write")])


def result_from_events(job: AgentJob, exit: AgentExit, events: OpenCodeEvents) -> AgentResult:
    written = read_result_file(job, exit)
    block = find_result_block(events.last_text) if events.last_text else None
    common = {"summary": cli_support.summary_of(written, block, events.last_text),
              "session_id": run_session(job, events), "cost_usd": events.cost_usd, "tokens": events.tokens,
              "turns": events.steps or None}
    if events.error is not None:
        return _error_result(events.error, events.notes, common)
    if events.count == 0:
        return _no_events(job, exit, events, common)
    problems = []
    if exit.returncode != 0:
        problems.append(f"opencode exited with code {exit.returncode}: {exit.last_line}")
    if events.steps == 0:
        problems.append("opencode finished no step")
    return cli_support.finished_result(written, block, problems, notes=events.notes, **common)


def _no_events(job: AgentJob, exit: AgentExit, events: OpenCodeEvents, common: dict[str, Any]) -> AgentResult:
    """OpenCode stopped before its first event: bad flags, a missing session, its database."""
    said = exit.last_line or "nothing"
    kind, retryable = classify_error(said)
    message = f"opencode printed no JSON events (exit code {exit.returncode}): {said}"
    locked = bool(_DATABASE_TROUBLE.search(read_log_tail(Path(job.log_path))))
    if locked:
        # two OpenCode processes starting at once: both create its database on a fresh HOME,
        # and even on a used one SQLite's lock can turn one of them away ("database is locked")
        kind, retryable = "other", True
        message += (" - OpenCode could not open its database (~/.local/share/opencode/opencode.db), e.g. two "
                    "first starts at once on a fresh HOME: run `opencode session list` once before a parallel run")
    return AgentResult(success=False, error_kind=kind, retryable=retryable, start_again=locked,
                       message=join_notes([message, *events.notes]), **common)


def _error_result(error: Mapping[str, Any], notes: Sequence[str], common: dict[str, Any]) -> AgentResult:
    name = str(error.get("name") or "UnknownError")
    data = error.get("data") if isinstance(error.get("data"), dict) else {}
    message = str(data.get("message") or error.get("message") or name)
    status = data.get("statusCode") if isinstance(data.get("statusCode"), int) else None
    kind, retryable = classify_error(message, status=status, name=name, retryable=data.get("isRetryable"))
    reset = retry_after(data.get("responseHeaders")) if kind in ("rate_limit", "quota") else None
    detail = f" (HTTP {status})" if status else ""
    return AgentResult(success=False, error_kind=kind, retryable=retryable, reset_at=reset,
                       message=join_notes([f"opencode: {name}: {message}{detail}", *notes]), **common)


# ---------------------------------------------------------------- errors

_DATABASE_TROUBLE = re.compile(r"Failed query|database is locked|SQLITE_BUSY", re.IGNORECASE)
_RULES = (
    ErrorRule("quota", True, words(r"quota|usage limit|billing|credit balance|insufficient.?(funds|balance)"
                                   r"|out of credits|payment required|\b402\b"), statuses={402}),
    ErrorRule("rate_limit", True, words(RATE_LIMIT_WORDS), statuses={429}),
    ErrorRule("auth", False, words(r"\b40[13]\b|invalid.?(x-)?api.?key|incorrect api key|unauthori[sz]ed|forbidden"
                                   r"|authenticat|auth login"), statuses={401, 403}, names={"ProviderAuthError"}),
    ErrorRule("setup", False, words(r"unknown (option|argument)|model[^.\\n]{0,80}(not found|does not exist|is not supported)"),
              names={"ProviderModelNotFoundError", "ModelNotFoundError"}),
    ErrorRule("api", True, words(r"\b5\d\d\b|overloaded|internal server error|bad gateway|service unavailable"
                                 r"|ECONN|ETIMEDOUT|connection (error|refused|reset)|(unable|cannot) (to )?connect"
                                 r"|network|socket|fetch failed|timed? ?out"), statuses=SERVER_ERRORS),
)


def classify_error(message: str, *, status: int | None = None, name: str | None = None,
                   retryable: Any = None) -> tuple[str, bool]:
    """(error kind, retryable) of an OpenCode error; an `APIError` OpenCode calls retryable is `api`."""
    kind = cli_support.classify(_RULES, message, status=status, name=name)
    if kind == ("other", False) and retryable is True and name == "APIError":
        return "api", True
    return kind


def retry_after(headers: Any, now: datetime | None = None) -> str | None:
    """The reset time (UTC, ISO-8601) a `retry-after-ms` / `retry-after` header gave; None if none."""
    if not isinstance(headers, dict):
        return None
    lower = {str(key).lower(): str(value) for key, value in headers.items()}
    now = now or datetime.now(UTC)
    moment = None
    try:
        if "retry-after-ms" in lower:
            moment = now + timedelta(milliseconds=float(lower["retry-after-ms"]))
        elif "retry-after" in lower:
            value = lower["retry-after"].strip()
            moment = (now + timedelta(seconds=float(value)) if re.fullmatch(r"\d+(\.\d+)?", value)
                      else parsedate_to_datetime(value))
    except (ValueError, TypeError, OverflowError):
        return None
    if moment is None or moment <= now:
        return None
    return cli_support.iso_utc(moment)
