"""`sage stream` end to end with the exec agent, in temporary git repositories."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sage_stream.cli import run
from sage_stream.engine.run_lock import RunLock, RunOwner, process_identity

PY = sys.executable


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def write_file_cmd(path: str, text: str, *, sleep: float = 0.0) -> list[str]:
    code = (f"import pathlib, time; time.sleep({sleep}); p = pathlib.Path({path!r}); "
            f"p.parent.mkdir(parents=True, exist_ok=True); p.write_text({text!r}); print('wrote', {path!r})")
    return [PY, "-c", code]


def make_ticket(tid: str, command: list[str], *, deps=(), files=(), priority="P1", **extra) -> dict:
    return {"id": tid, "title": f"Do {tid}", "state": "UNPROCESSED", "priority": priority,
            "type": "implementation", "validation_type": "generic", "dependencies": list(deps),
            "files": list(files), "command": command, **extra}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Test User")
    git(root, "config", "user.email", "test@example.invalid")
    (root / "README.md").write_text("hello\n")
    (root / ".gitignore").write_text(".sage/\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    (root / ".sage" / "tickets").mkdir(parents=True)
    return root


def write_index(repo: Path, tickets: list[dict]) -> Path:
    path = repo / ".sage" / "tickets" / "index.json"
    path.write_text(json.dumps({"version": "1.0", "tickets": tickets}, indent=2) + "\n")
    return path


def read_index(repo: Path) -> dict[str, dict]:
    data = json.loads((repo / ".sage" / "tickets" / "index.json").read_text())
    return {t["id"]: t for t in data["tickets"]}


def stream(repo: Path, capsys, *args: str) -> tuple[int, list[dict]]:
    capsys.readouterr()
    code = run(["stream", "--auto", "--json", "--index", str(repo / ".sage/tickets/index.json"), *args])
    out = capsys.readouterr().out
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return code, events


def trailer_counts(repo: Path) -> dict[str, int]:
    out = git(repo, "log", "main", "--format=%(trailers:key=Sage-Ticket,valueonly)%x00")
    counts: dict[str, int] = {}
    for chunk in out.split("\x00"):
        for value in chunk.split():
            counts[value] = counts.get(value, 0) + 1
    return counts


def test_acceptance_case_runs_001_and_002_together_and_003_after_both(repo, capsys):
    write_index(repo, [
        make_ticket("TKT-001", write_file_cmd("one.txt", "1\n", sleep=1.0)),
        make_ticket("TKT-002", write_file_cmd("two.txt", "2\n", sleep=1.0)),
        make_ticket("TKT-003", write_file_cmd("three.txt", "3\n"), deps=["TKT-001", "TKT-002"]),
    ])
    code, events = stream(repo, capsys, "--parallel=2")
    assert code == 0
    order = [(e["event"], e.get("ticket")) for e in events if e["event"] in ("ticket_started", "ticket_landed")]
    started = [t for kind, t in order if kind == "ticket_started"]
    assert started[:2] == ["TKT-001", "TKT-002"] or started[:2] == ["TKT-002", "TKT-001"]
    first_landing = next(i for i, (kind, _) in enumerate(order) if kind == "ticket_landed")
    assert first_landing >= 2  # both started before either landed: they ran together
    start_003 = order.index(("ticket_started", "TKT-003"))
    assert order.index(("ticket_landed", "TKT-001")) < start_003
    assert order.index(("ticket_landed", "TKT-002")) < start_003
    tickets = read_index(repo)
    assert {t["state"] for t in tickets.values()} == {"COMPLETED"}
    assert trailer_counts(repo) == {"TKT-001": 1, "TKT-002": 1, "TKT-003": 1}
    assert (repo / "three.txt").read_text() == "3\n"  # the user's clean checkout was brought along
    log = git(repo, "log", "--format=%s", "main")
    assert "feat: #TKT-003 " in log  # no component, no directory in `files`: no scope
    assert tickets["TKT-003"]["git"]["commits"] and tickets["TKT-003"]["state_history"][-1]["state"] == "COMPLETED"
    assert not list((repo / ".sage" / "commit-queue").glob("*.json"))


def test_a_finished_ticket_that_unblocks_nothing_frees_its_worker_before_it_lands(repo, capsys):
    # one worker: IND-1 and IND-2 unblock nothing, so the next ticket starts in another
    # worktree slot while they land; CH-1 unblocks CH-2, so CH-2 waits for its landing
    write_index(repo, [
        make_ticket("IND-1", write_file_cmd("i1.txt", "1\n"), priority="P0"),
        make_ticket("IND-2", write_file_cmd("i2.txt", "2\n"), priority="P1"),
        make_ticket("CH-1", write_file_cmd("c1.txt", "c1\n"), priority="P2"),
        make_ticket("CH-2", write_file_cmd("c2.txt", "c2\n"), deps=["CH-1"], priority="P2"),
    ])
    code, events = stream(repo, capsys, "--parallel=1")
    assert code == 0
    started = {e["ticket"]: e for e in events if e["event"] == "ticket_started"}
    assert [e["ticket"] for e in events if e["event"] == "ticket_started"] == ["IND-1", "IND-2", "CH-1", "CH-2"]
    assert {e["row"] for e in started.values()} == {0}  # never more agents than workers
    slots = [started[t]["slot"] for t in ("IND-1", "IND-2", "CH-1", "CH-2")]
    assert slots[0] != slots[1] and slots[1] != slots[2]  # each started while the one before landed
    assert slots[3] == slots[2]  # CH-2 waited for CH-1 to land and took its slot back
    assert set(slots) == {0, 1}  # one slot per worker and one spare
    assert all(Path(started[t]["worktree"]).name == f"slot-{started[t]['slot']}" for t in started)
    order = [(e["event"], e.get("ticket")) for e in events]
    assert order.index(("ticket_landed", "CH-1")) < order.index(("ticket_started", "CH-2"))
    assert {t["state"] for t in read_index(repo).values()} == {"COMPLETED"}
    assert trailer_counts(repo) == {"IND-1": 1, "IND-2": 1, "CH-1": 1, "CH-2": 1}
    assert [(repo / f).read_text() for f in ("i1.txt", "i2.txt", "c1.txt", "c2.txt")] == ["1\n", "2\n", "c1\n", "c2\n"]
    assert git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/").split() == ["main"]


def wait_for_path_cmd(path: str, *, present: bool, seconds: float) -> list[str]:
    """An agent that waits up to `seconds` for `path` to exist (or stay absent), then
    writes what it saw; exit 1 when it was not as expected."""
    code = (f"import pathlib, sys, time; p = pathlib.Path({path!r}); end = time.monotonic() + {seconds}\n"
            f"while time.monotonic() < end and not p.exists(): time.sleep(0.05)\n"
            f"seen = p.exists(); pathlib.Path('seen.txt').write_text(str(seen)); sys.exit(0 if seen == {present} else 1)")
    return [PY, "-c", code]


def test_the_spare_slot_is_made_while_agents_work_when_a_ticket_will_need_it(repo, capsys):
    """One worker: SP-1 unblocks nothing, so the spare slot is made while its agent works
    (the agent sees its checkout appear) and SP-2 starts there while SP-1 lands."""
    spare_file = str(repo / ".sage" / "worktrees" / "slot-1" / "README.md")
    write_index(repo, [
        make_ticket("SP-1", wait_for_path_cmd(spare_file, present=True, seconds=60), priority="P0"),
        make_ticket("SP-2", write_file_cmd("sp2.txt", "2\n"), priority="P1"),
    ])
    code, events = stream(repo, capsys, "--parallel=1")
    assert code == 0, [e for e in events if e["event"] in ("ticket_deferred", "message")]
    started = {e["ticket"]: e["slot"] for e in events if e["event"] == "ticket_started"}
    assert started == {"SP-1": 0, "SP-2": 1}
    assert {t["state"] for t in read_index(repo).values()} == {"COMPLETED"}


def test_no_spare_slot_is_made_when_every_finish_unblocks_the_next(repo, capsys):
    """A chain on one worker: each landing unblocks the next ticket, which waits for it
    and takes the landed slot back; a spare would only cost a checkout."""
    write_index(repo, [
        make_ticket("CN-1", write_file_cmd("cn1.txt", "1\n", sleep=1.0)),
        make_ticket("CN-2", write_file_cmd("cn2.txt", "2\n", sleep=1.0), deps=["CN-1"]),
        make_ticket("CN-3", write_file_cmd("cn3.txt", "3\n"), deps=["CN-2"]),
    ])
    code, events = stream(repo, capsys, "--parallel=1")
    assert code == 0
    assert {e["slot"] for e in events if e["event"] == "ticket_started"} == {0}
    assert not (repo / ".sage" / "worktrees" / "slot-1").exists()


def test_a_failing_agent_defers_its_ticket_and_the_others_go_on(repo, capsys):
    write_index(repo, [
        make_ticket("BAD-1", [PY, "-c", "import sys; print('tests failed: 3 errors'); sys.exit(2)"]),
        make_ticket("BAD-2", write_file_cmd("after.txt", "x"), deps=["BAD-1"]),
        make_ticket("OK-1", write_file_cmd("ok.txt", "ok")),
    ])
    code, events = stream(repo, capsys, "--parallel=2")
    assert code == 3
    tickets = read_index(repo)
    assert tickets["BAD-1"]["state"] == "DEFERRED"
    reason = tickets["BAD-1"]["defer_reason"]
    assert reason["category"] == "agent_failed" and "exit code 2" in reason["message"]
    assert "tests failed" in reason["last_error"] and Path(reason["log"]).is_file()
    assert tickets["BAD-2"]["state"] == "UNPROCESSED"
    assert tickets["OK-1"]["state"] == "COMPLETED"
    assert any(e["event"] == "message" and "blocked by BAD-1" in e["text"] for e in events)
    capsys.readouterr()
    assert run(["ready", "--index", str(repo / ".sage/tickets/index.json")]) == 0
    assert "BAD-1" in capsys.readouterr().out


def test_a_timeout_kills_the_agent_and_defers_for_a_later_retry(repo, capsys):
    write_index(repo, [make_ticket("SLOW-1", [PY, "-c", "import time; print('working', flush=True); time.sleep(60)"])])
    began = time.monotonic()
    code, _ = stream(repo, capsys, "--timeout", "0.03")
    assert time.monotonic() - began < 30
    assert code == 3
    ticket = read_index(repo)["SLOW-1"]
    assert ticket["state"] == "DEFERRED"
    assert ticket["defer_reason"]["category"] == "timeout" and ticket["defer_reason"]["retryable"] is True
    assert ticket["not_before"]


def write_conflicting_pair(repo: Path) -> None:
    """Two tickets that run together and both rewrite shared.txt: CON-1 lands first."""
    (repo / "shared.txt").write_text("base\n")
    git(repo, "add", "shared.txt")
    git(repo, "commit", "-q", "-m", "shared")
    write_index(repo, [
        make_ticket("CON-1", write_file_cmd("shared.txt", "from one\n", sleep=0.2), priority="P0"),
        make_ticket("CON-2", write_file_cmd("shared.txt", "from two\n", sleep=0.8)),
    ])


def test_a_conflict_reruns_the_ticket_on_the_new_tip(repo, capsys):
    write_conflicting_pair(repo)
    code, events = stream(repo, capsys, "--parallel=2")
    assert code == 0
    assert any(e["event"] == "ticket_requeued" and e["ticket"] == "CON-2" for e in events)
    assert (repo / "shared.txt").read_text() == "from two\n"
    assert "<<<<<<<" not in git(repo, "show", "main:shared.txt")
    assert trailer_counts(repo) == {"CON-1": 1, "CON-2": 1}


def test_a_persistent_conflict_is_deferred_with_the_paths(repo, capsys):
    (repo / ".sage" / "config.toml").write_text("[stream]\nmax_reruns = 0\n")
    write_conflicting_pair(repo)
    code, _ = stream(repo, capsys, "--parallel=2")
    assert code == 3
    ticket = read_index(repo)["CON-2"]
    assert ticket["state"] == "DEFERRED" and ticket["defer_reason"]["category"] == "conflict"
    assert "shared.txt" in ticket["defer_reason"]["message"]
    assert git(repo, "show", "main:shared.txt") == "from one\n"
    assert git(repo, "branch", "--list", "sage/CON-2*").strip()  # the unlanded work is kept


def test_no_changes_and_scope_violation_are_deferred(repo, capsys):
    write_index(repo, [
        make_ticket("NOP-1", [PY, "-c", "print('nothing to do')"]),
        make_ticket("EMPTY-1", [PY, "-c", "print('ok')"], allow_empty=True),
        make_ticket("SCOPE-1", write_file_cmd("elsewhere/x.txt", "x"), files=["allowed/**"]),
    ])
    code, _ = stream(repo, capsys, "--parallel=2")
    assert code == 3
    tickets = read_index(repo)
    assert tickets["NOP-1"]["defer_reason"]["category"] == "no_changes"
    assert tickets["EMPTY-1"]["state"] == "COMPLETED"
    assert tickets["SCOPE-1"]["defer_reason"]["category"] == "scope_violation"
    assert "elsewhere/x.txt" in tickets["SCOPE-1"]["defer_reason"]["message"]
    assert not (repo / "elsewhere").exists()


def test_a_second_run_exits_at_once_while_one_is_active(repo, capsys):
    write_index(repo, [make_ticket("ONE-1", write_file_cmd("one.txt", "1"))])
    lock = RunLock(repo / ".sage")
    assert lock.acquire(wait=False)
    pid, created = process_identity()
    lock.write_owner(RunOwner(pid=pid, pid_create_time=created, run_id="other-run", started="2026-11-21T09:00:00Z"))
    try:  # another process: flock is per open file, and this process already holds it
        began = time.monotonic()
        second = subprocess.run([PY, "-m", "sage_stream", "stream", "--auto", "--index",
                                 str(repo / ".sage/tickets/index.json")], capture_output=True, text=True, timeout=60)
        took = time.monotonic() - began
    finally:
        lock.release()
    assert second.returncode == 0, second.stderr
    assert f"already running (pid {pid}" in second.stdout
    assert took < 20  # promptly, not after waiting for the lock
    assert read_index(repo)["ONE-1"]["state"] == "UNPROCESSED"


def test_dry_run_touches_nothing(repo, capsys):
    index = write_index(repo, [make_ticket("DRY-1", write_file_cmd("a.txt", "a")),
                               make_ticket("DRY-2", write_file_cmd("b.txt", "b"), deps=["DRY-1"])])
    before = index.read_bytes()
    listing = sorted(p.name for p in (repo / ".sage").rglob("*"))
    capsys.readouterr()
    assert run(["stream", "--auto", "--parallel", "--dry-run", "--index", str(index)]) == 0
    out = capsys.readouterr().out
    assert "DRY-1" in out and "predicted makespan" in out
    assert index.read_bytes() == before
    assert sorted(p.name for p in (repo / ".sage").rglob("*")) == listing


def test_parallel_without_auto_is_an_error(repo, capsys):
    index = write_index(repo, [make_ticket("P-1", write_file_cmd("a.txt", "a"))])
    capsys.readouterr()
    assert run(["stream", "--parallel=2", "--index", str(index)]) == 1
    assert "--parallel needs --auto" in capsys.readouterr().err


def test_user_uncommitted_changes_are_never_touched(repo, capsys):
    """The landing waits (queued) while the checkout of main is dirty, and resumes by itself
    once the user commits there; the user's edit is never touched."""
    import threading

    (repo / "README.md").write_text("my local edit\n")
    write_index(repo, [make_ticket("U-1", write_file_cmd("new.txt", "n"))])

    failed: list[str] = []

    def user_commits_once_work_is_queued() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list((repo / ".sage" / "commit-queue").glob("*.json")):
            time.sleep(0.05)
        # While landings wait, sage looks at this checkout every 2 s: it must never hold
        # its index.lock (the commit would fail, and the run would wait for it forever).
        done = subprocess.run(["git", "commit", "-qam", "my local edit"], cwd=repo, capture_output=True, text=True)
        if done.returncode != 0:
            failed.append(done.stderr)
            os.kill(os.getpid(), signal.SIGINT)  # end the waiting run: the test fails, it does not hang

    user = threading.Thread(target=user_commits_once_work_is_queued)
    user.start()
    code, events = stream(repo, capsys)
    user.join()
    assert not failed, failed
    assert code == 0
    assert (repo / "README.md").read_text() == "my local edit\n"
    assert git(repo, "show", "main:new.txt") == "n"
    assert git(repo, "log", "-1", "--skip=1", "--format=%s", "main").strip() == "my local edit"
    waits = [e for e in events if e["event"] == "message" and "landings onto main wait" in e.get("text", "")]
    assert waits and f"git -C {repo} stash" in waits[0]["text"]


def test_a_drained_ticket_costs_one_index_write_not_two(repo, tmp_path):
    """Each ticket's COMPLETED goes with the next ticket's IN_PROGRESS (at 100,000
    tickets a write is a 20 MB file and two fsyncs); what is held is written by the end."""
    write_index(repo, [make_ticket(f"W-{n}", write_file_cmd(f"w{n}.txt", f"{n}\n")) for n in range(6)])
    trace = tmp_path / "trace.txt"
    env = {**os.environ, "SAGE_TEST_CRASH_TRACE": str(trace)}
    done = subprocess.run([PY, "-m", "sage_stream", "stream", "--auto", "--parallel=1", "--plain", "--index",
                           str(repo / ".sage/tickets/index.json")], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert all(t["state"] == "COMPLETED" for t in read_index(repo).values())
    points = trace.read_text().split()
    assert points.count("after_hold_edit") == 6
    assert points.count("after_complete_edit") == 6
    assert points.count("after_replace:index") <= 6 + 1, points  # 6 starts (+ the last COMPLETED); was 12
    assert not list((repo / ".sage" / "commit-queue").glob("*.json"))


# ------------------------------------------------------------------ kill -9 and rerun

CRASH_POINTS = ["after_start_edit", "after_agent_exit", "after_snapshot", "after_queue_put", "after_land",
                "after_hold_edit", "after_complete_edit", "after_defer_edit"]


def run_subprocess(repo: Path, crash_at: str | None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("SAGE_TEST_CRASH_AT", None)
    if crash_at:
        env["SAGE_TEST_CRASH_AT"] = crash_at
    return subprocess.run([PY, "-m", "sage_stream", "stream", "--auto", "--parallel=2", "--plain",
                           "--index", str(repo / ".sage/tickets/index.json")],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_kill_9_at_any_point_then_rerun_lands_every_ticket_exactly_once(repo, point):
    write_index(repo, [
        make_ticket("K-1", write_file_cmd("k1.txt", "1")),
        make_ticket("K-2", write_file_cmd("k2.txt", "2")),
        make_ticket("K-3", write_file_cmd("k3.txt", "3"), deps=["K-1"]),
        make_ticket("K-4", [PY, "-c", "import sys; sys.exit(1)"]),
    ])
    nth = 1 if point == "after_defer_edit" else 2  # K-4 is the only ticket that defers
    first = run_subprocess(repo, f"{point}#{nth}")
    assert first.returncode == -signal.SIGKILL, first.stderr
    read_index(repo)  # the index parses after the kill
    rerun = run_subprocess(repo, None)
    assert rerun.returncode in (0, 3), rerun.stderr
    assert "Traceback" not in rerun.stderr
    tickets = read_index(repo)
    assert all(t["state"] != "IN_PROGRESS" for t in tickets.values())
    for tid, name in (("K-1", "k1.txt"), ("K-2", "k2.txt"), ("K-3", "k3.txt")):
        assert tickets[tid]["state"] == "COMPLETED", (tid, tickets[tid])
        assert tickets[tid]["agent_result"]["summary"] == f"wrote {name}", tickets[tid]  # nothing lost
    assert tickets["K-4"]["state"] == "DEFERRED"
    counts = trailer_counts(repo)
    assert counts == {"K-1": 1, "K-2": 1, "K-3": 1}
    markers = subprocess.run(["git", "grep", "-n", "<<<<<<<", "main"], cwd=repo, capture_output=True, text=True)
    assert markers.returncode == 1 and not markers.stdout  # no conflict markers anywhere on the target
    assert not list((repo / ".sage" / "commit-queue").glob("*.json"))
    lock = RunLock(repo / ".sage")
    assert lock.acquire(wait=False)  # no stale lock blocks the next run
    lock.release()


def test_a_run_after_a_kill_in_the_middle_of_making_a_slot_lands_everything(repo, capsys):
    """`git worktree add` killed half way (the whole process group got SIGKILL) leaves a
    registration locked "initializing" with an empty `commondir`: every `git worktree list`
    fails until it is gone. The next run sets it aside and lands every ticket."""
    write_index(repo, [make_ticket(f"S-{n}", write_file_cmd(f"s{n}.txt", f"{n}\n")) for n in range(4)])
    slots = repo / ".sage" / "worktrees"
    entry = repo / ".git" / "worktrees" / "slot-1"
    entry.mkdir(parents=True)
    (slots / "slot-1").mkdir(parents=True)
    (entry / "locked").write_text("initializing")
    (entry / "gitdir").write_text(f"{slots / 'slot-1' / '.git'}\n")
    (slots / "slot-1" / ".git").write_text(f"gitdir: {entry}\n")
    (entry / "commondir").write_text("")

    code, events = stream(repo, capsys, "--parallel=2")

    assert code == 0
    assert {t["state"] for t in read_index(repo).values()} == {"COMPLETED"}
    assert trailer_counts(repo) == {f"S-{n}": 1 for n in range(4)}
    assert any("set aside" in e.get("text", "") for e in events if e["event"] == "message")
    assert list((slots / ".stale").glob("slot-1-registration-*/slot-1/locked"))  # moved, not deleted
    git(repo, "worktree", "list")  # works again


def test_ctrl_c_lands_what_finished_stops_the_rest_and_exits_130(repo, tmp_path):
    import psutil

    # unsandboxed: the agent reports its process id, which means nothing outside a PID namespace
    (repo / ".sage" / "config.toml").write_text("[stream]\ngrace_seconds = 1\n\n[agent]\nsandbox = \"none\"\n")
    pid_file = tmp_path / "agent.pid"
    hang = (f"import os, time, pathlib; pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid())); "
            "[(print('still working', flush=True), time.sleep(0.2)) for _ in range(600)]")
    write_index(repo, [
        make_ticket("QUICK-1", write_file_cmd("quick.txt", "q")),
        make_ticket("HANG-1", [PY, "-c", hang]),
    ])
    process = subprocess.Popen([PY, "-m", "sage_stream", "stream", "--auto", "--parallel=2", "--json",
                                "--index", str(repo / ".sage/tickets/index.json")],
                               cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: set[tuple[str, str]] = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not {("ticket_landed", "QUICK-1"), ("ticket_started", "HANG-1")} <= seen:
        line = process.stdout.readline()
        if line.startswith("{"):
            event = json.loads(line)
            seen.add((event["event"], event.get("ticket", "")))
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    agent_pid = int(pid_file.read_text())
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    tickets = read_index(repo)
    assert tickets["QUICK-1"]["state"] == "COMPLETED"
    assert tickets["HANG-1"]["state"] == "UNPROCESSED"
    assert not psutil.pid_exists(agent_pid) or psutil.Process(agent_pid).status() == psutil.STATUS_ZOMBIE
    finished = [json.loads(line) for line in out.splitlines() if '"run_finished"' in line]
    assert finished and finished[0]["exit_code"] == 130
