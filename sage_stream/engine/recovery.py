"""Recovery at the start of a run: finish what a dead run left behind, lose nothing.

Runs with the repository's run lock held, so no other `sage stream` is live here.
1. Every commit-queue entry lands (or is found landed already), in finish order.
2. Every IN_PROGRESS ticket whose run is dead is reconciled: its commit is on the
   target already (Sage-Ticket trailer) -> COMPLETED; otherwise back to UNPROCESSED
   with attempts + 1, and whatever its worktree holds is kept on its branch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sage_stream.engine import events as ev
from sage_stream.engine import ticket_state
from sage_stream.engine.run_lock import is_alive
from sage_stream.tickets.models import State

if TYPE_CHECKING:
    from sage_stream.engine.stream import StreamRun


@dataclass
class RecoveryReport:
    landed: list[str] = field(default_factory=list)
    completed_from_trailer: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    dropped_entries: list[str] = field(default_factory=list)


def recover(run: StreamRun) -> RecoveryReport:
    report = RecoveryReport()
    by_id = run.store.load().index.by_id()
    for entry in run.queue.entries():
        ticket = by_id.get(entry.ticket)
        if ticket is None or ticket.state is State.COMPLETED:
            run.queue.remove(entry)
            report.dropped_entries.append(entry.ticket)
            continue
        outcome = run.land(entry, ticket)
        if outcome in ("landed", "already_landed"):
            report.landed.append(entry.ticket)
        run.emit(ev.MESSAGE, entry.ticket, level="info",
                 text=f"recovered {entry.ticket} from the commit queue of run {entry.run_id}: {outcome}")

    by_id = run.store.load().index.by_id()
    for ticket in by_id.values():
        if ticket.state is not State.IN_PROGRESS:
            continue
        info = (ticket.model_extra or {}).get(ticket_state.RUN_KEY)
        info = info if isinstance(info, dict) else {}
        if is_alive(info.get("pid"), info.get("pid_create_time")) and info.get("pid") != run.pid:
            continue  # a live run elsewhere owns it (another checkout sharing this index)
        landed = run.git.commits_with_trailer(f"refs/heads/{run.settings.target}", "Sage-Ticket", ticket.id,
                                              limit=1)
        branch = (ticket.git.branch if ticket.git else None) or f"sage/{ticket.id}"
        if landed:
            edit = ticket_state.complete(commit=landed[0], message=f"#{ticket.id} {ticket.title}", branch=branch)
            ticket_state.apply(run.store, {ticket.id: edit})
            report.completed_from_trailer.append(ticket.id)
            run.emit(ev.MESSAGE, ticket.id, level="info",
                     text=f"{ticket.id} had landed as {landed[0][:10]} before its run died: COMPLETED")
            continue
        _keep_worktree_changes(run, ticket.id)
        dead_run = info.get("run_id", "an earlier run")
        ticket_state.apply(run.store, {ticket.id: ticket_state.release(
            count_attempt=True, note=f"run {dead_run} died while this ticket was in progress")})
        report.released.append(ticket.id)
        run.emit(ev.MESSAGE, ticket.id, level="warning",
                 text=f"{ticket.id} was IN_PROGRESS in dead run {dead_run}: back to UNPROCESSED "
                      f"(its work so far is kept on {branch})")
    run.workspaces.cleanup_stale()
    return report


def _keep_worktree_changes(run: StreamRun, ticket_id: str) -> None:
    """Commit what the dead attempt left uncommitted in whichever slot has its branch."""
    branch = f"sage/{ticket_id}"
    for info in run.git.worktrees():
        if info.branch in (branch, f"refs/heads/{branch}") and info.path.is_dir():
            try:
                run.git.snapshot(info.path, f"wip: {ticket_id} (unlanded attempt, kept by sage recovery)")
            except Exception:
                pass  # the work tree itself stays; nothing is deleted
