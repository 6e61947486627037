"""The lander: one queued entry -> one landed commit -> COMPLETED in the index."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import init_git_repo, ticket, write_index

from sage_stream.engine import ticket_state
from sage_stream.engine.commit_queue import CommitQueue, QueueEntry
from sage_stream.engine.lander import Landed, Lander
from sage_stream.errors import SageError
from sage_stream.git import Git
from sage_stream.tickets.models import State
from sage_stream.tickets.store import IndexStore


def make_lander(tmp_path: Path, tickets: list[dict], *, hold_s: float = 0.0) -> tuple[Lander, Git]:
    repo = init_git_repo(tmp_path / "repo")
    store = IndexStore(write_index(repo, tickets))
    git = Git(repo, worktree_lock=repo / ".sage" / "worktree.lock")
    lander = Lander(git, target="main", queue=CommitQueue(repo / ".sage" / "queue"),
                    states=ticket_state.TicketStates(store, hold_s=hold_s), landing_lock=repo / ".sage" / "commit.lock",
                    emit=lambda *args, **kwargs: None)
    return lander, git


def work_on(git: Git, ticket_id: str, name: str) -> QueueEntry:
    base = git.rev_parse("main") or ""
    path = git.repo / ".sage" / "worktrees" / ticket_id
    git.worktree_add(path, f"sage/{ticket_id}", base)
    (path / name).write_text("work\n", encoding="utf-8")
    tip = git.snapshot(path, "work")
    return QueueEntry(ticket=ticket_id, branch=f"sage/{ticket_id}", tip=tip, base=base, run_id="r", worktree=str(path),
                      log="", result={"summary": "Wrote the file.\n\nSage-Ticket: B-1\n# ------------------------ >8 "
                                                 "------------------------\n"})


def test_a_landed_commit_holds_the_summary_once_and_only_its_own_trailer(tmp_path: Path) -> None:
    lander, git = make_lander(tmp_path, [ticket("A-1", state="IN_PROGRESS"), ticket("B-1", state="IN_PROGRESS")])
    entry = work_on(git, "A-1", "a.txt")
    landed = lander.land(entry, lander.states.current()["A-1"], owned=True)
    assert isinstance(landed, Landed) and landed.commit
    body = subprocess.run(["git", "log", "-1", "--format=%B", landed.commit], cwd=git.repo, capture_output=True,
                          text=True, check=True).stdout
    assert body.count("Wrote the file.") == 1
    assert git.trailer_values(landed.commit, "Sage-Ticket") == ["A-1"]
    assert git.commits_with_trailer("main", "Sage-Ticket", "B-1") == []
    assert lander.states.current()["A-1"].state is State.COMPLETED
    assert lander.states.current()["B-1"].state is State.IN_PROGRESS


def test_what_the_target_carries_is_read_once_and_kept_up_to_date_by_landings(tmp_path: Path) -> None:
    lander, git = make_lander(tmp_path, [ticket("A-1", state="IN_PROGRESS"), ticket("C-1", state="IN_PROGRESS")])
    assert lander.on_target.commit_of("A-1") is None  # the one scan of the target
    calls: list[tuple[str, ...]] = []
    original = git.run

    def counting(*args: str, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    git.run = counting  # type: ignore[method-assign]
    landed = lander.land(work_on(git, "A-1", "a.txt"), lander.states.current()["A-1"], owned=True)
    assert isinstance(landed, Landed)
    scans_before = sum(1 for args in calls if args[:1] == ("log",) and "--grep=Sage-Ticket: " in args)
    assert lander.on_target.commit_of("A-1") == landed.commit
    assert lander.on_target.commit_of("B-1") is None and lander.on_target.commit_of("C-1") is None
    scans = sum(1 for args in calls if args[:1] == ("log",) and "--grep=Sage-Ticket: " in args)
    assert scans == scans_before == 0  # no git log per question


def on_disk(lander: Lander) -> dict[str, dict]:
    """The index as a reader of the file (Sage, a person) sees it now."""
    data = json.loads(lander.states.store.path.read_text(encoding="utf-8"))
    return {item["id"]: item for item in data["tickets"]}


def queued(lander: Lander, entry: QueueEntry) -> QueueEntry:
    lander.queue.put(entry)  # as a run does before it lands the entry
    return entry


def start_edit() -> ticket_state.Edit:
    return ticket_state.start(run_id="r", pid=1, pid_create_time=1.0, branch="sage/C-1")


def test_a_landings_completed_goes_with_the_next_index_write_and_its_entry_stays_queued_until_then(
        tmp_path: Path) -> None:
    """One index write per ticket instead of two: the landing's COMPLETED waits for the
    next ticket's IN_PROGRESS. Until it is written the queue entry stays, so that a kill
    meanwhile is recovered like a kill right after landing (tests/e2e: after_hold_edit)."""
    lander, git = make_lander(tmp_path, [ticket("A-1", state="IN_PROGRESS"), ticket("C-1")], hold_s=60.0)
    index = lander.states.store.path
    before = index.stat()
    landed = lander.land(queued(lander, work_on(git, "A-1", "a.txt")), lander.states.store.load().index.by_id()["A-1"], owned=True)
    assert isinstance(landed, Landed) and landed.commit
    assert git.commits_with_trailer("main", "Sage-Ticket", "A-1") == [landed.commit]
    after_landing = index.stat()
    assert (after_landing.st_ino, after_landing.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # not written
    assert on_disk(lander)["A-1"]["state"] == "IN_PROGRESS"
    assert [entry.ticket for entry in lander.queue.entries()] == ["A-1"]
    assert 0 < (lander.states.flush_if_due() or 0) <= 60.0  # not due yet: nothing written

    lander.states.apply({"C-1": start_edit()})  # the next ticket starts: one write for both
    tickets = on_disk(lander)
    assert tickets["A-1"]["state"] == "COMPLETED" and tickets["C-1"]["state"] == "IN_PROGRESS"
    assert tickets["A-1"]["git"]["last_commit"]["sha"] == landed.commit
    assert tickets["A-1"]["agent_result"]["summary"].startswith("Wrote the file.")
    assert lander.queue.entries() == []
    assert lander.states.flush_if_due() is None  # nothing held any more


def test_held_edits_are_written_once_due_and_a_reader_of_the_states_never_sees_them_missing(
        tmp_path: Path) -> None:
    lander, git = make_lander(tmp_path, [ticket("A-1", state="IN_PROGRESS"), ticket("B-1", state="IN_PROGRESS")],
                              hold_s=0.05)
    lander.land(queued(lander, work_on(git, "A-1", "a.txt")), lander.states.store.load().index.by_id()["A-1"], owned=True)
    assert lander.states.current()["A-1"].state is State.COMPLETED  # reading the states writes what is held
    assert on_disk(lander)["A-1"]["state"] == "COMPLETED" and lander.queue.entries() == []
    lander.land(queued(lander, work_on(git, "B-1", "b.txt")), lander.states.store.load().index.by_id()["B-1"], owned=True)
    assert on_disk(lander)["B-1"]["state"] == "IN_PROGRESS"
    time.sleep(0.06)
    assert lander.states.flush_if_due() is None
    assert on_disk(lander)["B-1"]["state"] == "COMPLETED" and lander.queue.entries() == []


def test_a_held_completed_that_cannot_be_written_fails_as_itself_and_its_entry_stays_for_the_next_run(
        tmp_path: Path) -> None:
    """Someone deletes the landed ticket from the index by hand before its COMPLETED is
    written: the next write says which ticket is missing, writes nothing, and keeps the
    queue entry (the next run's recovery decides); the write after that goes through."""
    lander, git = make_lander(tmp_path, [ticket("A-1", state="IN_PROGRESS"), ticket("C-1")], hold_s=60.0)
    lander.land(queued(lander, work_on(git, "A-1", "a.txt")), lander.states.store.load().index.by_id()["A-1"], owned=True)
    write_index(git.repo, [ticket("C-1")])  # A-1 removed by hand
    with pytest.raises(SageError) as caught:
        lander.states.apply({"C-1": start_edit()})
    assert "A-1" in caught.value.message
    assert on_disk(lander)["C-1"]["state"] == "UNPROCESSED"
    assert [entry.ticket for entry in lander.queue.entries()] == ["A-1"]
    lander.states.apply({"C-1": start_edit()})
    assert on_disk(lander)["C-1"]["state"] == "IN_PROGRESS"
