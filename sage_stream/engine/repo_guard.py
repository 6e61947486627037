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

Who changed them: these files are shared by every agent of the run, and without a
sandbox nothing records which process wrote them. A change found when a turn ends
happened after the previous turn's end (which found none), so any agent whose turn is
still going could have made it as well as the one ending. When no other turn is going,
the ending turn's agent did it (`TurnVerdict.tampered`: its ticket is deferred). Else
every turn that could have is a suspect (`TurnVerdict.suspected`): a suspect that would
otherwise land runs again with nothing beside it, where the answer is certain.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class TurnVerdict:
    """What the control files say about one agent turn (see the module's text)."""

    tampered: tuple[str, ...] = ()  # changed, and this turn's agent is the only one that could have
    suspected: tuple[str, ...] = ()  # changed while other agents' turns went on too: any of them could have


@dataclass
class RepoGuard:
    common_dir: Path
    baseline: ControlState
    _lock: threading.Lock
    user_configs: tuple[Path, ...] = ()
    _turns: set[str] = field(default_factory=set)  # the tickets whose agent turn is going on
    _suspects: dict[str, list[str]] = field(default_factory=dict)  # ticket -> changes found while its turn went on

    @classmethod
    def start(cls, common_dir: Path) -> RepoGuard:
        user_configs = tuple(user_git_configs())
        return cls(common_dir=common_dir, baseline=read_state(common_dir, user_configs), _lock=threading.Lock(),
                   user_configs=user_configs)

    def turn_started(self, ticket_id: str) -> None:
        """`ticket_id`'s agent is about to run: from now on it could change the control files."""
        with self._lock:
            self._turns.add(ticket_id)
            self._suspects.pop(ticket_id, None)

    def turn_ended(self, ticket_id: str) -> TurnVerdict:
        """`ticket_id`'s agent has exited: check the control files (undoing any change) and
        say who could have changed them."""
        with self._lock:
            self._turns.discard(ticket_id)
            changed = self._check_and_restore()
            earlier = self._suspects.pop(ticket_id, [])
            if changed and not self._turns:
                return TurnVerdict(tampered=tuple(changed))
            for other in self._turns:
                self._suspects.setdefault(other, []).extend(path for path in changed
                                                            if path not in self._suspects[other])
            suspected = [*earlier, *(path for path in changed if path not in earlier)]
            return TurnVerdict(suspected=tuple(suspected))

    def check_and_restore(self) -> list[str]:
        """The control files changed since the run started (as `.git/<path>`, or the
        absolute path of a user configuration file), put back as they were. Empty when
        nothing changed."""
        with self._lock:
            return self._check_and_restore()

    def _check_and_restore(self) -> list[str]:
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
