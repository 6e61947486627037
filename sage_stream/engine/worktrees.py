"""Where an agent works on a ticket: one reusable git worktree per worker slot.

Strategy, measured on this machine (2 cores shared with other jobs, git 2.39, median of
3 runs of 30 tickets, per ticket):

    repo size     (a) `worktree add` + `worktree remove`   (b) slot: `checkout -B` + `clean`
    300 files     134 ms (74-177)                           17 ms (14-18)
    3000 files    2830 ms (1690-2920)                       25 ms (25-26)

The whole git work of a no-op ticket (bench/bench_git_baseline.py, 300 files, plain
script): 335 ms with (a) (100 tickets x 3, disk busy with other jobs) and 68 ms with (b)
(500 x 3). The same cycle through this module and landing.py, with all their safety
checks: 69 ms, against 48 ms for the plain (b) script measured beside it.

(a) writes and deletes every file of the repository for every ticket; (b) rewrites only
the files that differ between two commits, so it stays cheap as the repository grows.
We use (b): `<root>/slot-<N>`, switched to branch `sage/<ID>` at the ticket's start.

A slot's first checkout still writes every file: on this machine's disk from 25 ms to
280 ms for 300 files, depending on the moment. The stream makes its spare slot
(`make_spare`) in the background once the first agents run, not on the critical path of
the ticket that first needs it.

What a slot never loses (work is kept on branches, never deleted silently):
- Before a slot is switched or reset, everything uncommitted in it is committed on its
  HEAD (`Git.snapshot`, so new and deleted files too; ignored files are not work and
  are cleaned). A detached HEAD with commits on no branch is kept as
  `sage/slot-<N>-kept-<K>`.
- A ticket branch `sage/<ID>` that already holds commits not contained in the new start
  (an earlier, unlanded attempt) is kept as `sage/<ID>-attempt-<K>` before `sage/<ID>` is
  recreated from the new start.
- `release(landed=False)` keeps `sage/<ID>` when it holds work, deletes it when it holds
  nothing beyond its base. `release(landed=True)` in a slot with uncommitted changes
  (made after the landed snapshot) keeps them on `sage/<ID>` too.
Between tickets a slot is detached at the ticket's base commit and has no untracked or
ignored files, so the next `prepare` starts from a known state.

Every step that touches worktrees or branches runs under the Git worktree lock: git's
worktree bookkeeping races when several processes change it at once.

The common case takes a short path: a slot this process prepared before, whose last
ticket landed and left nothing uncommitted, is known to be a registered work tree of
ours on that ticket's (landed) branch. It is switched straight to the next ticket's
branch and the landed branch deleted after (once the next agent runs): `status`,
`checkout -b`, `clean` (only when `status` saw ignored files), `update-ref -d` - 3 or 4
git processes where release and a full prepare take 13 (about 15 ms against 65 ms on
this machine, between two tickets).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sage_stream.errors import SageError
from sage_stream.faults import crash_point
from sage_stream.git import ZERO_SHA, Git, WorktreeInfo
from sage_stream.tickets.naming import BRANCH_PREFIX, ticket_branch

FULL_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
SLOT_LOCKS = ("index.lock", "HEAD.lock")  # in a slot's private git directory


@dataclass(frozen=True)
class Workspace:
    path: Path  # the work tree the agent runs in
    branch: str  # "sage/<ID>"
    base: str  # the commit the ticket starts from (the target's tip at dispatch)
    ticket: str = ""


class TicketWorkspaces:
    def __init__(self, git: Git, root: Path) -> None:
        self.git = git
        self.root = Path(root)  # <repo>/.sage/worktrees
        self._prepared: set[Path] = set()  # slots this process switched to a ticket: known state

    # -- the two calls of a ticket's life -------------------------------------------

    def prepare(self, ticket_id: str, start: str, *, slot: int) -> Workspace:
        """The slot's work tree, on a fresh branch `sage/<ID>` at `start`, clean."""
        branch = ticket_branch(ticket_id)
        path = self._slot_path(slot)
        start_sha = self._commit(ticket_id, start)
        with self.git.worktree_lock():
            self._prepared.discard(path)  # until it is switched
            registered = self.git.worktrees()
            if not self._ensure_slot(path, start_sha, registered):
                self._clear_stale_locks(path)  # a killed first checkout leaves its index.lock too
                if _was_checked_out(path):
                    self._secure(path)
            self._free_branch_elsewhere(branch, path, registered)
            self._keep_earlier_attempt(ticket_id, branch, start_sha)
        self._switch(path, branch, start_sha)
        self._prepared.add(path)
        crash_point("worktree_prepared")
        return Workspace(path=path, branch=branch, base=start_sha, ticket=ticket_id)

    def switch_after_landing(self, landed: Workspace, ticket_id: str, start: str, *, slot: int,
                             delete_later: list[str] | None = None) -> Workspace | None:
        """The short path (module docstring): release `landed` (the slot's previous
        ticket, landed) and prepare the slot for `ticket_id` at `start` in one pass.
        None, having changed nothing, when the slot is not known to be as that ticket
        left it: then `release` and `prepare` take the long way.

        `delete_later`: the landed branch is appended to it instead of being deleted
        here, for the caller to delete (`branch_delete`) once the agent is running."""
        branch = ticket_branch(ticket_id)
        path = self._slot_path(slot)
        start_sha = self._commit(ticket_id, start)
        if landed.path != path or path not in self._prepared:
            return None
        with self.git.worktree_lock():
            clean, pristine = self.git.cleanliness(path) if path.is_dir() else (False, False)
            if not clean:
                return None
            self._prepared.discard(path)  # until the switch is complete
        # `-b` fails when the branch exists (an earlier attempt): then keep that, and `-B`
        created = self.git.run("checkout", "--quiet", "--force", "--no-track", "-b", branch, start_sha, cwd=path,
                               check=False)
        if created.returncode == 0:
            if not pristine:  # ignored files (build output, caches) go; a checkout makes none
                self.git.run("clean", "-q", "-ffdx", cwd=path)
        else:
            with self.git.worktree_lock():
                self._keep_earlier_attempt(ticket_id, branch, start_sha)
            self._switch(path, branch, start_sha)
        crash_point("worktree_released")
        if landed.branch != branch:
            if delete_later is None:
                self.git.branch_delete(landed.branch)
            else:
                delete_later.append(landed.branch)
        self._prepared.add(path)
        crash_point("worktree_prepared")
        return Workspace(path=path, branch=branch, base=start_sha, ticket=ticket_id)

    def make_spare(self, slot: int, start: str) -> bool:
        """Make slot `slot` ahead of need: registered and checked out, detached at `start`.
        False when it exists already (then it is left as it is: `prepare` checks it)."""
        path = self._slot_path(slot)
        start_sha = self._commit("the spare slot", start)
        with self.git.worktree_lock():
            if not self._ensure_slot(path, start_sha, self.git.worktrees()):
                return False
        self.git.run("checkout", "--quiet", "--force", "--detach", start_sha, cwd=path)
        return True

    def release(self, workspace: Workspace, *, landed: bool) -> None:
        """Done with a ticket: landed -> its branch goes (its work is on the target);
        not landed -> its work stays on its branch. The slot is reset either way.

        Anything uncommitted found in a landed ticket's slot was made after its snapshot
        and so did not land: it is kept on the branch as if the ticket had not landed.
        """
        path = workspace.path
        with self.git.worktree_lock():
            if not path.is_dir():
                self.git.worktree_prune()
                return
            if not landed or not self.git.is_clean(path, include_untracked=True):
                landed = False
                self._secure(path)
            self._prepared.discard(path)
            tip = self.git.rev_parse(f"refs/heads/{workspace.branch}")
        # outside the lock, like `_switch`: only this slot and its ticket's branch change
        self.git.run("checkout", "--quiet", "--force", "--detach", workspace.base, cwd=path)
        self.git.run("clean", "-q", "-ffdx", cwd=path)
        crash_point("worktree_released")
        if tip is not None and (landed or self.git.is_ancestor(tip, workspace.base)):
            self.git.branch_delete(workspace.branch)

    def keep_unlanded(self, ticket_id: str, commit: str) -> str:
        """Make sure `commit` (a ticket's unlanded work) is on a branch: `sage/<ID>` when
        that holds it, else a new `sage/<ID>-attempt-<K>`. Returns the branch."""
        branch = ticket_branch(ticket_id)
        with self.git.worktree_lock():
            current = self.git.rev_parse(f"refs/heads/{branch}")
            if current is not None and self.git.is_ancestor(commit, current):
                return branch
            return self._keep(commit, f"{BRANCH_PREFIX}{ticket_id}-attempt")

    def cleanup_stale(self) -> list[Path]:
        """Forget worktrees whose directories were deleted behind git's back, and set
        aside the registrations of slots whose `worktree add` was killed half way; the
        places those registrations went (under `<root>/.stale`).

        Such a registration is still locked "initializing" (git removes that lock last),
        so `worktree prune` keeps it forever, and one with an empty `commondir` makes
        every `worktree list` fail. It holds no work (an add that never finished checked
        nothing out for anyone); it is moved, not deleted, and the slot's directory is
        moved aside the next time the slot is used (`_ensure_slot`). Call with no git of
        ours or of a dead run at work (recovery waits for those first)."""
        set_aside = []
        with self.git.worktree_lock():
            admin = self.git.common_dir() / "worktrees"
            for entry in sorted(admin.iterdir()) if admin.is_dir() else []:
                if self._is_half_made_slot(entry):
                    (self.root / ".stale").mkdir(parents=True, exist_ok=True)
                    aside = Path(tempfile.mkdtemp(prefix=f"{entry.name}-registration-", dir=self.root / ".stale"))
                    shutil.move(entry, aside / entry.name)
                    set_aside.append(aside / entry.name)
            self.git.worktree_prune()
        return set_aside

    def _is_half_made_slot(self, entry: Path) -> bool:
        """A registration (`.git/worktrees/<name>`) of one of our slots whose add never finished."""
        try:
            reason = (entry / "locked").read_text(encoding="utf-8").strip()
            gitdir = Path((entry / "gitdir").read_text(encoding="utf-8").strip())
        except (OSError, UnicodeDecodeError):
            return False
        slot = gitdir.parent
        return (reason == "initializing" and gitdir.name == ".git" and slot.name.startswith("slot-")
                and slot.parent.resolve() == self.root.resolve())

    def remove_slots(self) -> None:
        """Remove every slot work tree (after keeping any work in it on a branch)."""
        with self.git.worktree_lock():
            for info in self.git.worktrees():
                if info.path.parent.resolve() == self.root.resolve() and info.path.name.startswith("slot-"):
                    if info.path.is_dir():
                        self._secure(info.path)
                    self._prepared.discard(info.path)
                    self.git.worktree_remove(info.path)

    # -- steps ----------------------------------------------------------------------

    def _switch(self, path: Path, branch: str, start: str) -> None:
        """Put the slot on a fresh `branch` at `start` with exactly its files. Outside the
        worktree lock: it touches only this slot's index, HEAD and files and the ticket's
        own branch (no other slot uses either), so slots switch in parallel."""
        self.git.run("checkout", "--quiet", "--force", "--no-track", "-B", branch, start, cwd=path)
        self.git.run("clean", "-q", "-ffdx", cwd=path)

    def slot_path(self, slot: int) -> Path:
        """Where slot `slot` lives (whether it exists yet or not)."""
        return self._slot_path(slot)

    def _slot_path(self, slot: int) -> Path:
        if slot < 0:
            raise SageError(f"worker slot must be 0 or more, got {slot}")
        return self.root / f"slot-{slot}"

    def _commit(self, ticket_id: str, start: str) -> str:
        """`start` as a commit id (a full id is taken as it is: the stream resolved it)."""
        sha = start if FULL_SHA.fullmatch(start) else self.git.rev_parse(start)
        if sha is None:
            raise SageError(f"cannot start ticket {ticket_id}: {start!r} names no commit")
        return sha

    def _ensure_slot(self, path: Path, start: str, registered: list[WorktreeInfo]) -> bool:
        """A registered work tree at `path`; a stray directory there is moved aside.
        True when the slot was made now: registered at `start`, not checked out."""
        info = next((info for info in registered if info.path.resolve() == path.resolve()), None)
        if info is not None and path.is_dir():
            return False
        if info is not None:  # registered, directory gone
            self.git.worktree_prune()
        if path.exists():  # unknown content: moved aside, never deleted
            (self.root / ".stale").mkdir(parents=True, exist_ok=True)
            aside = tempfile.mkdtemp(prefix=f"{path.name}-{time.strftime('%Y%m%dT%H%M%S')}-", dir=self.root / ".stale")
            path.rename(Path(aside) / path.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.git.worktree_add_detached(path, start, checkout=False)  # filled by `_switch`
        return True

    def _clear_stale_locks(self, path: Path) -> None:
        """Remove the index and HEAD locks a killed git left in a slot's own git directory.

        Safe here: slots are ours, we hold the worktree lock (no git of this run works in
        the slot) and the run lock, and recovery stopped what a dead run left running; a
        stale lock would otherwise fail every ticket this slot gets ("index.lock: File
        exists"). Locks of the repository itself (the user's) are never touched."""
        gitdir = _slot_git_dir(path)
        admin = (self.git.common_dir() / "worktrees").resolve()
        if gitdir is None or gitdir.resolve().parent != admin:  # an agent may have rewritten `.git`
            return
        for name in SLOT_LOCKS:
            with contextlib.suppress(FileNotFoundError):
                (gitdir / name).unlink()

    def _secure(self, path: Path) -> None:
        """Commit whatever is uncommitted in a work tree on its HEAD, and give a detached
        HEAD that holds commits on no branch a branch of its own."""
        if self.git.rev_parse("HEAD", cwd=path) is None:
            self._repair_unborn(path)
            return
        if not self.git.is_clean(path, include_untracked=True):
            self.git.snapshot(path, f"sage-stream: unfinished work left in {path.name}", allow_unmerged=True)
        if self.git.current_branch(path) is not None:
            return
        orphaned = self.git.run("rev-list", "-n", "1", "HEAD", "--not", "--branches", "--tags", "--remotes", cwd=path)
        if orphaned.stdout.strip():
            head = self.git.rev_parse("HEAD", cwd=path)
            assert head is not None
            self._keep(head, f"{BRANCH_PREFIX}{path.name}-kept")

    def _repair_unborn(self, path: Path) -> None:
        """A slot whose branch was deleted under it (HEAD names no commit: every git step
        on it would fail, and so would every ticket given the slot). What it holds is
        committed on the commit it last had checked out (its HEAD log says which) and
        kept as `sage/slot-<N>-kept-<K>`; the slot is detached there, usable again."""
        self.git.run("add", "--all", cwd=path)
        tree = self.git.run("write-tree", cwd=path).stdout.strip()
        last = _last_checked_out(path)
        parent = self.git.rev_parse(last) if last else None
        keep = parent
        if parent is None or tree != self.git.tree_of(parent):
            keep = self.git.commit_tree(tree, [parent] if parent else [],
                                        f"sage-stream: work left in {path.name} after its branch was deleted")
            self._keep(keep, f"{BRANCH_PREFIX}{path.name}-kept")
        self.git.run("update-ref", "--no-deref", "-m", "sage-stream: repair the slot", "HEAD", str(keep), cwd=path)

    def _free_branch_elsewhere(self, branch: str, here: Path, registered: list[WorktreeInfo]) -> None:
        """A crashed run may have left `branch` checked out in another slot: keep that
        slot's work, then detach it so the branch can be checked out here."""
        for info in registered:
            if info.branch == branch and info.path.resolve() != here.resolve() and info.path.is_dir():
                self._secure(info.path)
                head = self.git.rev_parse("HEAD", cwd=info.path)
                self.git.run("update-ref", "--no-deref", "HEAD", str(head), cwd=info.path)

    def _keep_earlier_attempt(self, ticket_id: str, branch: str, start: str) -> None:
        existing = self.git.rev_parse(f"refs/heads/{branch}")
        if existing is not None and not self.git.is_ancestor(existing, start):
            self._keep(existing, f"{BRANCH_PREFIX}{ticket_id}-attempt")

    def _keep(self, commit: str, prefix: str) -> str:
        """Point a new branch `<prefix>-<K>` (first free K) at `commit`."""
        taken = self.git.run("for-each-ref", "--format=%(refname)", f"refs/heads/{prefix}-*").stdout.split()
        numbers = [int(ref.rsplit("-", 1)[1]) for ref in taken if ref.rsplit("-", 1)[1].isdigit()]
        name = f"{prefix}-{max(numbers, default=0) + 1}"
        self.git.run("update-ref", "-m", "sage-stream: keep unlanded work", f"refs/heads/{name}", commit, ZERO_SHA)
        return name


def _slot_git_dir(path: Path) -> Path | None:
    """The private git directory of a linked work tree (its `.git` file says where)."""
    try:
        text = (path / ".git").read_text(encoding="utf-8")
    except OSError:
        return None
    if not text.startswith("gitdir: "):
        return None
    gitdir = Path(text[len("gitdir: "):].strip())
    return gitdir if gitdir.is_absolute() else (path / gitdir)


def _last_checked_out(path: Path) -> str | None:
    """The commit a slot's HEAD last pointed at, from its HEAD log (None without one)."""
    gitdir = _slot_git_dir(path)
    try:
        lines = (gitdir / "logs" / "HEAD").read_text(encoding="utf-8", errors="replace").splitlines() if gitdir else []
    except OSError:
        return None
    for line in reversed(lines):
        fields = line.split(" ", 2)
        if len(fields) >= 2 and FULL_SHA.fullmatch(fields[1]) and fields[1] != ZERO_SHA:
            return fields[1]
    return None


def _was_checked_out(path: Path) -> bool:
    """False for a slot registered without a checkout and never switched (a run killed
    in between): it has no index yet, so `git status` would call every file deleted."""
    gitdir = _slot_git_dir(path)
    return gitdir is None or (gitdir / "index").exists()
