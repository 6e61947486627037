"""What the CLI agents (claude, opencode, codex, gemini, aider) share, like pre-commit's lang_base.py.

A CLI module keeps what is its own: its command line, its result format, its traps and the
words its errors use. Here is the rest, parameterised where the CLIs differ:

- the `[agent]` configuration (`model`, `extra_args`, `env`) and the agent class built from it;
- the prompt as one command-line argument, shortened to fit Linux's 128 KiB limit;
- `<cli> --version` with a timeout;
- the run's log (stdout and stderr merged): its lines, its JSON events, its last JSON
  object, and the notes of ours written into it;
- the result of a run that reported success, and the summary;
- error classification by rules (words, HTTP statuses, error names) and reset times.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

from sage_stream.agents.base import (
    AgentJob,
    AgentResult,
    AgentState,
    ResultBlock,
    ResultFile,
    env_passthrough,
    join_notes,
    reported_problems,
)
from sage_stream.agents.credentials import Credentials, passed_names
from sage_stream.agents.environment import check_passthrough
from sage_stream.errors import SageError
from sage_stream.process.supervise import NOTE_PREFIX
from sage_stream.text import iso_utc as iso_utc_of_epoch

ARGUMENT_LIMIT_BYTES = 120_000  # Linux: MAX_ARG_STRLEN is 128 KiB for one argument
SUMMARY_CHARS = 2000
VERSION_TIMEOUT_S = 15


# ---------------------------------------------------------------- configuration and the agent


@dataclass(frozen=True)
class CliConfig:
    """The `[agent]` keys every CLI agent reads, checked."""

    model: str | None = None
    extra_args: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)


def read_cli_config(config: Mapping[str, Any], *, cli: str, model_flags: Sequence[str],
                    reserved: Sequence[tuple[Sequence[str], str]] = ()) -> CliConfig:
    """`model`, `extra_args` and `env` of `config`, or SageError. `reserved`: (flags, why) pairs,
    flags sage-stream sets itself for `cli`, which `extra_args` may not contain."""
    extra_args = config.get("extra_args") or []
    if not isinstance(extra_args, list) or not all(isinstance(arg, str) for arg in extra_args):
        raise SageError(f"[agent] extra_args must be a list of strings, found {extra_args!r}")
    for flags, why in reserved:
        taken = [arg for arg in extra_args if is_flag(arg, flags)]
        if taken:
            raise SageError(f"[agent] extra_args: {taken[0]} is set by sage-stream for {cli} ({why}); remove it")
    model = config.get("model")
    if model is not None and not isinstance(model, str):
        raise SageError(f"[agent] model must be a string, found {model!r}")
    if model and has_flag(extra_args, model_flags):
        raise SageError(f"[agent] model is set and extra_args has {'/'.join(model_flags)} too: keep one of them")
    return CliConfig(model=model or None, extra_args=extra_args, env=env_passthrough(config))


class CliAgent:
    """The part of a CLI agent that is the same for every CLI; a subclass adds `invocation`
    and `parse_result`. Every CLI here can continue a session."""

    name: str
    executable: str  # the program, found on PATH
    own_environment: tuple[str, ...] = ()  # variables the CLI needs, passed besides `[agent] env`
    credentials: Credentials | None = None  # its documented credential and endpoint variables, its login
    state_dirs: tuple[str, ...] = ()  # the CLI's own state under HOME (sandboxed agents may write it)
    state_files: tuple[str, ...] = ()  # single files in HOME it saves by rename (see AgentState)

    def __init__(self, *, model: str | None = None, extra_args: Sequence[str] = (),
                 passthrough: Sequence[str] = (), executable: str | None = None) -> None:
        self.model = model
        self.extra_args = list(extra_args)
        documented = passed_names(self.credentials, os.environ) if self.credentials is not None else []
        self.passthrough = [*self.own_environment, *documented, *check_passthrough(passthrough)]
        if executable is not None:
            self.executable = executable

    @classmethod
    def configured(cls, config: CliConfig) -> Self:
        return cls(model=config.model, extra_args=config.extra_args, passthrough=config.env)

    def supports_sessions(self) -> bool:
        return True

    def state(self, env: Mapping[str, str]) -> AgentState:
        home = home_of(env)
        return AgentState(dirs=tuple(home / path for path in self.state_dirs),
                          files=tuple(home / path for path in self.state_files))


def is_flag(arg: str, flags: Sequence[str]) -> bool:
    """`arg` is one of `flags`, or `--flag=value` of one of them."""
    return arg in flags or any(arg.startswith(f"{flag}=") for flag in flags if flag.startswith("--"))


def has_flag(args: Sequence[str], flags: Sequence[str]) -> bool:
    return any(is_flag(arg, flags) for arg in args)


def checked_session(job: AgentJob, pattern: re.Pattern[str], what: str) -> str:
    """`job.session_id`, or SageError when it does not look like `what` (it goes into an argv)."""
    session = str(job.session_id)
    if not pattern.match(session):
        raise SageError(f"ticket {job.ticket.id}: session id {session!r} is not {what}")
    return session


def home_of(env: Mapping[str, str]) -> Path:
    """The agent's home directory: `HOME` of its environment, else ours."""
    return Path(env.get("HOME") or os.path.expanduser("~"))


# ---------------------------------------------------------------- the prompt and the version


def prompt_argument(job: AgentJob, limit_bytes: int = ARGUMENT_LIMIT_BYTES, *,
                    option_safe: bool = False) -> tuple[str, bool]:
    """(the prompt as one argument, whether it was shortened). A longer prompt keeps its start
    and its end (what "done" means) and names the file that holds all of it. `option_safe`: a
    prompt starting with `-` gets a newline first, for a CLI that has no `--` before it."""
    path = Path(job.prompt_file).absolute()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SageError(f"ticket {job.ticket.id}: cannot read the prompt {path}: {error}") from None
    if option_safe and text.startswith("-"):
        text = "\n" + text
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


def version_line(executable: str, *, last: bool = False, timeout_s: float = VERSION_TIMEOUT_S) -> str | None:
    """The first (or `last`) line `EXECUTABLE --version` prints; None when it is not installed or fails."""
    path = shutil.which(executable)
    if path is None:
        return None
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=timeout_s,
                              stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return None
    return lines[-1 if last else 0].strip()


# ---------------------------------------------------------------- the log

_FIRST_BRACE_OF_A_LINE = re.compile(r"^[^{\n]*\{", re.MULTILINE)


def log_lines(path: Path) -> Iterator[str]:
    """The lines of a log (or any text file) without their line ends; none when it is missing."""
    try:
        with open(path, "rb") as log:
            for raw in log:
                yield raw.decode("utf-8", errors="replace").rstrip("\r\n")
    except OSError:
        return


def iter_json_events(path: Path) -> Iterator[dict[str, Any]]:
    """Every `{"type": ...}` object on a line of the log, at its start or after other text
    (stderr is merged into the log)."""
    decoder = json.JSONDecoder()
    for line in log_lines(path):
        start = line.find('{"type"')
        if start < 0:
            continue
        try:
            value, _ = decoder.raw_decode(line, start)
        except ValueError:
            continue  # a truncated or interleaved line: not an event
        if isinstance(value, dict) and isinstance(value.get("type"), str):
            yield value


def last_json_object(text: str, accept: Callable[[dict[str, Any]], bool], *,
                     starts: re.Pattern[str] = _FIRST_BRACE_OF_A_LINE) -> dict[str, Any] | None:
    """The last JSON object in `text` that `accept`s; objects are tried where `starts` matches
    (its match ends at the object's `{`; by default the first `{` of each line)."""
    decoder = json.JSONDecoder()
    for match in reversed(list(starts.finditer(text))):
        try:
            value, _ = decoder.raw_decode(text, match.end() - 1)
        except ValueError:
            continue
        if isinstance(value, dict) and accept(value):
            return value
    return None


def note_in_log(job: AgentJob, text: str) -> None:
    """A line of ours in the log (before the CLI's output): what parse_result needs to know
    about the run, and what a person reading the log should."""
    try:
        Path(job.log_path).parent.mkdir(parents=True, exist_ok=True)
        with open(job.log_path, "a", encoding="utf-8") as log:
            log.write(f"{NOTE_PREFIX} {text}\n")
    except OSError:
        pass  # only a note: what it would have told parse_result is then unknown


def log_notes(path: Path) -> Iterator[str]:
    """Our notes in the log (from note_in_log and the engine), without the prefix."""
    prefix = f"{NOTE_PREFIX} "
    for line in log_lines(path):
        if line.startswith(prefix):
            yield line[len(prefix):].strip()


def mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


# ---------------------------------------------------------------- the result


def finished_result(written: ResultFile, block: ResultBlock | None, problems: Sequence[str] = (), *,
                    notes: Sequence[str | None] = (), **fields: Any) -> AgentResult:
    """A run whose CLI reported success: it failed ("other") when `problems` (what the CLI
    module found: an exit code, no step) or the agent itself (result file, SAGE-RESULT block)
    say so. `notes` and the result file's note go into the message."""
    problems = [*problems, *reported_problems(written, block)]
    return AgentResult(success=not problems, error_kind="other" if problems else None,
                       message=join_notes([*problems, *notes, written.note]), **fields)


def summary_of(written: ResultFile, block: ResultBlock | None, text: str | None) -> str | None:
    """The result file's summary, else the SAGE-RESULT block's, else `text` shortened."""
    return written.summary or (block.summary if block else None) or shorten(text)


def shorten(text: str | None, chars: int = SUMMARY_CHARS) -> str | None:
    text = (text or "").strip()
    if not text:
        return None
    return text if len(text) <= chars else text[: chars - 1] + "…"


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def int_sum(values: Sequence[Any]) -> int | None:
    """The sum of the integers among `values`; None when there are none (e.g. token counts)."""
    numbers = [value for value in values if as_int(value) is not None]
    return sum(numbers) if numbers else None


# ---------------------------------------------------------------- errors

SERVER_ERRORS = frozenset(range(500, 600))
RATE_LIMIT_WORDS = r"\b429\b|too many requests|rate.?limit"


@dataclass(frozen=True)
class ErrorRule:
    """One kind of failure (see base.ERROR_KINDS) as a CLI reports it: words of its message,
    HTTP statuses, error names (an API error type, an exception class)."""

    kind: str
    retryable: bool
    words: re.Pattern[str]
    statuses: Collection[int] = ()
    names: Collection[str] = ()


def words(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def classify(rules: Sequence[ErrorRule], message: str, *, status: int | None = None,
             name: str | None = None) -> tuple[str, bool]:
    """(error kind, retryable) of the first rule the status, the name or the message matches;
    ("other", False) when none does."""
    for rule in rules:
        if status in rule.statuses or name in rule.names or rule.words.search(message):
            return rule.kind, rule.retryable
    return "other", False


def iso_utc(moment: datetime) -> str:
    """A time an agent reported, as Sage writes times."""
    return iso_utc_of_epoch(moment.timestamp())


_DELAY = re.compile(r"(?:try again|retry) (?:in|after) ((?:\s*(?:,|and)?\s*\d+(?:\.\d+)?\s*"
                    r"(?:days?|d|hours?|h|minutes?|mins?|m|seconds?|secs?|s|milliseconds?|ms)\b)+)", re.IGNORECASE)
_DELAY_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(days?|d|hours?|h|minutes?|mins?|m|seconds?|secs?|s|milliseconds?|ms)\b",
                         re.IGNORECASE)


def _unit_seconds(unit: str) -> float:
    unit = unit.lower()
    if unit == "ms" or unit.startswith("milli"):
        return 0.001
    if unit == "m" or unit.startswith("min"):
        return 60
    return {"d": 86400, "h": 3600, "s": 1}[unit[0]]


def retry_delay_end(message: str, now: datetime | None = None) -> datetime | None:
    """When the delay a message asks for ends: "try again in 2 hours 5 minutes", "Please retry
    in 41.8s", "retry after 500ms" (rounded up to a second); None when it names none."""
    found = _DELAY.search(message)
    if found is None:
        return None
    seconds = sum(float(amount) * _unit_seconds(unit) for amount, unit in _DELAY_PART.findall(found.group(1)))
    return (now or datetime.now(UTC)) + timedelta(seconds=math.ceil(seconds))
