"""paths: every path under .sage/, named once."""

from __future__ import annotations

from pathlib import Path

from sage_stream.paths import INDEX_RELATIVE, REPO_RELATIVE, SAGE_DIR, SagePaths


def test_the_layout_under_sage(tmp_path: Path) -> None:
    paths = SagePaths.of_repo(tmp_path)
    sage = tmp_path / ".sage"
    assert paths.root == sage
    assert paths.tickets == sage / "tickets"
    assert paths.index == sage / "tickets" / "index.json"
    assert paths.config == sage / "config.toml"
    assert paths.worktrees == sage / "worktrees"
    assert paths.commit_queue == sage / "commit-queue"
    assert paths.runs == sage / "runs"
    assert paths.run_record("20261121T091403Z-abc123") == sage / "runs" / "20261121T091403Z-abc123.json"
    assert paths.workers == sage / "workers"
    assert paths.run_logs("20261121T091403Z-abc123") == sage / "workers" / "20261121T091403Z-abc123"
    assert paths.commit_lock == sage / "commit.lock"
    assert paths.worktree_lock == sage / "worktree.lock"
    assert paths.run_lock == sage / "stream.lock"
    assert paths.run_owner == sage / "stream.owner.json"


def test_relative_paths_are_what_sage_looks_for_in_a_repository() -> None:
    assert SAGE_DIR == ".sage"
    assert INDEX_RELATIVE == Path(".sage/tickets/index.json")
    assert REPO_RELATIVE.config == Path(".sage/config.toml")


def test_paths_are_values() -> None:
    assert SagePaths(Path("/r/.sage")) == SagePaths(Path("/r/.sage"))
    assert len({SagePaths(Path("/r/.sage")), SagePaths(Path("/r/.sage"))}) == 1
