"""The `aider` agent: Aider, headless (`aider --message-file ...`), plain text output.

The command, run in the ticket's worktree:

    aider --message-file PROMPT_FILE --yes-always --no-auto-commits --no-dirty-commits
          --no-stream --no-pretty --no-fancy-input --no-check-update --no-analytics
          --no-show-model-warnings --no-gitignore --no-detect-urls
          --chat-history-file RUN_DIR/SESSION.aider.chat.md --input-history-file /dev/null
          [--restore-chat-history] --model MODEL [--edit-format diff] [EXTRA_ARGS...] [FILES...]

- The prompt is read from its file: no size limit.
- Edits: Aider edits only files in its chat; `--yes-always` lets it add the files the model
  asks for and create new ones, inside the repository (the worktree). It never commits
  (sage-stream lands the work) and writes nothing into the worktree but the edits: its chat
  history goes beside the ticket's log, `.gitignore` is left alone (`--no-gitignore`), and
  its repo-map cache (`.aider.tags.cache.v*/`, which it always creates in the repository
  root) is deleted when the run ends, so it is never committed as work.
  `--no-analytics` rather than `--analytics-disable`: the latter permanently rewrites
  `~/.aider/analytics.json`, a global change.
- Edit format: SEARCH/REPLACE blocks (`--edit-format diff`) unless `extra_args` choose one
  (`--edit-format`, `--chat-mode`, `--architect`). Aider's "whole" format, its choice for
  models it does not know, reads every fenced block of an answer as the new content of a
  file: the SAGE-RESULT block the prompt asks for then replaced a file in the chat (seen:
  README.md overwritten by the block's lines).
- FILES: the ticket's `files` that name existing files of the worktree (globs are left to
  Aider's repo map: adding every match would send whole directories to the model; a missing
  path is not passed because Aider would create it empty, which looks like work).
- A model is required (`[agent] model`, `--model` in `extra_args`, or `AIDER_MODEL`): with no
  model and no API key Aider offers an OpenRouter browser login and waits for it.
- Sessions: Aider has no session id; `--restore-chat-history` with `--chat-history-file` is
  its only resume. So a session here is a chat history file beside the logs of the run
  (`.sage/workers/RUN/<ID>.aider.chat.md`) named after the ticket that started it, and
  its id is that name (e.g. `CALC-001`): the next ticket of a chain appends to the same file
  and starts with the chain's conversation restored. Sessions live as long as the run's
  directory; a missing file starts a new conversation under the same name.

Configuration (`[agent]` in `.sage/config.toml`):

    preset = "aider"
    model = "sonnet"               # -> --model (any Aider model name or alias)
    extra_args = ["--edit-format", "diff-fenced"]  # after ours, before the files
    env = ["MISTRAL_API_KEY"]      # more environment variable names to pass
    timeout_minutes = 30

The environment is the standard allow list plus `AIDER_*` (Aider's own settings) and
`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`, `GEMINI_API_KEY`, `OPENROUTER_API_KEY`,
`DEEPSEEK_API_KEY`. Another endpoint: `model = "openai/NAME"` with
`extra_args = ["--openai-api-base", "http://127.0.0.1:8000/v1"]`.

The result, from the text alone (the trap: Aider exits 0 when the model call failed):

- A `litellm.<Name>Error: ...` line not followed by a later answer (`Tokens: ...`) is the
  failure: RateLimitError is a rate limit (a quota when its message says so), BudgetExceeded
  and "insufficient credits" a quota, AuthenticationError auth, InternalServerError /
  ServiceUnavailable / BadGateway / APIConnectionError / Timeout / APIError api, anything
  else (NotFound, BadRequest, ContextWindowExceeded...) other.
- No `Tokens:` line at all: Aider never got an answer; a failure with its last line.
- Otherwise success, unless the SAGE-RESULT block says `blocked` or the result file says
  it failed. Whether the worktree changed is not judged here: the engine refuses a ticket
  that changed nothing (its no-changes check), which also catches an answer whose edits
  Aider could not apply.
- Tokens: the sum of the `Tokens: N sent, M received.` lines; cost: the last
  `Cost: $X message, $Y session.` (printed when Aider knows the model's prices); turns:
  the number of answers. Summary: the SAGE-RESULT block, else the files Aider edited.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
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
from sage_stream.agents.cli_support import RATE_LIMIT_WORDS, CliAgent, ErrorRule, words
from sage_stream.errors import SageError
from sage_stream.process.supervise import EXITED, AgentExit

EXECUTABLE = "aider"
OWN_ENVIRONMENT = ("AIDER_*", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "OPENROUTER_API_KEY",
                   "DEEPSEEK_API_KEY")
HEADLESS = ("--yes-always", "--no-auto-commits", "--no-dirty-commits", "--no-stream", "--no-pretty",
            "--no-fancy-input", "--no-check-update", "--no-analytics", "--no-show-model-warnings",
            "--no-gitignore", "--no-detect-urls")
MODEL_FLAGS = ("--model",)
EDIT_FORMAT = ("--edit-format", "diff")
EDIT_FORMAT_FLAGS = ("--edit-format", "--chat-mode", "--architect")
CHAT_SUFFIX = ".aider.chat.md"
TAGS_CACHE_PREFIX = ".aider.tags.cache.v"
LOG_SEARCH_BYTES = 2_000_000
MAX_FILES = 200
VERSION_TIMEOUT_S = 30
_SESSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_GLOB_CHARS = re.compile(r"[*?\[]")


def make_agent(config: Mapping[str, Any]) -> AiderAgent:
    settings = cli_support.read_cli_config(config, cli="aider", model_flags=MODEL_FLAGS)
    model_in_args = cli_support.has_flag(settings.extra_args, MODEL_FLAGS)
    if not settings.model and not model_in_args and not os.environ.get("AIDER_MODEL"):
        raise SageError(
            'aider needs a model: set [agent] model in .sage/config.toml (e.g. model = "sonnet" or '
            '"openai/gpt-4o") - without one, headless aider offers an OpenRouter browser login and waits'
        )
    return AiderAgent.configured(settings)


def cli_version(executable: str | None = None) -> str | None:
    """What `aider --version` prints (e.g. "aider 0.86.2"); None when it does not run."""
    return cli_support.version_line(executable or EXECUTABLE, last=True, timeout_s=VERSION_TIMEOUT_S)


class AiderAgent(CliAgent):
    name = "aider"
    executable = EXECUTABLE
    state_dirs = (".aider",)  # caches, analytics id; its chat history is in the run directory
    own_environment = OWN_ENVIRONMENT

    def invocation(self, job: AgentJob) -> Invocation:
        prompt = Path(job.prompt_file).absolute()
        if not prompt.is_file():
            raise SageError(f"ticket {job.ticket.id}: the prompt {prompt} does not exist")
        argv = [self.executable, "--message-file", str(prompt), *HEADLESS,
                "--chat-history-file", str(chat_history_file(job)), "--input-history-file", os.devnull]
        if job.session_id:
            argv.append("--restore-chat-history")
        if self.model:
            argv += ["--model", self.model]
        if not cli_support.has_flag(self.extra_args, EDIT_FORMAT_FLAGS):
            argv += EDIT_FORMAT
        argv += self.extra_args
        argv += ticket_files(job)
        return Invocation(argv=argv, env=standard_environment(job, self.passthrough))

    def parse_result(self, job: AgentJob, exit: AgentExit) -> AgentResult:
        remove_tags_cache(Path(job.worktree))
        session = session_id(job)
        if exit.outcome != EXITED:
            return stopped_result(exit, session_id=session)
        result = result_from_output(job, exit, read_output(Path(job.log_path)))
        result.session_id = session
        return result


# ---------------------------------------------------------------- the command


def session_id(job: AgentJob) -> str:
    """The chain's session: the one given, else one named after this attempt's log (`CALC-001`)."""
    session = str(job.session_id) if job.session_id else Path(job.log_path).name.removesuffix(".log")
    if not _SESSION.match(session) or ".." in session:
        raise SageError(f"ticket {job.ticket.id}: {session!r} cannot name an aider chat history file")
    return session


def chat_history_file(job: AgentJob) -> Path:
    return Path(job.log_path).absolute().parent / f"{session_id(job)}{CHAT_SUFFIX}"


def ticket_files(job: AgentJob) -> list[str]:
    """The ticket's `files` that are existing files of the worktree, as relative paths."""
    root = Path(job.worktree).resolve()
    found: list[str] = []
    for pattern in job.ticket.files or []:
        if not isinstance(pattern, str) or not pattern.strip() or _GLOB_CHARS.search(pattern):
            continue
        path = (root / pattern.strip().removeprefix("./").lstrip("/")).resolve()
        if path.is_file() and path.is_relative_to(root) and path != root:
            relative = str(path.relative_to(root))
            if relative not in found and not relative.startswith(".git/"):
                found.append(relative)
    return found[:MAX_FILES]


def remove_tags_cache(worktree: Path) -> None:
    """Delete Aider's repo-map cache from the worktree root: it is not work to land."""
    try:
        entries = list(Path(worktree).iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(TAGS_CACHE_PREFIX) and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)


# ---------------------------------------------------------------- the output


@dataclass
class AiderOutput:
    text: str
    answers: int = 0  # "Tokens:" lines: one per model answer
    tokens: int | None = None
    cost_usd: float | None = None  # the session cost of the last "Cost:" line
    error: str | None = None  # the last litellm error that no answer followed
    error_name: str | None = None  # e.g. "RateLimitError"
    edited: list[str] = field(default_factory=list)  # "Applied edit to X"
    no_model: bool = False


_TOKENS = re.compile(r"^Tokens: ([\d.]+)(k|M)? sent(?:, [\d.]+[kM]? cache (?:write|hit))*, ([\d.]+)(k|M)? received\.",
                     re.MULTILINE)
_COST = re.compile(r"Cost: \$([\d.]+) message, \$([\d.]+) session\.")
_LITELLM_ERROR = re.compile(r"^litellm\.(\w+):[^\n]*(?:\n(?!\n|litellm\.)[^\n]*)*", re.MULTILINE)
_BANNER = re.compile(r"^Aider v\d", re.MULTILINE)  # the start of a run: a log may hold earlier attempts too
_APPLIED = re.compile(r"^Applied edit to (.+)$", re.MULTILINE)
_NO_MODEL = "No LLM model was specified and no API keys were provided"
# Aider's own advice under an error names "quotas" for every rate limit: not the provider's words
_ADVICE = ("The API provider has rate limited you. Try again later or check your quotas.",
           "The API provider is not able to authenticate you. Check your API key.",
           "The API provider's servers are down or overloaded.")


def read_output(path: Path) -> AiderOutput:
    text = read_log_tail(path, LOG_SEARCH_BYTES).replace("\r\n", "\n")
    banners = list(_BANNER.finditer(text))
    start = banners[-1].start() if banners else 0
    # the no-model warning comes before the banner, which then never comes
    no_model = text.rfind(_NO_MODEL) >= start
    text = text[start:]
    output = AiderOutput(text=text)
    usage = list(_TOKENS.finditer(text))
    output.answers = len(usage)
    if usage:
        output.tokens = sum(_count(m.group(1), m.group(2)) + _count(m.group(3), m.group(4)) for m in usage)
    costs = _COST.findall(text)
    if costs:
        output.cost_usd = float(costs[-1][1])
    errors = list(_LITELLM_ERROR.finditer(text))
    if errors and not any(m.start() > errors[-1].start() for m in usage):
        output.error_name = errors[-1].group(1)
        output.error = _error_text(errors[-1].group(0))
    output.edited = list(dict.fromkeys(match.strip() for match in _APPLIED.findall(text)))
    output.no_model = no_model
    return output


def _count(number: str, unit: str | None) -> int:
    return round(float(number) * {"k": 1000, "M": 1_000_000}.get(unit or "", 1))


def _error_text(block: str) -> str:
    """The error block without Aider's advice and retry lines, its wrapped lines joined."""
    lines = [line.strip() for line in block.splitlines()]
    kept = [line for line in lines if line and line not in _ADVICE and not line.startswith("Retrying in ")]
    return " ".join(kept)


def result_from_output(job: AgentJob, exit: AgentExit, output: AiderOutput) -> AgentResult:
    written = read_result_file(job, exit)
    block = find_result_block(output.text)
    edited = f"edited {', '.join(output.edited[:10])}" if output.edited else None
    common = {"summary": cli_support.summary_of(written, block, edited), "cost_usd": output.cost_usd,
              "tokens": output.tokens, "turns": output.answers or None}
    if output.error is not None:
        kind, retryable = classify_error(output.error_name or "", output.error)
        return AgentResult(success=False, error_kind=kind, retryable=retryable, message=f"aider: {output.error}",
                           **common)
    if output.no_model:
        return AgentResult(success=False, error_kind="auth", message=f"aider: {_NO_MODEL}", **common)
    if exit.returncode != 0 or output.answers == 0:
        said = f": {exit.last_line}" if exit.last_line else ""
        what = (f"aider exited with code {exit.returncode}" if exit.returncode != 0
                else "aider got no answer from the model")
        kind, retryable = classify_error("", exit.last_line) if exit.returncode != 0 else ("other", False)
        return AgentResult(success=False, error_kind=kind, retryable=retryable, message=what + said, **common)
    return cli_support.finished_result(written, block, **common)


# ---------------------------------------------------------------- errors

_KIND_OF_ERROR = {
    "RateLimitError": ("rate_limit", True), "RouterRateLimitError": ("rate_limit", True),
    "BudgetExceededError": ("quota", True),
    "AuthenticationError": ("auth", False), "PermissionDeniedError": ("auth", False),
    "InternalServerError": ("api", True), "ServiceUnavailableError": ("api", True),
    "BadGatewayError": ("api", True), "APIConnectionError": ("api", True), "Timeout": ("api", True),
    "APIError": ("api", True),
}
_QUOTA = re.compile(r"insufficient_quota|exceeded your current quota|quota exceeded|insufficient credits"
                    r"|credit balance|billing", re.IGNORECASE)
_SETUP = words(r"LLM Provider NOT provided|model[^.\\n]{0,80}(not found|does not exist|is not supported)")
_TEXT_RULES = (
    ErrorRule("quota", True, _QUOTA),
    ErrorRule("rate_limit", True, words(RATE_LIMIT_WORDS)),
    ErrorRule("auth", False, words(r"\b40[13]\b|unauthori[sz]ed|invalid.?api.?key|authenticat")),
    ErrorRule("setup", False, words(r"unrecognized arguments|LLM Provider NOT provided|model[^.\\n]{0,80}(not found|does not exist|is not supported)")),
    ErrorRule("api", True, words(r"\b5\d\d\b|overloaded|server error|service unavailable|connection (error|refused)"
                                 r"|timed? ?out")),
)


def classify_error(name: str, message: str) -> tuple[str, bool]:
    """(error kind, retryable) of a litellm error class name and its message."""
    if _QUOTA.search(message) and name in ("RateLimitError", "APIError", "BudgetExceededError", ""):
        return "quota", True
    if name in _KIND_OF_ERROR:
        return _KIND_OF_ERROR[name]
    if name in ("NotFoundError", "BadRequestError") and _SETUP.search(message):
        return "setup", False  # the model: every ticket would fail the same way
    if name:
        return "other", False  # NotFound, BadRequest, ContextWindowExceeded...: running again won't help
    return cli_support.classify(_TEXT_RULES, message)
