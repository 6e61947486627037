"""What `sage stream` needs around the index, checked without touching anything."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sage_stream.validation import prerequisites
from sage_stream.validation.checks import validate_index
from sage_stream.validation.prerequisites import (
    GitContext,
    check_prerequisites,
    inspect_git,
    is_creatable,
    parse_git_version,
    sage_dir_for,
    unresolved_commits,
)

MakeIndex = Callable[..., Path]
MakeTicket = Callable[..., dict[str, Any]]
RunGit = Callable[..., str]


@pytest.mark.parametrize("text, version", [
    ("git version 2.39.5", (2, 39, 5)),
    ("git version 2.38.0.windows.1", (2, 38, 0)),
    ("git version 2.45", (2, 45)),
    ("git version 2.30.1 (Apple Git-130)", (2, 30, 1)),
    ("not git at all", None),
])
def test_parse_git_version(text: str, version: tuple[int, ...] | None) -> None:
    assert parse_git_version(text) == version


def test_git_older_than_2_38_fails_the_version_prerequisite(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    real_run = prerequisites.run_git

    def old_git(executable, args, *, cwd, stdin=None):
        if list(args) == ["--version"]:
            class Done:
                returncode, stdout, stderr = 0, "git version 2.30.1\n", ""
            return Done()
        return real_run(executable, args, cwd=cwd, stdin=stdin)

    monkeypatch.setattr(prerequisites, "run_git", old_git)
    version = next(item for item in inspect_git(tmp_path).prerequisites if item.name == "git_version")
    assert not version.ok
    assert "2.30.1" in version.message and "2.38" in version.message


def test_is_creatable_answers_without_creating(tmp_path: Path) -> None:
    wanted = tmp_path / "a" / "b" / "commit-queue"
    assert is_creatable(wanted)
    assert not (tmp_path / "a").exists()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert not is_creatable(blocker / "workers")  # its nearest existing ancestor is a file
    assert not is_creatable(blocker)  # exists, but is not a directory


def test_sage_dir_for_the_usual_index_and_an_index_elsewhere(tmp_path: Path) -> None:
    assert sage_dir_for(tmp_path / ".sage" / "tickets" / "index.json", None) == tmp_path / ".sage"
    assert sage_dir_for(tmp_path / "x" / "index.json", tmp_path) == tmp_path / ".sage"
    assert sage_dir_for(tmp_path / "x" / "index.json", None) == tmp_path / "x" / ".sage"


def test_all_prerequisites_hold_in_a_git_repository(
    git_repo: Path, make_ticket: MakeTicket, make_index: MakeIndex,
) -> None:
    index = make_index(git_repo, [make_ticket("TKT-001")])
    context, items = check_prerequisites(index)
    assert context.work_tree == git_repo.resolve()
    assert [item.name for item in items] == ["git_version", "git_work_tree", "sage_dir_writable"]
    assert all(item.ok for item in items)
    assert not (git_repo / ".sage" / "workers").exists()


def test_outside_a_work_tree_is_an_error(
    tmp_path: Path, make_ticket: MakeTicket, make_index: MakeIndex,
) -> None:
    index = make_index(tmp_path, [make_ticket("TKT-001")])
    report = validate_index(index)
    failed = [item for item in report.prerequisites if not item.ok]
    assert [item.name for item in failed] == ["git_work_tree"]
    error = next(f for f in report.errors if f.code == "prerequisite_git_work_tree")
    assert "git init" in error.message
    assert report.exit_code == 1  # a failed prerequisite: no run could work here (README, exit codes)


def test_without_git_everything_that_needs_git_says_so(
    monkeypatch: pytest.MonkeyPatch, git_repo: Path, make_ticket: MakeTicket, make_index: MakeIndex,
) -> None:
    monkeypatch.setattr(prerequisites.shutil, "which", lambda name: None)
    index = make_index(git_repo, [make_ticket("TKT-001", checkpoint_id="HEAD")])
    report = validate_index(index)
    assert [item.name for item in report.prerequisites if not item.ok] == ["git_installed"]
    assert [f.code for f in report.errors] == ["prerequisite_git_installed"]
    assert {f.code for f in report.warnings} >= {"unchecked_checkpoint"}


def test_unresolved_commits_asks_git_once_and_refuses_option_like_revisions(
    git_repo: Path, run_git: RunGit,
) -> None:
    context = inspect_git(git_repo)
    head = run_git(git_repo, "rev-parse", "HEAD").strip()
    missing = unresolved_commits(context, [head, head[:7], "HEAD", "0" * 40, "--all", "a b", "main"])
    assert missing == {"0" * 40, "--all", "a b"}
    assert unresolved_commits(GitContext(), ["HEAD"]) is None


# ---------------------------------------------------------------- the sandbox


def path_with_git_only(tmp_path: Path) -> str:
    import shutil

    bin_dir = tmp_path / "bin-without-bwrap"
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to(shutil.which("git"))
    return str(bin_dir)


def test_validate_notes_once_that_agents_would_run_unsandboxed_without_bwrap(
    git_repo: Path, make_ticket: MakeTicket, make_index: MakeIndex, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    index = make_index(git_repo, [make_ticket("TKT-001")])
    monkeypatch.setenv("PATH", path_with_git_only(tmp_path))
    report = validate_index(index)
    assert report.sandbox is not None and not report.sandbox.ok and not report.sandbox.blocking
    assert report.sandbox.message.startswith("agents are not sandboxed: bwrap is not installed")
    assert not [f for f in report.findings if f.code.startswith("prerequisite_")], report.findings  # a note


def test_validate_fails_when_the_config_asks_for_bwrap_and_there_is_none(
    git_repo: Path, make_ticket: MakeTicket, make_index: MakeIndex, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    index = make_index(git_repo, [make_ticket("TKT-001")])
    (git_repo / ".sage" / "config.toml").write_text('[agent]\nsandbox = "bwrap"\n')
    monkeypatch.setenv("PATH", path_with_git_only(tmp_path))
    report = validate_index(index)
    assert report.exit_code == 1
    error = next(f for f in report.errors if f.code == "prerequisite_sandbox")
    assert error.message.startswith(f"{git_repo / '.sage' / 'config.toml'}: [agent] sandbox \"bwrap\" was asked for")


def test_validate_says_agents_are_not_sandboxed_when_the_config_says_none(
    git_repo: Path, make_ticket: MakeTicket, make_index: MakeIndex,
) -> None:
    index = make_index(git_repo, [make_ticket("TKT-001")])
    (git_repo / ".sage" / "config.toml").write_text('[agent]\nsandbox = "none"\n')
    report = validate_index(index)
    assert report.sandbox is not None and report.sandbox.ok
    assert report.sandbox.message.startswith('agents are not sandboxed (sandbox = "none")')
    assert report.as_json()["sandbox"]["name"] == "sandbox"
