"""The `claude` agent: Anthropic's Claude Code, headless (`claude -p`).

The command, run in the ticket's worktree with stdin from /dev/null:

    claude -p --output-format json --permission-mode acceptEdits
        --allowedTools Bash --disallowedTools "Bash(git push *)" "Bash(git config --global *)"
        [--model MODEL] (--session-id NEW_UUID | --resume SESSION) [EXTRA_ARGS...] -- PROMPT

- Edits: `acceptEdits` approves edits inside the working directory (the worktree); an edit
  elsewhere would need a person to approve it, and with `-p` nobody can, so it is refused.
  `Bash` is allowed so the agent can run the project's tests, except `git push` and global
  git configuration. Checked as root with Claude Code 2.1.329: `bypassPermissions` and
  `--dangerously-skip-permissions` are refused as root ("cannot be used with root/sudo
  privileges") unless `IS_SANDBOX=1`, so they are not the default. `extra_args` with
  `--permission-mode` or `--dangerously-skip-permissions` replace our permission mode.
- The prompt is one argument after `--` (a prompt starting with `-` is not an option).
  Linux allows one argument 128 KiB, so a longer prompt keeps its beginning and its end
  and names the file holding all of it, which the agent is allowed to read.
- Sessions: a new session gets its id from us (`--session-id`, a fresh UUID), so the id
  is known even when the run is stopped before it prints anything; `--resume ID`
  continues one. `--resume` works from another directory (checked: 2.1.329 finds the
  session under any project of `~/.claude/projects`, appends to it, and tells the model
  its working directory changed), so a chain may move between worktree slots.
- Cost: `total_cost_usd` is the session's total, earlier runs included. For a continued
  session the cost before this run (the last `cost-state` record of the session's
  transcript) is noted in the log when the run starts and subtracted.

Configuration (`[agent]` in `.sage/config.toml`):

    preset = "claude"
    model = "sonnet"                 # -> --model
    extra_args = ["--max-turns", "50"]   # after ours, before the prompt
    env = ["ANTHROPIC_API_KEY"]      # environment variable names to pass through
    timeout_minutes = 30

The environment is the standard allow list (with `HOME`, where `claude login` keeps its
credentials and Claude keeps its sessions) plus the names in `env`: Claude gets no
`ANTHROPIC_*` variable unless it is listed. Another endpoint, e.g. a gateway or a proxy:

    env = ["ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"]

`CLAUDE_CODE_MAX_RETRIES` (listed the same way) bounds Claude's own retries of a 429 or
5xx (it otherwise keeps retrying for minutes). No `--max-turns` by default: the run's
wall-clock timeout bounds a ticket; add it to `extra_args` to bound turns as well.

The result: one JSON object on stdout, `{type: "result", subtype, is_error, api_error_status,
api_error_type, result, session_id, num_turns, total_cost_usd, usage, permission_denials}`,
found among the other lines of the log. The trap: an API error is `subtype: "success"` with
`is_error: true`, so success needs both `subtype == "success"` and `is_error == false`.
Errors are classified from the HTTP status, the error type and the text: a usage limit or
billing error is `quota`, 429 `rate_limit`, 401/403 `auth`, 5xx / overloaded / network
`api`; `error_max_turns` and anything else `other`.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
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

EXECUTABLE = "claude"
BASE_COMMAND = ("-p", "--output-format", "json")
PERMISSIONS = ("--permission-mode", "acceptEdits")
PERMISSION_FLAGS = ("--permission-mode", "--dangerously-skip-permissions")
ALLOWED_TOOLS = ("Bash",)
DISALLOWED_TOOLS = ("Bash(git push *)", "Bash(git config --global *)")
MODEL_FLAGS = ("--model",)
MANAGED_FLAGS = ("-p", "--print", "--output-format", "-r", "--resume", "-c", "--continue", "--session-id",
                 "--fork-session", "--input-format")
ARGUMENT_LIMIT_BYTES = 120_000  # Linux: MAX_ARG_STRLEN is 128 KiB for one argument
RESULT_SEARCH_BYTES = 2_000_000  # the result JSON is one line near the end of the log
TRANSCRIPT_LIMIT_BYTES = 200_000_000
SUMMARY_CHARS = 2000
VERSION_TIMEOUT_S = 15
_SESSION_ID = re.compile(r"^[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")
_NOTE = re.compile(re.escape(NOTE_PREFIX) + r" claude: (?:new session|continuing session) (\S+)"
                   r"(?: \(cost so far \$([0-9.eE+-]+)\))?")


def make_agent(config: Mapping[str, Any]) -> ClaudeAgent:
    extra_args = config.get("extra_args") or []
    if not isinstance(extra_args, list) or not all(isinstance(arg, str) for arg in extra_args):
        raise SageError(f"[agent] extra_args must be a list of strings, found {extra_args!r}")
    managed = [arg for arg in extra_args if _is_flag(arg, MANAGED_FLAGS)]
    if managed:
        raise SageError(f"[agent] extra_args: {managed[0]} is set by sage-stream for claude "
                        "(the print mode, the JSON output and the session); remove it")
    model = config.get("model")
    if model is not None and not isinstance(model, str):
        raise SageError(f"[agent] model must be a string, found {model!r}")
    if model and any(_is_flag(arg, MODEL_FLAGS) for arg in extra_args):
        raise SageError("[agent] model is set and extra_args has --model too: keep one of them")
    env = config.get("env") or []
    if not isinstance(env, list):
        raise SageError(f"[agent] env must be a list of environment variable names, found {env!r}")
    return ClaudeAgent(model=model or None, extra_args=extra_args, passthrough=env)


def cli_version(executable: str | None = None) -> str | None:
    """What `claude --version` prints (e.g. "2.1.329 (Claude Code)"); None when it does not run."""
    return version_of(executable or EXECUTABLE)


class ClaudeAgent:
    name = "claude"

    def __init__(self, *, model: str | None = None, extra_args: Sequence[str] = (),
                 passthrough: Sequence[str] = (), executable: str = EXECUTABLE) -> None:
        self.model = model
        self.extra_args = list(extra_args)
        self.passthrough = check_passthrough(passthrough)
        self.executable = executable

    def invocation(self, job: AgentJob) -> Invocation:
        env = standard_environment(job, self.passthrough)
        prompt, shortened = prompt_argument(job)
        argv = [self.executable, *BASE_COMMAND]
        if not any(_is_flag(arg, PERMISSION_FLAGS) for arg in self.extra_args):
            argv += PERMISSIONS
        allowed = [*ALLOWED_TOOLS, *([f"Read(/{Path(job.prompt_file).absolute()})"] if shortened else [])]
        argv += ["--allowedTools", *allowed, "--disallowedTools", *DISALLOWED_TOOLS]
        if self.model:
            argv += ["--model", self.model]
        argv += self._session_arguments(job, env)
        argv += [*self.extra_args, "--", prompt]
        return Invocation(argv=argv, env=env)

    def _session_arguments(self, job: AgentJob, env: Mapping[str, str]) -> list[str]:
        if not job.session_id:
            session = str(uuid.uuid4())
            _note(job, f"claude: new session {session}")
            return ["--session-id", session]
        session = str(job.session_id)
        if not _SESSION_ID.match(session):
            raise SageError(f"ticket {job.ticket.id}: session id {session!r} is not a Claude Code session id (a UUID)")
        before = session_cost(session, env)
        cost = f" (cost so far ${before!r})" if before is not None else ""
        _note(job, f"claude: continuing session {session}{cost}")
        return ["--resume", session]

    def parse_result(self, job: AgentJob, exit: AgentExit) -> AgentResult:
        note = _started_note(Path(job.log_path))
        env = standard_environment(job, self.passthrough)
        if exit.outcome != EXITED:
            result = stopped_result(exit)
            result.session_id = recorded_session(job, note, env)
            return result
        found = find_result_json(Path(job.log_path))
        if found is None:
            return _no_result(job, exit, recorded_session(job, note, env))
        return result_from_json(job, exit, found, cost_before=note[1] if note else None)

    def supports_sessions(self) -> bool:
        return True


# ---------------------------------------------------------------- the command


def _is_flag(arg: str, flags: Sequence[str]) -> bool:
    return arg in flags or any(arg.startswith(f"{flag}=") for flag in flags if flag.startswith("--"))


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


def _note(job: AgentJob, text: str) -> None:
    """A line of ours at the start of the log: what parse_result needs to know about the run."""
    try:
        Path(job.log_path).parent.mkdir(parents=True, exist_ok=True)
        with open(job.log_path, "a", encoding="utf-8") as log:
            log.write(f"{NOTE_PREFIX} {text}\n")
    except OSError:
        pass  # without it, a stopped run has no session id and a continued one reports the session's cost


def _started_note(log_path: Path) -> tuple[str, float | None] | None:
    """(session id, cost of the session before this run) from the last note of ours in the log."""
    found = None
    for line in _read_lines(log_path):
        match = _NOTE.match(line)
        if match:
            found = (match.group(1), float(match.group(2)) if match.group(2) else None)
    return found


def _read_lines(path: Path) -> Iterator[str]:
    try:
        with open(path, "rb") as log:
            for raw in log:
                yield raw.decode("utf-8", errors="replace").rstrip("\r\n")
    except OSError:
        return


def claude_config_dir(env: Mapping[str, str]) -> Path:
    configured = env.get("CLAUDE_CONFIG_DIR")
    if configured:
        return Path(configured)
    return Path(env.get("HOME") or os.path.expanduser("~")) / ".claude"


def session_transcript(session: str, env: Mapping[str, str]) -> Path | None:
    """The session's transcript: `<config dir>/projects/<project>/<session>.jsonl`."""
    projects = claude_config_dir(env) / "projects"
    try:
        found = sorted(projects.glob(f"*/{session}.jsonl"), key=lambda path: path.stat().st_mtime)
    except OSError:
        return None
    return found[-1] if found else None


def session_cost(session: str, env: Mapping[str, str]) -> float | None:
    """The session's total cost so far: its transcript's last `cost-state` record."""
    transcript = session_transcript(session, env)
    if transcript is None:
        return None
    total = None
    try:
        with open(transcript, "rb") as handle:
            for raw in handle:
                if b'"cost-state"' not in raw:
                    continue
                try:
                    record = json.loads(raw)
                except ValueError:
                    continue
                value = record.get("totalCostUSD") if isinstance(record, dict) else None
                if record.get("type") == "cost-state" and _is_number(value):
                    total = float(value)
                if handle.tell() > TRANSCRIPT_LIMIT_BYTES:
                    break
    except OSError:
        return None
    return total


def recorded_session(job: AgentJob, note: tuple[str, float | None] | None, env: Mapping[str, str]) -> str | None:
    """The run's session when Claude has a transcript of it (a run stopped early may have none)."""
    session = str(job.session_id) if job.session_id else note[0] if note else None
    if session is None or session_transcript(session, env) is None:
        return None
    return session


# ---------------------------------------------------------------- the result


def find_result_json(path: Path) -> dict[str, Any] | None:
    """The last `{"type": "result", ...}` object in the log (stderr lines may surround it)."""
    decoder = json.JSONDecoder()
    for line in reversed(_log_end(path).splitlines()):
        start = line.find("{")
        if start < 0 or '"result"' not in line:
            continue
        try:
            value, _ = decoder.raw_decode(line, start)
        except ValueError:
            continue
        if isinstance(value, dict) and value.get("type") == "result":
            return value
    return None


def _log_end(path: Path) -> str:
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - RESULT_SEARCH_BYTES))
            return log.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def result_from_json(job: AgentJob, exit: AgentExit, found: Mapping[str, Any],
                     *, cost_before: float | None = None) -> AgentResult:
    text = found.get("result") if isinstance(found.get("result"), str) else None
    written = read_result_file(job, exit)
    block = find_result_block(text) if text else None
    summary = written.summary or (block.summary if block else None) or _shorten(text)
    cost, cost_note = _run_cost(found.get("total_cost_usd"), cost_before, continued=bool(job.session_id))
    session = found.get("session_id") if isinstance(found.get("session_id"), str) else None
    common = dict(summary=summary, session_id=session or job.session_id, cost_usd=cost,
                  tokens=_tokens(found.get("usage")), turns=_int(found.get("num_turns")))
    subtype = found.get("subtype")
    if found.get("is_error") is not False or subtype != "success":
        return _failure(found, text, subtype, common)
    problems = []
    if exit.returncode != 0:
        problems.append(f"claude exited with code {exit.returncode} after a successful result")
    if written.success is False:
        problems.append("the result file says it failed")
    if block is not None and block.status == "blocked":
        problems.append("the agent reported it is blocked")
    notes = [*problems, *_denials(found), *([written.note] if written.note else []),
             *([cost_note] if cost_note else [])]
    return AgentResult(success=not problems, error_kind="other" if problems else None,
                       message="; ".join(notes) or None, **common)


def _failure(found: Mapping[str, Any], text: str | None, subtype: Any, common: dict[str, Any]) -> AgentResult:
    status = _int(found.get("api_error_status"))
    error_type = found.get("api_error_type") if isinstance(found.get("api_error_type"), str) else None
    errors = found.get("errors") if isinstance(found.get("errors"), list) else []
    said = "; ".join(str(item) for item in [text, *errors] if item) or "no message"
    if subtype == "error_max_turns":
        return AgentResult(success=False, error_kind="other",
                           message=f"claude stopped at its turn limit (--max-turns) after {found.get('num_turns')} "
                                   f"turns: {said}", **common)
    if subtype not in ("success", None):
        return AgentResult(success=False, error_kind="other", message=f"claude ended with {subtype}: {said}", **common)
    kind, retryable = classify_error(said, status=status, error_type=error_type)
    detail = f" (HTTP {status})" if status else ""
    return AgentResult(success=False, error_kind=kind, retryable=retryable, message=f"claude: {said}{detail}",
                       reset_at=reset_time(said) if kind in ("rate_limit", "quota") else None, **common)


def _no_result(job: AgentJob, exit: AgentExit, session: str | None) -> AgentResult:
    """Claude printed no result: bad flags, a missing session, refused as root, a crash."""
    said = exit.last_line or "nothing"
    kind, retryable = classify_error(said)
    hint = ""
    if "No conversation found" in said:
        hint = " (the session to continue is not under ~/.claude/projects of this HOME)"
    return AgentResult(success=False, session_id=session, error_kind=kind, retryable=retryable,
                       message=f"claude printed no result JSON (exit code {exit.returncode}): {said}{hint}")


def _run_cost(total: Any, before: float | None, *, continued: bool) -> tuple[float | None, str | None]:
    """This run's cost from the session's running total."""
    if not _is_number(total):
        return None, None
    if not continued:
        return float(total), None
    if before is None:
        return float(total), "cost_usd is the continued session's total (its cost before this run is unknown)"
    return round(max(0.0, float(total) - before), 10), None


def _denials(found: Mapping[str, Any]) -> list[str]:
    denials = found.get("permission_denials")
    if not isinstance(denials, list) or not denials:
        return []
    names = sorted({str(item.get("tool_name")) for item in denials if isinstance(item, dict)})
    return [f"{len(denials)} tool call(s) were refused permission ({', '.join(names)})"]


def _tokens(usage: Any) -> int | None:
    if not isinstance(usage, dict):
        return None
    keys = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")
    numbers = [usage[key] for key in keys if isinstance(usage.get(key), int) and not isinstance(usage[key], bool)]
    return sum(numbers) if numbers else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _shorten(text: str | None) -> str | None:
    text = (text or "").strip()
    if not text:
        return None
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"


# ---------------------------------------------------------------- errors

_QUOTA = re.compile(r"usage limit|limit reached|credit balance|billing|quota|spend limit|out of credits"
                    r"|payment required|\b402\b", re.I)
_RATE_LIMIT = re.compile(r"\b429\b|too many requests|rate.?limit", re.I)
_AUTH = re.compile(r"\b40[13]\b|invalid api key|invalid x-api-key|unauthori[sz]ed|forbidden|authenticat"
                   r"|/login|oauth token|not logged in", re.I)
_API = re.compile(r"\b5\d\d\b|overloaded|internal server error|bad gateway|service unavailable|ECONN|ETIMEDOUT"
                  r"|EAI_AGAIN|connection (error|refused|reset)|(unable|cannot) (to )?connect|network|socket hang up"
                  r"|fetch failed|timed? ?out", re.I)


def classify_error(message: str, *, status: int | None = None, error_type: str | None = None) -> tuple[str, bool]:
    """(error kind, retryable) of a Claude Code failure; see base.ERROR_KINDS."""
    if error_type == "billing_error" or _QUOTA.search(message):
        return "quota", True
    if status == 429 or error_type == "rate_limit_error" or _RATE_LIMIT.search(message):
        return "rate_limit", True
    if status in (401, 403) or error_type in ("authentication_error", "permission_error") or _AUTH.search(message):
        return "auth", False
    server_side = status is not None and status >= 500
    if server_side or error_type in ("overloaded_error", "api_error") or _API.search(message):
        return "api", True
    return "other", False


_EPOCH = re.compile(r"\|(\d{10})\b")  # "Claude AI usage limit reached|1735689600"
_ISO = re.compile(r"\b(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2})?(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))")


def reset_time(message: str) -> str | None:
    """When a limit resets (UTC, ISO-8601), when the message says so as a Unix time or an ISO time."""
    epoch = _EPOCH.search(message)
    if epoch:
        moment = datetime.fromtimestamp(int(epoch.group(1)), tz=timezone.utc)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    iso = _ISO.search(message)
    if iso:
        try:
            moment = datetime.fromisoformat(iso.group(1).replace("Z", "+00:00"))
        except ValueError:
            return None
        return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return None


# ---------------------------------------------------------------- version


def version_of(executable: str) -> str | None:
    """The first line `EXECUTABLE --version` prints; None when it is not installed or fails."""
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
