"""The lander: one queued entry -> one landed commit -> COMPLETED in the index."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import init_git_repo, ticket, write_index

from sage_stream.engine import ticket_state
from sage_stream.engine.commit_queue import CommitQueue, QueueEntry
from sage_stream.engine.lander import Landed, Lander
from sage_stream.git import Git
from sage_stream.tickets.models import State
from sage_stream.tickets.store import IndexStore


def make_lander(tmp_path: Path, tickets: list[dict]) -> tuple[Lander, Git]:
    repo = init_git_repo(tmp_path / "repo")
    store = IndexStore(write_index(repo, tickets))
    git = Git(repo, worktree_lock=repo / ".sage" / "worktree.lock")
    lander = Lander(git, target="main", queue=CommitQueue(repo / ".sage" / "queue"),
                    states=ticket_state.TicketStates(store), landing_lock=repo / ".sage" / "commit.lock",
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
