"""Landing integrity, part B: each ticket lands on its own target and only sage moves it.

- A ticket's target is recorded when it starts (index `git.target`) and in its commit-queue
  entry; recovery lands a queued entry there, even after the user checked out another branch.
- A backlog keeps its target: --target / [stream] target, else the branch its earlier
  landings went to, else the checked-out branch; the run says which and why.
- Only sage moves the target (engine/target_watch.py): an agent's move of the target or a
  branch made of its commits is undone (kept under refs/sage/displaced/) and its ticket
  deferred; a rewind of landed work is restored, or said at the next start; the user's own
  commits are left alone; a push from an agent's worktree is refused.
- A checkout of the target with uncommitted changes is never moved under the user: landings
  wait, queued, and resume by themselves once it is clean (engine/checkout_wait.py).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from .support import (
    clean_env,
    git,
    make_repo,
    py,
    read_index,
    report,
    run_records,
    run_stream,
    sage,
    stream_argv,
    ticket,
    trailer_counts,
    write_file_cmd,
    write_index,
)

DEAD_PID = 2**22 + 17  # above any pid_max this suite runs under: no such process


def queue_dead_runs_work(repo: Path, ticket_id: str, *, target: str) -> dict:
    """What a run killed between queueing and landing leaves: the ticket IN_PROGRESS, its
    work committed on sage/<ID>, and its commit-queue entry naming `target`."""
    base = git(repo, "rev-parse", target).strip()
    git(repo, "branch", f"sage/{ticket_id}", base)
    work = repo.parent / f"{repo.name}-wt-{ticket_id}"
    git(repo, "worktree", "add", "-q", str(work), f"sage/{ticket_id}")
    (work / f"{ticket_id}.txt").write_text("queued work\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", f"{ticket_id}: work")
    tip = git(work, "rev-parse", "HEAD").strip()
    git(repo, "worktree", "remove", "--force", str(work))
    entry = {"ticket": ticket_id, "branch": f"sage/{ticket_id}", "tip": tip, "base": base, "run_id": "dead-run",
             "worktree": str(work), "log": str(repo / "dead.log"), "finished_at": time.time(), "result": {},
             "sequence": time.time_ns(), "target": target}
    queue = repo / ".sage" / "commit-queue"
    queue.mkdir(parents=True, exist_ok=True)
    (queue / f"{entry['sequence']:020d}-{ticket_id}.json").write_text(json.dumps(entry))
    return entry


def test_recovery_lands_a_queued_ticket_on_its_recorded_target_not_on_the_checked_out_branch(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    write_index(repo, [ticket("T-1", write_file_cmd("again.txt", "ran again\n"), state="IN_PROGRESS",
                              git={"branch": "sage/T-1", "target": "main"},
                              sage_run={"run_id": "dead-run", "pid": DEAD_PID, "pid_create_time": 1.0})])
    queue_dead_runs_work(repo, "T-1", target="main")
    git(repo, "checkout", "-q", "-b", "feature")  # the user moved on meanwhile

    result = run_stream(repo, parallel=1)

    assert result.returncode == 0, result.stdout + result.stderr
    assert trailer_counts(repo, "main") == {"T-1": 1}
    assert trailer_counts(repo, "feature") == {}
    assert git(repo, "show", "main:T-1.txt") == "queued work\n"  # the queued work, not a second run
    assert read_index(repo)["T-1"]["state"] == "COMPLETED"
    report("recovery lands on the recorded target", tries=1, held=1)


def test_a_backlog_keeps_the_target_its_earlier_landings_went_to(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    write_index(repo, [ticket("T-1", write_file_cmd("one.txt", "1\n"))])
    first = run_stream(repo, parallel=1)
    assert first.returncode == 0, first.stdout + first.stderr
    assert read_index(repo)["T-1"]["git"]["target"] == "main"  # recorded when it started
    tickets = list(read_index(repo).values()) + [ticket("T-2", write_file_cmd("two.txt", "2\n"))]
    write_index(repo, tickets)
    git(repo, "checkout", "-q", "-b", "feature")

    second = run_stream(repo, parallel=1)

    assert second.returncode == 0, second.stdout + second.stderr
    assert trailer_counts(repo, "main") == {"T-1": 1, "T-2": 1}
    assert trailer_counts(repo, "feature") == {"T-1": 1}  # feature started from main after T-1
    assert "onto main (this backlog's earlier landings went there" in second.stdout
    assert "--target feature" in second.stdout
    second_record = next(record for record in run_records(repo) if "T-2" in record["tickets"])
    assert second_record["target_reason"].startswith("this backlog's earlier landings went there")
    report("a backlog keeps its target", tries=1, held=1)


def test_target_flag_overrides_the_backlogs_earlier_target(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    write_index(repo, [ticket("T-1", write_file_cmd("one.txt", "1\n"), state="COMPLETED",
                              git={"branch": "sage/T-1", "target": "main"}),
                       ticket("T-2", write_file_cmd("two.txt", "2\n"))])
    git(repo, "branch", "feature")

    result = run_stream(repo, "--target", "feature", parallel=1)

    assert result.returncode == 0, result.stdout + result.stderr
    assert trailer_counts(repo, "feature") == {"T-2": 1}
    assert trailer_counts(repo, "main") == {}
    assert "onto feature (given by --target)" in result.stdout
    report("--target over the backlog's earlier target", tries=1, held=1)


# ---------------------------------------------------------------- only sage moves the target

def agent_git(code: str) -> list[str]:
    """An exec agent running git commands (argv lists, never a shell) from its worktree."""
    return py("import subprocess, pathlib\n"
              "def git(*a): return subprocess.run(['git', *a], check=True, capture_output=True, text=True).stdout\n"
              + code)


def displaced(repo: Path) -> list[str]:
    return git(repo, "for-each-ref", "--format=%(refname)", "refs/sage/displaced/").split()


def test_an_agent_moving_the_target_to_its_commit_is_undone_and_deferred(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    write_index(repo, [ticket("T-1", agent_git(
        "pathlib.Path('t1.txt').write_text('mine\\n'); git('add', '-A'); git('commit', '-qm', 'sneaky')\n"
        "git('update-ref', 'refs/heads/main', 'HEAD')"), files=["t1.txt"]),
        ticket("T-2", write_file_cmd("t2.txt", "2\n"), deps=["T-1"])])
    before = git(repo, "rev-parse", "main").strip()

    result = run_stream(repo, "--sandbox", "none", parallel=1)

    index = read_index(repo)
    assert index["T-1"]["state"] == "DEFERRED", result.stdout
    reason = index["T-1"]["defer_reason"]["message"]
    assert f"the agent moved refs/heads/main from {before[:12]} to " in reason and "restored" in reason
    assert git(repo, "rev-parse", "main").strip() == before  # nothing untrailered landed
    kept = displaced(repo)
    assert len(kept) == 1 and git(repo, "log", "-1", "--format=%s", kept[0]).strip() == "sneaky"
    report("an agent moves the target to its commit", tries=1, held=1)


def test_an_agent_rewinding_landed_work_is_undone_and_deferred(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    initial = git(repo, "rev-parse", "main").strip()
    write_index(repo, [ticket("T-1", write_file_cmd("t1.txt", "1\n")),
                       ticket("T-2", agent_git(f"git('update-ref', 'refs/heads/main', {initial!r})"), deps=["T-1"]),
                       ticket("T-3", write_file_cmd("t3.txt", "3\n"), deps=["T-2"])])

    result = run_stream(repo, "--sandbox", "none", parallel=1)

    index = read_index(repo)
    assert index["T-1"]["state"] == "COMPLETED" and index["T-2"]["state"] == "DEFERRED", result.stdout
    assert "restored" in index["T-2"]["defer_reason"]["message"]
    assert trailer_counts(repo, "main") == {"T-1": 1}  # the landed ticket is still on main
    assert git(repo, "rev-parse", "main").strip() == index["T-1"]["git"]["last_commit"]["sha"]
    report("an agent rewinds landed work", tries=1, held=1)


def test_a_commit_on_the_target_that_is_not_the_agents_is_left_alone(tmp_path: Path) -> None:
    """What the user commits on the target during a run is theirs: sage lands on top of it."""
    repo = make_repo(tmp_path / "repo")
    code = (f"git('-C', {str(repo)!r}, 'commit', '-q', '--allow-empty', '-m', 'user commit')\n"
            "pathlib.Path('t1.txt').write_text('1\\n')")  # the user commits in their checkout meanwhile
    write_index(repo, [ticket("T-1", agent_git(code), files=["t1.txt"])])

    result = run_stream(repo, "--sandbox", "none", parallel=1)

    assert read_index(repo)["T-1"]["state"] == "COMPLETED", result.stdout
    subjects = git(repo, "log", "--format=%s", "main").splitlines()
    assert subjects[1:] == ["user commit", "initial"] and "#T-1" in subjects[0]
    assert displaced(repo) == []
    report("the user commits on the target during a turn", tries=1, held=1)


def test_an_agent_creating_a_branch_with_its_commits_is_undone_other_branches_are_left_alone(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    git(repo, "branch", "users-own")
    code = ("pathlib.Path('t1.txt').write_text('1\\n'); git('add', '-A'); git('commit', '-qm', 'agent work')\n"
            "git('branch', 'exfil', 'HEAD'); git('branch', 'at-main', 'main')")
    write_index(repo, [ticket("T-1", agent_git(code), files=["t1.txt"])])

    result = run_stream(repo, "--sandbox", "none", parallel=1)

    index = read_index(repo)
    assert index["T-1"]["state"] == "DEFERRED", result.stdout
    assert "the agent moved refs/heads/exfil from nothing to" in index["T-1"]["defer_reason"]["message"]
    branches = set(git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/").split())
    assert "exfil" not in branches and {"users-own", "at-main"} <= branches  # no agent commit on those
    assert len(displaced(repo)) == 1
    report("an agent makes a branch of its commits; the user's branches stay", tries=1, held=1)


# ---------------------------------------------------------------- a dirty checkout of the target

def wait_for(condition, *, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def queued(repo: Path) -> list[Path]:
    return sorted((repo / ".sage" / "commit-queue").glob("*.json"))


def test_landings_wait_for_a_dirty_checkout_of_the_target_and_resume_once_it_is_clean(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / ("a-project-with-a-rather-long-directory-name-" * 3).rstrip("-"))
    (repo / "README.md").write_text("the user's edit, not committed yet\n")
    write_index(repo, [ticket("T-1", write_file_cmd("t1.txt", "1\n"))])

    run = subprocess.Popen(stream_argv(repo, parallel=1), cwd=repo, env=clean_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: queued(repo))
        time.sleep(0.5)  # the landing has had every chance to move main
        assert trailer_counts(repo, "main") == {}  # nothing moved under the dirty checkout
        status = sage(repo, "status")
        assert f"landings onto main wait: {repo} has main checked out" in status.stdout, status.stdout
        as_json = json.loads(sage(repo, "status", "--json").stdout)
        assert as_json["landings_waiting"].startswith("landings onto main wait")
        git(repo, "commit", "-qam", "the user's commit")  # the user commits: landings resume by themselves
        output, _ = run.communicate(timeout=120)
    finally:
        run.kill()
    assert run.returncode == 0, output
    assert trailer_counts(repo, "main") == {"T-1": 1}
    assert git(repo, "log", "-1", "--skip=1", "--format=%s", "main").strip() == "the user's commit"
    assert (repo / "README.md").read_text() == "the user's edit, not committed yet\n"
    assert f"`git -C {repo} stash`, and landings resume by themselves" in output  # whole, never cut off
    assert output.count("landings onto main wait") == 1  # one message, not one per ticket or poll
    report("landings wait for a dirty checkout of the target", tries=1, held=1)


def test_stopped_while_waiting_the_work_stays_queued_and_lands_once_at_the_next_run(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "README.md").write_text("dirty\n")
    write_index(repo, [ticket("T-1", write_file_cmd("t1.txt", "1\n"))])

    run = subprocess.Popen(stream_argv(repo, parallel=1), cwd=repo, env=clean_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: queued(repo))
        time.sleep(0.3)
        run.send_signal(signal.SIGINT)
        output, _ = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 130, output
    assert trailer_counts(repo, "main") == {} and len(queued(repo)) == 1
    assert read_index(repo)["T-1"]["state"] == "UNPROCESSED"
    git(repo, "stash", "-q")

    again = run_stream(repo, parallel=1)

    assert again.returncode == 0, again.stdout + again.stderr
    assert trailer_counts(repo, "main") == {"T-1": 1} and queued(repo) == []
    assert read_index(repo)["T-1"]["state"] == "COMPLETED"
    report("stopped while a landing waits", tries=1, held=1)


def test_a_push_from_an_agents_worktree_is_refused(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    code = (f"r = subprocess.run(['git', 'push', {str(remote)!r}, 'HEAD:refs/heads/leaked'], capture_output=True, "
            "text=True)\npathlib.Path('push.txt').write_text(f'{r.returncode} {r.stderr}')")
    write_index(repo, [ticket("T-1", agent_git(code), files=["push.txt"])])

    result = run_stream(repo, "--sandbox", "none", parallel=1)

    assert result.returncode == 0, result.stdout + result.stderr
    assert git(remote, "for-each-ref") == ""  # nothing reached the remote
    pushed = git(repo, "show", "main:push.txt")
    assert not pushed.startswith("0 ") and "sage-stream-refuses-pushes-from-agent-worktrees" in pushed
    report("an agent pushes from its worktree", tries=1, held=1)


def test_landed_work_rewound_between_runs_is_said_at_the_start(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    initial = git(repo, "rev-parse", "main").strip()
    write_index(repo, [ticket("T-1", write_file_cmd("t1.txt", "1\n"))])
    assert run_stream(repo, parallel=1).returncode == 0
    landed = read_index(repo)["T-1"]["git"]["last_commit"]["sha"]
    git(repo, "reset", "-q", "--hard", initial)  # somebody rewinds main past T-1

    result = run_stream(repo, parallel=1)

    assert f"main no longer contains T-1's landed commit {landed[:12]}" in result.stdout
    assert f"`git update-ref refs/heads/main {landed}`" in result.stdout
    assert git(repo, "rev-parse", "main").strip() == initial  # said, not undone: it may have been on purpose
    report("landed work rewound between runs", tries=1, held=1)
