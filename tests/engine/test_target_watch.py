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
