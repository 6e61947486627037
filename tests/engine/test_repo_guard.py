"""The repository guard: git control files an agent changes are put back and reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from sage_stream.engine.repo_guard import RepoGuard


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "xdg"))
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)
    return home


def test_a_change_to_the_users_global_git_config_is_undone_and_reported(git_repo: Path, home: Path) -> None:
    (home / ".gitconfig").write_text("[user]\n\tname = Me\n", encoding="utf-8")
    guard = RepoGuard.start(git_repo / ".git")
    (home / ".gitconfig").write_text("[core]\n\thooksPath = /tmp/evil\n", encoding="utf-8")
    xdg = home / "xdg" / "git" / "config"
    xdg.parent.mkdir(parents=True)
    xdg.write_text("[filter \"x\"]\n\tclean = evil\n", encoding="utf-8")
    assert guard.check_and_restore() == sorted([str(home / ".gitconfig"), str(xdg)])
    assert (home / ".gitconfig").read_text(encoding="utf-8") == "[user]\n\tname = Me\n"
    assert not xdg.exists()
    assert guard.check_and_restore() == []


def test_the_repositorys_own_control_files_are_still_named_under_git(git_repo: Path, home: Path) -> None:
    guard = RepoGuard.start(git_repo / ".git")
    with (git_repo / ".git" / "config").open("a", encoding="utf-8") as config:
        config.write("[core]\n\tfsmonitor = /tmp/evil\n")
    assert guard.check_and_restore() == [".git/config"]
