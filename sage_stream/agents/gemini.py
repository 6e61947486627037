"""The `gemini` agent: Google's Gemini CLI, headless (`gemini -p ... -o stream-json`).

The command, run in the ticket's worktree (its workspace):

    gemini -p PROMPT -o stream-json --approval-mode yolo [-m MODEL] [EXTRA_ARGS...] [--session-file FILE]

with `GEMINI_CLI_TRUST_WORKSPACE=true` in its environment (the worktree is trusted for this
run only; nothing is written to Gemini's trusted-folders list).

- Edits: `--approval-mode yolo` approves every tool call; Gemini's file tools stay inside
  the workspace (the worktree). `extra_args` with `--approval-mode MODE` or `-y/--yolo`
  replace ours (e.g. `auto_edit`, which approves edits only: a shell command then fails
  instead of waiting, since nobody can answer).
- The prompt is an argument: Linux allows one argument 128 KiB, so a longer prompt keeps
  its beginning and its end (what "done" means) and says where the whole one is.
- Sessions: the id is `session_id` of the result. Gemini files a session under the
  directory it ran in, and `--resume ID` only finds sessions of the current directory, but
  a chain's next ticket may run in another worktree slot. So the session is continued with
  `--session-file` naming the session's own file (`<gemini home>/.gemini/tmp/*/chats/
  session-*-<first 8 of id>.json[l]`), which Gemini imports under a new id (the text of the
  conversation; the next result reports the new id). When the file cannot be found the
  ticket starts a new session and the log says so.

Configuration (`[agent]` in `.sage/config.toml`):

    preset = "gemini"
    model = "gemini-2.5-pro"       # -> -m
    extra_args = [...]             # after ours
    env = ["MY_VARIABLE"]          # more environment variable names to pass
    timeout_minutes = 30

The environment is the standard allow list plus Gemini's credentials and home:
`GEMINI_API_KEY`, `GOOGLE_API_KEY`, `GOOGLE_GENAI_USE_VERTEXAI`, `GOOGLE_GENAI_USE_GCA`,
`GOOGLE_CLOUD_PROJECT`, `GOOGLE_CLOUD_LOCATION`, `GOOGLE_APPLICATION_CREDENTIALS`,
`GEMINI_CLI_HOME` (where `.gemini/` lives instead of `$HOME`), and the endpoint
`GOOGLE_GEMINI_BASE_URL`. What a user needs: a `GEMINI_API_KEY` (or Vertex / Google login,
`~/.gemini/oauth_creds.json`) that works for `gemini -p hi` in a terminal (`CREDENTIALS`,
checked by `sage validate` and at the start of a run).
Another endpoint: export `GOOGLE_GEMINI_BASE_URL`, and select API-key auth in
`~/.gemini/settings.json` (`{"security": {"auth": {"selectedType": "gemini-api-key"}}}`):
with a base URL but no selected auth Gemini refuses to start ("Invalid auth method
selected", exit 41). sage-stream writes nothing under `$HOME`; tests point
`GEMINI_CLI_HOME` at a temporary directory holding that settings.json.

The output: `stream-json` rather than `json`, because `-o json` prints nothing until the
very end, so a ticket working longer than the idle timeout (10 min by default) would be
stopped as silent. Events, one JSON object per line among the other lines of the log:
`init{session_id, model}`, `message{role, content, delta}`, `tool_use`, `tool_result`, and
last `result{status: success|error, error{type, message}, stats{total_tokens, ...}}`. The
response is the assistant's text (the summary: its SAGE-RESULT block); tokens
`stats.total_tokens`; turns the assistant's replies (text or tool calls after a prompt or
tool result); Gemini reports no cost.

Errors: the `result` event's message, and the exit code, which is the error's code & 0xFF
(a 429 exits 173, a 401 145, a 500 244; 41 is Gemini's own auth failure), read back into
the HTTP status. 429 is a rate limit unless the daily quota or the model's capacity is
exhausted (quota); 401/403 and exit 41 are auth; 5xx api; the rest other. Also read (the
trap of `-o json`, which an older run or another path may print): the error object
`{session_id, error: {type, message, code}}` on stderr with nothing on stdout.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sage_stream.agents import cli_support
from sage_stream.agents.base import (
    AgentJob,
    AgentResult,
    AgentState,
    Invocation,
    ResultBlock,
    ResultFile,
    find_result_block,
    read_log_tail,
    read_result_file,
    standard_environment,
    stopped_result,
)
from sage_stream.agents.cli_support import SERVER_ERRORS, CliAgent, ErrorRule, words
from sage_stream.agents.credentials import Credentials, LoginFile, Provider
from sage_stream.process.supervise import EXITED, AgentExit

EXECUTABLE = "gemini"
ARGUMENT_LIMIT_BYTES = cli_support.ARGUMENT_LIMIT_BYTES  # the longest prompt argument
OWN_ENVIRONMENT = ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GENAI_USE_GCA",
                   "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION", "GOOGLE_APPLICATION_CREDENTIALS",
                   "GEMINI_CLI_HOME")
CREDENTIALS = Credentials(
    cli="gemini", keys=("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    login="run `gemini` and choose \"Login with Google\"", endpoint=("GOOGLE_GEMINI_BASE_URL",),
    providers=(Provider("GOOGLE_GENAI_USE_VERTEXAI", ()), Provider("GOOGLE_GENAI_USE_GCA", ())),
    login_files=(LoginFile(".gemini/oauth_creds.json"),), own_prefixes=("GEMINI_",))
TRUST_WORKSPACE = {"GEMINI_CLI_TRUST_WORKSPACE": "true"}
APPROVAL = ("--approval-mode", "yolo")
APPROVAL_FLAGS = ("--approval-mode", "-y", "--yolo")
MODEL_FLAGS = ("-m", "--model")
OUTPUT = ("-o", "stream-json")
OUTPUT_FLAGS = ("-o", "--output-format")
SESSION_FLAGS = ("-r", "--resume", "--session-id", "--session-file")
RESULT_SEARCH_BYTES = 4_000_000  # the result JSON is near the end of the log
EXIT_AUTH = 41  # Gemini's FATAL_AUTHENTICATION_ERROR
API_ERROR = "[API Error: "
_SESSION_ID = re.compile(r"^[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")
_OBJECT_AT_LINE_START = re.compile(r"^[ \t]*\{", re.MULTILINE)  # -o json pretty-prints its object


def make_agent(config: Mapping[str, Any]) -> GeminiAgent:
    reserved = [(OUTPUT_FLAGS, "it reads Gemini's JSON events, -o stream-json"),
                (SESSION_FLAGS, "it chooses the session, see --reuse-sessions")]
    settings = cli_support.read_cli_config(config, cli="gemini", model_flags=MODEL_FLAGS, reserved=reserved)
    return GeminiAgent.configured(settings)


def cli_version(executable: str | None = None) -> str | None:
    """What `gemini --version` prints (e.g. "0.61.0"); None when it does not run."""
    return cli_support.version_line(executable or EXECUTABLE, last=True)


class GeminiAgent(CliAgent):
    name = "gemini"
    executable = EXECUTABLE
    own_environment = OWN_ENVIRONMENT
    credentials = CREDENTIALS

    def state(self, env: Mapping[str, str]) -> AgentState:
        return AgentState(dirs=(gemini_home(env),))  # settings, sessions (tmp/), installation id, projects

    def invocation(self, job: AgentJob) -> Invocation:
        env = {**standard_environment(job, self.passthrough), **TRUST_WORKSPACE}
        argv = [self.executable, "-p", cli_support.prompt_argument(job, option_safe=True)[0], *OUTPUT]
        if not cli_support.has_flag(self.extra_args, APPROVAL_FLAGS):
            argv += APPROVAL
        if self.model:
            argv += ["-m", self.model]
        argv += self.extra_args
        if job.session_id:
            argv += _continue_session(job, env)
        return Invocation(argv=argv, env=env)

    def parse_result(self, job: AgentJob, exit: AgentExit) -> AgentResult:
        stream = read_stream(Path(job.log_path))
        found = None if stream.result is not None else find_result_json(Path(job.log_path))
        if exit.outcome != EXITED:
            return stopped_result(exit, session_id=stream.session_id or _session_of(found))
        if stream.result is not None:
            return result_from_stream(job, exit, stream)
        if found is not None:
            return result_from_json(job, exit, found)
        return _no_result(job, exit, stream)


# ---------------------------------------------------------------- the command


def _continue_session(job: AgentJob, env: Mapping[str, str]) -> list[str]:
    session = cli_support.checked_session(job, _SESSION_ID, "a Gemini session id (a UUID)")
    found = session_file(session, gemini_home(env))
    if found is not None:
        return ["--session-file", str(found)]
    cli_support.note_in_log(job, f"gemini session {session} not found under {gemini_home(env)}: starting a new session")
    return []


def gemini_home(env: Mapping[str, str]) -> Path:
    """Where Gemini keeps `.gemini/`: `GEMINI_CLI_HOME`, else `HOME`, of the agent's environment."""
    return Path(env.get("GEMINI_CLI_HOME") or cli_support.home_of(env)) / ".gemini"


def session_file(session: str, home: Path) -> Path | None:
    """The newest file of that session under `home/tmp/*/chats/`, checked by its recorded id."""
    candidates = [*home.glob(f"tmp/*/chats/session-*-{session[:8]}.json"),
                  *home.glob(f"tmp/*/chats/session-*-{session[:8]}.jsonl")]
    for path in sorted(candidates, key=cli_support.mtime, reverse=True):
        if _recorded_session(path) == session:
            return path
    return None


def _recorded_session(path: Path) -> str | None:
    """The `sessionId` of a session file: its first line (JSON lines) or the whole (JSON)."""
    try:
        with open(path, encoding="utf-8") as handle:
            first = handle.readline()
            value = json.loads(first) if first.strip().endswith("}") else None
            if not isinstance(value, dict) or "sessionId" not in value:
                handle.seek(0)
                value = json.loads(handle.read(RESULT_SEARCH_BYTES))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return value.get("sessionId") if isinstance(value, dict) else None


# ---------------------------------------------------------------- the result (stream-json)

# Gemini's exit code is its error's code & 0xFF: the HTTP statuses it stands for
STATUS_OF_EXIT = {173: 429, 145: 401, 147: 403, 148: 404, 244: 500, 246: 502, 247: 503, 248: 504}


@dataclass
class GeminiStream:
    """What the stream-json events of the last run in the log said."""

    session_id: str | None = None
    text: str = ""  # everything the assistant said
    reply: str = ""  # its last reply (after the last prompt or tool result)
    replies: int = 0
    result: dict[str, Any] | None = None  # the final `result` event
    _replying: bool = False


def read_stream(path: Path) -> GeminiStream:
    """The events after the last `init` (a ticket retried in the same run appends to its log)."""
    stream = GeminiStream()
    for event in cli_support.iter_json_events(path):
        kind = event["type"]
        if kind == "init":
            stream = GeminiStream(session_id=event.get("session_id") if isinstance(event.get("session_id"), str)
                                  else None)
        elif kind == "message" and event.get("role") == "assistant" and isinstance(event.get("content"), str):
            _start_reply(stream)
            stream.text += event["content"]
            stream.reply += event["content"]
        elif kind == "tool_use":
            _start_reply(stream)
        elif kind in ("tool_result", "message"):  # a tool's result or the user's prompt: the next reply is new
            stream._replying = False
        elif kind == "result":
            stream.result = event
    return stream


def _start_reply(stream: GeminiStream) -> None:
    if not stream._replying:
        stream._replying, stream.replies = True, stream.replies + 1
        stream.reply = ""


def result_from_stream(job: AgentJob, exit: AgentExit, stream: GeminiStream) -> AgentResult:
    result = stream.result or {}
    written = read_result_file(job, exit)
    block = find_result_block(stream.text) if stream.text else None
    stats = result.get("stats") if isinstance(result.get("stats"), dict) else {}
    tokens = stats.get("total_tokens") if isinstance(stats.get("total_tokens"), int) else None
    common = {"summary": cli_support.summary_of(written, block, stream.reply), "session_id": stream.session_id,
              "tokens": tokens or None, "turns": stream.replies or None}
    if result.get("status") != "success":
        message, code = _error_fields(result.get("error") or "the run ended with an error")
        code = code or STATUS_OF_EXIT.get(exit.returncode or 0) or (EXIT_AUTH if exit.returncode == EXIT_AUTH else None)
        return _error_result(message, code, common)
    return _judged(exit, written, block, common)


def _judged(exit: AgentExit, written: ResultFile, block: ResultBlock | None, common: dict[str, Any]) -> AgentResult:
    """A run that reported success: unless it exited non-zero, or says it failed or is blocked."""
    problems = [f"gemini exited with code {exit.returncode}"] if exit.returncode != 0 else []
    return cli_support.finished_result(written, block, problems, **common)


def _error_result(message: str, code: int | None, common: dict[str, Any]) -> AgentResult:
    kind, retryable = classify_error(message, code)
    return AgentResult(success=False, error_kind=kind, retryable=retryable, message=f"gemini: {message}",
                       reset_at=retry_time(message) if retryable else None, **common)


# ---------------------------------------------------------------- the result (-o json)


def find_result_json(path: Path) -> dict[str, Any] | None:
    """The last JSON object in the log that is a Gemini result or error (it may be pretty-printed)."""
    log_end = read_log_tail(path, RESULT_SEARCH_BYTES)
    return cli_support.last_json_object(log_end, _is_result_or_error, starts=_OBJECT_AT_LINE_START)


def _is_result_or_error(value: Mapping[str, Any]) -> bool:
    return ("response" in value or "error" in value) and (
        "session_id" in value or "stats" in value or isinstance(value.get("error"), dict))


def _session_of(found: Mapping[str, Any] | None) -> str | None:
    session = found.get("session_id") if found else None
    return session if isinstance(session, str) and session else None


def result_from_json(job: AgentJob, exit: AgentExit, found: dict[str, Any]) -> AgentResult:
    written = read_result_file(job, exit)
    response = found.get("response") if isinstance(found.get("response"), str) else None
    block = find_result_block(response) if response else None
    tokens, turns = _usage(found.get("stats"))
    common = {"summary": cli_support.summary_of(written, block, response), "session_id": _session_of(found),
              "tokens": tokens, "turns": turns}
    error = found.get("error")
    if error is not None:
        return _error_result(*_error_fields(error), common)
    return _judged(exit, written, block, common)


def _no_result(job: AgentJob, exit: AgentExit, stream: GeminiStream) -> AgentResult:
    """No result event and no error object: it crashed, or was not Gemini CLI. Classified
    from its exit code, else from what it printed besides events (never the prompt's words)."""
    said = f": {exit.last_line}" if exit.last_line else ""
    code = EXIT_AUTH if exit.returncode == EXIT_AUTH else STATUS_OF_EXIT.get(exit.returncode or 0)
    printed = "\n".join(line for line in read_log_tail(Path(job.log_path), RESULT_SEARCH_BYTES).splitlines()[-200:]
                        if '{"type"' not in line)
    kind, retryable = classify_error(printed[-4000:], code)
    return AgentResult(success=False, error_kind=kind, retryable=retryable, session_id=stream.session_id,
                       message=f"gemini printed no result (exit code {exit.returncode}){said}")


def _error_fields(error: Any) -> tuple[str, int | None]:
    if not isinstance(error, dict):
        return str(error), None
    message = str(error.get("message") or error.get("type") or "unknown error")
    code = error.get("code")
    inner = _google_error(message)  # the message is often the API's error JSON itself
    if inner is not None:
        message = str(inner.get("message") or message)
        code = inner.get("code", code)
    elif message.startswith(API_ERROR):  # "[API Error: what the API said]\nGemini's advice"
        message = message[len(API_ERROR):].rpartition("]")[0] or message
    return message.strip(), code if isinstance(code, int) and not isinstance(code, bool) else None


def _google_error(message: str) -> dict[str, Any] | None:
    """The API's own error object when the message holds one (`{"error": {...}}`, also inside
    Gemini's "[API Error: ...]")."""
    start = message.find('{"error"')
    if start < 0:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(message, start)
    except ValueError:
        return None
    inner = value.get("error") if isinstance(value, dict) else None
    return inner if isinstance(inner, dict) else None


def _usage(stats: Any) -> tuple[int | None, int | None]:
    """(total tokens, API requests) over all models in `stats.models`."""
    models = stats.get("models") if isinstance(stats, dict) else None
    if not isinstance(models, dict) or not models:
        return None, None
    tokens = requests = 0
    for entry in models.values():
        if not isinstance(entry, dict):
            continue
        counts = entry.get("tokens") if isinstance(entry.get("tokens"), dict) else {}
        total = counts.get("total")
        if not isinstance(total, int):
            total = sum(value for key in ("prompt", "candidates") if isinstance(value := counts.get(key), int))
        tokens += total
        api = entry.get("api") if isinstance(entry.get("api"), dict) else {}
        requests += api.get("totalRequests") if isinstance(api.get("totalRequests"), int) else 0
    return tokens or None, requests or None


# ---------------------------------------------------------------- errors

# a 429 is a rate limit (Gemini's RetryableQuotaError: "exceeded your current quota ... retry in 41s")
# unless the day's quota or the model's capacity is gone (its TerminalQuotaError)
_QUOTA = re.compile(r"daily quota|per ?day|exhausted your capacity|capacity exceeded|MODEL_CAPACITY_EXHAUSTED"
                    r"|QUOTA_EXHAUSTED|credits? balance", re.IGNORECASE)
_TEXT_RULES = (
    ErrorRule("quota", True, words(_QUOTA.pattern + r"|billing")),
    ErrorRule("rate_limit", True, words(r"\b429\b|RESOURCE_EXHAUSTED|too many requests|rate.?limit|quota")),
    ErrorRule("auth", False, words(r"\b40[13]\b|UNAUTHENTICATED|PERMISSION_DENIED|api key not valid|invalid api key"
                                   r"|auth method|authenticat|credentials")),
    ErrorRule("setup", False, words(r"unknown arguments?:|model[^.\\n]{0,80}(not found|does not exist|is not supported)|models/\\S+ is not found")),
    ErrorRule("api", True, words(r"\\b5\\d\\d\\b|\\b499\\b|INTERNAL|UNAVAILABLE|DEADLINE_EXCEEDED|overloaded|ECONNREFUSED"
                                 r"|ECONNRESET|ETIMEDOUT|fetch failed|socket hang up|network")),
)


def classify_error(message: str, code: int | None) -> tuple[str, bool]:
    """(error kind, retryable) of a Gemini error: its code first, then its words."""
    if code == 429:
        return ("quota", True) if _QUOTA.search(message) else ("rate_limit", True)
    if code in (401, 403, EXIT_AUTH):
        return "auth", False
    if code == 404 and "model" in message.lower():
        return "setup", False  # a model that does not exist: every ticket would fail the same way
    if code in SERVER_ERRORS or code == 499:
        return "api", True
    return cli_support.classify(_TEXT_RULES, message)


def retry_time(message: str, now: datetime | None = None) -> str | None:
    """When to try again (UTC, ISO-8601), from "Please retry in 41.8s" / "Suggested retry after 60s";
    None when the message names no delay."""
    moment = cli_support.retry_delay_end(message, now)
    return None if moment is None else cli_support.iso_utc(moment)
