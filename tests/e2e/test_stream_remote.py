"""`sage stream --remote origin` end to end: a real bare repository is the shared remote,
and a teammate's clone pushes to the same branch while sage lands (exec agent)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sage_stream.errors import EXIT_REMOTE_REFUSED, EXIT_REMOTE_UNREACHABLE

PY = sys.executable
TRAILER_FORMAT = "--format=%H%x1f%(trailers:key=Sage-Ticket,valueonly)%x00"


def git(repo: Path, *args: str, check: bool = True) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=check, capture_output=True, text=True).stdout


def write_file_cmd(path: str, text: str, *, sleep: float = 0.0) -> list[str]:
    code = (f"import pathlib, time; time.sleep({sleep}); p = pathlib.Path({path!r}); "
            f"p.parent.mkdir(parents=True, exist_ok=True); p.write_text({text!r}); print('wrote', {path!r})")
    return [PY, "-c", code]


def make_ticket(tid: str, command: list[str], *, deps=(), files=()) -> dict:
    return {"id": tid, "title": f"Do {tid}", "state": "UNPROCESSED", "priority": "P1", "type": "implementation",
            "validation_type": "generic", "dependencies": list(deps), "files": list(files), "command": command}


def write_index(repo: Path, tickets: list[dict]) -> None:
    path = repo / ".sage" / "tickets" / "index.json"
    path.write_text(json.dumps({"version": "1.0", "tickets": tickets}, indent=2) + "\n")


def read_index(repo: Path) -> dict[str, dict]:
    data = json.loads((repo / ".sage" / "tickets" / "index.json").read_text())
    return {t["id"]: t for t in data["tickets"]}


def clone(origin: Path, where: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(origin), str(where)], check=True, capture_output=True)
    git(where, "config", "user.name", "Teammate")
    git(where, "config", "user.email", "team@example.invalid")
    return where


@pytest.fixture
def shared(tmp_path: Path) -> dict[str, Path]:
    """origin.git (bare, every update of a branch logged by a post-receive hook), the
    server's clone sage runs in (`repo`), and a teammate's clone."""
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    log = tmp_path / "pushes.log"
    hook = origin / "hooks" / "post-receive"
    hook.write_text(f"#!/bin/sh\ncat >> '{log}'\n")
    hook.chmod(0o755)
    seed = clone(origin, tmp_path / "seed")
    (seed / "README.md").write_text("hello\n")
    (seed / ".gitignore").write_text(".sage/\n")
    git(seed, "add", "-A")
    git(seed, "commit", "-q", "-m", "initial")
    git(seed, "push", "-q", "origin", "main")
    repo = clone(origin, tmp_path / "server")
    (repo / ".sage" / "tickets").mkdir(parents=True)
    (repo / ".sage" / "config.toml").write_text("[agent]\nsandbox = \"none\"\n")
    return {"origin": origin, "repo": repo, "teammate": clone(origin, tmp_path / "teammate"), "log": log}


def sage(repo: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SAGE_TEST_")}
    full_env.update(env or {})
    return subprocess.run([PY, "-m", "sage_stream", "stream", "--auto", "--json", "--remote", "origin",
                           "--index", str(repo / ".sage/tickets/index.json"), *args],
                          cwd=repo, env=full_env, capture_output=True, text=True, timeout=300)


def events(done: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def landed_on(origin: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in git(origin, "log", "main", TRAILER_FORMAT).split("\0"):
        for value in record.partition("\x1f")[2].split():
            counts[value] = counts.get(value, 0) + 1
    return counts


def assert_never_rewritten(origin: Path, log: Path) -> None:
    """Each logged update of main descends from the tip before it."""
    updates = [line.split() for line in log.read_text().splitlines() if line.endswith(" refs/heads/main")]
    assert updates
    for old, new, _ in updates:
        if old != "0" * 40:
            assert subprocess.run(["git", "merge-base", "--is-ancestor", old, new], cwd=origin).returncode == 0


class Teammate(threading.Thread):
    """Pushes one commit of a file of its own to main every `every_s`, until stopped;
    a push rejected because sage pushed meanwhile is fetched and tried again."""

    def __init__(self, clone_path: Path, every_s: float = 0.3) -> None:
        super().__init__(daemon=True)
        self.path, self.every_s = clone_path, every_s
        self.stop = threading.Event()
        self.pushed: list[str] = []

    def run(self) -> None:
        n = 0
        while not self.stop.wait(self.every_s):
            git(self.path, "fetch", "-q", "origin")
            git(self.path, "reset", "-q", "--hard", "origin/main")
            n += 1
            (self.path / "team").mkdir(exist_ok=True)
            (self.path / "team" / f"{n}.txt").write_text(f"{n}\n")
            git(self.path, "add", "-A")
            git(self.path, "commit", "-q", "-m", f"teammate {n}")
            if subprocess.run(["git", "push", "-q", "origin", "main"], cwd=self.path,
                              capture_output=True).returncode == 0:
                self.pushed.append(git(self.path, "rev-parse", "HEAD").strip())


def dag_of_12() -> list[dict]:
    """Three roots, fanning out and joining again."""
    deps = {1: (), 2: (), 3: (), 4: (1,), 5: (1, 2), 6: (3,), 7: (4,), 8: (5, 6), 9: (7, 8), 10: (2,),
            11: (10, 6), 12: (9, 11)}
    return [make_ticket(f"R-{n}", write_file_cmd(f"r/{n}.txt", f"{n}\n", sleep=0.2),
                        deps=[f"R-{d}" for d in ds]) for n, ds in deps.items()]


def assert_all_landed_once(shared: dict[str, Path], teammate: Teammate) -> None:
    origin = shared["origin"]
    assert landed_on(origin) == {f"R-{n}": 1 for n in range(1, 13)}
    assert {t["state"] for t in read_index(shared["repo"]).values()} == {"COMPLETED"}
    tip = git(origin, "rev-parse", "main").strip()
    assert teammate.pushed
    for commit in teammate.pushed:  # every teammate commit is kept
        assert subprocess.run(["git", "merge-base", "--is-ancestor", commit, tip], cwd=origin).returncode == 0
    assert_never_rewritten(origin, shared["log"])
    # the server's local main followed the remote to sage's last landing (teammates may
    # have pushed after it), and its checkout was brought along
    last_landing = git(origin, "log", "-1", "--format=%H", "--grep=^Sage-Ticket: ", "main").strip()
    assert git(shared["repo"], "rev-parse", "main").strip() == last_landing
    assert git(shared["repo"], "status", "--porcelain", "--untracked-files=no") == ""
    assert not list((shared["repo"] / ".sage" / "commit-queue").glob("*.json"))


@pytest.mark.slow
def test_twelve_tickets_land_once_each_on_a_remote_a_teammate_keeps_pushing_to(shared):
    write_index(shared["repo"], dag_of_12())
    teammate = Teammate(shared["teammate"])
    teammate.start()
    try:
        done = sage(shared["repo"], "--parallel=3")
    finally:
        teammate.stop.set()
        teammate.join()
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert_all_landed_once(shared, teammate)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["remote_commit_made#3", "after_remote_push#3"])
def test_killed_mid_run_and_rerun_lands_every_ticket_exactly_once_on_the_remote(shared, point):
    write_index(shared["repo"], dag_of_12())
    teammate = Teammate(shared["teammate"])
    teammate.start()
    try:
        first = sage(shared["repo"], "--parallel=3", env={"SAGE_TEST_CRASH_AT": point})
        assert first.returncode == -signal.SIGKILL, first.stderr
        made = [json.loads(path.read_text())["made"] for path in
                (shared["repo"] / ".sage" / "commit-queue").glob("*.json")]
        made = [commit for commit in made if commit]
        assert len(made) == 1  # the landing commit the kill interrupted was recorded before its push
        pushed = subprocess.run(["git", "cat-file", "-e", f"{made[0]}^{{commit}}"], cwd=shared["origin"])
        assert (pushed.returncode == 0) is point.startswith("after_remote_push")
        rerun = sage(shared["repo"], "--parallel=3")
    finally:
        teammate.stop.set()
        teammate.join()
    assert rerun.returncode == 0, rerun.stderr
    assert "Traceback" not in rerun.stderr
    assert_all_landed_once(shared, teammate)


def test_a_push_the_remote_refuses_stops_landing_keeps_the_work_and_exits_6(shared):
    hook = shared["origin"] / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'main is frozen for the release' >&2\nexit 1\n")
    hook.chmod(0o755)
    before = git(shared["origin"], "rev-parse", "main")
    write_index(shared["repo"], [make_ticket("P-1", write_file_cmd("p1.txt", "1\n")),
                                 make_ticket("P-2", write_file_cmd("p2.txt", "2\n"), deps=["P-1"])])

    done = sage(shared["repo"])

    assert done.returncode == EXIT_REMOTE_REFUSED == 6, done.stderr
    assert "Traceback" not in done.stderr
    assert "refused the push" in done.stderr and "main is frozen for the release" in done.stderr
    assert git(shared["origin"], "rev-parse", "main") == before
    assert {t["state"] for t in read_index(shared["repo"]).values()} == {"UNPROCESSED"}  # not left IN_PROGRESS
    assert git(shared["repo"], "show", "sage/P-1:p1.txt") == "1\n"  # the work is kept on its branch
    assert list((shared["repo"] / ".sage" / "commit-queue").glob("*-P-1.json"))  # and stays queued

    hook.unlink()  # pushing is allowed again: the next run lands the queued work, then the rest
    again = sage(shared["repo"])
    assert again.returncode == 0, again.stderr
    assert landed_on(shared["origin"]) == {"P-1": 1, "P-2": 1}


def test_a_conflict_with_a_teammates_push_reruns_the_ticket_on_the_new_tip(shared, tmp_path):
    """The teammate pushes a change to the same file at the moment sage is landing
    (after its fetch): sage's push is rejected, the merge on the new tip conflicts, and
    the ticket runs again from the teammate's commit."""
    (shared["repo"] / ".sage" / "config.toml").write_text("[agent]\nsandbox = \"none\"\n")
    teammate_push = tmp_path / "teammate_push.py"
    teammate_push.write_text(
        "import pathlib, subprocess\n"
        f"repo = pathlib.Path({str(shared['teammate'])!r})\n"
        "(repo / 'shared.txt').write_text('teammate\\n')\n"
        "subprocess.run(['git', 'add', '-A'], cwd=repo, check=True)\n"
        "subprocess.run(['git', 'commit', '-q', '-m', 'teammate edits shared.txt'], cwd=repo, check=True)\n"
        "subprocess.run(['git', 'push', '-q', 'origin', 'main'], cwd=repo, check=True)\n")
    write_index(shared["repo"], [make_ticket("C-1", [PY, "-c", (
        "import pathlib; p = pathlib.Path('shared.txt'); "
        "old = p.read_text() if p.exists() else ''; p.write_text(old + 'sage\\n')")])])

    done = sage(shared["repo"], env={"SAGE_TEST_FAULT_AT": "landing_locked#1",
                                     "SAGE_TEST_FAULT_CMD": json.dumps([PY, str(teammate_push)])})

    assert done.returncode == 0, done.stderr
    origin = shared["origin"]
    assert landed_on(origin) == {"C-1": 1}
    assert git(origin, "show", "main:shared.txt") == "teammate\nsage\n"  # ran again on the teammate's tip
    assert git(origin, "log", "-1", "--format=%s", "main~1") == "teammate edits shared.txt\n"
    started = [e for e in events(done) if e["event"] == "ticket_started"]
    assert len(started) == 2
    assert_never_rewritten(origin, shared["log"])


def test_a_remote_that_cannot_be_reached_at_start_is_a_clear_error_exit_7(shared):
    git(shared["repo"], "remote", "set-url", "origin", str(shared["repo"].parent / "gone.git"))
    write_index(shared["repo"], [make_ticket("U-1", write_file_cmd("u.txt", "u"))])

    done = sage(shared["repo"])

    assert done.returncode == EXIT_REMOTE_UNREACHABLE == 7
    assert "Traceback" not in done.stderr and "cannot be reached" in done.stderr
    assert read_index(shared["repo"])["U-1"]["state"] == "UNPROCESSED"


def test_an_unknown_remote_name_is_a_clear_error_before_anything_runs(shared):
    write_index(shared["repo"], [make_ticket("U-1", write_file_cmd("u.txt", "u"))])
    done = subprocess.run([PY, "-m", "sage_stream", "stream", "--auto", "--remote", "upstream", "--index",
                           str(shared["repo"] / ".sage/tickets/index.json")], cwd=shared["repo"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "no remote named 'upstream'" in done.stderr and "Traceback" not in done.stderr


def test_push_branches_shows_each_tickets_branch_on_the_remote(shared):
    write_index(shared["repo"], [make_ticket("B-1", write_file_cmd("b1.txt", "1\n"))])

    done = sage(shared["repo"], "--push-branches")

    assert done.returncode == 0, done.stderr
    assert git(shared["origin"], "show", "sage/B-1:b1.txt") == "1\n"
    assert landed_on(shared["origin"]) == {"B-1": 1}


def validate(repo: Path) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "sage_stream", "validate", "--index", str(repo / ".sage/tickets/index.json")],
                          cwd=repo, capture_output=True, text=True, timeout=60)


def test_validate_checks_that_the_configured_remote_exists_and_answers(shared):
    repo = shared["repo"]
    write_index(repo, [make_ticket("V-1", write_file_cmd("v.txt", "v"))])
    (repo / ".sage" / "config.toml").write_text("[stream]\nremote = \"origin\"\n")
    ok = validate(repo)
    assert ok.returncode == 2, ok.stdout + ok.stderr  # warnings only (no ticket prose)
    assert "ok    origin/main reachable" in ok.stdout

    git(repo, "remote", "set-url", "origin", str(repo.parent / "gone.git"))
    gone = validate(repo)
    assert gone.returncode == 1
    assert "[stream] remote = 'origin': cannot be reached" in gone.stdout

    (repo / ".sage" / "config.toml").write_text("[stream]\nremote = \"upstream\"\n")
    unknown = validate(repo)
    assert unknown.returncode == 1 and "no remote named 'upstream'" in unknown.stdout


def test_tickets_start_from_the_remote_branch_tip_even_without_a_local_branch_of_it(shared):
    """--target release, a branch only the remote has (the server never checked it out):
    the agent finds the teammate's latest file there, and the landing goes on top of it."""
    teammate = shared["teammate"]
    git(teammate, "checkout", "-q", "-b", "release")
    (teammate / "VERSION").write_text("2.0\n")
    git(teammate, "add", "-A")
    git(teammate, "commit", "-q", "-m", "release 2.0")
    git(teammate, "push", "-q", "origin", "release")
    needs_version = [PY, "-c", "import pathlib; v = pathlib.Path('VERSION').read_text(); "
                               "pathlib.Path('notes.txt').write_text('notes for ' + v)"]
    write_index(shared["repo"], [make_ticket("N-1", needs_version)])

    done = sage(shared["repo"], "--target", "release")

    assert done.returncode == 0, done.stderr
    assert git(shared["origin"], "show", "release:notes.txt") == "notes for 2.0\n"
    assert git(shared["origin"], "log", "-1", "--format=%s", "release~1") == "release 2.0\n"
    assert git(shared["repo"], "branch", "--list", "release") == ""  # no local branch was made


def test_a_dry_run_names_the_remote_it_would_land_on(shared):
    write_index(shared["repo"], [make_ticket("D-1", write_file_cmd("d.txt", "d"))])
    done = sage(shared["repo"], "--dry-run")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert (plan["target"], plan["remote"]) == ("main", "origin")
    assert read_index(shared["repo"])["D-1"]["state"] == "UNPROCESSED"


@pytest.mark.slow
def test_a_remote_that_goes_away_while_landing_is_retried_then_stops_the_run_with_exit_7(shared, tmp_path):
    origin = shared["origin"]
    away = tmp_path / "origin-away.git"
    move_away = [PY, "-c", f"import os; os.rename({str(origin)!r}, {str(away)!r})"]
    write_index(shared["repo"], [make_ticket("G-1", write_file_cmd("g.txt", "g\n"))])

    done = sage(shared["repo"], env={"SAGE_TEST_FAULT_AT": "landing_locked#1",
                                     "SAGE_TEST_FAULT_CMD": json.dumps(move_away)})

    assert done.returncode == EXIT_REMOTE_UNREACHABLE == 7, done.stderr
    assert "Traceback" not in done.stderr and "could not be reached" in done.stderr
    retries = [e["text"] for e in events(done) if e["event"] == "message" and "again in" in e.get("text", "")]
    assert [text.rsplit("again in ", 1)[1] for text in retries] == ["1 s", "2 s", "4 s", "8 s"]
    assert read_index(shared["repo"])["G-1"]["state"] == "UNPROCESSED"
    assert list((shared["repo"] / ".sage" / "commit-queue").glob("*-G-1.json"))  # still queued

    away.rename(origin)  # the remote is back: the next run lands the queued work, once
    again = sage(shared["repo"])
    assert again.returncode == 0, again.stderr
    assert landed_on(origin) == {"G-1": 1}
