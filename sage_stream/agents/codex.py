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
`CODEX_HOME` (where `codex login` keeps its credentials, `auth.json` in `~/.codex` by default
- `CREDENTIALS`, checked by `sage validate` and at the start of a run; Codex
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
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sage_stream.agents import cli_support
from sage_stream.agents.base import (
    AgentJob,
    AgentResult,
    AgentState,
    Invocation,
    find_result_block,
    read_result_file,
    standard_environment,
    stopped_result,
)
from sage_stream.agents.cli_support import RATE_LIMIT_WORDS, CliAgent, ErrorRule, words
from sage_stream.agents.credentials import Credentials, LoginFile
from sage_stream.process.supervise import EXITED, AgentExit

EXECUTABLE = "codex"
ARGUMENT_LIMIT_BYTES = cli_support.ARGUMENT_LIMIT_BYTES  # the longest prompt argument
OWN_ENVIRONMENT = ("OPENAI_API_KEY", "CODEX_API_KEY", "CODEX_HOME")
CREDENTIALS = Credentials(cli="codex", keys=("OPENAI_API_KEY", "CODEX_API_KEY"), login="`codex login`",
                          login_files=(LoginFile(".codex/auth.json", dir_variable="CODEX_HOME"),),
                          own_prefixes=("CODEX_",))
SANDBOX = ("-s", "workspace-write")
SANDBOX_FLAGS = ("-s", "--sandbox", "--dangerously-bypass-approvals-and-sandbox")
MODEL_FLAGS = ("-m", "--model")
_THREAD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_CONTINUING = re.compile(r"codex: continuing thread (\S+) after (\d+) tokens")


def make_agent(config: Mapping[str, Any]) -> CodexAgent:
    return CodexAgent.configured(cli_support.read_cli_config(config, cli="codex", model_flags=MODEL_FLAGS))


def cli_version(executable: str | None = None) -> str | None:
    """The version `codex --version` prints ("codex-cli 0.169.0" -> "0.169.0"); None when it does not run."""
    printed = cli_support.version_line(executable or EXECUTABLE)
    return printed.removeprefix("codex-cli").strip() or printed if printed else None


class CodexAgent(CliAgent):
    name = "codex"
    executable = EXECUTABLE
    own_environment = OWN_ENVIRONMENT
    credentials = CREDENTIALS

    def state(self, env: Mapping[str, str]) -> AgentState:
        return AgentState(dirs=(codex_home(env),))  # config, credentials, sessions

    def invocation(self, job: AgentJob) -> Invocation:
        env = standard_environment(job, self.passthrough)
        argv = [self.executable, "exec", "--json", "-C", str(Path(job.worktree).absolute()), "--skip-git-repo-check"]
        if not _chooses_sandbox(self.extra_args):
            argv += SANDBOX
        if self.model:
            argv += ["-m", self.model]
        argv += self.extra_args
        if job.session_id:
            thread = cli_support.checked_session(job, _THREAD_ID, "a Codex thread id")
            argv += ["resume", thread]
            _note_tokens_so_far(job, thread, env)
        argv.append(cli_support.prompt_argument(job, option_safe=True)[0])
        return Invocation(argv=argv, env=env)

    def parse_result(self, job: AgentJob, exit: AgentExit) -> AgentResult:
        events = read_events(Path(job.log_path))
        if exit.outcome != EXITED:
            return stopped_result(exit, session_id=events.thread_id or job.session_id)
        return result_from_events(job, exit, events)


# ---------------------------------------------------------------- the command


def _chooses_sandbox(args: Sequence[str]) -> bool:
    return cli_support.has_flag(args, SANDBOX_FLAGS) or any(arg.startswith("sandbox_mode=") for arg in args)


def codex_home(env: Mapping[str, str]) -> Path:
    """Where Codex keeps its sessions: `CODEX_HOME`, else `~/.codex`, of the agent's environment."""
    return Path(env.get("CODEX_HOME") or cli_support.home_of(env) / ".codex")


def thread_tokens(thread: str, env: Mapping[str, str]) -> int | None:
    """The thread's input + output tokens so far: the last `token_count` of its rollout file."""
    files = sorted(codex_home(env).glob(f"sessions/*/*/*/rollout-*-{thread}.jsonl"), key=cli_support.mtime)
    total = None
    for line in cli_support.log_lines(files[-1]) if files else ():
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
    if tokens is not None:  # without the note, this run's tokens are the thread's total
        cli_support.note_in_log(job, f"codex: continuing thread {thread} after {tokens} tokens")


def _tokens_before(path: Path, thread: str | None) -> int:
    """What the last note in the log says the thread had used before this run (0: none)."""
    before = 0
    for note in cli_support.log_notes(path):
        found = _CONTINUING.match(note)
        if found:
            before = int(found.group(2)) if found.group(1) == thread else 0
    return before


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


def read_events(path: Path) -> CodexEvents:
    """The events of the last run in the log: each run starts with `thread.started`, and the
    log of a ticket retried in the same run holds the earlier attempts too."""
    events = CodexEvents()
    for event in cli_support.iter_json_events(path):
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
    tokens = _tokens(events.usage)
    if tokens is not None and job.session_id:
        tokens = max(0, tokens - _tokens_before(Path(job.log_path), events.thread_id))
    common = {"summary": cli_support.summary_of(written, block, events.last_message),
              "session_id": events.thread_id or job.session_id, "tokens": tokens, "turns": events.turns or None}
    if events.failure is not None:
        kind, retryable = classify_error(events.failure)
        return AgentResult(success=False, error_kind=kind, retryable=retryable, message=f"codex: {events.failure}",
                           reset_at=reset_time(events.failure) if retryable else None, **common)
    if not events.completed:
        kind, retryable = _unfinished_kind(exit, events)
        return AgentResult(success=False, error_kind=kind, retryable=retryable,
                           message=_unfinished_message(exit, events), **common)
    problems = [f"codex exited with code {exit.returncode} after its turn completed"] if exit.returncode != 0 else []
    return cli_support.finished_result(written, block, problems, **common)


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
    return cli_support.int_sum([usage.get("input_tokens"), usage.get("output_tokens")]) if usage else None


# ---------------------------------------------------------------- errors

_RULES = (
    ErrorRule("quota", True, words(r"quota|usage limit|billing|credit balance|more credits|out of credits"
                                   r"|payment required|\b402\b")),
    ErrorRule("rate_limit", True, words(RATE_LIMIT_WORDS)),
    ErrorRule("auth", False, words(r"\b40[13]\b|unauthori[sz]ed|forbidden|invalid.?api.?key|incorrect api key"
                                   r"|authenticat|not logged in|codex login")),
    ErrorRule("setup", False, words(r"unexpected argument|unrecognized (option|argument)|model_not_found"
                                    r"|model[^.\\n]{0,80}(not found|does not exist|is not supported)")),
    ErrorRule("api", True, words(r"\b5\d\d\b|high demand|temporar|overloaded|server (had an )?error|bad gateway"
                                 r"|service unavailable|stream disconnected|error sending request"
                                 r"|connection (failed|refused|reset)|timed? ?out|network")),
)


def classify_error(message: str) -> tuple[str, bool]:
    """(error kind, retryable) of a Codex error message; see base.ERROR_KINDS."""
    return cli_support.classify(_RULES, message)


# Codex's usage limit: "... or try again at 11:13 AM." / "... try again at Nov 23rd, 2026 4:41 PM." (local time)
_CLOCK = re.compile(r"try again at (?:(?P<month>[A-Z][a-z]{2}) (?P<day>\d{1,2})(?:st|nd|rd|th)?,? (?P<year>\d{4}) )?"
                    r"(?P<hour>\d{1,2}):(?P<minute>\d{2}) ?(?P<half>[AP]M)", re.IGNORECASE)
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


def reset_time(message: str, now: datetime | None = None) -> str | None:
    """When a limit resets (UTC, ISO-8601), from "try again in 2 hours 5 minutes", "retry in 41.8s"
    or "try again at [Nov 23rd, 2026] 4:41 PM" (the local time Codex printed); None if unsaid."""
    now = now or datetime.now(UTC).astimezone()  # aware, in the local zone Codex printed in
    moment = cli_support.retry_delay_end(message, now) or _at_clock(message, now)
    return None if moment is None else cli_support.iso_utc(moment)


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
