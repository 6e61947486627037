"""Shared fixtures: an index writer, a ticket factory, and throwaway git repositories.

Use the fixtures, not `from conftest import ...`: other directories have their own
conftest.py, and which one `import conftest` finds depends on the order tests load.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

INDEX_RELATIVE = Path(".sage") / "tickets" / "index.json"


def write_index(root: Path, tickets: list[Any], *, indent: int | None = 2, **top_level: Any) -> Path:
    """Write `{"version": "1.0", **top_level, "tickets": tickets}` to `root/.sage/tickets/index.json`."""
    path = root / INDEX_RELATIVE
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"version": "1.0", **top_level, "tickets": tickets}
    path.write_text(json.dumps(data, indent=indent) + "\n", encoding="utf-8")
    return path


def ticket(ticket_id: str, *dependencies: str, **fields: Any) -> dict[str, Any]:
    """A minimal valid UNPROCESSED ticket; `fields` override or add keys."""
    return {
        "id": ticket_id,
        "title": f"Ticket {ticket_id}",
        "state": "UNPROCESSED",
        "priority": "P1",
        "type": "implementation",
        "validation_type": "generic",
        "dependencies": list(dependencies),
        **fields,
    }


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` (argv list) and return its stdout; fail the test on an error."""
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {result.stderr}")
    return result.stdout


def init_git_repo(repo: Path) -> Path:
    """A repository on branch main with one commit (README.md, .gitignore ignoring .sage/)."""
    repo.mkdir(parents=True, exist_ok=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "Sage Test")
    git(repo, "config", "user.email", "sage-test@example.com")
    git(repo, "config", "commit.gpgsign", "false")
    (repo / "README.md").write_text("test repository\n", encoding="utf-8")
    (repo / ".gitignore").write_text(".sage/\n", encoding="utf-8")
    git(repo, "add", "README.md", ".gitignore")
    git(repo, "commit", "-q", "-m", "initial commit")
    return repo


@pytest.fixture
def make_index() -> Callable[..., Path]:
    """`make_index(root, [ticket dicts], indent=2, **top_level_keys) -> index path`."""
    return write_index


@pytest.fixture
def make_ticket() -> Callable[..., dict[str, Any]]:
    """`make_ticket("TKT-002", "TKT-001", state="COMPLETED") -> ticket dict`."""
    return ticket


@pytest.fixture(scope="session")
def run_git() -> Callable[..., str]:
    """`run_git(repo, "rev-parse", "HEAD") -> stdout`; fails the test on a git error."""
    return git


@pytest.fixture(scope="session")
def make_git_repo() -> Callable[[Path], Path]:
    """`make_git_repo(path) -> path`: a repository there (branch main, one commit, `.sage/` ignored)."""
    return init_git_repo


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """A fresh git repository (branch main, one commit, `.sage/` ignored) under tmp_path."""
    return init_git_repo(tmp_path / "repo")
