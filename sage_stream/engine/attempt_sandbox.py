"""What one attempt's sandbox lets it write (the sandbox itself is process/sandbox.py).

An agent turn, a check and a fix turn of a ticket may write:

- the ticket's worktree;
- what a commit there needs in the repository's git directory: `objects/`, the worktree's own
  admin directory (`worktrees/<slot>`: its index, HEAD, logs), and the ticket branches
  `refs/heads/sage/` with their reflogs - no other ref (git writes `<ref>.lock` beside a ref
  and renames it, so the directory is what must be writable);
- the run directory (prompts, result files, chat histories);
- the agent CLI's own state (its preset's `state`), and `[agent] writable`.

Everything else is read-only, `/tmp` is private, and the repository, HOME and PATH stay
visible when they live under the real `/tmp`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sage_stream.agents.base import AgentState
from sage_stream.process.sandbox import HomeLayer, Sandbox, ensure_writable_paths, path_entries
from sage_stream.tickets.naming import BRANCH_PREFIX


@dataclass(frozen=True)
class SandboxedLaunch:
    """The argv prefix of one process, and the private HOME level its CLI needs (if any)."""

    prefix: tuple[str, ...]
    home_layer: HomeLayer | None = None


@dataclass(frozen=True)
class AttemptPaths:
    """The paths of one attempt that do not depend on which process runs."""

    worktree: Path
    repo: Path  # the repository's work tree (the user's checkout)
    common_dir: Path  # the repository's git directory
    run_dir: Path
    extra: tuple[str, ...] = ()  # [agent] writable: absolute, or ~/... under the process's HOME


def sandboxed_launch(sandbox: Sandbox, paths: AttemptPaths, *, env: Mapping[str, str], argv: Sequence[str] = (),
                     state: AgentState = AgentState(), layer_dir: Path | None = None) -> SandboxedLaunch:
    """The sandbox of one process of the attempt, with environment `env` and arguments `argv`
    (absolute paths among them stay visible under the private /tmp); `state` is what its CLI
    writes; `layer_dir` where a private HOME level goes, for a CLI with state files in HOME."""
    home = env.get("HOME")
    own = ensure_writable_paths([paths.worktree, *git_paths(paths.worktree, paths.common_dir), paths.run_dir])
    extra = ensure_writable_paths([*state.dirs, *_expand(paths.extra, home)])
    layer = None
    if state.files and home and layer_dir is not None:
        layer = HomeLayer.for_files(Path(home), state.files, layer_dir)
    repository = [paths.repo, paths.common_dir]  # read-only, even inside an [agent] writable path
    readable = [*repository, *([Path(home)] if home else []), *path_entries(env), *named_paths(argv)]
    return SandboxedLaunch(tuple(sandbox.prefix(cwd=paths.worktree, writable=own, readable=readable, extra=extra,
                                                protected=repository, home_layer=layer)), layer)


def named_paths(argv: Sequence[str]) -> list[Path]:
    """The absolute paths a command names (a script, a data file): their directories."""
    named = [Path(os.path.abspath(argument)) for argument in argv if argument.startswith("/")]
    return [path if path.is_dir() else path.parent for path in named if path.exists()]


def git_paths(worktree: Path, common_dir: Path) -> list[Path]:
    """What a commit in `worktree` writes in the git directory: objects, the worktree's admin
    directory, the ticket branches and their reflogs."""
    branches = BRANCH_PREFIX.strip("/")
    paths = [common_dir / "objects", common_dir / "refs" / "heads" / branches,
             common_dir / "logs" / "refs" / "heads" / branches]
    admin = admin_dir(worktree)
    if admin is not None and common_dir / "worktrees" in admin.parents:  # never the whole git directory
        paths.append(admin)
    return paths


def admin_dir(worktree: Path) -> Path | None:
    """The worktree's own git directory, from its `.git` file ("gitdir: ...")."""
    link = worktree / ".git"
    try:
        text = link.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if not text.startswith("gitdir:"):
        return None
    path = Path(text.removeprefix("gitdir:").strip())
    return path if path.is_absolute() else (worktree / path)


def _expand(paths: Sequence[str], home: str | None) -> list[Path]:
    expanded = []
    for path in paths:
        if path == "~" or path.startswith("~/"):
            if not home:
                continue  # no HOME: nothing under it to allow
            path = os.path.join(home, path[2:])
        expanded.append(Path(path))
    return expanded
