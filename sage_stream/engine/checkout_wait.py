"""Landings wait while a checkout of the target has uncommitted changes.

Git refuses to push to a branch that is checked out (`receive.denyCurrentBranch`): moving
it would leave that work tree's files and index behind its branch, and the user's next
`git commit -a` there would revert what landed. Sage lands by moving the ref, so it follows
the same rule for a checkout with uncommitted changes (a clean one is brought along):
the landing waits, queued and safe, and resumes by itself once the checkout is clean
(one `git status` per checkout every POLL_S seconds), or the user lands elsewhere with
--target. The message is one sentence with the one command that helps, short enough that
no view cuts it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from sage_stream.git import Git
from sage_stream.paths import SAGE_DIR

POLL_S = 2.0


def waiting_message(target: str, checkouts: Sequence[Path | str]) -> str:
    """Why landings onto `target` wait, and the one command that frees them."""
    where = str(checkouts[0]) + (f" (and {len(checkouts) - 1} more)" if len(checkouts) > 1 else "")
    return (f"landings onto {target} wait: {where} has {target} checked out with uncommitted changes; commit "
            f"them, or run `git -C {checkouts[0]} stash`, and landings resume by themselves")


def dirty_checkouts(git: Git, target: str) -> list[Path]:
    """The work trees that have `target` checked out with uncommitted changes to tracked files."""
    return [info.path for info in git.worktrees()
            if info.branch == target and info.path.is_dir() and not checkout_is_clean(git, info.path)]


def checkout_is_clean(git: Git, path: Path) -> bool:
    """No uncommitted change to a tracked file, sage's own state aside: an index kept in git
    (`.sage/tickets/index.json` tracked) changes with every ticket sage starts, and landings
    never touch `.sage/` (bringing the checkout along keeps that change as it is)."""
    return git.is_clean(path, excluding=(SAGE_DIR,))


def wait_until_clean(git: Git, target: str, *, should_stop: Callable[[], bool], poll_s: float = POLL_S) -> bool:
    """Poll until no checkout of `target` has uncommitted changes (True: it was committed,
    stashed, or switched to another branch), or until `should_stop()` (False)."""
    while True:
        if not dirty_checkouts(git, target):
            return True
        deadline = time.monotonic() + poll_s
        while time.monotonic() < deadline:
            if should_stop():
                return False
            time.sleep(min(0.2, poll_s))
