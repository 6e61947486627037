"""The commit queue's one consumer: queued work -> one landed commit -> COMPLETED.

Used by the loop (engine/stream.py) and by recovery (engine/recovery.py) alike. It never
dispatches: the moment a landing is recorded it calls the caller's `on_recorded` (the
loop releases the slot and starts what the landing unblocked there, while the commit
lock is still held and checked-out work trees are brought along). A landing that does
not land comes back as a `LandingVerdict` for engine/outcomes.py to decide on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from sage_stream.engine import events as ev
from sage_stream.engine import ticket_state
from sage_stream.engine.commit_queue import CommitQueue, QueueEntry
from sage_stream.engine.checkout_wait import POLL_S, dirty_checkouts, wait_until_clean
from sage_stream.engine.landing import TARGET_DIRTY, LandingResult, commit_message, land_ticket
from sage_stream.engine.outcomes import LandingVerdict
from sage_stream.engine.remote_landing import RemoteStopped, RemoteTarget
from sage_stream.engine.target_watch import TargetWatch
from sage_stream.faults import crash_point
from sage_stream.git import Git
from sage_stream.text import now_iso
from sage_stream.tickets.models import Ticket
from sage_stream.tickets.naming import TRAILER

LANDED, ALREADY_LANDED = "landed", "already_landed"

Emit = Callable[..., None]  # emit(kind, ticket_id, **data)


@dataclass(frozen=True)
class Landed:
    """The target has the ticket's commit and the index says COMPLETED."""

    outcome: str  # landed | already_landed
    commit: str | None


class LandedOnTarget:
    """Which tickets the target carries, by their `Sage-Ticket` trailer as git parses it:
    one `git log` of the target per run (at the first question), kept up to date with
    each landing after that, so asking about every ticket costs nothing more."""

    def __init__(self, git: Git, target_ref: str) -> None:
        self.git = git
        self.target_ref = target_ref
        self._owners: dict[str, str] | None = None

    def commit_of(self, ticket_id: str) -> str | None:
        return self.owners().get(ticket_id)

    def owners(self) -> Mapping[str, str]:
        """Every ticket with a commit on the target, and that commit (read it, do not change it)."""
        if self._owners is None:
            self._owners = self.git.trailer_owners(self.target_ref, TRAILER)
        return self._owners

    def add(self, ticket_id: str, commit: str | None) -> None:
        if self._owners is not None and commit:
            self._owners[ticket_id] = commit


class Lander:
    def __init__(self, git: Git, *, target: str, queue: CommitQueue, states: ticket_state.TicketStates,
                 landing_lock: Path, emit: Emit, remote: RemoteTarget | None = None,
                 watch: TargetWatch | None = None) -> None:
        self.git = git
        self.watch = watch  # the run's watch over its target (engine/target_watch.py)
        self.should_stop: Callable[[], bool] = lambda: False  # ends a wait for a clean checkout
        self.announced_wait: str | None = None  # why landings wait, once said (said once, not per ticket)
        self._next_dirty_check = 0.0  # monotonic time of the next `may_land_again` look
        self.target = target
        self.queue = queue
        self.states = states
        self.landing_lock = landing_lock
        self.emit = emit
        self.remote = remote  # None: land on the local branch; else on the remote's (--remote)
        self.on_target = LandedOnTarget(git, self.target_ref)

    @property
    def target_ref(self) -> str:
        """Where landed tickets are looked for: the local target, or the fetched remote tip."""
        return self.ref_of(self.target)

    def ref_of(self, target: str) -> str:
        """The ref a ticket recorded with `target` lands on: the local branch, or with
        --remote the fetched tip of the remote's (one run lands on one remote branch)."""
        return self.remote.fetched_ref if self.remote is not None else f"refs/heads/{target}"

    def refresh_target(self) -> None:
        """Fetch the remote target (recovery reads `target_ref` next); nothing to do locally."""
        if self.remote is not None:
            self.remote.fetch()

    def land(self, entry: QueueEntry, ticket: Ticket, *, started: float | None = None, owned: bool = False,
             on_recorded: Callable[[Landed], None] | None = None, wait: bool = True) -> Landed | LandingVerdict:
        """Land one queued entry. `owned`: this run started the attempt itself (no earlier
        landing of it can exist); recovery's entries are not. `started`: when the attempt
        started, for the duration reported. `wait`: while the target's checkout has
        uncommitted changes, wait for it (recovery, before anything runs), or return a
        `target_dirty` verdict at once, the entry still queued (the loop, which goes on)."""
        target = self.target_of(entry)
        message = commit_message(ticket, docs_paths=ticket.doc_paths(), summary=entry.result.get("summary"))
        started = started if started is not None else entry.finished_at
        recorded: list[BaseException | None] = []  # one item once the landing was recorded (or failed to be)

        def record(result: LandingResult) -> None:
            try:
                self._record(entry, ticket, result, message, started, on_recorded)
                recorded.append(None)
            except BaseException as error:  # the loop's failure, not landing's: no checkout is touched now
                recorded.append(error)    # (the next run's recovery brings them along)
                raise

        try:
            result = self._land_when_clean(ticket, target, partial(self._land, entry, ticket, target, message,
                                                                   record, owned), wait=wait)
        except BaseException as error:
            if recorded and recorded[0] is not None or isinstance(error, RemoteStopped):
                raise  # RemoteStopped: the entry stays queued and the run stops
            if recorded:  # it landed and was recorded; only bringing checkouts along failed
                self.emit(ev.MESSAGE, ticket.id, level="warning",
                          text=f"{ticket.id} landed, but checkouts of {target} were not updated: {error}")
                return Landed(LANDED, None)
            if not isinstance(error, Exception):
                raise
            self.queue.remove(entry)
            return LandingVerdict("error", message=str(error), log=entry.log)
        if recorded:
            if result.message and result.brought_along is False:
                self.emit(ev.MESSAGE, ticket.id, level="warning", text=result.message, whole=True)
            return Landed(result.outcome, result.commit)
        if result.outcome == ALREADY_LANDED:
            return self._record(entry, ticket, result, message, started, on_recorded)
        if result.outcome != TARGET_DIRTY:  # waiting for a clean checkout: it stays queued
            self.queue.remove(entry)
        return LandingVerdict(result.outcome, paths=tuple(result.paths), message=result.message, log=entry.log)

    def _land(self, entry: QueueEntry, ticket: Ticket, target: str, message: str,
              record: Callable[[LandingResult], None], owned: bool) -> LandingResult:
        landing = dict(target_branch=target, ticket_tip=entry.tip, base=entry.base, ticket=ticket,
                       message=message, allowed_globs=ticket.files, allow_empty=ticket.allow_empty,
                       landing_lock=self.landing_lock, on_landed=record,
                       check_earlier=not owned)  # the summary is in `message`
        if self.remote is None:
            watched = self._watched(target)
            return land_ticket(self.git, **landing, check_target=self._check_target if watched else None,
                               on_commit=self.watch.landing if watched else None)
        if self.remote.push_branches:
            warning = self.remote.push_ticket_branch(entry.branch, entry.tip)
            if warning:
                self.emit(ev.MESSAGE, ticket.id, level="warning", text=warning)
        return self.remote.land(self.git, **landing, made=entry.made,
                                on_made=lambda commit: self.queue.put(replace(entry, made=commit)))

    def target_of(self, entry: QueueEntry) -> str:
        """The branch an entry lands on: the one recorded when it was queued, and no other
        (the user may have checked out another branch since); this run's target for an
        entry an older version queued without one."""
        return entry.target or self.target

    def _land_when_clean(self, ticket: Ticket, target: str, land: Callable[[], LandingResult], *,
                         wait: bool) -> LandingResult:
        """`land()`; while a checkout of the target has uncommitted changes (said once),
        nothing moves and the entry stays queued: with `wait`, poll until it is clean or the
        run stops (engine/checkout_wait.py); else return at once (the loop tries again,
        `may_land_again`)."""
        while True:
            result = land()
            if result.outcome != TARGET_DIRTY:
                if self.announced_wait is not None:
                    self.emit(ev.MESSAGE, ticket.id, level="info", text=f"landings onto {target} resume")
                    self.announced_wait = None
                return result
            if self.announced_wait != result.message:
                self.emit(ev.MESSAGE, ticket.id, level="warning", text=result.message, whole=True)
                self.announced_wait = result.message
            if not wait or not wait_until_clean(self.git, target, should_stop=self.should_stop):
                return result

    def may_land_again(self) -> bool:
        """For landings that returned TARGET_DIRTY: no checkout of the target has uncommitted
        changes now (asked at most every POLL_S seconds: one `git status` per checkout)."""
        now = time.monotonic()
        if now < self._next_dirty_check:
            return False
        self._next_dirty_check = now + POLL_S
        return not dirty_checkouts(self.git, self.target)

    def _watched(self, target: str) -> bool:
        return self.watch is not None and self.watch.target_ref == f"refs/heads/{target}"

    def _check_target(self, tip: str) -> str:
        """Under the commit lock: land on the target sage knows, never on a rewind of it."""
        tip, move = self.watch.before_landing(tip)
        if move is not None:
            self.emit(ev.MESSAGE, None, level="error", text=(
                f"landed work was rewound: {move.describe('something other than sage')}; "
                "landings go on from the restored tip"))
        return tip

    def _record(self, entry: QueueEntry, ticket: Ticket, result: LandingResult, message: str, started: float,
                on_recorded: Callable[[Landed], None] | None) -> Landed:
        """The target has the ticket: COMPLETED in the index, out of the queue, then the
        caller's turn (the commit lock is still held while landing brings the
        checked-out work trees along). COMPLETED may go with the index's next write
        (`TicketStates.hold`): the entry stays queued until it is written, so that a run
        killed meanwhile records it from there (as after a kill right after landing)."""
        crash_point("after_land")
        self.on_target.add(ticket.id, result.commit)
        if result.outcome == LANDED and result.commit and self._watched(self.target_of(entry)):
            self.watch.landed_commit(result.commit)
        edit = ticket_state.complete(commit=result.commit, message=message, branch=entry.branch,
                                     result=entry.result or None, landed_at=now_iso())

        def written() -> None:
            crash_point("after_complete_edit")
            self.queue.remove(entry)

        self.states.hold({ticket.id: edit}, then=written)
        landed = Landed(result.outcome, result.commit)
        self.emit(ev.TICKET_LANDED, ticket.id, commit=result.commit, duration_s=round(time.time() - started, 2))
        if on_recorded is not None:
            on_recorded(landed)
        return landed

