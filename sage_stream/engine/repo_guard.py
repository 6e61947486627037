"""Guarding the repository's git control files against agents.

An agent works in a worktree, but the worktree's `.git` file names the repository's own
git directory: from there an agent can plant hooks, set `core.hooksPath`, `core.fsmonitor`
or filter drivers in `.git/config`, and so run code in the user's next git command (or in
sage's own `git add`). sage records these files when a run starts and compares them after
every agent turn, before any git command runs on the agent's work: a change is undone and
the ticket deferred with the paths it changed.

Watched (relative to the common git directory): `config`, `config.worktree`, everything
under `hooks/`, `info/attributes`, and each worktree's `worktrees/*/config.worktree`; and
the `.git` file of the agent's own worktree, which must keep pointing where sage put it.

The user's own git configuration is watched the same way (`user_git_configs`:
`~/.gitconfig`, `$XDG_CONFIG_HOME/git/config`, `$GIT_CONFIG_GLOBAL`): a hooks path or a
filter written there would run in the user's next git command (sage's own git never
reads it, see git.py). Reported by their absolute paths.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ControlState = dict[str, tuple[bytes, int]]  # relative path -> (content, mode)


def _watched(common_dir: Path) -> list[Path]:
    paths = [common_dir / "config", common_dir / "config.worktree", common_dir / "info" / "attributes"]
    hooks = common_dir / "hooks"
    if hooks.is_dir():
        paths += [path for path in hooks.rglob("*") if path.is_file() or path.is_symlink()]
    worktrees = common_dir / "worktrees"
    if worktrees.is_dir():
        paths += [entry / "config.worktree" for entry in worktrees.iterdir()]
    return paths


def user_git_configs() -> list[Path]:
    """Where git reads the user's global configuration from (whether it exists yet or not)."""
    home = Path(os.path.expanduser("~"))
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(home / ".config")
    paths = [home / ".gitconfig", Path(xdg) / "git" / "config"]
    chosen = os.environ.get("GIT_CONFIG_GLOBAL")
    if chosen and chosen != os.devnull:
        paths.append(Path(chosen))
    return [path for path in dict.fromkeys(paths) if path.is_absolute()]


def read_state(common_dir: Path, user_configs: Sequence[Path] = ()) -> ControlState:
    """Control files by name: relative to `common_dir`, or absolute for `user_configs`."""
    state: ControlState = {}
    for path, name in [*((path, str(path.relative_to(common_dir))) for path in _watched(common_dir)),
                       *((path, str(path)) for path in user_configs)]:
        with contextlib.suppress(OSError):
            if path.is_symlink():
                state[name] = (b"symlink:" + os.readlink(path).encode(), 0o120000)
            elif path.is_file():
                state[name] = (path.read_bytes(), path.stat().st_mode & 0o7777)
    return state


@dataclass
class RepoGuard:
    common_dir: Path
    baseline: ControlState
    _lock: threading.Lock
    user_configs: tuple[Path, ...] = ()

    @classmethod
    def start(cls, common_dir: Path) -> RepoGuard:
        user_configs = tuple(user_git_configs())
        return cls(common_dir=common_dir, baseline=read_state(common_dir, user_configs), _lock=threading.Lock(),
                   user_configs=user_configs)

    def check_and_restore(self) -> list[str]:
        """The control files changed since the run started (as `.git/<path>`, or the
        absolute path of a user configuration file), put back as they were. Empty when
        nothing changed."""
        with self._lock:
            current = read_state(self.common_dir, self.user_configs)
            changed = sorted(path for path in set(current) | set(self.baseline)
                             if current.get(path) != self.baseline.get(path))
            for relative in changed:
                self._restore(relative)
            return [path if Path(path).is_absolute() else f".git/{path}" for path in changed]

    def _restore(self, relative: str) -> None:
        path = self.common_dir / relative
        with contextlib.suppress(OSError):
            if path.is_symlink() or path.is_file():
                path.unlink()
        original = self.baseline.get(relative)
        if original is None:
            return
        content, mode = original
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            if mode == 0o120000:
                os.symlink(content.removeprefix(b"symlink:").decode(), path)
            else:
                path.write_bytes(content)
                os.chmod(path, mode)


def worktree_link(worktree: Path) -> bytes | None:
    """The content of a worktree's `.git` file (which git directory it belongs to)."""
    try:
        return (worktree / ".git").read_bytes()
    except OSError:
        return None


def restore_worktree_link(worktree: Path, content: bytes) -> None:
    link = worktree / ".git"
    with contextlib.suppress(OSError):
        if link.is_dir() and not link.is_symlink():
            import shutil

            shutil.rmtree(link)
        elif link.exists() or link.is_symlink():
            link.unlink()
        link.write_bytes(content)
