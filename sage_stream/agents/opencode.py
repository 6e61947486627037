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
import math
import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from sage_stream.agents.base import (
    AgentJob,
    AgentResult,
    Invocation,
    find_result_block,
    read_log_tail,
    read_result_file,
    standard_environment,
    stopped_result,
)
from sage_stream.agents.environment import agent_environment, check_passthrough
from sage_stream.engine.agent_process import EXITED, NOTE_PREFIX, AgentExit
from sage_stream.errors import SageError

EXECUTABLE = "opencode"
CONFIG_VARIABLE = "OPENCODE_CONFIG_CONTENT"
SAGE_PERMISSIONS = {"edit": "allow", "external_directory": "deny"}
DEFAULT_BASH = {"*": "allow", "git push*": "deny"}
MODEL_FLAGS = ("-m", "--model")
MANAGED_FLAGS = ("--format", "-s", "--session", "-c", "--continue", "--fork", "--attach", "-i", "--interactive")
ARGUMENT_LIMIT_BYTES = 120_000  # Linux: MAX_ARG_STRLEN is 128 KiB for one argument
SUMMARY_CHARS = 2000
TITLE_CHARS = 100
VERSION_TIMEOUT_S = 15
DATABASE_TIMEOUT_S = 2.0
_SESSION_ID = re.compile(r"^ses_[A-Za-z0-9]{6,64}$")


def make_agent(config: Mapping[str, Any]) -> OpenCodeAgent:
    extra_args = config.get("extra_args") or []
    if not isinstance(extra_args, list) or not all(isinstance(arg, str) for arg in extra_args):
        raise SageError(f"[agent] extra_args must be a list of strings, found {extra_args!r}")
    managed = [arg for arg in extra_args if _is_flag(arg, MANAGED_FLAGS)]
    if managed:
        raise SageError(f"[agent] extra_args: {managed[0]} is set by sage-stream for opencode "
                        "(the JSON output and the session); remove it")
    model = config.get("model")
    if model is not None and not isinstance(model, str):
        raise SageError(f"[agent] model must be a string, found {model!r}")
    if model and "/" not in model:
        raise SageError(f"[agent] model {model!r}: opencode wants PROVIDER/MODEL, e.g. \"anthropic/claude-sonnet-4-5\"")
    if model and any(_is_flag(arg, MODEL_FLAGS) for arg in extra_args):
        raise SageError("[agent] model is set and extra_args has -m/--model too: keep one of them")
    env = config.get("env") or []
    if not isinstance(env, list):
        raise SageError(f"[agent] env must be a list of environment variable names, found {env!r}")
    agent = OpenCodeAgent(model=model or None, extra_args=extra_args, passthrough=env)
    agent.user_config(os.environ)  # a broken OPENCODE_CONFIG_CONTENT stops the run before any ticket starts
    return agent


def cli_version(executable: str | None = None) -> str | None:
    """What `opencode --version` prints (e.g. "1.18.33"); None when it does not run."""
    path = shutil.which(executable or EXECUTABLE)
    if path is None:
        return None
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=VERSION_TIMEOUT_S,
                              stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.strip().splitlines()
    return lines[-1].strip() if done.returncode == 0 and lines else None


class OpenCodeAgent:
    name = "opencode"

    def __init__(self, *, model: str | None = None, extra_args: Sequence[str] = (),
                 passthrough: Sequence[str] = (), executable: str = EXECUTABLE) -> None:
        self.model = model
        self.extra_args = list(extra_args)
        self.passthrough = check_passthrough(passthrough)
        self.executable = executable

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
        message, shortened = prompt_argument(job)
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
            result = stopped_result(exit)
            result.session_id = run_session(job, events)
            result.cost_usd = events.cost_usd
            return result
        return result_from_events(job, exit, events)

    def supports_sessions(self) -> bool:
        return True


# ---------------------------------------------------------------- the command


def _is_flag(arg: str, flags: Sequence[str]) -> bool:
    return arg in flags or any(arg.startswith(f"{flag}=") for flag in flags if flag.startswith("--"))


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


def prompt_argument(job: AgentJob, limit_bytes: int = ARGUMENT_LIMIT_BYTES) -> tuple[str, bool]:
    """(the prompt as one argument, whether it was shortened). A longer prompt keeps its start
    and its end (what "done" means) and names the file that holds all of it."""
    path = Path(job.prompt_file).absolute()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SageError(f"ticket {job.ticket.id}: cannot read the prompt {path}: {error}") from None
    data = text.encode("utf-8")
    if len(data) <= limit_bytes:
        return text, False
    note = (f"[sage-stream: this prompt ({len(data)} bytes) was shortened to fit in a command-line argument. "
            f"The whole prompt is in the file {path}: read it before you start.]\n\n")
    gap = "\n\n[... part of the prompt omitted here: read the whole prompt in the file named above ...]\n\n"
    room = limit_bytes - len(note.encode()) - len(gap.encode())
    head = data[: room * 2 // 3].decode("utf-8", errors="ignore")
    tail = data[len(data) - (room - room * 2 // 3):].decode("utf-8", errors="ignore")
    return note + head + gap + tail, True


def _title(job: AgentJob) -> str:
    title = " ".join(f"{job.ticket.id}: {job.ticket.title}".split())
    return title if len(title) <= TITLE_CHARS else title[: TITLE_CHARS - 1] + "…"


def opencode_database(env: Mapping[str, str]) -> Path:
    data_home = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME") or os.path.expanduser("~")) / ".local" / "share")
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
    session = str(job.session_id)
    if not _SESSION_ID.match(session):
        raise SageError(f"ticket {job.ticket.id}: session id {session!r} is not an OpenCode session id (ses_...)")
    directory = session_directory(session, env)
    here = os.path.realpath(Path(job.worktree).absolute())
    if directory is not None and os.path.realpath(directory) == here:
        return session
    where = f"ran in {directory}" if directory else "is not in OpenCode's database"
    _note(job, f"opencode: not continuing session {session}: it {where}, not in this worktree "
               "(OpenCode runs a session only in its own directory); starting a new session")
    return None


def _note(job: AgentJob, text: str) -> None:
    try:
        Path(job.log_path).parent.mkdir(parents=True, exist_ok=True)
        with open(job.log_path, "a", encoding="utf-8") as log:
            log.write(f"{NOTE_PREFIX} {text}\n")
    except OSError:
        pass  # only a note


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


def iter_json_events(path: Path) -> Iterator[dict[str, Any]]:
    """Every `{"type": ...}` object at the start of a line of the log (stderr is merged into it)."""
    decoder = json.JSONDecoder()
    try:
        log = open(path, "rb")
    except OSError:
        return
    with log:
        for raw in log:
            line = raw.decode("utf-8", errors="replace")
            start = line.find('{"type"')
            if start < 0:
                continue
            try:
                value, _ = decoder.raw_decode(line, start)
            except ValueError:
                continue  # a truncated line: not an event
            if isinstance(value, dict) and isinstance(value.get("type"), str):
                yield value


def read_events(path: Path) -> OpenCodeEvents:
    events = OpenCodeEvents(notes=tuple(_notes(path)))
    for event in iter_json_events(path):
        events.count += 1
        _take_event(events, event)
    return events


def _notes(path: Path) -> Iterator[str]:
    prefix = f"{NOTE_PREFIX} opencode: "
    try:
        with open(path, "rb") as log:
            for raw in log:
                line = raw.decode("utf-8", errors="replace").strip()
                if line.startswith(prefix):
                    yield line[len(NOTE_PREFIX) + 1:]
    except OSError:
        return


def _take_event(events: OpenCodeEvents, event: Mapping[str, Any]) -> None:
    if isinstance(event.get("sessionID"), str):
        events.session_id = event["sessionID"]
    part = event.get("part") if isinstance(event.get("part"), dict) else {}
    kind = event["type"]
    if kind == "text" and isinstance(part.get("text"), str) and part["text"].strip():
        events.last_text = part["text"]
    elif kind == "step_finish":
        events.steps += 1
        if _is_number(part.get("cost")):
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
    refused = any(note.startswith("opencode: not continuing session") for note in events.notes)
    return None if refused or not job.session_id else str(job.session_id)


def _tokens(tokens: Any) -> int | None:
    if not isinstance(tokens, dict):
        return None
    cache = tokens.get("cache") if isinstance(tokens.get("cache"), dict) else {}
    values = [tokens.get("input"), tokens.get("output"), tokens.get("reasoning"), cache.get("read"), cache.get("write")]
    numbers = [value for value in values if isinstance(value, int) and not isinstance(value, bool)]
    return sum(numbers) if numbers else None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def result_from_events(job: AgentJob, exit: AgentExit, events: OpenCodeEvents) -> AgentResult:
    written = read_result_file(job, exit)
    block = find_result_block(events.last_text) if events.last_text else None
    summary = written.summary or (block.summary if block else None) or _shorten(events.last_text)
    common = dict(summary=summary, session_id=run_session(job, events), cost_usd=events.cost_usd,
                  tokens=events.tokens, turns=events.steps or None)
    if events.error is not None:
        return _error_result(events.error, events.notes, common)
    if events.count == 0:
        return _no_events(job, exit, events, common)
    problems = []
    if exit.returncode != 0:
        problems.append(f"opencode exited with code {exit.returncode}: {exit.last_line}")
    if events.steps == 0:
        problems.append("opencode finished no step")
    if written.success is False:
        problems.append("the result file says it failed")
    if block is not None and block.status == "blocked":
        problems.append("the agent reported it is blocked")
    notes = [*problems, *events.notes, *([written.note] if written.note else [])]
    return AgentResult(success=not problems, error_kind="other" if problems else None,
                       message=_join(notes), **common)


def _no_events(job: AgentJob, exit: AgentExit, events: OpenCodeEvents, common: dict[str, Any]) -> AgentResult:
    """OpenCode stopped before its first event: bad flags, a missing session, its database."""
    said = exit.last_line or "nothing"
    kind, retryable = classify_error(said)
    message = f"opencode printed no JSON events (exit code {exit.returncode}): {said}"
    if _DATABASE_TROUBLE.search(read_log_tail(Path(job.log_path))):
        # seen on a fresh HOME: two OpenCode processes starting at once both create its database
        kind, retryable = "other", True
        message += (" - OpenCode could not open its database (~/.local/share/opencode/opencode.db), e.g. two "
                    "first starts at once on a fresh HOME: run `opencode session list` once before a parallel run")
    return AgentResult(success=False, error_kind=kind, retryable=retryable, message=_join([message, *events.notes]),
                       **common)


def _error_result(error: Mapping[str, Any], notes: Sequence[str], common: dict[str, Any]) -> AgentResult:
    name = str(error.get("name") or "UnknownError")
    data = error.get("data") if isinstance(error.get("data"), dict) else {}
    message = str(data.get("message") or error.get("message") or name)
    status = data.get("statusCode") if isinstance(data.get("statusCode"), int) else None
    kind, retryable = classify_error(message, status=status, name=name, retryable=data.get("isRetryable"))
    reset = retry_after(data.get("responseHeaders")) if kind in ("rate_limit", "quota") else None
    detail = f" (HTTP {status})" if status else ""
    return AgentResult(success=False, error_kind=kind, retryable=retryable, reset_at=reset,
                       message=_join([f"opencode: {name}: {message}{detail}", *notes]), **common)


def _join(parts: Sequence[str]) -> str | None:
    return "; ".join(part for part in parts if part) or None


def _shorten(text: str | None) -> str | None:
    text = (text or "").strip()
    if not text:
        return None
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"


# ---------------------------------------------------------------- errors

_DATABASE_TROUBLE = re.compile(r"Failed query|database is locked|SQLITE_BUSY", re.I)
_QUOTA = re.compile(r"quota|usage limit|billing|credit balance|insufficient.?(funds|balance)|out of credits"
                    r"|payment required|\b402\b", re.I)
_RATE_LIMIT = re.compile(r"\b429\b|too many requests|rate.?limit", re.I)
_AUTH = re.compile(r"\b40[13]\b|invalid.?(x-)?api.?key|incorrect api key|unauthori[sz]ed|forbidden|authenticat"
                   r"|auth login", re.I)
_API = re.compile(r"\b5\d\d\b|overloaded|internal server error|bad gateway|service unavailable|ECONN|ETIMEDOUT"
                  r"|connection (error|refused|reset)|(unable|cannot) (to )?connect|network|socket|fetch failed"
                  r"|timed? ?out", re.I)


def classify_error(message: str, *, status: int | None = None, name: str | None = None,
                   retryable: Any = None) -> tuple[str, bool]:
    """(error kind, retryable) of an OpenCode error; see base.ERROR_KINDS."""
    if status == 402 or _QUOTA.search(message):
        return "quota", True
    if status == 429 or _RATE_LIMIT.search(message):
        return "rate_limit", True
    if status in (401, 403) or name == "ProviderAuthError" or _AUTH.search(message):
        return "auth", False
    if (status is not None and status >= 500) or _API.search(message):
        return "api", True
    if retryable is True and name == "APIError":
        return "api", True
    return "other", False


def retry_after(headers: Any, now: datetime | None = None) -> str | None:
    """The reset time (UTC, ISO-8601) a `retry-after-ms` / `retry-after` header gave; None if none."""
    if not isinstance(headers, dict):
        return None
    lower = {str(key).lower(): str(value) for key, value in headers.items()}
    now = now or datetime.now(timezone.utc)
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
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
