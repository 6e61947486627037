"""Agents that misbehave, all in one run beside a well-behaved ticket: each ends in the
right state with a clear reason, the others are unaffected, and no process is left.

The agents are small python programs run by the exec agent. Every process an agent
starts writes its pid to `<tmp>/pids/<name>`, so the test can prove it is gone.
`-m slow` adds an agent that prints 100 MB.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from .support import (
    alive,
    check_index_sound,
    clean_env,
    git,
    held_locks,
    leftover_processes,
    make_repo,
    py,
    read_index,
    report,
    run_stream,
    stream_argv,
    ticket,
    trailer_counts,
    write_config,
    write_file_cmd,
    write_index,
)

TIMEOUT_MIN = "0.05"  # 3 s of wall clock per agent
IDLE_MIN = "0.02"  # 1.2 s without output


def remember_pid(pids: Path, name: str) -> str:
    return f"import os, pathlib; pathlib.Path({str(pids / name)!r}).write_text(str(os.getpid()))\n"


def spawn(pids: Path, name: str, body: str) -> str:
    """Python code that starts a child process running `body` (after recording its pid)."""
    child = remember_pid(pids, name) + body
    return f"import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', {child!r}])\n"


def delete(path: str) -> list[str]:
    return py(f"import pathlib; pathlib.Path({path!r}).unlink(); print('deleted')")


def fault_backlog(pids: Path, marks: Path) -> list[dict[str, Any]]:
    hook = marks / "hook.sh"
    hook.write_text(f"#!/bin/sh\necho \"$0 $*\" >> {marks / 'ran'}\ncat\n")
    hook.chmod(0o755)
    tamper = (
        "import pathlib, shutil, subprocess\n"
        "common = pathlib.Path(subprocess.run(['git', 'rev-parse', '--git-common-dir'], capture_output=True,"
        " text=True, check=True).stdout.strip())\n"
        "(common / 'hooks').mkdir(exist_ok=True)\n"
        "for name in ('pre-commit', 'post-commit', 'post-checkout', 'reference-transaction', 'post-index-change'):\n"
        f"    shutil.copy({str(hook)!r}, common / 'hooks' / name)\n"
        f"subprocess.run(['git', 'config', 'core.fsmonitor', {str(hook)!r}], check=True)\n"
        f"subprocess.run(['git', 'config', 'core.hooksPath', {str(hook.parent)!r}], check=True)\n"
        "pathlib.Path('.sage/tickets').mkdir(parents=True, exist_ok=True)\n"
        "pathlib.Path('.sage/tickets/index.json').write_text('garbage')\n"  # the worktree's own .sage/: ignored
        "pathlib.Path('src/tamper.txt').write_text('t')\n"
        f"pathlib.Path({str(marks / 'planted')!r}).write_text('yes')\n"
    )
    refs = ("import pathlib, subprocess\n"
            "def git(*args): subprocess.run(['git', *args], check=True, capture_output=True)\n"
            "pathlib.Path('src/refs.txt').write_text('r')\n"
            "git('add', 'src/refs.txt')\n"
            "git('-c', 'user.name=agent', '-c', 'user.email=a@b.c', 'commit', '-q', '-m', 'agent commit')\n"
            "git('branch', 'agent-made'); git('tag', 'v-agent')\n")
    links = ("import os\n"
             "os.symlink('/etc/passwd', 'src/passwd')\n"
             "os.symlink('../../../../../../..', 'src/up')\n")
    return [
        ticket("OK-1", write_file_cmd("src/ok.txt", "ok\n"), files=["src/**"]),
        ticket("EXIT-1", py("import sys; print('compiler error: x is undefined'); sys.exit(3)")),
        ticket("HANG-1", py(remember_pid(pids, "HANG-1") + "import time; time.sleep(600)")),
        ticket("CHAT-1", py(remember_pid(pids, "CHAT-1")
                            + "import time\nwhile True:\n    print('still thinking', flush=True); time.sleep(0.1)")),
        ticket("GARB-1", py("import os, pathlib; pathlib.Path('src/garb.txt').write_text('g'); "
                            "pathlib.Path(os.environ['SAGE_RESULT_FILE']).write_bytes(b'\\x00\\xff{not json')"),
               files=["src/**"]),
        ticket("TRUNC-1", py("import os, pathlib, sys; pathlib.Path('src/trunc.txt').write_text('t'); "
                             "pathlib.Path(os.environ['SAGE_RESULT_FILE']).write_text('{\"success\": tr'); "
                             "sys.exit(1)")),
        ticket("TERM-1", py(spawn(pids, "TERM-1-grandchild",
                                  "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)")
                            + "import time; print('started a helper', flush=True); time.sleep(600)")),
        ticket("SETSID-1", py(spawn(pids, "SETSID-1-child", "import os, time; os.setsid(); time.sleep(600)")
                              + "import pathlib, time; time.sleep(0.3); "
                                "pathlib.Path('src/setsid.txt').write_text('s')"),
               files=["src/**"]),
        ticket("DEL-1", delete("src/gone.txt"), files=["src/**"]),
        ticket("DELOUT-1", delete("README.md"), files=["src/**"]),
        ticket("OUT-1", write_file_cmd("elsewhere.txt", "x"), files=["src/**"]),
        ticket("TAMPER-1", py(tamper), files=["src/**"]),
        ticket("REFS-1", py(refs), files=["src/**"]),
        ticket("LINK-1", py(links), files=["src/**"]),
    ]


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("faults")
    pids, marks = root / "pids", root / "marks"
    pids.mkdir()
    marks.mkdir()
    repo = make_repo(root / "repo", files={"src/keep.txt": "keep\n", "src/gone.txt": "gone\n"})
    # unsandboxed: these agents report their process ids, which mean nothing outside the
    # sandbox's PID namespace, and tamper with git, which the sandbox would refuse: this is
    # the supervisor's and the repository guard's defence on its own (tests/e2e/test_stream_sandbox.py
    # has the sandbox's)
    write_config(repo, "[stream]\ngrace_seconds = 1\n\n[agent]\nsandbox = \"none\"\n")
    write_index(repo, fault_backlog(pids, marks))
    result = run_stream(repo, "--timeout", TIMEOUT_MIN, "--idle-timeout", IDLE_MIN, parallel=4)
    return {"repo": repo, "pids": pids, "marks": marks, "result": result, "tickets": read_index(repo)}


def reason(run: dict[str, Any], tid: str) -> dict[str, Any]:
    item = run["tickets"][tid]
    assert item["state"] == "DEFERRED", (tid, item["state"])
    return item["defer_reason"]


def test_the_run_ends_with_exit_3_and_no_traceback(faulty_run):
    result = faulty_run["result"]
    assert result.returncode == 3, result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_the_well_behaved_ticket_lands(faulty_run):
    assert faulty_run["tickets"]["OK-1"]["state"] == "COMPLETED"
    assert git(faulty_run["repo"], "show", "main:src/ok.txt") == "ok\n"


def test_non_zero_exit_is_deferred_with_the_exit_code_and_last_line(faulty_run):
    why = reason(faulty_run, "EXIT-1")
    assert why["category"] == "agent_failed" and "exit code 3" in why["message"]
    assert "x is undefined" in why["last_error"]
    assert "x is undefined" in Path(why["log"]).read_text()


def test_a_silent_hang_is_stopped_by_the_idle_watchdog(faulty_run):
    why = reason(faulty_run, "HANG-1")
    assert why["category"] == "timeout" and "printed nothing" in why["message"] and why["retryable"] is True
    assert faulty_run["tickets"]["HANG-1"]["not_before"]


def test_a_hang_that_keeps_printing_is_stopped_by_the_wall_clock(faulty_run):
    why = reason(faulty_run, "CHAT-1")
    assert why["category"] == "timeout" and "ran longer than" in why["message"]
    assert why["last_error"] == "still thinking"


def test_garbage_in_the_result_file_does_not_override_a_successful_exit(faulty_run):
    assert faulty_run["tickets"]["GARB-1"]["state"] == "COMPLETED"  # exit 0 is the contract; the file is optional


def test_truncated_result_json_is_named_in_the_reason(faulty_run):
    why = reason(faulty_run, "TRUNC-1")
    assert why["category"] == "agent_failed" and "exit code 1" in why["message"]
    assert "not valid JSON" in why["message"]


def test_a_grandchild_that_ignores_sigterm_is_killed(faulty_run):
    assert reason(faulty_run, "TERM-1")["category"] == "timeout"
    assert not alive(int((faulty_run["pids"] / "TERM-1-grandchild").read_text()))


def test_a_child_that_called_setsid_does_not_outlive_its_agent(faulty_run):
    assert faulty_run["tickets"]["SETSID-1"]["state"] == "COMPLETED"
    assert not alive(int((faulty_run["pids"] / "SETSID-1-child").read_text()))


def test_deleting_files_in_scope_lands_the_deletion(faulty_run):
    assert faulty_run["tickets"]["DEL-1"]["state"] == "COMPLETED"
    assert "src/gone.txt" not in git(faulty_run["repo"], "ls-tree", "-r", "--name-only", "main")
    assert "src/keep.txt" in git(faulty_run["repo"], "ls-tree", "-r", "--name-only", "main")


def test_deleting_or_writing_outside_files_is_a_scope_violation_and_nothing_lands(faulty_run):
    repo = faulty_run["repo"]
    for tid, path in (("DELOUT-1", "README.md"), ("OUT-1", "elsewhere.txt")):
        why = reason(faulty_run, tid)
        assert why["category"] == "scope_violation" and path in why["message"]
    listing = git(repo, "ls-tree", "-r", "--name-only", "main").split()
    assert "README.md" in listing and "elsewhere.txt" not in listing


def test_hooks_and_config_an_agent_plants_in_git_never_run_under_sage(faulty_run):
    repo = faulty_run["repo"]
    assert not (faulty_run["marks"] / "ran").exists()  # no hook, fsmonitor or hooksPath program ran
    assert (faulty_run["marks"] / "planted").exists()  # the agent did plant them: else this proves nothing
    assert json.loads((repo / ".sage" / "tickets" / "index.json").read_text())  # the real index is untouched
    assert ".sage/tickets/index.json" not in git(repo, "ls-tree", "-r", "--name-only", "main")


def test_tampering_with_git_control_files_defers_the_ticket_and_is_undone(faulty_run):
    repo = faulty_run["repo"]
    why = reason(faulty_run, "TAMPER-1")
    assert "hooks/pre-commit" in why["message"] and "config" in why["message"], why["message"]
    assert not (repo / ".git" / "hooks" / "pre-commit").exists()
    config = git(repo, "config", "--list", "--local")
    assert "core.fsmonitor" not in config and "core.hookspath" not in config.lower()
    assert "src/tamper.txt" not in git(repo, "ls-tree", "-r", "--name-only", "main")


def test_a_branch_an_agent_makes_of_its_commits_is_undone_and_its_ticket_deferred(faulty_run):
    """Only sage moves branches during a run (engine/target_watch.py): the branch is removed,
    its commit kept under refs/sage/displaced/, and nothing of the ticket lands."""
    repo = faulty_run["repo"]
    why = reason(faulty_run, "REFS-1")
    assert why["category"] == "scope_violation"
    assert "the agent moved refs/heads/agent-made from nothing to" in why["message"]
    assert trailer_counts(repo)["REFS-1"] == 0
    assert not git(repo, "rev-parse", "--verify", "-q", "refs/heads/agent-made", check=False).strip()
    kept = git(repo, "for-each-ref", "--format=%(refname)", "refs/sage/displaced/agent-made/").split()
    assert len(kept) == 1 and git(repo, "log", "-1", "--format=%s", kept[0]).strip() == "agent commit"
    assert git(repo, "rev-parse", "--verify", "-q", "refs/tags/v-agent").strip()  # tags are not branches


def test_symlinks_that_leave_the_repository_are_refused(faulty_run):
    why = reason(faulty_run, "LINK-1")
    assert why["category"] == "scope_violation"
    assert "symbolic links" in why["last_error"] and "/etc/passwd" in why["last_error"]
    assert "src/passwd" not in git(faulty_run["repo"], "ls-tree", "-r", "--name-only", "main")


def test_the_symlink_reason_names_the_symlinks(faulty_run):
    assert "symbolic link" in reason(faulty_run, "LINK-1")["message"]


def test_an_ignored_result_file_is_reported(faulty_run):
    result = faulty_run["tickets"]["GARB-1"].get("agent_result") or {}
    assert "not valid JSON" in json.dumps(result)


def test_nothing_is_left_running_no_lock_is_held_and_the_index_is_sound(faulty_run):
    repo = faulty_run["repo"]
    for pid_file in faulty_run["pids"].iterdir():
        assert not alive(int(pid_file.read_text())), pid_file.name
    assert not leftover_processes(repo)
    assert not held_locks(repo)
    check_index_sound(repo)
    assert all(count == 1 for count in trailer_counts(repo).values())


# ---------------------------------------------------------------- 100 MB of output


@pytest.mark.slow
def test_100_mb_of_output_streams_to_the_log_in_bounded_memory(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    loud = py("import os, pathlib, sys\nline = b'x' * 1023 + b'\\n'\nblock = line * 1024\n"
              "for _ in range(100):\n    sys.stdout.buffer.write(block)\nsys.stdout.flush()\n"
              "pathlib.Path('loud.txt').write_text('done')")
    write_index(repo, [ticket("LOUD-1", loud), ticket("OK-1", write_file_cmd("ok.txt", "ok"))])
    process = subprocess.Popen(stream_argv(repo), cwd=repo, env=clean_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    peak = _watch_rss(process)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, out + err
    tickets = read_index(repo)
    assert tickets["LOUD-1"]["state"] == "COMPLETED" and tickets["OK-1"]["state"] == "COMPLETED"
    log = next((repo / ".sage" / "workers").glob("*/LOUD-1.log"))
    assert log.stat().st_size >= 100 * 1024 * 1024
    assert peak < 200 * 1024 * 1024, f"sage's peak RSS was {peak / 2**20:.0f} MB for 100 MB of agent output"
    report("agent-100mb-output", peak_rss_mb=round(peak / 2**20, 1), log_mb=round(log.stat().st_size / 2**20, 1))


def _watch_rss(process: subprocess.Popen) -> int:
    """Peak resident memory of the sage process (not its agents), sampled every 50 ms."""
    peak = 0
    watched = psutil.Process(process.pid)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                peak = max(peak, watched.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    process.wait(timeout=600)
    done.set()
    sampler.join()
    return peak
