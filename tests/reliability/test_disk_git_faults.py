"""The disk and the repository misbehave under a running `sage stream`: the index turns
read-only, the disk fills up during an index write and during a landing, a person
commits on the target branch, a killed git left an `index.lock`. A run that cannot write
its index stops with a message naming the index and the error (exit 1, no traceback) and
stops its agents; the index stays whole, nothing lands twice, and once the fault is gone a
rerun finishes every ticket exactly once (crash_harness.check_final).

Faults come at named points of the run (`SAGE_TEST_FAULT_AT`, see faults.py) by
running fault_tools.py. A full disk needs root (a small tmpfs); a read-only index is a
read-only bind mount as root and plain permissions otherwise.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import fault_tools
from .crash_harness import check_after_kill, check_final, new_backlog_repo
from .support import (
    INDEX,
    check_index_sound,
    clean_env,
    git,
    held_locks,
    leftover_processes,
    make_repo,
    read_index,
    run_stream,
    ticket,
    trailer_counts,
    write_file_cmd,
    write_index,
)

TMPFS_SIZE = "24m"  # the repository, its objects and the run's files, with room to spare until filled
needs_root = pytest.mark.skipif(not fault_tools.can_mount(), reason="mounting a small tmpfs needs root")
needs_readonly = pytest.mark.skipif(not fault_tools.can_make_readonly(),
                                    reason="root without CAP_SYS_ADMIN can neither bind-mount read-only nor be "
                                           "stopped by file modes")


def fault_env(point: str, *action: str) -> dict[str, str]:
    return clean_env(SAGE_TEST_FAULT_AT=point, SAGE_TEST_FAULT_CMD=json.dumps(fault_tools.command(*action)))


def check_whole_after_fault(repo: Path) -> None:
    """What must hold after a run a fault broke: the index whole and valid, nothing
    landed twice, no lock held, no temp file passed off as the index."""
    check_after_kill(repo, "after the fault")
    leftovers = [path.name for path in (repo / INDEX).parent.iterdir() if path.name.startswith(".tmp-")]
    assert not leftovers, leftovers  # a failed write removes its temp file


# ---------------------------------------------------------------- read-only index


@pytest.fixture(scope="module")
def readonly_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A run whose index turns read-only after the second agent exits; undone afterwards."""
    repo = new_backlog_repo(tmp_path_factory.mktemp("readonly") / "repo")
    tickets_dir = repo / INDEX.parent
    try:
        result = run_stream(repo, env=fault_env("after_agent_exit#2", "readonly", str(tickets_dir)))
        state = {"repo": repo, "result": result, "leftovers": leftover_processes(repo)}
    finally:
        fault_tools.undo_readonly(tickets_dir)
    return state


@needs_readonly
def test_index_made_read_only_mid_run_stays_whole_and_a_rerun_finishes(readonly_run):
    repo = readonly_run["repo"]
    assert readonly_run["result"].returncode != 0  # the run could not record its work
    check_whole_after_fault(repo)
    rerun = run_stream(repo)
    assert rerun.returncode in (0, 3), rerun.stderr
    check_final(repo)


@needs_readonly
def test_index_made_read_only_mid_run_is_a_clear_error_and_stops_the_agents(readonly_run):
    result = readonly_run["result"]
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "index.json" in result.stderr
    assert "Read-only file system" in result.stderr or "Permission denied" in result.stderr  # root / not root
    assert not readonly_run["leftovers"]


# ---------------------------------------------------------------- a full disk


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    fault_tools.mount_tmpfs(mount, TMPFS_SIZE)
    try:
        yield mount
    finally:
        for process in leftover_processes(mount / "repo") if (mount / "repo").exists() else []:
            process.kill()
        fault_tools.unmount(mount)


def full_disk_run(disk: Path, point: str, *, parallel: int = 2) -> dict:
    repo = new_backlog_repo(disk / "repo")
    filler = disk / "filler"
    result = run_stream(repo, env=fault_env(point, "fill", str(filler)), parallel=parallel)
    state = {"repo": repo, "result": result, "leftovers": leftover_processes(repo)}
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "No space left on device" in result.stderr  # the message says what happened
    assert not state["leftovers"]  # the run stopped its agents before it exited
    check_whole_after_fault(repo)
    fsck = subprocess.run(["git", "fsck", "--no-dangling"], cwd=repo, capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr  # no half-written object anywhere
    filler.unlink()  # the user frees some space
    rerun = run_stream(repo)
    assert rerun.returncode in (0, 3), rerun.stdout + rerun.stderr
    check_final(repo)
    return state


@needs_root
def test_disk_full_during_an_index_write(small_disk: Path) -> None:
    # filled right after DIA-1 landed: writing COMPLETED into the index is what fails
    full_disk_run(small_disk, "after_land#1")


@needs_root
def test_disk_full_writing_a_commit_queue_entry(small_disk: Path) -> None:
    # filled once the first ticket's work is committed on its branch: queuing it is what fails
    # (one worker: with two, FAIL-1's deferral could be the first write to meet the full disk)
    state = full_disk_run(small_disk, "after_snapshot#1", parallel=1)
    assert "could not write the commit-queue entry" in state["result"].stderr
    assert "free some space" in state["result"].stderr


@needs_root
def test_disk_full_during_a_landing(small_disk: Path) -> None:
    # filled with the commit lock held, before merge-tree writes its objects
    full_disk_run(small_disk, "landing_locked#1")


# ---------------------------------------------------------------- the target moves under the run


@pytest.mark.parametrize("path", [pytest.param("person.txt", marks=pytest.mark.slow), "shared.txt"])
def test_a_person_commits_on_the_target_during_the_run(tmp_path: Path, path: str) -> None:
    """shared.txt: the person's edit conflicts with CON-1 and CON-2, which rerun on it."""
    repo = new_backlog_repo(tmp_path / "repo")
    result = run_stream(repo, env=fault_env("after_agent_exit#1", "commit", str(repo), path, "a person's line\n"))
    assert result.returncode == 3 and "Traceback" not in result.stderr, result.stdout + result.stderr
    person = git(repo, "log", "--format=%H", "--author=A Person", "main").split()
    assert len(person) == 1  # the person's commit is kept on main, never overwritten
    check_final(repo)  # every ticket landed once (a conflict with the person reruns the ticket)
    if path == "person.txt":
        assert git(repo, "show", "main:person.txt") == "a person's line\n"


# ---------------------------------------------------------------- stale index.lock files


def test_a_stale_index_lock_in_the_users_checkout_lands_by_ref_and_catches_up_later(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    write_index(repo, [ticket("LCK-1", write_file_cmd("one.txt", "1")),
                       ticket("LCK-2", write_file_cmd("two.txt", "2"))])
    stale = repo / ".git" / "index.lock"
    stale.write_text("")  # a git that was killed
    result = run_stream(repo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert dict(trailer_counts(repo)) == {"LCK-1": 1, "LCK-2": 1}
    assert "could not be updated" in result.stdout  # the user is told their checkout lags behind
    assert stale.exists()  # the user's lock is theirs to remove
    stale.unlink()
    again = run_stream(repo)  # nothing left to do; recovery brings the checkout along
    assert again.returncode == 0, again.stdout + again.stderr
    assert not git(repo, "status", "--porcelain")
    assert (repo / "two.txt").read_text() == "2"


@pytest.mark.parametrize("second", ["two.txt", "one.txt"], ids=["the landing adds a file", "it changes one"])
def test_a_checkout_whose_files_were_brought_along_but_not_its_index_is_caught_up_not_waited_for(
        tmp_path: Path, second: str) -> None:
    """Bringing the checkout along (`read-tree -m -u`) writes the files, then the index: a
    full disk or a kill in between leaves the landed files with the old index, which
    `git status` shows as changes. They are sage's, not the user's: landings go on (no
    wait for a commit that will never come) and the next run catches the index up."""
    repo = make_repo(tmp_path / "repo")
    write_index(repo, [ticket("HB-1", write_file_cmd("one.txt", "1")),
                       ticket("HB-2", write_file_cmd(second, "2"), deps=["HB-1"])])
    assert run_stream(repo, parallel=1).returncode == 0
    landed = git(repo, "rev-parse", "main").strip()
    before = git(repo, "rev-parse", "main~1").strip()
    git(repo, "read-tree", before)  # the index of the commit before HB-2's landing...
    assert (repo / second).read_text() == "2"  # ...under the files of the landing
    assert git(repo, "status", "--porcelain", "--untracked-files=no")  # looks like changes
    write_index(repo, [*read_index(repo).values(), ticket("HB-3", write_file_cmd("three.txt", "3"))])
    result = run_stream(repo, parallel=1)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "landings onto main wait" not in result.stdout
    assert f"brought {repo} along to main ({landed[:12]})" in result.stdout
    assert read_index(repo)["HB-3"]["state"] == "COMPLETED"
    assert not git(repo, "status", "--porcelain", "--untracked-files=no")  # caught up with HB-3 too
    assert (repo / "three.txt").read_text() == "3"


def test_a_stale_index_lock_in_a_worker_slot_is_cleared(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    write_index(repo, [ticket("SLT-1", write_file_cmd("one.txt", "1"))])
    assert run_stream(repo, parallel=1).returncode == 0
    for slot_gitdir in (repo / ".git" / "worktrees").iterdir():
        (slot_gitdir / "index.lock").write_text("")  # git was killed in the slot (kill -9 of the whole group)
    write_index(repo, [*read_index(repo).values(), ticket("SLT-2", write_file_cmd("two.txt", "2"))])
    result = run_stream(repo, parallel=1)
    assert result.returncode == 0, result.stdout + result.stderr
    assert read_index(repo)["SLT-2"]["state"] == "COMPLETED"
    assert not held_locks(repo)
    check_index_sound(repo)
