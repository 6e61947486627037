"""Workers and worktree slots: who may start, and in which directory.

Two things are counted apart, with the same words in the live view, the events
(`worker`, `slot`), the logs and the directories:

- a **worker** (0 .. workers-1) is busy while a ticket's agent and checks run;
- a **worktree slot** (`.sage/worktrees/slot-<N>`) is busy until the ticket has landed
  (or not). There is one slot per worker and one spare: a ticket that unblocks nothing
  frees its worker once its agent and checks are over, and that worker starts the next
  ticket in the spare slot while the first is committed and lands (one spare, since
  landings go one at a time).

A slot a ticket is done with is not reset at once: its reset waits for the next ticket
that takes the slot (or the branch), so that resetting a worktree never sits between one
landing and the next start. Pure bookkeeping: no git, no threads.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sage_stream.engine.scheduler import DispatchPlan
from sage_stream.engine.worktrees import Workspace


@dataclass(frozen=True)
class SlotRelease:
    """A worktree slot a ticket is done with, to be reset before it is used again."""

    workspace: Workspace
    landed: bool  # the ticket landed (its branch may go), or not (its work is kept)


class Slots:
    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.free_workers = list(range(workers))
        self.free_slots = list(range(workers))
        self.slot_count = workers  # slots made or being made
        self.max_slots = workers + 1
        self.pending: dict[int, SlotRelease] = {}  # by slot

    # ------------------------------------------------------------ workers

    def busy_workers(self) -> int:
        """Workers whose ticket's agent or checks run."""
        return self.workers - len(self.free_workers)

    def take_worker(self) -> int:
        return self.free_workers.pop(0)

    def return_worker(self, worker: int) -> None:
        self.free_workers.append(worker)
        self.free_workers.sort()

    # ------------------------------------------------------------ worktree slots

    def slots_available(self) -> int:
        """Free slots plus those that may still be made."""
        return len(self.free_slots) + self.max_slots - self.slot_count

    def capacity(self) -> int:
        """How many attempts may start now, as far as workers and slots go."""
        return min(len(self.free_workers), self.slots_available())

    def take_slot(self, preferred: int | None = None) -> int:
        """A free slot: `preferred` when it is free (a continued session's directory),
        else the lowest free one, else a new one (the caller starts no more attempts
        than `capacity()`)."""
        if preferred is not None and preferred in self.free_slots:
            self.free_slots.remove(preferred)
            return preferred
        if self.free_slots:
            return self.free_slots.pop(0)
        self.slot_count += 1
        return self.slot_count - 1

    def return_slot(self, slot: int) -> None:
        if slot not in self.free_slots:
            self.free_slots.append(slot)
            self.free_slots.sort()

    def all_made(self) -> bool:
        """Every slot exists (or is being made): no spare to make."""
        return self.slot_count >= self.max_slots

    def reserve_spare(self) -> int | None:
        """The spare slot's number, counted as taken until `spare_made` (it is being made
        in the background), or None when every slot exists already."""
        if self.slot_count >= self.max_slots:
            return None
        self.slot_count += 1
        return self.slot_count - 1

    def spare_made(self, slot: int) -> None:
        self.return_slot(slot)

    # ------------------------------------------------------------ releasing

    def releases_for(self, slot: int, branch: str) -> tuple[list[SlotRelease], Workspace | None]:
        """The pending releases a new attempt in `slot` on `branch` must finish first:
        those of its slot and of its branch. The slot's own previous ticket, when it
        landed, is handed apart (the switch to the new branch resets it in one pass)."""
        due = [key for key, item in self.pending.items() if key == slot or item.workspace.branch == branch]
        releases = [self.pending.pop(key) for key in due]
        own = next((item for item in releases if item.landed and item.workspace.path.name == f"slot-{slot}"), None)
        if own is None:
            return releases, None
        releases.remove(own)
        return releases, own.workspace

    def release(self, slot: int, workspace: Workspace | None, *, landed: bool) -> None:
        """Done with `slot`: free for the next attempt, its reset pending until then."""
        if workspace is not None:
            self.pending[slot] = SlotRelease(workspace, landed)
        self.return_slot(slot)

    def take_all_pending(self) -> list[SlotRelease]:
        """The run is over: every pending reset, to finish now."""
        releases = list(self.pending.values())
        self.pending.clear()
        return releases



def spare_is_useful(plan: DispatchPlan, running: Iterable[str]) -> bool:
    """Whether the spare slot may be needed soon: more tickets may start, and some
    running ticket unblocks nothing when it lands (its worker takes the spare then)."""
    return plan.may_start_more() and not all(plan.would_unblock(ticket_id) for ticket_id in running)
