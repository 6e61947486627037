"""The small pieces the reliability suite added to the engine, each on its own: crash and
fault points, links that leave the repository, git's environment, catching a checkout up
over landings, stale slot locks, stray agents of a dead run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sage_stream import faults
from sage_stream.process.tree import processes_with_environment, stop_strays, wait_for_leftover_git
from sage_stream.engine.landing import escaping_links
from sage_stream.engine.checkout_wait import landings_behind as _landings_behind
from sage_stream.git import HistoryEntry, _passed_to_git

from .support import alive


@pytest.mark.parametrize(("links", "leaving"), [
    ({"a": "b.txt", "d/e": "../c", "d/f": "./g"}, set()),
    ({"abs": "/etc/passwd"}, {"abs"}),
    ({"up": "../x"}, {"up"}),
    ({"d/up": "../../x"}, {"d/up"}),
    ({"g": ".git/config", "d/g": "../.git/hooks"}, {"g", "d/g"}),
])
def test_links_that_leave_the_repository_or_enter_git_are_found(links: dict[str, str], leaving: set[str]) -> None:
    assert set(escaping_links(links)) == leaving


def test_git_gets_identity_and_config_variables_but_no_secrets_and_no_repository_pointers() -> None:
    for name in ("PATH", "HOME", "GIT_AUTHOR_NAME", "GIT_COMMITTER_EMAIL", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_KEY_0",
                 "LC_CTYPE", "GIT_TRACE"):
        assert _passed_to_git(name), name
    for name in ("GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "GIT_DIR", "GIT_INDEX_FILE", "SSH_AUTH_SOCK", "PYTHONPATH",
                 "GIT_TOKEN"):
        assert not _passed_to_git(name), name


def entry(commit: str, tree: str, landing: bool) -> HistoryEntry:
    return HistoryEntry(commit=commit, tree=tree, has_trailer=landing)


def test_a_checkout_behind_only_landings_is_caught_up_from_the_commit_it_holds() -> None:
    history = [entry("c3", "t3", True), entry("c2", "t2", True), entry("c1", "t1", False)]

    def behind(history: list[HistoryEntry], index_tree: str | None) -> str | None:
        return _landings_behind(history, lambda held: held.tree == index_tree)

    assert behind(history, "t3") is None  # up to date
    assert behind(history, "t2") == "c2"
    assert behind(history, "t1") == "c1"
    assert behind(history, "t-mine") is None  # staged changes of its own: left alone
    assert behind([entry("c3", "t3", False), entry("c2", "t2", True)], "t2") is None  # a person's commit
    assert behind(history, None) is None  # an index with unmerged entries holds no commit's tree
    assert behind([], "t3") is None


def test_a_fault_point_runs_its_command_once_at_the_nth_hit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "count"
    monkeypatch.setenv(faults.FAULT_ENV, "landing_locked#2")
    count_calls = (f"import pathlib; p = pathlib.Path({str(out)!r}); "
                   "p.write_text(str(int(p.read_text()) + 1) if p.exists() else '1')")
    monkeypatch.setenv(faults.FAULT_CMD_ENV, json.dumps([sys.executable, "-c", count_calls]))
    monkeypatch.setenv(faults.TRACE_ENV, str(tmp_path / "trace"))
    monkeypatch.setattr(faults, "_fault_hits", {})
    for _ in range(4):
        faults.crash_point("landing_locked")
    faults.crash_point("after_land")
    assert out.read_text() == "1"
    assert (tmp_path / "trace").read_text().split() == ["landing_locked"] * 4 + ["after_land"]


def test_a_crash_point_kills_at_the_nth_hit_only() -> None:
    code = ("import os; os.environ['SAGE_TEST_CRASH_AT'] = 'after_land#3'\n"
            "from sage_stream.faults import crash_point\n"
            "for n in range(5):\n    print(n, flush=True); crash_point('after_land'); crash_point('landing_locked')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == -signal.SIGKILL
    assert result.stdout.split() == ["0", "1", "2"]


def test_stray_agents_of_a_dead_run_are_stopped_and_the_current_runs_are_not(tmp_path: Path) -> None:
    root = tmp_path / "worktrees"
    (root / "slot-0").mkdir(parents=True)
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]

    def agent(run_id: str) -> subprocess.Popen:
        env = {**os.environ, "SAGE_WORKTREE": str(root / "slot-0"), "SAGE_RUN_ID": run_id, "SAGE_TICKET_ID": "T-1"}
        return subprocess.Popen(sleeper, env=env, process_group=0)

    dead, live = agent("dead-run"), agent("this-run")
    elsewhere = subprocess.Popen(sleeper, env={**os.environ, "SAGE_WORKTREE": str(tmp_path / "other" / "slot-0"),
                                               "SAGE_RUN_ID": "dead-run", "SAGE_TICKET_ID": "T-1"})
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(processes_with_environment({"SAGE_TICKET_ID": "T-1"})) < 3:
            time.sleep(0.05)  # the children have exec'd and their environment is readable
        stopped = stop_strays(root, keep_run_id="this-run", grace_s=1.0)
        dead.wait(timeout=10)
        assert stopped == [dead.pid]
        assert alive(live.pid) and alive(elsewhere.pid)
    finally:
        for process in (dead, live, elsewhere):
            process.kill()
            process.wait()


def test_git_a_dead_run_left_running_is_waited_for_never_killed(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()

    def git_like(seconds: float, started_by: int, where: Path = repo,
                 done: Path = tmp_path / "unused") -> subprocess.Popen:
        env = {**os.environ, "SAGE_GIT_REPO": os.path.realpath(where), "SAGE_GIT_OF": str(started_by)}
        code = f"import time, pathlib; time.sleep({seconds}); pathlib.Path({str(done)!r}).write_text('done')"
        return subprocess.Popen([sys.executable, "-c", code], env=env)

    finished = tmp_path / "finished"
    dead_runs = git_like(1.0, started_by=999_999, done=finished)  # its sage process is gone
    ours = git_like(60, started_by=os.getpid())  # this process's own git: not waited for
    other_repo = git_like(60, started_by=999_999, where=tmp_path / "other")
    hung = git_like(60, started_by=999_998)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(
                processes_with_environment({"SAGE_GIT_REPO": os.path.realpath(repo)})) < 3:
            time.sleep(0.05)  # the children have exec'd and their environment is readable
        waited, running = wait_for_leftover_git(repo, timeout_s=5.0)
        assert finished.read_text() == "done"  # it ran to its end: waited for, not killed
        assert waited == sorted([dead_runs.pid, hung.pid])
        assert running == [hung.pid] and alive(hung.pid)  # still running after the wait: left alone
        assert alive(ours.pid) and alive(other_repo.pid)
    finally:
        for process in (dead_runs, ours, other_repo, hung):
            process.kill()
            process.wait()


def test_checks_of_one_ticket_running_at_once_do_not_stop_each_other(tmp_path: Path) -> None:
    """Checks share their ticket's SAGE_* variables (but have no prompt file): the first to
    finish must not take the others for processes its ticket left behind."""
    import threading

    from sage_stream.process.supervise import AgentLaunch, run_agent

    env = {**os.environ, "SAGE_RUN_ID": "run", "SAGE_TICKET_ID": "T-1", "SAGE_WORKTREE": str(tmp_path)}
    exits = {}

    def check(name: str, seconds: float) -> None:
        launch = AgentLaunch(argv=[sys.executable, "-c", f"import time; time.sleep({seconds})"], cwd=tmp_path,
                             env=env, log_path=tmp_path / f"{name}.log", timeout_s=30, idle_timeout_s=None, grace_s=1)
        exits[name] = run_agent(launch, cancel=threading.Event())

    threads = [threading.Thread(target=check, args=("quick", 0.1)), threading.Thread(target=check, args=("slow", 1.5))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert exits["slow"].outcome == "exited" and exits["slow"].returncode == 0
