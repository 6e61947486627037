"""Starting one agent process, watching it, and stopping it with everything it started.

`run_agent` blocks until the agent is over (the engine runs one per worker thread) and
never raises for a program that cannot start or misbehaves: the answer is an `AgentExit`.

How a run ends, and what is left behind (nothing):

- The agent runs in its own process group (`process_group=0`), with stdin from /dev/null
  (Codex appends piped stdin to its prompt) and stdout+stderr into one pipe that a reader
  thread copies to the log file in chunks, so any volume of output streams in constant memory.
- A wall-clock timeout, a no-output watchdog (`idle_timeout_s`) and the `cancel` event stop it:
  the process tree is snapshotted with psutil *before* anything is signalled (a process that
  called `setsid` has left the group but is still a descendant), then the group gets SIGTERM,
  `grace_s` to exit, a second snapshot, SIGKILL for the group and every snapshotted process
  still alive. Descendants are also recorded about once a second while the agent runs, which
  catches an escaped process whose parent died before the kill.
- When the agent exits by itself, its pid is not reaped until its group is empty (exit is
  seen with `waitid(..., WNOWAIT)`): the unreaped pid cannot be reused, so signalling the
  group stays safe. Processes it left behind (a background job, a grandchild holding the
  output pipe open) get the same TERM/KILL treatment after a short wait for end of output.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import psutil

from sage_stream.faults import crash_point
from sage_stream.process.tree import descendants, group_members, is_running, processes_with_environment


class ExitOutcome(str, Enum):
    """How an agent run ended. A str: it compares equal to, and is written to JSON as, its value."""

    EXITED = "exited"
    TIMEOUT = "timeout"
    IDLE_TIMEOUT = "idle_timeout"
    CANCELLED = "cancelled"
    FAILED_TO_START = "failed_to_start"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


EXITED = ExitOutcome.EXITED
TIMEOUT = ExitOutcome.TIMEOUT
IDLE_TIMEOUT = ExitOutcome.IDLE_TIMEOUT
CANCELLED = ExitOutcome.CANCELLED
FAILED_TO_START = ExitOutcome.FAILED_TO_START

CHUNK_BYTES = 64 * 1024
LAST_LINE_CHARS = 200
LINE_BUFFER_BYTES = 8 * 1024  # of a very long line, only its end is looked at for last_line
POLL_SECONDS = 0.05
LINE_CALLBACK_SECONDS = 0.25  # on_line at most ~4 times a second
TRACK_DESCENDANTS_SECONDS = 1.0
EOF_WAIT_SECONDS = 1.0  # after the agent exits, how long its output may take to end
NOTE_PREFIX = "[sage-stream]"

_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: titles, hyperlinks
    r"|\x1b[@-Z\\-_]"  # two-byte escapes
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass
class AgentLaunch:
    argv: list[str]
    cwd: Path
    env: dict[str, str]  # the complete environment of the process
    log_path: Path  # appended to, never truncated
    timeout_s: float | None
    idle_timeout_s: float | None
    grace_s: float = 5.0
    sandbox: tuple[str, ...] = ()  # an argv prefix that runs the command sandboxed (process/sandbox.py)
    die_with_parent: bool = False  # Linux: SIGKILL the agent when the thread that started it dies (a Dask worker)


@dataclass
class AgentExit:
    outcome: ExitOutcome
    returncode: int | None  # negative = killed by that signal
    duration_s: float
    last_line: str
    error: str | None  # why it was stopped or could not start; None when it exited by itself
    pid: int | None


def run_agent(
    launch: AgentLaunch,
    *,
    cancel: threading.Event,
    on_line: Callable[[str], None] | None = None,
    on_start: Callable[[int, float], None] | None = None,
) -> AgentExit:
    """Run the agent to its end; see the module docstring for how it is stopped."""
    started = time.monotonic()
    if cancel.is_set():
        return AgentExit(CANCELLED, None, 0.0, "", "cancelled before it started", None)
    try:
        log = _open_log(launch.log_path)
    except OSError as error:
        return _failed(started, f"cannot open the log {launch.log_path}: {error.strerror or error}")
    try:
        process = _start(launch, log)
    except _StartError as error:
        log.close()
        return _failed(started, str(error))
    run = _Run(launch, process, log, started)
    crash_point("agent_started")
    try:
        if on_start is not None:
            on_start(process.pid, _create_time(process.pid))
        return run.supervise(cancel, on_line)
    finally:
        run.cleanup()


class _StartError(Exception):
    pass


def _failed(started: float, error: str) -> AgentExit:
    return AgentExit(FAILED_TO_START, None, time.monotonic() - started, "", error, None)


def _open_log(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "ab", buffering=0)  # unbuffered: every chunk reaches the file at once


def _kill_when_parent_dies() -> None:
    """In the child, before exec: PR_SET_PDEATHSIG(SIGKILL), so an agent started by a Dask
    worker never outlives it (a SIGKILLed worker leaves no agent to finish its side effects)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG


def _start(launch: AgentLaunch, log) -> subprocess.Popen[bytes]:
    if not launch.argv:
        raise _StartError("cannot start the agent: its command is empty")
    program = launch.argv[0]
    if not Path(launch.cwd).is_dir():
        raise _StartError(f"cannot start {program!r}: working directory {launch.cwd} does not exist")
    if launch.sandbox:
        _check_startable(launch)  # inside the sandbox, bwrap would say it in words of its own
    try:
        return subprocess.Popen(
            [*launch.sandbox, *launch.argv],
            cwd=launch.cwd,
            env=launch.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            process_group=0,
            close_fds=True,
            preexec_fn=_kill_when_parent_dies if launch.die_with_parent and sys.platform == "linux" else None,
        )
    except FileNotFoundError:
        raise _StartError(f"cannot start {program!r}: {_not_found_reason(launch)}") from None
    except PermissionError:
        raise _StartError(f"cannot start {program!r}: permission denied (is it executable?)") from None
    except OSError as error:
        raise _StartError(f"cannot start {program!r}: {error.strerror or error}") from None


def _check_startable(launch: AgentLaunch) -> None:
    """The program exists and is executable: the same message with or without a sandbox."""
    program = launch.argv[0]
    if "=" in program:  # `env` in the sandbox's prefix would take it for a variable
        raise _StartError(f"cannot start {program!r} in the sandbox: a program name with '=' (rename it)")
    if "/" in program:
        found: str | None = str(Path(launch.cwd) / program)
        if not os.path.isfile(found):
            found = None
    else:
        found = shutil.which(program, mode=os.F_OK, path=launch.env.get("PATH", os.defpath))
    if found is None:
        raise _StartError(f"cannot start {program!r}: {_not_found_reason(launch)}")
    if not os.access(found, os.X_OK):
        raise _StartError(f"cannot start {program!r}: permission denied (is it executable?)")


def _not_found_reason(launch: AgentLaunch) -> str:
    program = launch.argv[0]
    if "/" in program:
        return f"no such file (relative paths start at {launch.cwd})"
    search_path = launch.env.get("PATH", os.defpath)
    if shutil.which(program, path=search_path) is None:
        return f"program not found on PATH ({search_path})"
    return "program or its interpreter not found"


def _create_time(pid: int) -> float:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return time.time()


class _Run:
    """One started process: the supervision loop and the cleanup that always follows."""

    def __init__(self, launch: AgentLaunch, process: subprocess.Popen[bytes], log, started: float) -> None:
        self.launch = launch
        self.process = process
        self.pgid = process.pid  # process_group=0: the agent leads its own group
        self.started = started
        self.reader = _OutputReader(process.stdout, log)
        self.reader.start()
        self.known: dict[int, psutil.Process] = {}
        self.last_tracked = started
        self.cleaned = False
        self.marker = _identity(launch.env)
        self.exit_poller = _exit_poller(process.pid)

    def supervise(self, cancel: threading.Event, on_line: Callable[[str], None] | None) -> AgentExit:
        emitter = _LineEmitter(on_line)
        deadline = None if self.launch.timeout_s is None else self.started + self.launch.timeout_s
        while not self._leader_exited():
            now = time.monotonic()
            stop = self._stop_reason(cancel, now, deadline)
            if stop is not None:
                outcome, error = stop
                self.reader.note(f"{error}: stopping the agent")
                self._stop_tree()
                emitter.flush(self.reader.last_line)
                return self._exit(outcome, error)
            crash_point("agent_running")
            emitter.offer(self.reader.last_line, now)
            self._track_descendants(now)
            self._pause(cancel)
        self._finish_after_exit()
        emitter.flush(self.reader.last_line)
        return self._exit(EXITED, None)

    def _pause(self, cancel: threading.Event) -> None:
        """Wait up to POLL_SECONDS, waking the moment the agent exits where the system
        can say so (a pidfd): the next ticket should not wait out a poll interval.
        Cancellation is seen at the next pass, at most POLL_SECONDS later."""
        if self.exit_poller is None:
            cancel.wait(POLL_SECONDS)
        else:
            self.exit_poller[1].poll(POLL_SECONDS * 1000)

    def _stop_reason(
        self, cancel: threading.Event, now: float, deadline: float | None
    ) -> tuple[ExitOutcome, str] | None:
        if cancel.is_set():
            return CANCELLED, "cancelled"
        if deadline is not None and now >= deadline:
            return TIMEOUT, f"timed out after {_seconds(self.launch.timeout_s)}"
        idle = self.launch.idle_timeout_s
        if idle is not None and now - self.reader.last_output >= idle:
            return IDLE_TIMEOUT, f"no output for {_seconds(idle)} (idle timeout)"
        return None

    def _leader_exited(self) -> bool:
        """True once the agent has exited; it stays unreaped so its pid and group stay ours."""
        if self.process.returncode is not None:
            return True
        if not hasattr(os, "waitid"):  # macOS before Python 3.13: reap at once instead
            return self.process.poll() is not None
        try:
            found = os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # somebody else reaped it
            return True
        return found is not None

    def _track_descendants(self, now: float) -> None:
        if now - self.last_tracked >= TRACK_DESCENDANTS_SECONDS:
            self.last_tracked = now
            self._remember(self._descendants())

    def _descendants(self) -> list[psutil.Process]:
        if self.process.returncode is not None:  # reaped: its pid may belong to someone else now
            return []
        return descendants(self.process.pid)

    def _remember(self, processes: Iterable[psutil.Process]) -> None:
        for process in processes:
            self.known.setdefault(process.pid, process)

    def _finish_after_exit(self) -> None:
        """The agent exited: let its output end, then stop whatever it left running."""
        self.reader.join(EOF_WAIT_SECONDS)
        leftovers = self._leftovers()
        if leftovers or self.reader.is_alive():
            what = f"{len(leftovers)} process(es) running" if leftovers else "its output open"
            self.reader.note(f"the agent exited but left {what}: stopping them")
            self._stop_tree()

    def _leftovers(self) -> list[psutil.Process]:
        self._remember(self._marked())
        alive = [p for p in self.known.values() if is_running(p)]
        alive += [p for p in group_members(self.pgid) if p.pid != self.process.pid and p.pid not in self.known]
        return alive

    def _marked(self) -> list[psutil.Process]:
        """Processes that carry this agent's SAGE_* identity in their environment: a
        child that called setsid and whose parent exited is no descendant of anything
        we know any more, but it inherited the agent's environment."""
        if self.marker is None:
            return []
        return [p for p in processes_with_environment(self.marker) if p.pid != self.process.pid]

    def _stop_tree(self) -> None:
        """SIGTERM, grace period, SIGKILL: for the group and every descendant ever seen."""
        self._remember(self._descendants())  # before any signal: setsid escapees
        self._remember(self._marked())
        self._signal_all(signal.SIGTERM)
        self._wait_until_gone(self.launch.grace_s, midway=lambda: self._remember(self._descendants()))
        self._remember(self._descendants())
        self._signal_all(signal.SIGKILL)
        self._wait_until_gone(max(1.0, self.launch.grace_s), midway=None)

    def _signal_all(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, signum)
        for process in self.known.values():
            with contextlib.suppress(psutil.Error):
                process.send_signal(signum)  # psutil refuses a pid that was reused

    def _wait_until_gone(self, seconds: float, midway: Callable[[], None] | None) -> None:
        deadline = time.monotonic() + seconds
        snapshot_at = time.monotonic() + seconds / 2
        while time.monotonic() < deadline:
            if self._leader_exited() and not self._leftovers():
                return
            if midway is not None and time.monotonic() >= snapshot_at:
                midway()  # the second snapshot: children started while handling SIGTERM
                midway = None
            time.sleep(POLL_SECONDS)

    def _exit(self, outcome: ExitOutcome, error: str | None) -> AgentExit:
        self.cleanup()
        return AgentExit(
            outcome=outcome,
            returncode=_returncode(self.process.returncode, sandboxed=bool(self.launch.sandbox)),
            duration_s=time.monotonic() - self.started,
            last_line=self.reader.last_line,
            error=error,
            pid=self.process.pid,
        )

    def cleanup(self) -> None:
        """Reap the agent and stop reading; also runs when a callback raised."""
        if self.cleaned:
            return
        self.cleaned = True
        if not self._leader_exited() or self._leftovers():
            self._stop_tree()
        self.process.wait()
        self.reader.join(EOF_WAIT_SECONDS)
        self.reader.stop()
        self.reader.join(None)
        self.reader.close()
        if self.exit_poller is not None:
            os.close(self.exit_poller[0])
            self.exit_poller = None


def _returncode(returncode: int | None, *, sandboxed: bool) -> int | None:
    """The exit code as Popen gives it: negative for a signal. In a sandbox, bwrap passes a
    command killed by signal N on as exit code 128 + N (as shells do): turned back here, so an
    agent killed by SIGKILL reads the same with or without the sandbox."""
    if sandboxed and returncode is not None and 128 < returncode < 128 + signal.NSIG:
        return 128 - returncode
    return returncode


def _exit_poller(pid: int) -> tuple[int, select.poll] | None:
    """A pidfd of the agent and a poller on it (readable once it exits); None where
    Linux < 5.3 or another system has none: then the loop polls on its interval."""
    if not hasattr(os, "pidfd_open"):
        return None
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return fd, poller


def _seconds(value: float | None) -> str:
    return f"{value:g} s"


# Set for every agent turn (agents/environment.py); the prompt file is a turn's own, so
# no two running agents share all four. Checks get no prompt file: several run at once
# for one ticket, and are only stopped by their group and descendants.
IDENTITY_KEYS = ("SAGE_RUN_ID", "SAGE_TICKET_ID", "SAGE_WORKTREE", "SAGE_PROMPT_FILE")


def _identity(env: dict[str, str]) -> dict[str, str] | None:
    """The SAGE_* variables that tell this agent turn's processes from any other's."""
    if not all(env.get(key) for key in IDENTITY_KEYS):
        return None
    return {key: env[key] for key in IDENTITY_KEYS}


class _LineEmitter:
    """Passes the latest output line on, at most every LINE_CALLBACK_SECONDS."""

    def __init__(self, on_line: Callable[[str], None] | None) -> None:
        self.on_line = on_line
        self.sent = ""
        self.sent_at = float("-inf")

    def offer(self, line: str, now: float) -> None:
        if self.on_line and line and line != self.sent and now - self.sent_at >= LINE_CALLBACK_SECONDS:
            self.sent, self.sent_at = line, now
            self.on_line(line)

    def flush(self, line: str) -> None:
        if self.on_line and line and line != self.sent:
            self.sent = line
            self.on_line(line)


class _OutputReader(threading.Thread):
    """Copies the agent's output to its log and keeps the last non-empty line."""

    def __init__(self, stream, log) -> None:
        super().__init__(name="agent-output", daemon=True)
        self.stream = stream
        self.fd = stream.fileno()
        self.log = log
        self.log_lock = threading.Lock()
        self.partial = b""  # the unterminated end of the output, up to LINE_BUFFER_BYTES
        self.last_line = ""
        self.last_output = time.monotonic()
        self.stopping = threading.Event()

    def run(self) -> None:
        # poll with a timeout so that stop() ends the thread even while a stray process
        # still holds the write end of the pipe open
        poller = select.poll()
        poller.register(self.fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        while not self.stopping.is_set():
            if not poller.poll(100):
                continue
            try:
                chunk = os.read(self.fd, CHUNK_BYTES)
            except OSError:
                break
            if not chunk:
                break
            self.last_output = time.monotonic()
            self._write(chunk)
            self._take_lines(chunk)

    def _write(self, data: bytes) -> None:
        with self.log_lock:
            with contextlib.suppress(OSError, ValueError):  # a full disk must not kill the run
                self.log.write(data)

    def note(self, text: str) -> None:
        """A line of our own in the log, e.g. why the agent was stopped."""
        self._write(f"\n{NOTE_PREFIX} {text}\n".encode())

    def _take_lines(self, chunk: bytes) -> None:
        data = self.partial + chunk
        cut = data.rfind(b"\n")
        if cut >= 0:
            line = _last_nonempty_line(data[:cut])
            if line:
                self.last_line = line
            data = data[cut + 1 :]
        # the unterminated end counts too: a progress bar or a question shows up as typed
        self.partial = data[-LINE_BUFFER_BYTES:]
        line = clean_line(self.partial)
        if line:
            self.last_line = line

    def stop(self) -> None:
        self.stopping.set()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.stream.close()
        with self.log_lock:
            self.log.close()


def _last_nonempty_line(data: bytes) -> str:
    """The last line with visible text, decoded, without escapes, at most LAST_LINE_CHARS."""
    end = len(data)
    while end > 0:
        start = data.rfind(b"\n", 0, end) + 1
        line = clean_line(data[start:end][-LINE_BUFFER_BYTES:])
        if line:
            return line
        end = start - 1
    return ""


def clean_line(raw: bytes) -> str:
    """One output line as a person would see it: after the last carriage return, no escapes."""
    text = _ANSI.sub("", raw.decode("utf-8", errors="replace"))
    segments = [s for s in text.split("\r") if _CONTROL.sub("", s).strip()]
    if not segments:
        return ""
    line = _CONTROL.sub("", segments[-1]).strip()
    if len(line) > LAST_LINE_CHARS:
        line = line[: LAST_LINE_CHARS - 1] + "…"
    return line
