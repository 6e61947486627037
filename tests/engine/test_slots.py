"""Workers and worktree slots are counted apart: a worker frees when its agent is done, a
slot when its ticket has landed; one spare slot lets a worker start while a ticket lands.
Pure bookkeeping, driven directly."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from sage_stream.engine.scheduler import DispatchPlan
from sage_stream.engine.slots import SlotRelease, Slots, spare_is_useful
from sage_stream.engine.worktrees import Workspace
from sage_stream.tickets.models import Ticket

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)


def workspace(slot: int, ticket: str) -> Workspace:
    return Workspace(path=Path(f"/repo/.sage/worktrees/slot-{slot}"), branch=f"sage/{ticket}", base="0" * 40,
                     ticket=ticket)


def start(slots: Slots, preferred: int | None = None) -> tuple[int, int]:
    return slots.take_worker(), slots.take_slot(preferred)


# ---------------------------------------------------------------- capacity


def test_one_slot_per_worker_and_one_spare_to_make() -> None:
    slots = Slots(3)
    assert slots.capacity() == 3  # bounded by the workers, not by the 3 + 1 slots
    assert slots.slots_available() == 4


def test_a_worker_freed_before_its_ticket_lands_starts_the_next_in_the_spare_slot() -> None:
    slots = Slots(2)
    first, second = start(slots), start(slots)
    assert (first, second) == ((0, 0), (1, 1))
    assert slots.capacity() == 0  # no worker free
    slots.return_worker(0)  # its agent is done; slot 0 waits for its landing
    assert slots.capacity() == 1
    assert start(slots) == (0, 2)  # a new slot, the spare
    slots.return_worker(1)
    assert slots.capacity() == 0  # a worker is free, but every slot is made and taken


def test_capacity_is_the_lesser_of_free_workers_and_free_or_makeable_slots() -> None:
    slots = Slots(2)
    start(slots), start(slots)
    slots.return_slot(0), slots.return_slot(1)
    assert slots.capacity() == 0  # slots free, workers busy
    slots.return_worker(1)
    assert slots.capacity() == 1
    slots.return_worker(0)
    assert slots.capacity() == 2


def test_workers_are_handed_out_lowest_first() -> None:
    slots = Slots(3)
    assert [slots.take_worker() for _ in range(3)] == [0, 1, 2]
    slots.return_worker(2), slots.return_worker(0)
    assert slots.take_worker() == 0


# ---------------------------------------------------------------- taking a slot


def test_take_slot_prefers_the_given_slot_when_it_is_free() -> None:
    slots = Slots(3)
    assert slots.take_slot(preferred=2) == 2  # a continued session's directory
    assert slots.take_slot() == 0


def test_take_slot_falls_back_to_the_lowest_free_slot_when_the_preferred_one_is_taken() -> None:
    slots = Slots(3)
    assert slots.take_slot() == 0
    assert slots.take_slot(preferred=0) == 1


def test_take_slot_makes_a_new_slot_when_none_is_free_up_to_workers_plus_one() -> None:
    slots = Slots(1)
    assert slots.take_slot() == 0
    assert slots.slots_available() == 1
    assert slots.take_slot(preferred=0) == 1  # the spare, made on demand
    assert slots.slots_available() == 0 and slots.capacity() == 0


def test_a_slot_returned_twice_is_free_once() -> None:
    slots = Slots(2)
    slot = slots.take_slot()
    slots.return_slot(slot), slots.return_slot(slot)
    assert slots.slots_available() == 3


# ---------------------------------------------------------------- the spare slot


def test_reserve_spare_gives_the_next_slot_number_then_none() -> None:
    slots = Slots(2)
    assert slots.reserve_spare() == 2
    assert slots.reserve_spare() is None  # every slot exists (or is being made)


def test_reserve_spare_is_none_once_the_spare_was_made_on_demand() -> None:
    slots = Slots(1)
    slots.take_slot(), slots.take_slot()
    assert slots.reserve_spare() is None


def test_the_spare_counts_as_taken_until_it_is_made() -> None:
    slots = Slots(2)
    start(slots), start(slots)
    spare = slots.reserve_spare()
    slots.return_worker(0)
    assert slots.capacity() == 0  # being made in the background: not usable yet
    slots.spare_made(spare)
    assert slots.capacity() == 1
    assert slots.take_slot() == spare


# ---------------------------------------------------------------- releasing


def test_a_released_slot_is_free_at_once_but_its_reset_waits_for_the_next_ticket() -> None:
    slots = Slots(2)
    slot = slots.take_slot()
    done = workspace(slot, "A")
    slots.release(slot, done, landed=False)
    assert slots.take_slot() == slot
    assert slots.releases_for(slot, "sage/B") == ([SlotRelease(done, landed=False)], None)
    assert slots.releases_for(slot, "sage/B") == ([], None)  # handed out once


def test_the_slots_own_landed_ticket_comes_back_as_after_landed() -> None:
    slots = Slots(2)
    slot = slots.take_slot()
    done = workspace(slot, "A")
    slots.release(slot, done, landed=True)
    # the switch to the new branch resets it in one pass: not in the list
    assert slots.releases_for(slots.take_slot(), "sage/B") == ([], done)
    assert slots.take_all_pending() == []


def test_a_release_of_the_same_branch_in_another_slot_is_finished_first() -> None:
    slots = Slots(2)
    slots.take_slot(), slots.take_slot()
    elsewhere = workspace(1, "A")  # A's earlier attempt, not landed: its work is kept on sage/A
    slots.release(1, elsewhere, landed=False)
    assert slots.releases_for(0, "sage/A") == ([SlotRelease(elsewhere, landed=False)], None)


def test_a_landed_release_of_the_same_branch_in_another_slot_is_not_after_landed() -> None:
    slots = Slots(2)
    slots.take_slot(), slots.take_slot()
    elsewhere = workspace(1, "A")
    slots.release(1, elsewhere, landed=True)
    assert slots.releases_for(0, "sage/A") == ([SlotRelease(elsewhere, landed=True)], None)


def test_releases_for_hands_out_its_slot_and_its_branch_and_keeps_the_rest() -> None:
    slots = Slots(3)
    for _ in range(3):
        slots.take_slot()
    own, same_branch, unrelated = workspace(0, "A"), workspace(1, "C"), workspace(2, "D")
    slots.release(0, own, landed=True)
    slots.release(1, same_branch, landed=False)
    slots.release(2, unrelated, landed=False)
    assert slots.releases_for(0, "sage/C") == ([SlotRelease(same_branch, landed=False)], own)
    assert slots.take_all_pending() == [SlotRelease(unrelated, landed=False)]


def test_a_release_without_a_workspace_frees_the_slot_with_nothing_to_reset() -> None:
    slots = Slots(1)
    slot = slots.take_slot()
    slots.release(slot, None, landed=False)  # the worktree was never prepared
    assert slots.take_slot() == slot
    assert slots.releases_for(slot, "sage/B") == ([], None)


def test_take_all_pending_returns_every_pending_reset_once() -> None:
    slots = Slots(2)
    slots.take_slot(), slots.take_slot()
    slots.release(0, workspace(0, "A"), landed=True)
    slots.release(1, workspace(1, "B"), landed=False)
    assert slots.take_all_pending() == [SlotRelease(workspace(0, "A"), landed=True),
                                        SlotRelease(workspace(1, "B"), landed=False)]
    assert slots.take_all_pending() == []
    assert slots.releases_for(0, "sage/A") == ([], None)


# ---------------------------------------------------------------- is the spare useful?


def ticket(tid: str, *deps: str) -> Ticket:
    return Ticket.model_validate({
        "id": tid, "title": f"title {tid}", "state": "UNPROCESSED", "priority": "P2", "type": "implementation",
        "validation_type": "generic", "dependencies": list(deps), "estimate": 1.0,
    })


def plan(*tickets: Ticket, **kwargs: object) -> DispatchPlan:
    return DispatchPlan(tickets={t.id: t for t in tickets}, bottom_levels={t.id: 1.0 for t in tickets}, now=NOW,
                        **kwargs)  # type: ignore[arg-type]


def test_the_spare_is_useful_when_a_running_ticket_unblocks_nothing_and_more_may_start() -> None:
    chain = plan(ticket("A"), ticket("B", "A"), ticket("C"), ticket("D"))
    chain.started("A"), chain.started("C")
    assert spare_is_useful(chain, ["A", "C"])  # C's worker may start D while C lands


def test_the_spare_is_not_useful_when_every_running_ticket_unblocks_another() -> None:
    chain = plan(ticket("A"), ticket("B", "A"), ticket("C"))
    chain.started("A")
    assert not spare_is_useful(chain, ["A"])  # its worker waits for the landing: B starts then


def test_the_spare_is_not_useful_when_nothing_more_may_start() -> None:
    pair = plan(ticket("A"), ticket("C"))
    pair.started("A"), pair.started("C")
    assert not spare_is_useful(pair, ["A", "C"])


def test_the_spare_is_not_useful_once_max_tickets_are_started() -> None:
    capped = plan(ticket("A"), ticket("C"), ticket("D"), max_tickets=1)
    capped.started("A")
    assert not spare_is_useful(capped, ["A"])
