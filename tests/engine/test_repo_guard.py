"""The repository guard: git control files an agent changes are put back and reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from sage_stream.engine.repo_guard import RepoGuard, TurnVerdict


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


def plant_hook(git_repo: Path) -> None:
    hooks = git_repo / ".git" / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "pre-commit").write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")


def test_a_change_while_only_one_agent_ran_is_that_agents(git_repo: Path, home: Path) -> None:
    guard = RepoGuard.start(git_repo / ".git")
    guard.turn_started("A")
    plant_hook(git_repo)
    assert guard.turn_ended("A") == TurnVerdict(tampered=(".git/hooks/pre-commit",))
    assert not (git_repo / ".git" / "hooks" / "pre-commit").exists()


def test_a_change_while_several_agents_ran_makes_each_of_them_a_suspect(git_repo: Path, home: Path) -> None:
    guard = RepoGuard.start(git_repo / ".git")
    for tid in ("A", "B", "C"):
        guard.turn_started(tid)
    assert guard.turn_ended("C") == TurnVerdict()  # nothing yet: C is cleared
    plant_hook(git_repo)  # by A or by B: nothing tells which
    assert guard.turn_ended("B") == TurnVerdict(suspected=(".git/hooks/pre-commit",))  # A was running too
    assert not (git_repo / ".git" / "hooks" / "pre-commit").exists()  # undone at once
    guard.turn_started("D")  # starts after the change was undone: not a suspect
    assert guard.turn_ended("A") == TurnVerdict(suspected=(".git/hooks/pre-commit",))
    assert guard.turn_ended("D") == TurnVerdict()


def test_a_suspect_that_runs_again_alone_is_cleared_or_caught(git_repo: Path, home: Path) -> None:
    guard = RepoGuard.start(git_repo / ".git")
    guard.turn_started("A")
    guard.turn_started("B")
    plant_hook(git_repo)
    assert guard.turn_ended("A").suspected and guard.turn_ended("B").suspected
    guard.turn_started("A")  # alone now
    assert guard.turn_ended("A") == TurnVerdict()
    guard.turn_started("B")
    plant_hook(git_repo)
    assert guard.turn_ended("B") == TurnVerdict(tampered=(".git/hooks/pre-commit",))
