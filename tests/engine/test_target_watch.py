"""engine/target_watch.py: before each landing, the target must still hold what sage landed."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sage_stream.engine.target_watch import DISPLACED, TargetWatch
from sage_stream.git import Git


def sh(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def commit_on_main(repo: Path, message: str) -> str:
    sh(repo, "commit", "-q", "--allow-empty", "-m", message)
    return sh(repo, "rev-parse", "HEAD")


def test_a_rewind_of_landed_work_is_restored_before_the_next_landing_and_the_rewound_tip_kept(git_repo: Path) -> None:
    start = sh(git_repo, "rev-parse", "main")
    watch = TargetWatch(Git(git_repo), "main")
    landed = commit_on_main(git_repo, "a landing")
    watch.landed_commit(landed)
    sh(git_repo, "update-ref", "refs/heads/main", start)  # landed work rewound behind sage's back

    tip, move = watch.before_landing(start)

    assert tip == landed and sh(git_repo, "rev-parse", "main") == landed
    assert move is not None and move.restored and move.kept_as.startswith(f"{DISPLACED}/main/")
    assert sh(git_repo, "rev-parse", move.kept_as) == start
    assert "moved refs/heads/main from" in move.describe("something other than sage")


def test_commits_on_top_of_what_sage_landed_are_accepted(git_repo: Path) -> None:
    watch = TargetWatch(Git(git_repo), "main")
    user = commit_on_main(git_repo, "the user's commit")

    assert watch.before_landing(user) == (user, None)
    assert sh(git_repo, "for-each-ref", f"{DISPLACED}/") == ""


def land_empty_commit(repo: Path, message: str) -> str:
    """What a sage landing does: a commit on main by compare-and-swap, no checkout touched."""
    tip = sh(repo, "rev-parse", "main")
    commit = sh(repo, "commit-tree", f"{tip}^{{tree}}", "-p", tip, "-m", message)
    sh(repo, "update-ref", "refs/heads/main", commit, tip)
    return commit


def test_an_agent_merging_what_sage_landed_during_its_turn_has_moved_nothing(git_repo: Path, tmp_path: Path) -> None:
    watch = TargetWatch(Git(git_repo), "main")
    worktree = tmp_path / "slot"
    sh(git_repo, "worktree", "add", "-q", "-b", "sage/T-1", str(worktree), "main")
    before = watch.before_turn()
    watch.landed_commit(land_empty_commit(git_repo, "another ticket landed"))
    sh(worktree, "commit", "-q", "--allow-empty", "-m", "agent work")
    sh(worktree, "merge", "-q", "--no-edit", "main")
    watch.landed_commit(land_empty_commit(git_repo, "and one more"))

    assert watch.after_turn(before, worktree) == []


def test_an_agent_moving_main_to_its_commit_is_undone(git_repo: Path, tmp_path: Path) -> None:
    watch = TargetWatch(Git(git_repo), "main")
    start = sh(git_repo, "rev-parse", "main")
    worktree = tmp_path / "slot"
    sh(git_repo, "worktree", "add", "-q", "-b", "sage/T-1", str(worktree), "main")
    before = watch.before_turn()
    sh(worktree, "commit", "-q", "--allow-empty", "-m", "agent work")
    sh(worktree, "update-ref", "refs/heads/main", "HEAD")

    [move] = watch.after_turn(before, worktree)

    assert move.restored and sh(git_repo, "rev-parse", "main") == start
    assert move.describe().startswith(f"the agent moved refs/heads/main from {start[:12]} to ")


def test_a_target_that_follows_a_landing_made_before_the_turn_began_is_not_the_agents_move(
        git_repo: Path, tmp_path: Path) -> None:
    """--remote: a landing is recorded (and what it unblocked starts from it) before the
    local branch follows the pushed commit; that move happens during the new agent's turn."""
    git = Git(git_repo)
    watch = TargetWatch(git, "main")
    tip = sh(git_repo, "rev-parse", "main")
    pushed = sh(git_repo, "commit-tree", f"{tip}^{{tree}}", "-p", tip, "-m", "landed on the remote")
    watch.landed_commit(pushed)
    worktree = tmp_path / "slot"
    sh(git_repo, "worktree", "add", "-q", "-b", "sage/T-2", str(worktree), pushed)  # started from the landing
    before = watch.before_turn()
    sh(git_repo, "update-ref", "refs/heads/main", pushed, tip)  # the local branch follows the remote
    sh(worktree, "commit", "-q", "--allow-empty", "-m", "agent work")

    assert watch.after_turn(before, worktree) == []
    assert sh(git_repo, "rev-parse", "main") == pushed


def test_a_turn_ending_while_a_landing_moves_the_target_knows_it_was_sage_without_asking_git(
        git_repo: Path, tmp_path: Path) -> None:
    watch = TargetWatch(Git(git_repo), "main")
    before = watch.before_turn()
    tip = sh(git_repo, "rev-parse", "main")
    commit = sh(git_repo, "commit-tree", f"{tip}^{{tree}}", "-p", tip, "-m", "a landing")
    watch.landing(commit)  # said just before the compare-and-swap ...
    sh(git_repo, "update-ref", "refs/heads/main", commit, tip)
    # ... and the turn ends before `landed_commit`: no move, and no git asked (the work tree
    # is gone: finding out whose commits these are would fail)
    assert watch.after_turn(before, tmp_path / "no such work tree") == []
    assert sh(git_repo, "rev-parse", "main") == commit
