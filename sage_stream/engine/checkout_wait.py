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

import threading
import time
from collections.abc import Callable, Sequence
from itertools import pairwise
from pathlib import Path

from sage_stream.git import Git, HistoryEntry
from sage_stream.tickets.naming import TRAILER
from sage_stream.paths import SAGE_DIR

POLL_S = 2.0
HISTORY_LIMIT = 100  # landings a checkout may be behind and still count as merely lagging


def waiting_message(target: str, checkouts: Sequence[Path | str]) -> str:
    """Why landings onto `target` wait, and the one command that frees them."""
    where = str(checkouts[0]) + (f" (and {len(checkouts) - 1} more)" if len(checkouts) > 1 else "")
    return (f"landings onto {target} wait: {where} has {target} checked out with uncommitted changes; commit "
            f"them, or run `git -C {checkouts[0]} stash`, and landings resume by themselves")


def dirty_checkouts(git: Git, target: str) -> list[Path]:
    """The work trees that have `target` checked out with uncommitted changes of their own."""
    return [info.path for info in git.worktrees()
            if info.branch == target and info.path.is_dir() and not checkout_is_clean(git, info.path)
            and has_own_changes(git, info.path, target)]


def has_own_changes(git: Git, path: Path, target: str) -> bool:
    """A checkout that is not clean holds changes of its own, rather than merely lagging
    behind landings sage could not bring it along over (a stale `index.lock`, a kill, a
    full disk): then its index holds an older target commit's tree with only landings
    after it, and its files are those of its index, or of a later landing (bringing it
    along wrote the files, then failed to write the index). Such a checkout is caught up
    later (engine/recovery.py)."""
    history = git.first_parent_history(f"refs/heads/{target}", limit=HISTORY_LIMIT, trailer=TRAILER)
    behind = _landings_behind_of(git, path, history)
    if behind is None:
        return True
    if not git.has_unstaged_changes(path, excluding=(SAGE_DIR,)):
        return False
    return files_of_landing(git, path, history, behind, excluding=(SAGE_DIR,)) is None


_BEHIND: dict[tuple[object, ...], str | None] = {}
"""`landings_behind` of a checkout, by (its index file's identity, the target's head): a
landing that waits asks again every POLL_S seconds, and each answer is up to
HISTORY_LIMIT `git diff-index` when the checkout holds changes of its own."""
_BEHIND_KEPT = 64
_BEHIND_LOCK = threading.Lock()


def _landings_behind_of(git: Git, path: Path, history: list[HistoryEntry]) -> str | None:
    """`landings_behind` for the checkout at `path`, worked out once for as long as neither
    its index file nor the target's head moves."""
    identity = git.index_identity(path)
    key = (identity, history[0].commit if history else None)
    with _BEHIND_LOCK:  # the lander's thread and the run's loop both ask
        if identity is not None and key in _BEHIND:
            return _BEHIND[key]
    behind = landings_behind(history, lambda entry: git.index_matches(path, entry.commit, excluding=(SAGE_DIR,)))
    if identity is not None:
        with _BEHIND_LOCK:
            if len(_BEHIND) >= _BEHIND_KEPT:
                del _BEHIND[next(iter(_BEHIND))]  # the oldest
            _BEHIND[key] = behind
    return behind


def files_of_landing(git: Git, path: Path, history: list[HistoryEntry], behind: str, *,
                     excluding: tuple[str, ...] = ()) -> str | None:
    """The landing after `behind` (in `history`, newest first) whose files the checkout
    at `path` holds, if any: a bringing along that wrote the files but not the index."""
    for entry in history:
        if entry.commit == behind:
            return None
        if git.files_match(path, entry.commit, excluding=excluding):
            return entry.commit
    return None


def landings_behind(history: list[HistoryEntry], index_holds: Callable[[HistoryEntry], bool]) -> str | None:
    """The older commit of `history` (newest first) whose tree the index holds, if only
    landings came after it; None when the index holds the newest or anything else.
    `index_holds` reads the index (`git diff-index --cached`): never `write-tree`, which
    takes the `index.lock` of a checkout the user may be committing in."""
    if not history or index_holds(history[0]):
        return None
    for newer, older in pairwise(history):
        if not newer.has_trailer:
            return None  # a commit that is not a landing: not ours to catch up with
        if index_holds(older):
            return older.commit
    return None


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
