"""The `codex` agent: OpenAI's Codex CLI, headless (`codex exec --json`).

The command, run in the ticket's worktree with stdin from /dev/null (Codex appends piped
stdin to its prompt):

    codex exec --json -C WORKTREE --skip-git-repo-check -s workspace-write [-m MODEL] [EXTRA_ARGS...] PROMPT
    codex exec --json -C WORKTREE --skip-git-repo-check -s workspace-write [-m MODEL] [EXTRA_ARGS...] \\
        resume THREAD_ID PROMPT                                  (continuing a session)

- Edits: `codex exec` never asks for approval; `-s workspace-write` lets the commands it
  runs write inside the worktree (and temporary directories) and nowhere else, without
  network. `extra_args` that choose another sandbox (`-s/--sandbox MODE`,
  `--dangerously-bypass-approvals-and-sandbox`, for machines that are a sandbox already)
  replace ours. To allow network inside the sandbox:
  `extra_args = ["-c", "sandbox_workspace_write.network_access=true"]`.
- The prompt is an argument: Linux allows one argument 128 KiB, so a longer prompt keeps
  its beginning and its end (what "done" means) and says where the whole one is.
- Sessions: the id is `thread_id` of the first event (`thread.started`); a chain's next
  ticket continues it with `exec resume` (the exec options stay before `resume`).

Configuration (`[agent]` in `.sage/config.toml`):

    preset = "codex"
    model = "gpt-5-codex"          # -> -m
    extra_args = [...]             # after ours, before the prompt (-c overrides, sandbox)
    env = ["MY_KEY"]               # more environment variable names to pass
    timeout_minutes = 30

The environment is the standard allow list plus `OPENAI_API_KEY`, `CODEX_API_KEY` and
`CODEX_HOME` (where `codex login` keeps its credentials, `~/.codex` by default; Codex
also keeps its sessions there, which `resume` needs). Another endpoint: Codex ignores
`OPENAI_BASE_URL`; declare a provider with `-c` (or in `~/.codex/config.toml`):

    extra_args = ["-c", "model_provider=mine", "-c",
      'model_providers.mine={name="Mine",base_url="http://127.0.0.1:8000/v1",env_key="MY_KEY",wire_api="responses"}']
    env = ["MY_KEY"]

The result: JSON events on stdout (`thread.started`, `turn.started`, `item.completed` with
`agent_message` / `command_execution` / `error` items, `turn.completed{usage}`,
`turn.failed{error}`), found among the other lines of the log (stderr is merged into it).
A run succeeded when its last turn completed and Codex exited 0. `turn.failed` is the
failure and its message is classified (rate limit, quota, auth, api, other); an `error`
item (unknown model metadata, a transport fallback) or a top-level `error` event
("Reconnecting... 2/5") is a notice, not a failure. The summary is the SAGE-RESULT block of
the last `agent_message`, else that message. Tokens are input + output of the last
`turn.completed`, which is the thread's running total: for a resumed thread, the total
before this run is read from the thread's rollout file (`$CODEX_HOME/sessions/YYYY/MM/DD/
rollout-*-THREAD.jsonl`, its last `token_count`), noted in the log, and subtracted, so each
ticket (and fix turn) counts only its own tokens. Codex reports no cost.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sage_stream.agents.base import (
    AgentJob,
    AgentResult,
    Invocation,
    find_result_block,
    read_result_file,
    standard_environment,
    stopped_result,
)
from sage_stream.agents.environment import check_passthrough
from sage_stream.engine.agent_process import EXITED, NOTE_PREFIX, AgentExit
from sage_stream.errors import SageError

EXECUTABLE = "codex"
OWN_ENVIRONMENT = ("OPENAI_API_KEY", "CODEX_API_KEY", "CODEX_HOME")
SANDBOX = ("-s", "workspace-write")
SANDBOX_FLAGS = ("-s", "--sandbox", "--dangerously-bypass-approvals-and-sandbox")
MODEL_FLAGS = ("-m", "--model")
ARGUMENT_LIMIT_BYTES = 120_000  # Linux: MAX_ARG_STRLEN is 128 KiB for one argument
SUMMARY_CHARS = 2000
VERSION_TIMEOUT_S = 15
_THREAD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_CONTINUING = re.compile(re.escape(NOTE_PREFIX) + r" codex: continuing thread (\S+) after (\d+) tokens")


def make_agent(config: Mapping[str, Any]) -> CodexAgent:
    extra_args = config.get("extra_args") or []
    if not isinstance(extra_args, list) or not all(isinstance(arg, str) for arg in extra_args):
        raise SageError(f"[agent] extra_args must be a list of strings, found {extra_args!r}")
    model = config.get("model")
    if model is not None and not isinstance(model, str):
        raise SageError(f"[agent] model must be a string, found {model!r}")
    if model and _has_flag(extra_args, MODEL_FLAGS):
        raise SageError("[agent] model is set and extra_args has -m/--model too: keep one of them")
    env = config.get("env") or []
    if not isinstance(env, list):
        raise SageError(f"[agent] env must be a list of environment variable names, found {env!r}")
    return CodexAgent(model=model or None, extra_args=extra_args, passthrough=env)


def cli_version(executable: str | None = None) -> str | None:
    """The version `codex --version` prints ("codex-cli 0.169.0" -> "0.169.0"); None when it does not run."""
    printed = _version_of(executable or EXECUTABLE)
    return printed.removeprefix("codex-cli").strip() or printed if printed else None


class CodexAgent:
    name = "codex"

    def __init__(self, *, model: str | None = None, extra_args: Sequence[str] = (),
                 passthrough: Sequence[str] = (), executable: str = EXECUTABLE) -> None:
        self.model = model
        self.extra_args = list(extra_args)
        self.passthrough = [*OWN_ENVIRONMENT, *check_passthrough(passthrough)]
        self.executable = executable

    def invocation(self, job: AgentJob) -> Invocation:
        env = standard_environment(job, self.passthrough)
        argv = [self.executable, "exec", "--json", "-C", str(Path(job.worktree).absolute()), "--skip-git-repo-check"]
        if not _chooses_sandbox(self.extra_args):
            argv += SANDBOX
        if self.model:
            argv += ["-m", self.model]
        argv += self.extra_args
        if job.session_id:
            thread = _checked_thread_id(job)
            argv += ["resume", thread]
            _note_tokens_so_far(job, thread, env)
        argv.append(prompt_argument(job))
        return Invocation(argv=argv, env=env)

    def parse_result(self, job: AgentJob, exit: AgentExit) -> AgentResult:
        events = read_events(Path(job.log_path))
        if exit.outcome != EXITED:
            result = stopped_result(exit)
            result.session_id = events.thread_id or job.session_id
            return result
        return result_from_events(job, exit, events)

    def supports_sessions(self) -> bool:
        return True


# ---------------------------------------------------------------- the command


def _has_flag(args: Sequence[str], flags: Sequence[str]) -> bool:
    return any(arg in flags or any(arg.startswith(f"{flag}=") for flag in flags if flag.startswith("--"))
               for arg in args)


def _chooses_sandbox(args: Sequence[str]) -> bool:
    return _has_flag(args, SANDBOX_FLAGS) or any(arg.startswith("sandbox_mode=") for arg in args)


def _checked_thread_id(job: AgentJob) -> str:
    session = str(job.session_id)
    if not _THREAD_ID.match(session):
        raise SageError(f"ticket {job.ticket.id}: session id {session!r} is not a Codex thread id")
    return session


def codex_home(env: Mapping[str, str]) -> Path:
    """Where Codex keeps its sessions: `CODEX_HOME`, else `~/.codex`, of the agent's environment."""
    return Path(env.get("CODEX_HOME") or Path(env.get("HOME") or Path.home()) / ".codex")


def thread_tokens(thread: str, env: Mapping[str, str]) -> int | None:
    """The thread's input + output tokens so far: the last `token_count` of its rollout file."""
    files = sorted(codex_home(env).glob(f"sessions/*/*/*/rollout-*-{thread}.jsonl"), key=_mtime)
    total = None
    for line in _lines(files[-1]) if files else ():
        if '"token_count"' not in line:
            continue
        try:
            info = json.loads(line)["payload"]["info"]
            total = _tokens(info["total_token_usage"]) if info else total
        except (ValueError, KeyError, TypeError):
            continue
    return total


def _note_tokens_so_far(job: AgentJob, thread: str, env: Mapping[str, str]) -> None:
    tokens = thread_tokens(thread, env)
    if tokens is None:
        return
    try:
        Path(job.log_path).parent.mkdir(parents=True, exist_ok=True)
        with open(job.log_path, "a", encoding="utf-8") as log:
            log.write(f"{NOTE_PREFIX} codex: continuing thread {thread} after {tokens} tokens\n")
    except OSError:
        pass  # only the token count of this run suffers


def _tokens_before(path: Path, thread: str | None) -> int:
    """What the last note in the log says the thread had used before this run (0: none)."""
    before = 0
    for line in _lines(path):
        found = _CONTINUING.search(line) if line.startswith(NOTE_PREFIX) else None
        if found:
            before = int(found.group(2)) if found.group(1) == thread else 0
    return before


def _lines(path: Path) -> Iterator[str]:
    try:
        with open(path, "rb") as handle:
            for raw in handle:
                yield raw.decode("utf-8", errors="replace")
    except OSError:
        return


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def prompt_argument(job: AgentJob, limit_bytes: int = ARGUMENT_LIMIT_BYTES) -> str:
    """The prompt as one argument; a longer one keeps its start and end and names the whole file."""
    path = Path(job.prompt_file).absolute()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SageError(f"ticket {job.ticket.id}: cannot read the prompt {path}: {error}") from None
    if text.startswith("-"):  # would be read as an option
        text = "\n" + text
    data = text.encode("utf-8")
    if len(data) <= limit_bytes:
        return text
    note = (f"[sage-stream: this prompt ({len(data)} bytes) was shortened to fit in a command-line argument. "
            f"The whole prompt is in the file {path}: read it before you start.]\n\n")
    gap = "\n\n[... part of the prompt omitted here: read the whole prompt in the file named above ...]\n\n"
    room = limit_bytes - len(note.encode()) - len(gap.encode())
    head = data[: room * 2 // 3].decode("utf-8", errors="ignore")
    tail = data[len(data) - (room - room * 2 // 3):].decode("utf-8", errors="ignore")
    return note + head + gap + tail


# ---------------------------------------------------------------- the events


@dataclass
class CodexEvents:
    """What the JSON events of one run said."""

    count: int = 0  # events found
    thread_id: str | None = None
    last_message: str | None = None  # text of the last agent_message item
    usage: dict[str, Any] | None = None  # of the last turn.completed
    turns: int = 0  # turn.completed + turn.failed
    completed: bool = False  # the last turn completed
    failure: str | None = None  # error message of turn.failed, when the last turn failed
    notices: list[str] = field(default_factory=list)  # top-level error events and error items


def iter_json_events(path: Path) -> Iterator[dict[str, Any]]:
    """Every `{"type": ...}` object that starts a line (or follows other text on it) in the log."""
    decoder = json.JSONDecoder()
    for line in _lines(path):  # no log (the agent never started): no events
        start = line.find('{"type"')
        if start < 0:
            continue
        try:
            value, _ = decoder.raw_decode(line, start)
        except ValueError:
            continue  # a truncated or interleaved line: not an event
        if isinstance(value, dict) and isinstance(value.get("type"), str):
            yield value


def read_events(path: Path) -> CodexEvents:
    """The events of the last run in the log: each run starts with `thread.started`, and the
    log of a ticket retried in the same run holds the earlier attempts too."""
    events = CodexEvents()
    for event in iter_json_events(path):
        if event["type"] == "thread.started":
            events = CodexEvents()
        events.count += 1
        _take_event(events, event)
    return events


def _take_event(events: CodexEvents, event: Mapping[str, Any]) -> None:
    kind = event["type"]
    if kind == "thread.started" and isinstance(event.get("thread_id"), str):
        events.thread_id = event["thread_id"]
    elif kind == "item.completed" and isinstance(event.get("item"), dict):
        item = event["item"]
        if item.get("type") == "agent_message" and isinstance(item.get("text"), str):
            events.last_message = item["text"]
        elif item.get("type") == "error":
            events.notices.append(str(item.get("message", "")))
    elif kind == "turn.completed":
        events.turns += 1
        events.completed, events.failure = True, None
        events.usage = event.get("usage") if isinstance(event.get("usage"), dict) else None
    elif kind == "turn.failed":
        events.turns += 1
        error = event.get("error")
        message = error.get("message") if isinstance(error, dict) else error
        events.completed, events.failure = False, str(message or "the turn failed")
    elif kind == "error":
        events.notices.append(str(event.get("message", "")))


def result_from_events(job: AgentJob, exit: AgentExit, events: CodexEvents) -> AgentResult:
    written = read_result_file(job, exit)
    block = find_result_block(events.last_message) if events.last_message else None
    summary = written.summary or (block.summary if block else None) or _shorten(events.last_message)
    tokens = _tokens(events.usage)
    if tokens is not None and job.session_id:
        tokens = max(0, tokens - _tokens_before(Path(job.log_path), events.thread_id))
    common = {"summary": summary, "session_id": events.thread_id or job.session_id,
              "tokens": tokens, "turns": events.turns or None}
    if events.failure is not None:
        kind, retryable = classify_error(events.failure)
        return AgentResult(success=False, error_kind=kind, retryable=retryable, message=f"codex: {events.failure}",
                           reset_at=reset_time(events.failure) if retryable else None, **common)
    if not events.completed:
        kind, retryable = _unfinished_kind(exit, events)
        return AgentResult(success=False, error_kind=kind, retryable=retryable,
                           message=_unfinished_message(exit, events), **common)
    problems = []
    if exit.returncode != 0:
        problems.append(f"codex exited with code {exit.returncode} after its turn completed")
    if written.success is False:
        problems.append("the result file says it failed")
    if block is not None and block.status == "blocked":
        problems.append("the agent reported it is blocked")
    notes = [*problems, *([written.note] if written.note else [])]
    return AgentResult(success=not problems, error_kind="other" if problems else None,
                       message="; ".join(notes) or None, **common)


def _unfinished_kind(exit: AgentExit, events: CodexEvents) -> tuple[str, bool]:
    """No turn ended: Codex stopped before (bad flags, no login) - classify what it last said."""
    if events.count == 0:
        return "other", False
    return classify_error(" ".join([*events.notices[-1:], exit.last_line]))


def _unfinished_message(exit: AgentExit, events: CodexEvents) -> str:
    said = f": {exit.last_line}" if exit.last_line else ""
    if events.count == 0:
        return (f"codex printed no JSON events (exit code {exit.returncode}){said} - "
                "is `codex` the Codex CLI, recent enough for `exec --json`?")
    return f"codex exited with code {exit.returncode} before its turn ended{said}"


def _tokens(usage: Mapping[str, Any] | None) -> int | None:
    if not usage:
        return None
    counts = [usage.get(key) for key in ("input_tokens", "output_tokens")]
    numbers = [count for count in counts if isinstance(count, int) and not isinstance(count, bool)]
    return sum(numbers) if numbers else None


def _shorten(text: str | None) -> str | None:
    text = (text or "").strip()
    if not text:
        return None
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"


# ---------------------------------------------------------------- errors

_ERROR_KINDS: tuple[tuple[str, bool, re.Pattern[str]], ...] = (
    ("quota", True, re.compile(
        r"quota|usage limit|billing|credit balance|more credits|out of credits|payment required|\b402\b", re.IGNORECASE)),
    ("rate_limit", True, re.compile(r"\b429\b|too many requests|rate.?limit", re.IGNORECASE)),
    ("auth", False, re.compile(
        r"\b40[13]\b|unauthori[sz]ed|forbidden|invalid.?api.?key|incorrect api key|authenticat|not logged in"
        r"|codex login", re.IGNORECASE)),
    ("api", True, re.compile(
        r"\b5\d\d\b|high demand|temporar|overloaded|server (had an )?error|bad gateway|service unavailable"
        r"|stream disconnected|error sending request|connection (failed|refused|reset)|timed? ?out|network", re.IGNORECASE)),
)


def classify_error(message: str) -> tuple[str, bool]:
    """(error kind, retryable) of a Codex error message; see base.ERROR_KINDS."""
    for kind, retryable, pattern in _ERROR_KINDS:
        if pattern.search(message):
            return kind, retryable
    return "other", False


_DURATION = re.compile(r"(?:try again|retry) (?:in|after) ((?:\s*(?:,|and)?\s*\d+(?:\.\d+)?\s*"
                       r"(?:days?|d|hours?|h|minutes?|mins?|m|seconds?|secs?|s)\b)+)", re.IGNORECASE)
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(days?|d|hours?|h|minutes?|mins?|m|seconds?|secs?|s)\b", re.IGNORECASE)
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
# Codex's usage limit: "... or try again at 11:13 AM." / "... try again at Nov 23rd, 2026 4:41 PM." (local time)
_CLOCK = re.compile(r"try again at (?:(?P<month>[A-Z][a-z]{2}) (?P<day>\d{1,2})(?:st|nd|rd|th)?,? (?P<year>\d{4}) )?"
                    r"(?P<hour>\d{1,2}):(?P<minute>\d{2}) ?(?P<half>[AP]M)", re.IGNORECASE)
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


def reset_time(message: str, now: datetime | None = None) -> str | None:
    """When a limit resets (UTC, ISO-8601), from "try again in 2 hours 5 minutes", "retry in 41.8s"
    or "try again at [Nov 23rd, 2026] 4:41 PM" (the local time Codex printed); None if unsaid."""
    now = now or datetime.now(UTC).astimezone()  # aware, in the local zone Codex printed in
    moment = _after_duration(message, now) or _at_clock(message, now)
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _after_duration(message: str, now: datetime) -> datetime | None:
    found = _DURATION.search(message)
    if found is None:
        return None
    seconds = 0.0
    for amount, unit in _PART.findall(found.group(1)):
        unit = unit.lower()
        key = "m" if unit.startswith("min") or unit == "m" else unit[0]
        seconds += float(amount) * _UNIT_SECONDS[key]
    return now + timedelta(seconds=math.ceil(seconds))


def _at_clock(message: str, now: datetime) -> datetime | None:
    found = _CLOCK.search(message)
    if found is None:
        return None
    hour = int(found["hour"]) % 12 + (12 if found["half"].upper() == "PM" else 0)
    try:
        if found["month"]:
            month = _MONTHS.index(found["month"].lower()) + 1
            moment = now.replace(year=int(found["year"]), month=month, day=int(found["day"]),
                                 hour=hour, minute=int(found["minute"]), second=0, microsecond=0)
        else:
            moment = now.replace(hour=hour, minute=int(found["minute"]), second=0, microsecond=0)
            if moment < now - timedelta(minutes=1):
                moment += timedelta(days=1)  # a time of day already past today: tomorrow
    except ValueError:  # an unknown month name or an impossible date
        return None
    return moment + timedelta(minutes=1)  # the printed time is rounded to the minute: never early


# ---------------------------------------------------------------- version


def _version_of(executable: str) -> str | None:
    path = shutil.which(executable)
    if path is None:
        return None
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=VERSION_TIMEOUT_S,
                              stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.strip().splitlines()
    return lines[0].strip() if done.returncode == 0 and lines else None
