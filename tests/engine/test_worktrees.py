"""Ticket workspaces: one reusable worktree per worker slot; unlanded work is never lost."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from sage_stream.engine.worktrees import TicketWorkspaces, Workspace
from sage_stream.tickets.naming import ticket_branch
from sage_stream.errors import SageError
from sage_stream.git import Git, GitError


def sh(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"git {args}: {result.stderr}"
    return result.stdout


@pytest.fixture
def git(git_repo: Path) -> Git:
    return Git(git_repo, worktree_lock=git_repo / ".sage" / "worktree.lock")


@pytest.fixture
def spaces(git: Git) -> TicketWorkspaces:
    return TicketWorkspaces(git, git.repo / ".sage" / "worktrees")


def branches(git: Git) -> set[str]:
    return set(sh(git.repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/").split())


def land_by_hand(git: Git, workspace: Workspace) -> None:
    """What landing does to the target, enough for these tests: move main to the work."""
    tip = git.snapshot(workspace.path, "work")
    old = git.rev_parse("main") or ""
    merged = git.merge_tree(old, tip)
    assert merged.tree is not None
    assert git.update_ref("refs/heads/main", git.commit_tree(merged.tree, [old], "landed"), old)


def test_prepare_gives_a_clean_slot_on_the_ticket_branch_at_start(git: Git, spaces: TicketWorkspaces) -> None:
    start = git.rev_parse("main")
    workspace = spaces.prepare("TKT-001", "main", slot=0)
    assert workspace.path == spaces.root / "slot-0"
    assert workspace.branch == "sage/TKT-001"
    assert workspace.base == start
    assert git.current_branch(workspace.path) == "sage/TKT-001"
    assert git.rev_parse("HEAD", cwd=workspace.path) == start
    assert (workspace.path / "README.md").read_text() == "test repository\n"
    assert git.is_clean(workspace.path, include_untracked=True)


def test_a_slot_is_reused_and_left_exactly_at_the_next_start(git: Git, spaces: TicketWorkspaces) -> None:
    first = spaces.prepare("TKT-001", "main", slot=0)
    (first.path / "feature.txt").write_text("one\n")
    (first.path / ".sage").mkdir()  # ignored by the repository: build output, not work
    (first.path / ".sage" / "junk.o").write_text("junk")
    land_by_hand(git, first)
    spaces.release(first, landed=True)
    assert "sage/TKT-001" not in branches(git)  # its work is on main
    second = spaces.prepare("TKT-002", "main", slot=0)
    assert second.path == first.path
    assert git.rev_parse("HEAD", cwd=second.path) == git.rev_parse("main")
    assert (second.path / "feature.txt").read_text() == "one\n"  # landed work is in main
    assert not (second.path / ".sage").exists()
    assert git.is_clean(second.path, include_untracked=True)
    assert branches(git) == {"main", "sage/TKT-002"}


def test_release_without_landing_keeps_uncommitted_work_on_the_branch(git: Git, spaces: TicketWorkspaces) -> None:
    workspace = spaces.prepare("TKT-001", "main", slot=0)
    (workspace.path / "half done.txt").write_text("half\n")
    (workspace.path / "README.md").unlink()
    spaces.release(workspace, landed=False)
    assert "sage/TKT-001" in branches(git)
    kept = sh(git.repo, "ls-tree", "-r", "--name-only", "sage/TKT-001").splitlines()
    assert "half done.txt" in kept and "README.md" not in kept
    assert git.current_branch(workspace.path) is None  # slot detached, ready for the next one
    assert git.is_clean(workspace.path, include_untracked=True)


def test_release_without_any_work_drops_the_empty_branch(git: Git, spaces: TicketWorkspaces) -> None:
    workspace = spaces.prepare("TKT-001", "main", slot=0)
    spaces.release(workspace, landed=False)
    assert branches(git) == {"main"}


def test_a_rerun_keeps_the_earlier_unlanded_attempt(git: Git, spaces: TicketWorkspaces) -> None:
    first = spaces.prepare("TKT-001", "main", slot=0)
    (first.path / "attempt1.txt").write_text("first try\n")
    spaces.release(first, landed=False)
    first_tip = git.rev_parse("sage/TKT-001")
    second = spaces.prepare("TKT-001", "main", slot=1)
    assert git.rev_parse("sage/TKT-001-attempt-1") == first_tip
    assert git.rev_parse("sage/TKT-001") == git.rev_parse("main")
    assert not (second.path / "attempt1.txt").exists()
    (second.path / "attempt2.txt").write_text("second try\n")
    spaces.release(second, landed=False)
    spaces.prepare("TKT-001", "main", slot=0)
    assert git.rev_parse("sage/TKT-001-attempt-1") == first_tip
    assert "attempt2.txt" in sh(git.repo, "ls-tree", "--name-only", "sage/TKT-001-attempt-2")


def test_a_crashed_slot_keeps_its_uncommitted_work_when_reused(git: Git, spaces: TicketWorkspaces) -> None:
    """A run killed mid-ticket left files in a slot and never released it."""
    crashed = spaces.prepare("TKT-001", "main", slot=0)
    (crashed.path / "unsaved.txt").write_text("precious\n")
    spaces.prepare("TKT-002", "main", slot=0)  # the next run reuses slot 0
    kept = git.rev_parse("sage/TKT-001-attempt-1") or git.rev_parse("sage/TKT-001")
    assert kept is not None
    assert sh(git.repo, "show", f"{kept}:unsaved.txt") == "precious\n"


def test_a_ticket_left_checked_out_in_another_slot_moves_safely(git: Git, spaces: TicketWorkspaces) -> None:
    crashed = spaces.prepare("TKT-001", "main", slot=0)
    (crashed.path / "unsaved.txt").write_text("precious\n")
    again = spaces.prepare("TKT-001", "main", slot=1)
    assert git.current_branch(again.path) == "sage/TKT-001"
    assert git.current_branch(crashed.path) is None
    assert sh(git.repo, "show", "sage/TKT-001-attempt-1:unsaved.txt") == "precious\n"


def test_detached_commits_made_by_an_agent_are_kept(git: Git, spaces: TicketWorkspaces) -> None:
    workspace = spaces.prepare("TKT-001", "main", slot=0)
    sh(workspace.path, "checkout", "-q", "--detach")
    (workspace.path / "detached.txt").write_text("x\n")
    sh(workspace.path, "add", "detached.txt")
    sh(workspace.path, "commit", "-q", "-m", "detached work")
    orphan = git.rev_parse("HEAD", cwd=workspace.path)
    spaces.release(workspace, landed=False)
    assert git.rev_parse("sage/slot-0-kept-1") == orphan


def test_a_stray_directory_in_the_slot_path_is_moved_aside(git: Git, spaces: TicketWorkspaces) -> None:
    stray = spaces.root / "slot-0"
    stray.mkdir(parents=True)
    (stray / "notes.txt").write_text("someone's\n")
    workspace = spaces.prepare("TKT-001", "main", slot=0)
    assert git.current_branch(workspace.path) == "sage/TKT-001"
    moved = list((spaces.root / ".stale").glob("slot-0-*/slot-0/notes.txt"))
    assert [path.read_text() for path in moved] == ["someone's\n"]


def test_a_deleted_slot_directory_is_recreated(git: Git, spaces: TicketWorkspaces) -> None:
    workspace = spaces.prepare("TKT-001", "main", slot=0)
    spaces.release(workspace, landed=False)
    shutil.rmtree(workspace.path)
    again = spaces.prepare("TKT-002", "main", slot=0)
    assert (again.path / "README.md").is_file()
    spaces.cleanup_stale()


def test_unsafe_ids_never_name_a_branch_or_directory(spaces: TicketWorkspaces) -> None:
    for bad in ("../escape", "a/b", "x.lock", "-rf", "a..b", "with space"):
        with pytest.raises(SageError):
            spaces.prepare(bad, "main", slot=0)
    assert ticket_branch("AUTH-001") == "sage/AUTH-001"


def test_an_unknown_start_is_a_user_error(spaces: TicketWorkspaces) -> None:
    with pytest.raises(SageError, match="names no commit"):
        spaces.prepare("TKT-001", "no-such-branch", slot=0)


def test_parallel_slots_prepare_and_release_at_once(git: Git, spaces: TicketWorkspaces) -> None:
    errors: list[BaseException] = []
    together = threading.Barrier(6)

    def work(slot: int) -> None:
        together.wait()
        try:
            for round_ in range(2):
                ticket = f"T-{slot}{round_}"
                workspace = spaces.prepare(ticket, "main", slot=slot)
                (workspace.path / f"{ticket}.txt").write_text(ticket)
                spaces.release(workspace, landed=False)
        except BaseException as error:  # collected: a thread's exception would be lost
            errors.append(error)

    threads = [threading.Thread(target=work, args=(slot,)) for slot in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for slot in range(6):
        for round_ in range(2):
            ticket = f"T-{slot}{round_}"
            assert sh(git.repo, "show", f"sage/{ticket}:{ticket}.txt") == ticket


def test_remove_slots_keeps_work_and_removes_the_directories(git: Git, spaces: TicketWorkspaces) -> None:
    workspace = spaces.prepare("TKT-001", "main", slot=0)
    (workspace.path / "wip.txt").write_text("wip\n")
    spaces.remove_slots()
    assert not workspace.path.exists()
    assert sh(git.repo, "show", "sage/TKT-001:wip.txt") == "wip\n"
    assert [info.path for info in git.worktrees()] == [git.repo.resolve()]


def test_changes_made_after_landing_are_kept_not_cleaned(git: Git, spaces: TicketWorkspaces) -> None:
    workspace = spaces.prepare("TKT-001", "main", slot=0)
    (workspace.path / "landed.txt").write_text("landed\n")
    land_by_hand(git, workspace)
    (workspace.path / "late.txt").write_text("written after the snapshot\n")
    spaces.release(workspace, landed=True)
    assert sh(git.repo, "show", "sage/TKT-001:late.txt") == "written after the snapshot\n"


def test_after_a_landing_the_slot_switches_to_the_next_ticket_in_one_pass(git: Git, spaces: TicketWorkspaces) -> None:
    first = spaces.prepare("TKT-001", "main", slot=0)
    (first.path / "feature.txt").write_text("one\n")
    (first.path / ".sage").mkdir()  # ignored build output
    (first.path / ".sage" / "junk.o").write_text("junk")
    land_by_hand(git, first)
    second = spaces.switch_after_landing(first, "TKT-002", git.rev_parse("main") or "", slot=0)
    assert second is not None and second.path == first.path and second.branch == "sage/TKT-002"
    assert git.rev_parse("HEAD", cwd=second.path) == git.rev_parse("main") == second.base
    assert git.current_branch(second.path) == "sage/TKT-002"
    assert (second.path / "feature.txt").read_text() == "one\n"
    assert not (second.path / ".sage").exists()
    assert git.is_clean(second.path, include_untracked=True)
    assert branches(git) == {"main", "sage/TKT-002"}  # the landed branch is gone


def test_the_one_pass_switch_declines_a_slot_with_late_changes_or_unknown_to_it(git: Git, spaces: TicketWorkspaces) -> None:
    first = spaces.prepare("TKT-001", "main", slot=0)
    (first.path / "landed.txt").write_text("landed\n")
    land_by_hand(git, first)
    (first.path / "late.txt").write_text("written after the snapshot\n")
    tip = git.rev_parse("main") or ""
    assert spaces.switch_after_landing(first, "TKT-002", tip, slot=0) is None  # nothing changed
    assert (first.path / "late.txt").exists() and git.current_branch(first.path) == "sage/TKT-001"
    other = TicketWorkspaces(git, spaces.root)  # another process: it did not prepare this slot
    assert other.switch_after_landing(first, "TKT-002", tip, slot=0) is None
    spaces.release(first, landed=True)  # the long way keeps the late change on the branch
    assert sh(git.repo, "show", "sage/TKT-001:late.txt") == "written after the snapshot\n"


def test_the_one_pass_switch_keeps_an_earlier_unlanded_attempt_of_the_next_ticket(git: Git, spaces: TicketWorkspaces) -> None:
    earlier = spaces.prepare("TKT-002", "main", slot=1)
    (earlier.path / "try.txt").write_text("first try\n")
    spaces.release(earlier, landed=False)
    first = spaces.prepare("TKT-001", "main", slot=0)
    (first.path / "a.txt").write_text("a\n")
    land_by_hand(git, first)
    second = spaces.switch_after_landing(first, "TKT-002", git.rev_parse("main") or "", slot=0)
    assert second is not None
    assert sh(git.repo, "show", "sage/TKT-002-attempt-1:try.txt") == "first try\n"
    assert not (second.path / "try.txt").exists()


def test_a_slot_registered_but_never_checked_out_is_filled_without_a_junk_snapshot(git: Git, spaces: TicketWorkspaces) -> None:
    # a run killed between registering a new slot and checking it out
    path = spaces.root / "slot-0"
    path.parent.mkdir(parents=True, exist_ok=True)
    git.worktree_add_detached(path, "main", checkout=False)
    workspace = spaces.prepare("TKT-001", "main", slot=0)
    assert (workspace.path / "README.md").read_text() == "test repository\n"
    assert git.is_clean(workspace.path, include_untracked=True)
    assert branches(git) == {"main", "sage/TKT-001"}


def test_the_one_pass_switch_can_leave_the_landed_branch_for_later(git: Git, spaces: TicketWorkspaces) -> None:
    first = spaces.prepare("TKT-001", "main", slot=0)
    (first.path / "a.txt").write_text("a\n")
    land_by_hand(git, first)
    later: list[str] = []
    second = spaces.switch_after_landing(first, "TKT-002", git.rev_parse("main") or "", slot=0, delete_later=later)
    assert second is not None and later == ["sage/TKT-001"]
    assert branches(git) == {"main", "sage/TKT-001", "sage/TKT-002"}  # nothing deleted yet
    git.branch_delete(later.pop())
    assert branches(git) == {"main", "sage/TKT-002"}


def half_made_registration(git: Git, root: Path, name: str, *, commondir: str | None) -> Path:
    """What a `git worktree add` killed half way leaves: its registration still locked
    "initializing", with `commondir` missing, empty (the moment that makes every
    `worktree list` fail) or written."""
    entry = git.repo / ".git" / "worktrees" / name
    entry.mkdir(parents=True)
    (root / name).mkdir(parents=True, exist_ok=True)
    (entry / "locked").write_text("initializing")
    (entry / "gitdir").write_text(f"{root / name / '.git'}\n")
    (root / name / ".git").write_text(f"gitdir: {entry}\n")
    if commondir is not None:
        (entry / "commondir").write_text(commondir)
    return entry


@pytest.mark.parametrize("commondir", [None, "", "../..\n"])
def test_a_slot_whose_creation_was_killed_half_way_is_set_aside_and_made_again(
        git: Git, spaces: TicketWorkspaces, commondir: str | None) -> None:
    entry = half_made_registration(git, spaces.root, "slot-1", commondir=commondir)
    if commondir == "":
        with pytest.raises(GitError, match="commondir"):
            git.worktrees()

    set_aside = spaces.cleanup_stale()

    assert [place.name for place in set_aside] == ["slot-1"] and not entry.exists()
    assert (set_aside[0] / "locked").read_text() == "initializing"  # moved, not deleted
    assert all(info.path.name != "slot-1" for info in git.worktrees())
    workspace = spaces.prepare("TKT-001", "main", slot=1)
    assert git.current_branch(workspace.path) == "sage/TKT-001"
    assert (workspace.path / "README.md").is_file()
    assert "locked" not in sh(git.repo, "worktree", "list", "--porcelain")


def test_a_half_made_work_tree_that_is_not_a_slot_of_ours_is_left_alone(git: Git, spaces: TicketWorkspaces,
                                                                         tmp_path: Path) -> None:
    theirs = half_made_registration(git, tmp_path / "elsewhere", "slot-2", commondir="../..\n")
    assert spaces.cleanup_stale() == []
    assert (theirs / "locked").is_file()


def test_listing_work_trees_waits_out_one_being_added_at_that_moment(git: Git, monkeypatch: pytest.MonkeyPatch) -> None:
    """`worktree list` dies while another process's `worktree add` has written an empty
    `commondir`; that lasts an instant, so the listing is tried again."""
    real_run = Git.run
    failures = iter([True, True])

    def run(self: Git, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        if args[:2] == ("worktree", "list") and next(failures, False):
            stderr = "fatal: failed to read .git/worktrees/x/commondir: Success"
            return subprocess.CompletedProcess(["git"], 128, "", stderr)
        return real_run(self, *args, **kwargs)

    monkeypatch.setattr(Git, "run", run)
    assert [info.path for info in git.worktrees()] == [git.repo]


def test_git_processes_carry_who_started_them_for_the_next_run_to_find(git: Git) -> None:
    import os

    printed = git.run("-c", "alias.showenv=!env", "showenv").stdout.splitlines()  # the environment git itself got
    assert f"SAGE_GIT_OF={os.getpid()}" in printed
    assert f"SAGE_GIT_REPO={os.path.realpath(git.repo)}" in printed


def test_a_spare_slot_is_made_ahead_of_need_and_then_used_like_any_slot(git: Git, spaces: TicketWorkspaces) -> None:
    assert spaces.make_spare(1, "main") is True
    spare = spaces.root / "slot-1"
    assert (spare / "README.md").is_file() and git.current_branch(spare) is None  # checked out, detached
    assert git.is_clean(spare, include_untracked=True)
    assert spaces.make_spare(1, "main") is False  # made already: left as it is
    workspace = spaces.prepare("TKT-001", "main", slot=1)
    assert workspace.path == spare and git.current_branch(spare) == "sage/TKT-001"
    assert branches(git) == {"main", "sage/TKT-001"}  # nothing kept: the spare held no work


def test_a_slot_whose_first_checkout_was_killed_is_filled_on_its_next_use(git: Git, spaces: TicketWorkspaces) -> None:
    path = spaces.root / "slot-0"
    git.worktree_add_detached(path, git.rev_parse("main") or "", checkout=False)
    admin = git.repo / ".git" / "worktrees" / "slot-0"
    (admin / "index.lock").write_text("")  # git died writing the index
    (path / "README.md").write_text("half writ")  # and some of the files
    workspace = spaces.prepare("TKT-001", "main", slot=0)
    assert (workspace.path / "README.md").read_text() == (git.repo / "README.md").read_text()
    assert git.current_branch(workspace.path) == "sage/TKT-001" and not (admin / "index.lock").exists()
    assert branches(git) == {"main", "sage/TKT-001"}  # the half-written files were no one's work


@pytest.mark.parametrize("next_run", [False, True])
def test_a_slot_whose_branch_was_deleted_is_repaired_and_its_work_kept(git: Git, spaces: TicketWorkspaces,
                                                                       next_run: bool) -> None:
    first = spaces.prepare("A-1", "main", slot=0)
    (first.path / "left.txt").write_text("unfinished\n", encoding="utf-8")
    sh(first.path, "update-ref", "-d", "refs/heads/sage/A-1")  # HEAD is unborn now
    workspaces = TicketWorkspaces(git, spaces.root) if next_run else spaces
    second = workspaces.prepare("B-1", "main", slot=0)
    assert second.path == first.path
    assert sh(second.path, "symbolic-ref", "HEAD").strip() == "refs/heads/sage/B-1"
    assert git.is_clean(second.path, include_untracked=True)
    kept = sh(git.repo, "show", "sage/slot-0-kept-1:left.txt")
    assert kept == "unfinished\n"
    assert sh(git.repo, "rev-parse", "sage/slot-0-kept-1^").strip() == first.base
