"""`sage retry ID...`: put DEFERRED tickets back in the queue, or (`--land`) land the
work an earlier attempt kept, without running the agent again."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from sage_stream.engine import ticket_state
from sage_stream.errors import EXIT_ERROR, EXIT_OK, SageError
from sage_stream.tickets.models import State
from sage_stream.tickets.store import IndexStore, resolve_index_path

if TYPE_CHECKING:
    from collections.abc import Callable

    from sage_stream.config import SageConfig
    from sage_stream.engine.kept_landing import KeptBranch, KeptWorkChecks
    from sage_stream.engine.verification import Verification
    from sage_stream.git import Git
    from sage_stream.paths import SagePaths
    from sage_stream.tickets.models import Ticket


@click.command("retry")
@click.argument("ticket_ids", nargs=-1, required=False)
@click.option("--all-deferred", is_flag=True, help="Retry every DEFERRED ticket.")
@click.option("--land", is_flag=True,
              help="Land the work kept on sage/ID (or its newest sage/ID-attempt-K) as it is: its checks run "
                   "again and its changes must match the ticket's current `files`; no agent runs.")
@click.option("--target", default=None, metavar="BRANCH",
              help="With --land: land on this branch (default: [stream] target, else the checked-out one).")
@click.option("--index", default=None, metavar="PATH", help="The ticket index (default: found upward from here).")
def command(ticket_ids: tuple[str, ...], all_deferred: bool, land: bool, target: str | None,
            index: str | None) -> int:
    """Put DEFERRED tickets back to UNPROCESSED (their defer history is kept).

    With --land, each named ticket's kept work lands instead (the ticket becomes
    COMPLETED). Exit codes: 0 done, 1 an error or nothing landed (the message says why;
    the index is unchanged for that ticket).
    """
    store = IndexStore(resolve_index_path(index))
    if land:
        if all_deferred or not ticket_ids:
            raise SageError("--land takes the tickets to land by name (sage retry TKT-004 --land)")
        return _land_kept_work(store, ticket_ids, target=target)
    if target is not None:
        raise SageError("--target goes with --land")
    tickets = store.load().index.by_id()
    if all_deferred:
        ticket_ids = tuple(tid for tid, t in tickets.items() if t.state is State.DEFERRED)
        if not ticket_ids:
            click.echo("no DEFERRED tickets")
            return EXIT_OK
    if not ticket_ids:
        raise SageError("name the tickets to retry (sage retry TKT-004), or pass --all-deferred")
    for ticket_id in ticket_ids:
        ticket = tickets.get(ticket_id)
        if ticket is None:
            raise SageError(f"{store.path}: no ticket {ticket_id}")
        if ticket.state is not State.DEFERRED:
            raise SageError(f"{store.path}: ticket {ticket_id} is {ticket.state}, not DEFERRED: nothing to retry")
    ticket_state.apply(store, {tid: ticket_state.retry() for tid in ticket_ids})
    for ticket_id in ticket_ids:
        click.echo(f"{ticket_id}: DEFERRED -> UNPROCESSED")
    return EXIT_OK



def _land_kept_work(store: IndexStore, ticket_ids: tuple[str, ...], *, target: str | None) -> int:
    """Hold the run lock as a run does, then land each ticket's kept work (engine/kept_landing.py)."""
    from sage_stream.config import load_config
    from sage_stream.engine.commit_queue import CommitQueue
    from sage_stream.engine.kept_landing import land_kept_work, prune_landed_attempts
    from sage_stream.engine.lander import Lander
    from sage_stream.engine.run_lock import RunLock, RunOwner, describe_owner, process_identity
    from sage_stream.engine.run_record import new_run_id
    from sage_stream.git import Git, GitError
    from sage_stream.paths import SagePaths
    from sage_stream.text import now_iso
    from sage_stream.validation.prerequisites import not_a_work_tree

    tickets = store.load().index.by_id()
    for ticket_id in ticket_ids:
        if ticket_id not in tickets:
            raise SageError(f"{store.path}: no ticket {ticket_id}")
    sage_dir = store.path.parent.parent
    paths = SagePaths(sage_dir)
    config = load_config(sage_dir)
    git = Git(sage_dir.parent, worktree_lock=paths.worktree_lock)
    try:
        repo = git.toplevel()
    except GitError:
        raise SageError(not_a_work_tree(str(store.path.parent))) from None
    target = target or config.stream.target or git.current_branch(repo)
    if not target:
        raise SageError(f"{repo}: HEAD is detached: check out the branch to land on, or pass --target")
    if git.rev_parse(f"refs/heads/{target}") is None:
        raise SageError(f"target branch '{target}' does not exist in {repo}")
    run_lock = RunLock(sage_dir)
    if not run_lock.acquire(wait=False):
        raise SageError(f"sage stream is {describe_owner(run_lock.owner())} here: land kept work once it ends")
    try:
        run_id = new_run_id()
        pid, create_time = process_identity()
        run_lock.write_owner(RunOwner(pid=pid, pid_create_time=create_time, run_id=run_id, started=now_iso()))
        how = _how_to_check(config, paths, run_id)

        def emit(kind: str, ticket_id: str | None, **data: object) -> None:
            if data.get("text"):
                click.echo(f"{ticket_id or 'sage'}: {data['text']}")

        lander = Lander(git, target=target, queue=CommitQueue(paths.commit_queue),
                        states=ticket_state.TicketStates(store), landing_lock=paths.commit_lock, emit=emit)
        failed = 0
        for ticket_id in ticket_ids:
            ticket = lander.states.current()[ticket_id]
            outcome = land_kept_work(ticket, lander=lander, run_id=run_id, log_dir=how.log_dir,
                                     verify=_verifier(git, ticket, how, target))
            if outcome.landed is not None:
                commit = (outcome.landed.commit or "")[:12]
                click.echo(f"{ticket_id}: landed {outcome.branch} on {target} as {commit}: COMPLETED")
                for branch in prune_landed_attempts(git, target, [ticket_id]):
                    click.echo(f"{ticket_id}: deleted {branch}: it holds nothing {target} lacks")
            else:
                failed += 1
                click.echo(f"error: {outcome.problem}", err=True)
        return EXIT_ERROR if failed else EXIT_OK
    finally:
        run_lock.release()


def _how_to_check(config: SageConfig, paths: SagePaths, run_id: str) -> KeptWorkChecks:
    """The checks, environment, timeout and sandbox of a run, for checking kept work; the
    sandbox decision is said once, as a run says it."""
    from sage_stream.engine.kept_landing import KeptWorkChecks
    from sage_stream.engine.verification import project_checks
    from sage_stream.process.sandbox import decide_sandbox, probe

    mode = config.agent.sandbox
    choice = decide_sandbox(mode, probe() if mode != "none" else None)
    click.echo(f"sage retry --land: {choice.message.replace('agents are', 'checks are', 1)}")
    return KeptWorkChecks(project_checks=tuple(project_checks(config.checks.commands, config_path=str(paths.config))),
                          env_names=(*config.agent.env, *config.checks.env),
                          timeout_s=60 * config.checks.timeout_minutes, sandbox=choice.sandbox,
                          writable=tuple(config.agent.writable), worktrees=paths.worktrees,
                          log_dir=paths.run_logs(run_id), run_id=run_id)


def _verifier(git: Git, ticket: Ticket, how: KeptWorkChecks, target: str) -> Callable[[KeptBranch], Verification]:
    from sage_stream.engine.kept_landing import check_kept_work

    def verify(kept: KeptBranch) -> Verification:
        click.echo(f"{ticket.id}: checking {kept.branch} ({kept.tip[:12]}) against {target}")
        return check_kept_work(git, kept, ticket, how)

    return verify
