"""Landing onto a shared remote (`sage stream --remote NAME`): NAME's branch is the target.

A merge queue over the remote, as bors does for pull requests. Under the commit lock:
land the ticket (engine/landing.py: scope, merge-tree, one commit) on a private ref set
to the remote branch's newest tip this run has seen (its last fetch or push), record the
commit made in the queue entry, then push it as a plain, non-forced update: the remote's
own fast-forward check is the compare-and-swap. Rejected because a teammate pushed
meanwhile: fetch, merge again, push again. Never a force push, never a rewrite of
anyone's commits.

Exactly once: every landing looks for the ticket's trailer on the tip it lands on. A
tip that is not the remote's newest cannot hide an earlier landing: the push onto it is
rejected and the next try fetches. A commit made but not pushed when the run was killed
is either found on the remote (pushed just before the kill) or made again on the
current tip: an unpushed commit is an unreferenced object, never a second landing.

After a push the local branch follows by compare-and-swap when it can fast-forward:
checked-out work trees are brought along when clean; a dirty one, or a local branch
with commits of its own, is left as it is (the message says how to catch up).

Refs written here: `refs/sage/remotes/NAME/BRANCH` (the fetched tip, where tickets
start) and `refs/sage/landing/NAME/BRANCH` (where the next landing commit is made).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from filelock import FileLock, Timeout

from sage_stream.engine.landing import (
    ALREADY_LANDED,
    CONFLICT,
    LANDED,
    LANDING_LOCK_TIMEOUT_S,
    LandingResult,
    land_ticket,
)
from sage_stream.errors import EXIT_REMOTE_REFUSED, EXIT_REMOTE_UNREACHABLE, SageError
from sage_stream.faults import crash_point
from sage_stream.git import PUSHED, REFUSED, REJECTED, ZERO_SHA, Git, GitError
from sage_stream.tickets.models import Ticket

FETCH_REUSE_S = 2.0  # tickets dispatched within this of a fetch start from its tip (one fetch)
REMOTE_TIMEOUT_S = 120.0  # one fetch or push; longer is a remote that does not answer
REACHABLE_TIMEOUT_S = 20.0  # `ls-remote` at start and in `sage validate`
PUSH_ATTEMPTS = 8  # pushes rejected by teammates' pushes before this landing gives up (a conflict)
UNREACHABLE_BACKOFF_S = (1.0, 2.0, 4.0, 8.0)  # waits between tries when the remote does not answer
_REMOTE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")


class RemoteStopped(SageError):
    """Landing onto the remote cannot go on (refused, or unreachable after retries).
    Queued work stays queued; the run stops with this error's exit code."""


def check_remote_name(name: str, *, source: str) -> str:
    if not _REMOTE_NAME.match(name) or ".." in name:
        raise SageError(f"{source}: {name!r} is not a git remote name")
    return name


class RemoteTarget:
    """Branch `branch` of remote `name`, as the target of a run."""

    def __init__(self, git: Git, *, name: str, branch: str, push_branches: bool = False,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 warn: Callable[[str], None] | None = None) -> None:
        self.git = git
        self.name = name
        self.branch = branch
        self.push_branches = push_branches
        self.fetched_ref = f"refs/sage/remotes/{name}/{branch}"
        self.landing_ref = f"refs/sage/landing/{name}/{branch}"
        self._sleep = sleep
        self._warn = warn or (lambda text: None)  # each retry of a remote that does not answer
        self._clock = clock
        self._fetch_lock = threading.Lock()  # two fetches into one ref would fight over its lock
        self._fetched_at: float | None = None
        self._known_tip: str | None = None  # the remote branch's tip as last seen (fetch or push)

    @property
    def label(self) -> str:
        return f"{self.name}/{self.branch}"

    # -- reading the remote ----------------------------------------------------------

    def check_reachable(self, *, timeout: float = REACHABLE_TIMEOUT_S) -> str:
        """The remote branch's tip, or a SageError saying what is wrong (at start, validate)."""
        if self.git.remote_url(self.name) is None:
            raise SageError(f"--remote {self.name}: this repository has no remote named {self.name!r} "
                            f"(`git remote -v` lists them)")
        try:
            tip = self.git.ls_remote_branch(self.name, self.branch, timeout=timeout)
        except GitError as error:
            raise RemoteStopped(f"remote {self.name!r} cannot be reached: {error.stderr.strip() or error}",
                                exit_code=EXIT_REMOTE_UNREACHABLE) from None
        if tip is None:
            raise SageError(f"remote {self.name!r} has no branch {self.branch!r} to land on: push it once "
                            f"(`git push {self.name} {self.branch}`) or pass --target")
        return tip

    def fetch(self) -> str:
        """Fetch the remote branch now (retried with backoff when the remote does not answer)."""
        with self._fetch_lock:
            return self._fetch_locked()

    def tip_for_dispatch(self) -> str:
        """Where a ticket starts: the remote tip, fetched at most once per FETCH_REUSE_S
        (tickets dispatched together share a fetch). When the remote does not answer, the
        last fetched tip (landing merges onto the real tip anyway)."""
        with self._fetch_lock:
            if self._fetched_at is not None and self._clock() - self._fetched_at < FETCH_REUSE_S:
                found = self.git.rev_parse(self.fetched_ref)
                if found is not None:
                    return found
            try:
                return self._fetch_locked()
            except RemoteStopped:
                found = self.git.rev_parse(self.fetched_ref)
                if found is None:
                    raise
                return found

    def _fetch_locked(self) -> str:
        last: GitError | None = None
        for wait in (*UNREACHABLE_BACKOFF_S, None):
            try:
                tip = self.git.fetch_branch(self.name, self.branch, self.fetched_ref, timeout=REMOTE_TIMEOUT_S)
            except GitError as error:
                last = error
                if wait is not None:
                    self._warn(f"fetching {self.label} failed ({error.stderr.strip() or error}); again in {wait:g} s")
                    self._sleep(wait)
                continue
            if tip is None:
                raise RemoteStopped(f"remote {self.name!r} has no branch {self.branch!r} any more",
                                    exit_code=EXIT_REMOTE_REFUSED)
            self._fetched_at = self._clock()
            self._known_tip = tip
            return tip
        detail = last.stderr.strip() if last is not None else ""
        raise RemoteStopped(f"remote {self.name!r} did not answer after {len(UNREACHABLE_BACKOFF_S) + 1} tries: "
                            f"{detail}; queued work stays queued and lands on the next run",
                            exit_code=EXIT_REMOTE_UNREACHABLE)

    # -- landing -----------------------------------------------------------------

    def land(self, git: Git, *, target_branch: str, ticket_tip: str, base: str, ticket: Ticket, message: str,
             allowed_globs: Sequence[str], allow_empty: bool, landing_lock: Path, summary: str | None = None,
             on_landed: Callable[[LandingResult], None] | None = None, check_earlier: bool = True,
             made: str | None = None, on_made: Callable[[str], None] | None = None) -> LandingResult:
        """`land_ticket`'s contract, onto the remote branch. `made`: the commit an earlier
        try made and recorded (`on_made`) before pushing it. Raises RemoteStopped when a
        push is refused or the remote stays unreachable."""
        del target_branch, check_earlier  # the remote branch; and a remote is always checked
        Path(landing_lock).parent.mkdir(parents=True, exist_ok=True)
        inner = Path(landing_lock).with_name(Path(landing_lock).name + ".remote")
        try:
            with FileLock(str(landing_lock), timeout=LANDING_LOCK_TIMEOUT_S):
                for attempt in range(PUSH_ATTEMPTS):
                    # The first try lands on the newest tip known (the last fetch or push) without a
                    # fetch: if the remote has anything more - a teammate's push, or this ticket
                    # pushed by a run that died - the push is rejected and the next try fetches.
                    tip = self._known_tip if attempt == 0 and self._known_tip and made is None else self.fetch()
                    if made is not None and git.rev_parse(made) and git.is_ancestor(made, tip):
                        # pushed before the run that made it died (the caller records ALREADY_LANDED)
                        return LandingResult(ALREADY_LANDED, made, [], f"{ticket.id} is already on {self.label} "
                                                                       f"as {made[:12]}")
                    old = git.rev_parse(self.landing_ref) or ZERO_SHA
                    git.update_ref(self.landing_ref, tip, old)  # the commit lock is held: nobody else moves it
                    result = land_ticket(git, target_branch=self.branch, ticket_tip=ticket_tip, base=base,
                                         ticket=ticket, message=message, allowed_globs=allowed_globs,
                                         allow_empty=allow_empty, landing_lock=inner, summary=summary,
                                         check_earlier=True, target_ref=self.landing_ref)
                    if result.outcome != LANDED:
                        return result  # already landed, conflict, no changes, out of scope
                    assert result.commit is not None
                    if on_made is not None:
                        on_made(result.commit)
                    crash_point("remote_commit_made")
                    if self._push(result.commit):
                        self._known_tip = result.commit
                        crash_point("after_remote_push")
                        result.message = f"{ticket.id} landed on {self.label} as {result.commit[:12]}"
                        if on_landed is not None:
                            on_landed(result)
                        note = self.follow_local(result.commit)
                        if note:
                            result.message = f"{result.message}; {note}"
                            result.brought_along = False
                        return result
                return LandingResult(CONFLICT, None, [], f"{self.label} moved {PUSH_ATTEMPTS} times while "
                                                         f"{ticket.id} was landing; it runs again on the new tip")
        except Timeout:
            raise SageError(f"could not land {ticket.id}: the commit queue lock {landing_lock} has been held for "
                            f"{LANDING_LOCK_TIMEOUT_S:.0f} s; is another sage-stream run stuck?")

    def _push(self, commit: str) -> bool:
        """True: pushed. False: rejected (the branch moved: merge again). Raises
        RemoteStopped when refused, or when the remote stays unreachable."""
        for wait in (*UNREACHABLE_BACKOFF_S, None):
            try:
                pushed = self.git.push_commit(self.name, commit, self.branch, timeout=REMOTE_TIMEOUT_S)
            except GitError as error:  # no answer within the timeout
                pushed = None
                detail = str(error)
            else:
                detail = pushed.detail
            if pushed is not None and pushed.outcome == PUSHED:
                return True
            if pushed is not None and pushed.outcome == REJECTED:
                return False
            if pushed is not None and pushed.outcome == REFUSED:
                raise RemoteStopped(
                    f"{self.label} refused the push of {commit[:12]} ({detail}): landing stopped. Every "
                    "ticket's work stays on its sage/<ID> branch and queued work lands on the next run once "
                    f"pushing to {self.label} is allowed again", exit_code=EXIT_REMOTE_REFUSED)
            if wait is not None:
                self._warn(f"pushing {commit[:12]} to {self.label} failed ({detail}); again in {wait:g} s")
                self._sleep(wait)
        raise RemoteStopped(f"{self.label} could not be reached to push {commit[:12]} ({detail}); queued work "
                            "stays queued and lands on the next run", exit_code=EXIT_REMOTE_UNREACHABLE)

    def follow_local(self, commit: str) -> str | None:
        """Move the local branch to the pushed `commit` when that is a fast-forward and no
        checkout of it has uncommitted changes; else a note saying why it stayed."""
        git, ref = self.git, f"refs/heads/{self.branch}"
        local = git.rev_parse(ref)
        if local is None or local == commit:
            return None
        if not git.is_ancestor(local, commit):
            return (f"your local {self.branch} has commits that are not on {self.label}, so it was left as it "
                    f"is (`git pull --rebase {self.name} {self.branch}` catches up)")
        checkouts = [info for info in git.worktrees() if info.branch == self.branch and info.path.is_dir()]
        dirty = [info.path for info in checkouts if not git.is_clean(info.path)]
        if dirty:
            return (f"{', '.join(map(str, dirty))} has {self.branch} checked out with uncommitted changes, so "
                    f"the local {self.branch} stays at {local[:12]} (`git pull --ff-only` there catches up)")
        if git.update_ref(ref, commit, local):
            for info in checkouts:
                git.bring_along(info.path, local, commit)
        return None

    def push_ticket_branch(self, branch: str, tip: str) -> str | None:
        """--push-branches: show a ticket's work on the remote; a warning when that fails
        (never needed for landing)."""
        try:
            pushed = self.git.push_commit(self.name, tip, branch, timeout=REMOTE_TIMEOUT_S)
        except GitError as error:
            return f"could not push {branch} to {self.name}: {error}"
        if pushed.outcome == PUSHED:
            return None
        return f"could not push {branch} to {self.name} ({pushed.outcome}: {pushed.detail})"
