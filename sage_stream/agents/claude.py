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
    env = ["CLAUDE_CODE_MAX_RETRIES"]    # more environment variable names to pass through
    timeout_minutes = 30

The environment is the standard allow list (with `HOME`, where `claude login` keeps its
credentials and Claude keeps its sessions), the variables Claude Code documents for its
credentials and endpoint (`CREDENTIALS`: `ANTHROPIC_API_KEY`, `ANTHROPIC_AUTH_TOKEN`,
`CLAUDE_CODE_OAUTH_TOKEN`, `ANTHROPIC_BASE_URL`, `ANTHROPIC_CUSTOM_HEADERS`, and with
`CLAUDE_CODE_USE_BEDROCK` / `CLAUDE_CODE_USE_VERTEX` set the AWS / Google variables those
need), plus the names in `env`. Nothing else: another variable of Claude's own
(`ANTHROPIC_MODEL`, `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC`...) exported in the shell is
named at the start of a run, and passes when listed in `env`.

`CLAUDE_CODE_MAX_RETRIES` (listed the same way) bounds Claude's own retries of a 429 or
5xx (it otherwise keeps retrying for minutes). No `--max-turns` by default: the run's
wall-clock timeout bounds a ticket; add it to `extra_args` to bound turns as well.

The result: one JSON object on stdout, `{type: "result", subtype, is_error, api_error_status,
api_error_type, result, session_id, num_turns, total_cost_usd, usage, permission_denials}`,
found among the other lines of the log. The trap: an API error is `subtype: "success"` with
`is_error: true`, so success needs both `subtype == "success"` and `is_error == false`.
Errors are classified from the HTTP status, the error type and the text: a usage limit or
billing error is `quota`, 429 `rate_limit`, 401/403 / "Not logged in" `auth`, an unknown
option or model (404) `setup`, 5xx / overloaded / network `api`; `error_max_turns` and
anything else `other`. `auth` and `setup` halt a run (engine/outcomes.py).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sage_stream.agents import cli_support
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
from sage_stream.agents.cli_support import RATE_LIMIT_WORDS, SERVER_ERRORS, CliAgent, ErrorRule, words
from sage_stream.agents.credentials import Credentials, LoginFile, Provider
from sage_stream.process.supervise import EXITED, AgentExit

EXECUTABLE = "claude"
ARGUMENT_LIMIT_BYTES = cli_support.ARGUMENT_LIMIT_BYTES  # the longest prompt argument
BASE_COMMAND = ("-p", "--output-format", "json")
PERMISSIONS = ("--permission-mode", "acceptEdits")
PERMISSION_FLAGS = ("--permission-mode", "--dangerously-skip-permissions")
ALLOWED_TOOLS = ("Bash",)
DISALLOWED_TOOLS = ("Bash(git push *)", "Bash(git config --global *)")
MODEL_FLAGS = ("--model",)
MANAGED_FLAGS = ("-p", "--print", "--output-format", "-r", "--resume", "-c", "--continue", "--session-id",
                 "--fork-session", "--input-format")
RESULT_SEARCH_BYTES = 2_000_000  # the result JSON is one line near the end of the log
TRANSCRIPT_LIMIT_BYTES = 200_000_000
CREDENTIALS = Credentials(
    cli="claude",
    keys=("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"),
    login="run `claude`, then /login",
    endpoint=("ANTHROPIC_BASE_URL", "ANTHROPIC_CUSTOM_HEADERS"),
    providers=(
        Provider("CLAUDE_CODE_USE_BEDROCK", ("AWS_REGION", "AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                             "AWS_SESSION_TOKEN", "AWS_BEARER_TOKEN_BEDROCK",
                                             "ANTHROPIC_BEDROCK_BASE_URL", "CLAUDE_CODE_SKIP_BEDROCK_AUTH")),
        Provider("CLAUDE_CODE_USE_VERTEX", ("CLOUD_ML_REGION", "ANTHROPIC_VERTEX_PROJECT_ID",
                                            "ANTHROPIC_VERTEX_BASE_URL", "GOOGLE_APPLICATION_CREDENTIALS",
                                            "CLAUDE_CODE_SKIP_VERTEX_AUTH")),
    ),
    # Linux keeps the `/login` token in ~/.claude/.credentials.json; an API key approved in
    # the console login, in ~/.claude.json; `apiKeyHelper` runs a script that prints a key
    login_files=(LoginFile(".claude/.credentials.json"), LoginFile(".claude.json", "primaryApiKey"),
                 LoginFile(".claude/settings.json", "apiKeyHelper")),
    own_prefixes=("ANTHROPIC_", "CLAUDE_CODE_"),
)
_SESSION_ID = re.compile(r"^[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")
_NOTE = re.compile(r"claude: (?:new session|continuing session) (\S+)(?: \(cost so far \$([0-9.eE+-]+)\))?")


def make_agent(config: Mapping[str, Any]) -> ClaudeAgent:
    reserved = [(MANAGED_FLAGS, "the print mode, the JSON output and the session")]
    settings = cli_support.read_cli_config(config, cli="claude", model_flags=MODEL_FLAGS, reserved=reserved)
    return ClaudeAgent.configured(settings)


def cli_version(executable: str | None = None) -> str | None:
    """What `claude --version` prints (e.g. "2.1.329 (Claude Code)"); None when it does not run."""
    return cli_support.version_line(executable or EXECUTABLE)


class ClaudeAgent(CliAgent):
    name = "claude"
    executable = EXECUTABLE
    credentials = CREDENTIALS
    state_dirs = (".claude",)  # settings, credentials, sessions (projects/), todos
    state_files = (".claude.json",)  # saved by rename: a private copy, copied back

    def invocation(self, job: AgentJob) -> Invocation:
        env = standard_environment(job, self.passthrough)
        prompt, shortened = cli_support.prompt_argument(job)
        argv = [self.executable, *BASE_COMMAND]
        if not cli_support.has_flag(self.extra_args, PERMISSION_FLAGS):
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
            cli_support.note_in_log(job, f"claude: new session {session}")
            return ["--session-id", session]
        session = cli_support.checked_session(job, _SESSION_ID, "a Claude Code session id (a UUID)")
        before = session_cost(session, env)
        cost = f" (cost so far ${before!r})" if before is not None else ""
        cli_support.note_in_log(job, f"claude: continuing session {session}{cost}")
        return ["--resume", session]

    def parse_result(self, job: AgentJob, exit: AgentExit) -> AgentResult:
        note = _started_note(Path(job.log_path))
        env = standard_environment(job, self.passthrough)
        if exit.outcome != EXITED:
            return stopped_result(exit, session_id=recorded_session(job, note, env))
        found = find_result_json(Path(job.log_path))
        if found is None:
            return _no_result(job, exit, recorded_session(job, note, env))
        return result_from_json(job, exit, found, cost_before=note[1] if note else None)


# ---------------------------------------------------------------- sessions


def _started_note(log_path: Path) -> tuple[str, float | None] | None:
    """(session id, cost of the session before this run) from the last note of ours in the log."""
    found = None
    for note in cli_support.log_notes(log_path):
        match = _NOTE.match(note)
        if match:
            found = (match.group(1), float(match.group(2)) if match.group(2) else None)
    return found


def claude_config_dir(env: Mapping[str, str]) -> Path:
    configured = env.get("CLAUDE_CONFIG_DIR")
    return Path(configured) if configured else cli_support.home_of(env) / ".claude"


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
                if record.get("type") == "cost-state" and cli_support.is_number(value):
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
    log_end = read_log_tail(path, RESULT_SEARCH_BYTES)
    return cli_support.last_json_object(log_end, lambda value: value.get("type") == "result")


def result_from_json(job: AgentJob, exit: AgentExit, found: Mapping[str, Any],
                     *, cost_before: float | None = None) -> AgentResult:
    text = found.get("result") if isinstance(found.get("result"), str) else None
    written = read_result_file(job, exit)
    block = find_result_block(text) if text else None
    cost, cost_note = _run_cost(found.get("total_cost_usd"), cost_before, continued=bool(job.session_id))
    session = found.get("session_id") if isinstance(found.get("session_id"), str) else None
    common = {"summary": cli_support.summary_of(written, block, text), "session_id": session or job.session_id,
              "cost_usd": cost, "tokens": _tokens(found.get("usage")),
              "turns": cli_support.as_int(found.get("num_turns"))}
    subtype = found.get("subtype")
    if found.get("is_error") is not False or subtype != "success":
        return _failure(found, text, subtype, common)
    problems = [f"claude exited with code {exit.returncode} after a successful result"] if exit.returncode != 0 else []
    return cli_support.finished_result(written, block, problems, notes=[*_denials(found), cost_note], **common)


def _failure(found: Mapping[str, Any], text: str | None, subtype: Any, common: dict[str, Any]) -> AgentResult:
    status = cli_support.as_int(found.get("api_error_status"))
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
    if not cli_support.is_number(total):
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
    return cli_support.int_sum([usage.get(key) for key in keys])


# ---------------------------------------------------------------- errors

_RULES = (
    ErrorRule("quota", True, words(r"usage limit|limit reached|credit balance|billing|quota|spend limit"
                                   r"|out of credits|payment required|\b402\b"), names={"billing_error"}),
    ErrorRule("rate_limit", True, words(RATE_LIMIT_WORDS), statuses={429}, names={"rate_limit_error"}),
    ErrorRule("auth", False, words(r"\b40[13]\b|invalid api key|invalid x-api-key|unauthori[sz]ed|forbidden"
                                   r"|authenticat|/login|oauth token|not logged in"),
              statuses={401, 403}, names={"authentication_error", "permission_error"}),
    ErrorRule("setup", False, words(r"unknown option|unknown argument|too many arguments|invalid model"
                                    r"|issue with the selected model|model[^.\n]{0,80}(not found|does not exist)"),
              statuses={404}, names={"not_found_error"}),
    ErrorRule("api", True, words(r"\b5\d\d\b|overloaded|internal server error|bad gateway|service unavailable"
                                 r"|ECONN|ETIMEDOUT|EAI_AGAIN|connection (error|refused|reset)"
                                 r"|(unable|cannot) (to )?connect|network|socket hang up|fetch failed|timed? ?out"),
              statuses=SERVER_ERRORS, names={"overloaded_error", "api_error"}),
)


def classify_error(message: str, *, status: int | None = None, error_type: str | None = None) -> tuple[str, bool]:
    """(error kind, retryable) of a Claude Code failure (`error_type`: Claude's `api_error_type`);
    a usage-limit message is a quota even when its status is 429."""
    return cli_support.classify(_RULES, message, status=status, name=error_type)


_EPOCH = re.compile(r"\|(\d{10})\b")  # "Claude AI usage limit reached|1735689600"
_ISO = re.compile(r"\b(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2})?(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))")


def reset_time(message: str) -> str | None:
    """When a limit resets (UTC, ISO-8601), when the message says so as a Unix time or an ISO time."""
    epoch = _EPOCH.search(message)
    if epoch:
        return cli_support.iso_utc(datetime.fromtimestamp(int(epoch.group(1)), tz=UTC))
    iso = _ISO.search(message)
    if iso:
        try:
            return cli_support.iso_utc(datetime.fromisoformat(iso.group(1)))
        except ValueError:
            return None
    return None
