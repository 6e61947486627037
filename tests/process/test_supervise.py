"""run_agent: an agent process is started, watched, and stopped with everything it started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

from sage_stream.process import supervise
from sage_stream.process.supervise import AgentExit, AgentLaunch, clean_line, run_agent

PY = sys.executable


def launch(tmp_path: Path, argv: list[str], **overrides) -> AgentLaunch:
    values = dict(
        argv=argv,
        cwd=tmp_path,
        env={"PATH": os.environ.get("PATH", os.defpath)},
        log_path=tmp_path / "logs" / "agent.log",
        timeout_s=30.0,
        idle_timeout_s=None,
        grace_s=0.5,
    )
    values.update(overrides)
    return AgentLaunch(**values)


def python(source: str) -> list[str]:
    return [PY, "-c", textwrap.dedent(source)]


def run(spec: AgentLaunch, **kwargs) -> AgentExit:
    return run_agent(spec, cancel=kwargs.pop("cancel", threading.Event()), **kwargs)


def cancel_when(line: str) -> tuple[threading.Event, callable]:
    """A cancel event set as soon as the agent prints `line`: no guessing at delays."""
    cancel = threading.Event()

    def on_line(seen: str) -> None:
        if seen == line:
            cancel.set()

    return cancel, on_line


def gone(pid: int, create_time: float | None = None) -> bool:
    try:
        process = psutil.Process(pid)
        if create_time is not None and abs(process.create_time() - create_time) > 0.01:
            return True  # the pid was reused by somebody else
        return process.status() == psutil.STATUS_ZOMBIE and process.ppid() != os.getpid()
    except psutil.NoSuchProcess:
        return True


def read_pids(path: Path) -> list[int]:
    return [int(word) for word in path.read_text().split()]


def wait_gone(pid: int) -> bool:
    # an orphan killed by us is reaped by init, which may take a moment
    for _ in range(100):
        if gone(pid):
            return True
        time.sleep(0.02)
    return False


# A leader that starts a sleeping grandchild (and an optional setsid one), records their
# pids, prints "ready", then waits forever.
SPAWNER = """
    import os, subprocess, sys, time
    from pathlib import Path
    kids = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])]
    if "setsid" in sys.argv:
        kids.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True))
    if "ignore-term" in sys.argv:
        code = (
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('armed', flush=True); time.sleep(60)"
        )
        stubborn = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        stubborn.stdout.readline()  # its SIGTERM handler is in place
        kids.append(stubborn)
    Path("pids").write_text(" ".join(str(k.pid) for k in kids))
    print("ready", flush=True)
    time.sleep(60)
"""


def spawner(*flags: str) -> list[str]:
    return [*python(SPAWNER), *flags]


class TestExit:
    def test_exit_code_zero(self, tmp_path: Path) -> None:
        result = run(launch(tmp_path, python("print('hello')")))
        assert (result.outcome, result.returncode, result.error) == ("exited", 0, None)
        assert result.last_line == "hello"
        assert result.pid is not None

    def test_nonzero_exit_code_is_reported_not_raised(self, tmp_path: Path) -> None:
        result = run(launch(tmp_path, python("import sys; print('bad'); sys.exit(3)")))
        assert (result.outcome, result.returncode) == ("exited", 3)

    def test_runs_in_cwd_with_exactly_the_given_environment(self, tmp_path: Path) -> None:
        env = {"PATH": os.environ.get("PATH", ""), "ONLY_THIS": "yes"}
        source = "import os, json; print(json.dumps([os.getcwd(), sorted(os.environ)]))"
        run(launch(tmp_path, python(source), env=env))
        cwd, names = json.loads((tmp_path / "logs" / "agent.log").read_text())
        assert cwd == str(tmp_path)
        assert set(names) - {"LC_CTYPE"} == {"PATH", "ONLY_THIS"}  # Python may add LC_CTYPE itself

    def test_stdin_is_empty(self, tmp_path: Path) -> None:
        result = run(launch(tmp_path, python("import sys; print(repr(sys.stdin.read()))")))
        assert result.last_line == "''"

    def test_on_start_gets_pid_and_create_time(self, tmp_path: Path) -> None:
        seen: list[tuple[int, float]] = []

        def on_start(pid: int, create_time: float) -> None:
            seen.append((pid, create_time, psutil.Process(pid).create_time()))

        result = run(launch(tmp_path, python("print(1)")), on_start=on_start)
        [(pid, create_time, actual)] = seen
        assert pid == result.pid and create_time == actual

    def test_the_agent_is_reaped(self, tmp_path: Path) -> None:
        result = run(launch(tmp_path, python("print(1)")))
        assert gone(result.pid)
        with pytest.raises(ChildProcessError):
            os.waitpid(result.pid, os.WNOHANG)


class TestFailedToStart:
    def test_program_not_found(self, tmp_path: Path) -> None:
        result = run(launch(tmp_path, ["sage-no-such-program-xyz", "arg"]))
        assert result.outcome == "failed_to_start"
        assert result.pid is None and result.returncode is None
        assert "sage-no-such-program-xyz" in result.error and "not found" in result.error

    def test_program_not_executable(self, tmp_path: Path) -> None:
        script = tmp_path / "script.sh"
        script.write_text("echo hi\n")
        result = run(launch(tmp_path, [str(script)]))
        assert result.outcome == "failed_to_start"
        assert "permission denied" in result.error

    def test_relative_path_missing(self, tmp_path: Path) -> None:
        result = run(launch(tmp_path, ["scripts/missing.py"]))
        assert result.outcome == "failed_to_start" and str(tmp_path) in result.error

    def test_missing_working_directory(self, tmp_path: Path) -> None:
        result = run(launch(tmp_path, ["true"], cwd=tmp_path / "nowhere"))
        assert result.outcome == "failed_to_start" and "nowhere" in result.error

    def test_empty_argv(self, tmp_path: Path) -> None:
        assert run(launch(tmp_path, [])).outcome == "failed_to_start"

    def test_cancelled_before_start_starts_nothing(self, tmp_path: Path) -> None:
        cancel = threading.Event()
        cancel.set()
        result = run(launch(tmp_path, python("open('started', 'w')")), cancel=cancel)
        assert result.outcome == "cancelled" and result.pid is None
        assert not (tmp_path / "started").exists()


class TestStopping:
    def test_timeout_kills_child_and_grandchild(self, tmp_path: Path) -> None:
        started: list[psutil.Process] = []
        spec = launch(tmp_path, ["sh", "-c", "sleep 60 & echo $! > pids; echo ready; wait"], timeout_s=1.0)
        result = run(spec, on_start=lambda pid, _: started.append(psutil.Process(pid)))
        assert result.outcome == "timeout"
        assert result.returncode == -15
        assert "timed out after 1 s" in result.error
        assert not started[0].is_running()
        assert all(wait_gone(pid) for pid in read_pids(tmp_path / "pids"))

    def test_cancel_kills_the_tree(self, tmp_path: Path) -> None:
        cancel, on_line = cancel_when("ready")
        result = run(launch(tmp_path, spawner()), cancel=cancel, on_line=on_line)
        assert result.outcome == "cancelled" and result.error == "cancelled"
        assert all(wait_gone(pid) for pid in read_pids(tmp_path / "pids"))

    def test_grandchild_ignoring_sigterm_is_killed(self, tmp_path: Path) -> None:
        cancel, on_line = cancel_when("ready")
        result = run(launch(tmp_path, spawner("ignore-term"), grace_s=0.3), cancel=cancel, on_line=on_line)
        assert result.outcome == "cancelled"
        stubborn = read_pids(tmp_path / "pids")[-1]
        assert wait_gone(stubborn)

    def test_grandchild_in_its_own_session_is_killed(self, tmp_path: Path) -> None:
        cancel, on_line = cancel_when("ready")
        result = run(launch(tmp_path, spawner("setsid")), cancel=cancel, on_line=on_line)
        assert result.outcome == "cancelled"
        escaped = read_pids(tmp_path / "pids")[1]
        assert wait_gone(escaped)

    def test_idle_watchdog_fires_for_a_silent_hang(self, tmp_path: Path) -> None:
        spec = launch(tmp_path, python("print('thinking', flush=True); import time; time.sleep(60)"),
                      timeout_s=30.0, idle_timeout_s=0.5)
        result = run(spec)
        assert result.outcome == "idle_timeout"
        assert "no output for 0.5 s" in result.error
        assert result.last_line == "thinking"

    def test_idle_watchdog_spares_a_process_that_keeps_printing(self, tmp_path: Path) -> None:
        chatty = "import time\nwhile True:\n    print('working', flush=True)\n    time.sleep(0.05)"
        result = run(launch(tmp_path, python(chatty), timeout_s=1.5, idle_timeout_s=1.0))
        assert result.outcome == "timeout"

    def test_why_it_was_stopped_is_noted_in_the_log(self, tmp_path: Path) -> None:
        run(launch(tmp_path, ["sleep", "60"], timeout_s=0.5))
        log = (tmp_path / "logs" / "agent.log").read_text()
        assert "[sage-stream] timed out after 0.5 s: stopping the agent" in log


class TestLeftBehind:
    def test_grandchild_holding_the_output_open_does_not_hang_the_run(self, tmp_path: Path) -> None:
        # exits 0 at once, but a background sleep keeps the pipe's write end open
        spec = launch(tmp_path, ["sh", "-c", "sleep 60 & echo $! > pids; echo done"], timeout_s=30.0)
        result = run(spec)
        assert (result.outcome, result.returncode) == ("exited", 0)
        assert result.last_line == "done"
        assert all(wait_gone(pid) for pid in read_pids(tmp_path / "pids"))

    def test_background_job_with_closed_output_is_stopped(self, tmp_path: Path) -> None:
        spec = launch(tmp_path, ["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $! > pids"])
        result = run(spec)
        assert (result.outcome, result.returncode) == ("exited", 0)
        assert all(wait_gone(pid) for pid in read_pids(tmp_path / "pids"))

    def test_escaped_grandchild_of_a_finished_agent_is_stopped(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(supervise, "TRACK_DESCENDANTS_SECONDS", 0.0)
        source = """
            import subprocess, sys, time
            from pathlib import Path
            kid = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
            Path("pids").write_text(str(kid.pid))
            time.sleep(0.5)  # long enough to be seen by the tracker
            print("leaving", flush=True)
        """
        result = run(launch(tmp_path, python(source)))
        assert (result.outcome, result.returncode) == ("exited", 0)
        assert all(wait_gone(pid) for pid in read_pids(tmp_path / "pids"))


class TestOutput:
    def test_last_line_skips_blank_lines_and_escapes(self, tmp_path: Path) -> None:
        source = r"print('first'); print('\x1b[32mgreen\x1b[0m done'); print(); print('   '); print('\x1b[0m')"
        assert run(launch(tmp_path, python(source))).last_line == "green done"

    def test_last_line_without_trailing_newline(self, tmp_path: Path) -> None:
        source = "import sys; print('a'); sys.stdout.write('no newline at the end')"
        assert run(launch(tmp_path, python(source))).last_line == "no newline at the end"

    def test_last_line_is_trimmed(self, tmp_path: Path) -> None:
        line = run(launch(tmp_path, python("print('x' * 5000)"))).last_line
        assert len(line) <= 200 and line.startswith("xxx")

    def test_undecodable_bytes_are_replaced(self, tmp_path: Path) -> None:
        source = r"import sys; sys.stdout.buffer.write(b'caf\xe9 ok\n')"
        assert run(launch(tmp_path, python(source))).last_line == "caf\ufffd ok"

    def test_log_is_appended_byte_for_byte(self, tmp_path: Path) -> None:
        log = tmp_path / "logs" / "agent.log"
        log.parent.mkdir()
        log.write_bytes(b"previous attempt\n")
        run(launch(tmp_path, python(r"import sys; sys.stdout.buffer.write(b'\x00\xff\r\nend\n')")))
        assert log.read_bytes() == b"previous attempt\n\x00\xff\r\nend\n"

    def test_stderr_goes_to_the_same_log(self, tmp_path: Path) -> None:
        run(launch(tmp_path, python("import sys; print('out', flush=True); print('err', file=sys.stderr)")))
        assert (tmp_path / "logs" / "agent.log").read_text().split() == ["out", "err"]

    def test_large_output_streams_to_the_log(self, tmp_path: Path) -> None:
        source = """
            import sys
            block = (b"x" * 1023 + b"\\n") * 1024  # 1 MiB
            for _ in range(20):
                sys.stdout.buffer.write(block)
            sys.stdout.buffer.write(b"the end\\n")
        """
        result = run(launch(tmp_path, python(source)))
        assert result.outcome == "exited" and result.last_line == "the end"
        assert (tmp_path / "logs" / "agent.log").stat().st_size == 20 * 1024 * 1024 + len(b"the end\n")

    def test_on_line_reports_lines_but_is_throttled(self, tmp_path: Path) -> None:
        lines: list[str] = []
        source = "import time\nfor i in range(400):\n    print(f'line {i}', flush=True)\n    time.sleep(0.0025)"
        started = time.monotonic()
        run(launch(tmp_path, python(source)), on_line=lines.append)
        elapsed = time.monotonic() - started
        assert lines and lines[-1] == "line 399"
        assert len(lines) <= elapsed * 4 + 2  # never more than ~4 a second, whatever the output rate

    def test_a_failing_callback_still_stops_the_agent(self, tmp_path: Path) -> None:
        started: list[psutil.Process] = []

        def explode(line: str) -> None:
            raise RuntimeError("display broke")

        spec = launch(tmp_path, python("print('x', flush=True); import time; time.sleep(60)"), grace_s=0.2)
        with pytest.raises(RuntimeError, match="display broke"):
            run(spec, on_line=explode, on_start=lambda pid, _: started.append(psutil.Process(pid)))
        assert not started[0].is_running()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"plain", "plain"),
        (b"  padded \t", "padded"),
        (b"\x1b[1;31mbold red\x1b[0m", "bold red"),
        (b"\x1b]0;title\x07visible", "visible"),
        (b"10%\r50%\r100%", "100%"),
        (b"done\r   \r", "done"),
        (b"\x1b[0m", ""),
        (b"a\x00b\x07c", "abc"),
    ],
)
def test_clean_line(raw: bytes, expected: str) -> None:
    assert clean_line(raw) == expected


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
@pytest.mark.parametrize("die_with_parent", [True, False])
def test_an_agent_started_to_die_with_its_parent_does_not_outlive_a_killed_worker(tmp_path, die_with_parent):
    """A Dask worker SIGKILLed mid-agent: with die_with_parent the agent goes with it; without, it
    would run on and finish its side effects (what the flag exists for)."""
    import psutil

    pid_file = tmp_path / "agent.pid"
    agent = [sys.executable, "-c", f"import os, time, pathlib; pathlib.Path({str(pid_file)!r}).write_text("
                                   "str(os.getpid())); time.sleep(60)"]
    worker_code = (
        "import sys, threading, pathlib; from sage_stream.process.supervise import AgentLaunch, run_agent; "
        f"launch = AgentLaunch(argv={agent!r}, cwd=pathlib.Path({str(tmp_path)!r}), env=dict(__import__('os').environ),"
        f" log_path=pathlib.Path({str(tmp_path / 'agent.log')!r}), timeout_s=None, idle_timeout_s=None, "
        f"die_with_parent={die_with_parent}); "
        "t = threading.Thread(target=run_agent, args=(launch,), kwargs=dict(cancel=threading.Event())); t.start(); t.join()")
    worker = subprocess.Popen([sys.executable, "-c", worker_code])
    try:
        deadline = time.monotonic() + 30
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        agent_pid = int(pid_file.read_text())
        worker.kill()
        worker.wait()

        def gone() -> bool:
            try:
                return psutil.Process(agent_pid).status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return True

        if not die_with_parent:
            assert not gone()  # the orphan runs on
            return
        deadline = time.monotonic() + 30
        while not gone() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gone()
    finally:
        if pid_file.exists() and pid_file.read_text():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass
