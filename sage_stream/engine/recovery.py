"""Recovery at the start of a run: finish what a dead run left behind, lose nothing.

Runs with the repository's run lock held, so no other `sage stream` is live here.
0. Agents the dead run left running (a SIGKILL cannot take them along: they lead their
   own process groups) are stopped before they write into a slot the next ticket gets;
   its git processes are waited for (never killed: that is what leaves half-written
   files), and slot registrations a kill left half made are set aside.
1. Every commit-queue entry lands (or is found landed already), in finish order, on the
   target recorded in it - never on whatever branch is checked out now. An
   entry that no longer merges with the target (what landed since conflicts with it) is
   not deferred: like a conflict in a live run, its ticket runs again on the new tip
   (back to UNPROCESSED, its work kept on a branch).
2. Every IN_PROGRESS ticket whose run is dead is reconciled: its commit is on the
   target already (Sage-Ticket trailer) -> COMPLETED; otherwise back to UNPROCESSED
   with attempts + 1, and whatever its worktree holds is kept on its branch.
   With --remote, "on the target" means on the remote branch, fetched first (a landing
   commit made but not pushed when the run died is made again on the current tip).
3. A checkout of the target that a kill left behind (the ref moved, its files not yet
   updated) is brought along over those landings, when nothing else changed in it.
4. Exactly once before anything starts: a ticket the index does not call COMPLETED
   (an older index restored, a hand edit) whose trailer is on the target becomes
   COMPLETED with that commit instead of running again (one `git log` of the target).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from sage_stream.engine import events as ev
from sage_stream.engine import ticket_state
from sage_stream.engine.checkout_wait import HISTORY_LIMIT, files_of_landing, landings_behind
from sage_stream.engine.commit_queue import QueueEntry
from sage_stream.engine.lander import Emit, Landed, Lander
from sage_stream.engine.outcomes import Defer, decide_landing
from sage_stream.engine.run_lock import is_alive
from sage_stream.engine.worktrees import TicketWorkspaces
from sage_stream.faults import crash_point
from sage_stream.git import Git
from sage_stream.process.tree import stop_strays, wait_for_leftover_git
from sage_stream.tickets.models import State, Ticket
from sage_stream.tickets.naming import TRAILER, ticket_branch


@dataclass
class RecoveryReport:
    landed: list[str] = field(default_factory=list)
    completed_from_trailer: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    dropped_entries: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)  # queued work that conflicts now: runs again
    stopped_pids: list[int] = field(default_factory=list)
    brought_along: list[str] = field(default_factory=list)  # checkouts updated over earlier landings
    completed_from_target: list[str] = field(default_factory=list)  # not COMPLETED in the index, yet landed


LEFTOVER_GIT_TIMEOUT_S = 60.0  # git processes of a dead run finish in well under a second


@dataclass(frozen=True)
class Recovery:
    """What recovery works with: the lander (its git, target, queue and index states),
    the worktree slots, and this run's identity."""

    lander: Lander
    workspaces: TicketWorkspaces
    emit: Emit
    run_id: str
    pid: int
    retry_backoff_s: float = 300.0


def recover(rec: Recovery) -> RecoveryReport:
    report = RecoveryReport()
    _stop_what_a_dead_run_left(rec, report)
    rec.lander.refresh_target()  # --remote: what is landed is read from the remote's tip
    _land_queued_work(rec, report)
    rec.lander.states.flush()
    _reconcile_in_progress(rec, report)
    report.brought_along = _catch_up_checkouts(rec)
    _complete_what_the_target_has(rec, report)
    return report


def _complete_what_the_target_has(rec: Recovery, report: RecoveryReport) -> None:
    lander = rec.lander
    edits, found = {}, []
    tickets, landed = lander.states.current(), lander.on_target.owners()
    for ticket in (tickets[ticket_id] for ticket_id in tickets if ticket_id in landed):  # in the index's order
        if ticket.state in (State.COMPLETED, State.IN_PROGRESS):  # IN_PROGRESS: reconciled above, or a live run's
            continue
        commit = landed[ticket.id]
        branch = (ticket.git.branch if ticket.git else None) or ticket_branch(ticket.id)
        edits[ticket.id] = ticket_state.complete(commit=commit, message=f"#{ticket.id} {ticket.title}", branch=branch)
        found.append((ticket, commit))
    if not edits:
        return
    lander.states.apply(edits)  # one index write for them all
    for ticket, commit in found:
        report.completed_from_target.append(ticket.id)
        rec.emit(ev.MESSAGE, ticket.id, level="warning",
                 text=f"{ticket.id} is on {lander.target} already as {commit[:10]} but the index said "
                      f"{ticket.state.value}: COMPLETED, not run again")


def _stop_what_a_dead_run_left(rec: Recovery, report: RecoveryReport) -> None:
    report.stopped_pids = stop_strays(rec.workspaces.root, keep_run_id=rec.run_id)
    if report.stopped_pids:
        rec.emit(ev.MESSAGE, None, level="warning",
                 text=f"stopped {len(report.stopped_pids)} agent process(es) a dead run left running")
    waited, running = wait_for_leftover_git(rec.lander.git.repo, timeout_s=LEFTOVER_GIT_TIMEOUT_S)
    if running:
        rec.emit(ev.MESSAGE, None, level="warning",
                 text=f"{len(running)} git process(es) another sage process started here are still running after "
                      f"{LEFTOVER_GIT_TIMEOUT_S:.0f} s (pids {', '.join(map(str, running))}); going on")
    elif waited:
        rec.emit(ev.MESSAGE, None, level="info",
                 text=f"waited for {len(waited)} git process(es) a dead or other sage process left running")
    for place in rec.workspaces.cleanup_stale():
        rec.emit(ev.MESSAGE, None, level="warning",
                 text=f"a worktree slot whose creation was killed half way was set aside: {place}")


def _land_queued_work(rec: Recovery, report: RecoveryReport) -> None:
    lander = rec.lander
    by_id = lander.states.current()
    for entry in lander.queue.entries():
        ticket = by_id.get(entry.ticket)
        if ticket is None or ticket.state is State.COMPLETED:
            lander.queue.remove(entry)
            report.dropped_entries.append(entry.ticket)
            continue
        if _conflicts_now(rec, entry):
            _run_again(rec, entry)
            report.requeued.append(entry.ticket)
            continue
        outcome = lander.land(entry, ticket)
        if isinstance(outcome, Landed):
            report.landed.append(entry.ticket)
            crash_point("recovery_landed")
        else:
            _defer(rec, ticket, decide_landing(outcome, rerun_left=False, attempts_before=ticket.attempts,
                                               now=datetime.now(timezone.utc), retry_backoff_s=rec.retry_backoff_s))
        rec.emit(ev.MESSAGE, entry.ticket, level="info",
                 text=f"recovered {entry.ticket} from the commit queue of run {entry.run_id}: {outcome.outcome}")


def _defer(rec: Recovery, ticket: Ticket, decision: Defer) -> None:
    rec.lander.states.defer(ticket.id, decision)
    rec.emit(ev.TICKET_DEFERRED, ticket.id, category=decision.category, message=decision.message,
             retryable=decision.retryable, not_before=decision.not_before)


def _reconcile_in_progress(rec: Recovery, report: RecoveryReport) -> None:
    lander = rec.lander
    for ticket in lander.states.store.load().by_id().values():
        if ticket.state is not State.IN_PROGRESS:
            continue
        info = (ticket.model_extra or {}).get(ticket_state.RUN_KEY)
        info = info if isinstance(info, dict) else {}
        if is_alive(info.get("pid"), info.get("pid_create_time")) and info.get("pid") != rec.pid:
            continue  # a live run elsewhere owns it (another checkout sharing this index)
        target = (ticket.git.target if ticket.git else None) or lander.target  # where its run would land it
        landed = lander.git.commits_with_trailer(lander.ref_of(target), TRAILER, ticket.id, limit=1)
        branch = (ticket.git.branch if ticket.git else None) or ticket_branch(ticket.id)
        if landed:
            edit = ticket_state.complete(commit=landed[0], message=f"#{ticket.id} {ticket.title}", branch=branch)
            lander.states.apply({ticket.id: edit})
            report.completed_from_trailer.append(ticket.id)
            rec.emit(ev.MESSAGE, ticket.id, level="info",
                     text=f"{ticket.id} had landed as {landed[0][:10]} before its run died: COMPLETED")
            continue
        _keep_worktree_changes(rec, ticket.id)
        dead_run = info.get("run_id", "an earlier run")
        lander.states.apply({ticket.id: ticket_state.release(
            count_attempt=True, note=f"run {dead_run} died while this ticket was in progress")})
        report.released.append(ticket.id)
        crash_point("recovery_released")
        rec.emit(ev.MESSAGE, ticket.id, level="warning",
                 text=f"{ticket.id} was IN_PROGRESS in dead run {dead_run}: back to UNPROCESSED "
                      f"({_kept_on(lander.git, branch)})")


def _kept_on(git: Git, branch: str) -> str:
    """Where a released ticket's work is: its branch, if the dead run got as far as making it."""
    if git.rev_parse(f"refs/heads/{branch}") is None:
        return f"it had no branch yet ({branch} does not exist): no work to keep"
    return f"its work so far is kept on {branch}"


def _conflicts_now(rec: Recovery, entry: QueueEntry) -> bool:
    """The queued work no longer merges with the target (and has not landed already)."""
    git = rec.lander.git
    ref = rec.lander.ref_of(rec.lander.target_of(entry))
    tip = git.rev_parse(ref)
    if tip is None or git.rev_parse(entry.tip) is None or git.rev_parse(entry.base) is None:
        return False  # landing reports what is wrong
    if git.commits_with_trailer(f"{entry.base}..{ref}", TRAILER, entry.ticket, limit=1):
        return False  # landed before its run died: landing records it
    return not git.merge_tree(tip, entry.tip).clean


def _run_again(rec: Recovery, entry: QueueEntry) -> None:
    branch = rec.workspaces.keep_unlanded(entry.ticket, entry.tip)
    note = (f"its work from run {entry.run_id} conflicts with what landed since; it runs again on the new tip "
            f"(that work is kept on {branch})")
    rec.lander.states.apply({entry.ticket: ticket_state.release(count_attempt=False, note=note)})
    rec.lander.queue.remove(entry)
    rec.emit(ev.MESSAGE, entry.ticket, level="warning", text=f"{entry.ticket}: {note}")


def _catch_up_checkouts(rec: Recovery) -> list[str]:
    """Bring along each checkout of the target whose index is still an older target
    commit's, when every commit since is a landing (a kill or a full disk came between
    moving the ref and updating the checkout) and it has no change of its own: its files
    are its index's, or a later landing's (its files were written, its index was not)."""
    git, target = rec.lander.git, rec.lander.target
    if git.rev_parse(f"refs/heads/{target}") is None:
        return []  # --remote onto a branch only the remote has: nothing checked out to catch up
    history = git.first_parent_history(f"refs/heads/{target}", limit=HISTORY_LIMIT, trailer=TRAILER)
    if not history:
        return []
    slots = rec.workspaces.root.resolve()
    updated = []
    for info in git.worktrees():
        if info.branch != target or not info.path.is_dir() or info.path.resolve().is_relative_to(slots):
            continue
        behind = landings_behind(history, lambda entry, path=info.path: git.index_matches(path, entry.commit))
        if behind is None or git.symbolic_head(info.path) != f"refs/heads/{target}":
            continue  # changes of its own, or switched to another branch: never staged the target's changes
        tip = history[0].commit
        brought = not git.has_unstaged_changes(info.path) and git.bring_along(info.path, behind, tip)
        if not brought:
            # Its files may be a later landing's already (written, then the index was not):
            # the index catches up with them, then the rest is brought along.
            ahead = files_of_landing(git, info.path, history, behind)
            if ahead is None:
                continue
            git.set_index(info.path, ahead)
            if ahead != tip and not git.bring_along(info.path, ahead, tip):
                continue
        updated.append(str(info.path))
        rec.emit(ev.MESSAGE, None, level="info",
                 text=f"brought {info.path} along to {target} ({tip[:12]}): an earlier run died or failed (a full "
                      "disk) between landing and updating it")
    return updated


def _keep_worktree_changes(rec: Recovery, ticket_id: str) -> None:
    """Commit what the dead attempt left uncommitted in whichever slot has its branch."""
    branch, git = ticket_branch(ticket_id), rec.lander.git
    for info in git.worktrees():
        if info.branch in (branch, f"refs/heads/{branch}") and info.path.is_dir():
            try:
                git.snapshot(info.path, f"wip: {ticket_id} (unlanded attempt, kept by sage recovery)")
            except Exception:
                pass  # the work tree itself stays; nothing is deleted



# -- after landing onto a remote stopped (engine/remote_landing.py RemoteStopped) ----------


def release_after_remote_stop(rec: Recovery, reason: str) -> list[str]:
    """This run's IN_PROGRESS tickets back to UNPROCESSED (no attempt counted: nothing of
    theirs failed), each one's work kept on its branch; queued work stays queued and
    lands first on the next run."""
    released = []
    for ticket in rec.lander.states.store.load().by_id().values():
        info = (ticket.model_extra or {}).get(ticket_state.RUN_KEY)
        if ticket.state is not State.IN_PROGRESS or not isinstance(info, dict) or info.get("run_id") != rec.run_id:
            continue
        _keep_worktree_changes(rec, ticket.id)
        rec.lander.states.apply({ticket.id: ticket_state.release(
            count_attempt=False, note=f"landing onto the remote stopped: {reason}")})
        released.append(ticket.id)
    return released
