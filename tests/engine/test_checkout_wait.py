"""A landing that waits for a checkout of its target: what each poll asks git."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sage_stream.engine import checkout_wait
from sage_stream.engine.checkout_wait import dirty_checkouts, has_own_changes
from sage_stream.git import Git


def sh(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def landings(repo: Path, count: int) -> None:
    for number in range(count):
        (repo / f"t{number}.txt").write_text(f"{number}\n")
        sh(repo, "add", f"t{number}.txt")
        sh(repo, "commit", "-q", "-m", f"T-{number}\n\nSage-Ticket: T-{number}")


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every `git diff-index --cached` a check runs (one per commit compared with the index)."""
    calls: list[str] = []
    compare = Git.index_matches

    def counting(self: Git, worktree: Path, commit: str, **options: object) -> bool:
        calls.append(commit)
        return compare(self, worktree, commit, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(Git, "index_matches", counting)
    monkeypatch.setattr(checkout_wait, "_BEHIND", {})
    return calls


def test_a_poll_asks_the_history_again_only_when_the_index_or_the_target_moved(
    git_repo: Path, counted: list[str]
) -> None:
    landings(git_repo, 30)
    git = Git(git_repo)
    (git_repo / "mine.txt").write_text("the user's own work\n")
    sh(git_repo, "add", "mine.txt")  # staged: the index holds no landing's tree
    assert dirty_checkouts(git, "main") == [git_repo]
    first = len(counted)
    assert first == 31  # the head, then each landing back to the first commit
    for _ in range(3):  # a waiting landing polls: nothing moved, nothing compared again
        assert dirty_checkouts(git, "main") == [git_repo]
    assert len(counted) == first
    (git_repo / "more.txt").write_text("more\n")
    sh(git_repo, "add", "more.txt")  # the index is written anew: asked again
    assert dirty_checkouts(git, "main") == [git_repo]
    assert len(counted) == 2 * first
    sh(git_repo, "stash")
    assert dirty_checkouts(git, "main") == []  # clean: landings resume


def test_a_checkout_merely_behind_landings_is_told_apart_as_before(git_repo: Path, counted: list[str]) -> None:
    landings(git_repo, 5)
    git = Git(git_repo)
    behind = sh(git_repo, "rev-parse", "HEAD~2")
    sh(git_repo, "read-tree", behind)  # the index holds an older landing's tree, nothing else
    sh(git_repo, "checkout-index", "-f", "-a")
    for _ in range(2):
        assert not has_own_changes(git, git_repo, "main")
    (git_repo / "t0.txt").write_text("the user's edit\n")
    sh(git_repo, "add", "t0.txt")
    assert has_own_changes(git, git_repo, "main")


def test_the_index_of_a_linked_work_tree_is_found_through_its_git_file(git_repo: Path, tmp_path: Path) -> None:
    linked = tmp_path / "linked"
    sh(git_repo, "worktree", "add", "-q", "-b", "other", str(linked))
    index_identity = Git(git_repo).index_identity
    own, main = index_identity(linked), index_identity(git_repo)
    assert own is not None and main is not None and own[0] != main[0]
    assert Path(str(own[0])).parent.parent.name == "worktrees"
    (linked / "x.txt").write_text("x\n")
    sh(linked, "add", "x.txt")
    assert index_identity(linked) != own and index_identity(git_repo) == main
    assert index_identity(tmp_path / "not-a-checkout") is None
