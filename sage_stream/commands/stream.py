"""`sage stream`: gather the facts, resolve the run's settings, then hand it to the engine."""

from __future__ import annotations

import gc
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import click

from sage_stream.config import load_config
from sage_stream.engine.settings import (
    StreamOptions,
    StreamSettings,
    agent_choice,
    check_mode_flags,
    resolve_settings,
    sandbox_mode,
)
from sage_stream.errors import EXIT_OK, EXIT_SETUP, SageError
from sage_stream.paths import SagePaths
from sage_stream.tickets.models import State, Ticket
from sage_stream.tickets.store import IndexStore, IndexView, gc_paused, resolve_index_path

if TYPE_CHECKING:
    from sage_stream.engine.scheduler import DispatchPlan
    from sage_stream.graph.dependency_graph import DependencyGraph
    from sage_stream.git import Git

MIN_GIT = (2, 38, 0)


def run_stream(options: StreamOptions) -> int:
    """Check the flags, find out what needs git and the machine, resolve the settings, then
    (unless --dry-run) take the run lock and run; errors come before anything is changed."""
    from sage_stream.agents.registry import get_agent
    from sage_stream.git import Git
    from sage_stream.process.cpus import cpu_budget
    from sage_stream.process.sandbox import probe

    options = _check_mode_flags(options)
    index_path = resolve_index_path(options.index)
    store = IndexStore(index_path)  # one for the whole run: it reads the file once while nothing changes it
    loaded, graph = _load_valid(store)
    sage_dir = index_path.parent.parent
    config = load_config(sage_dir)
    git = Git(_repo_root(index_path), worktree_lock=SagePaths(sage_dir).worktree_lock)
    repo = _work_tree_of(git, index_path)
    if git.version() < MIN_GIT:
        raise SageError(f"git {'.'.join(map(str, git.version()))} is too old: sage stream needs git >= 2.38 "
                        "(for `git merge-tree --write-tree`)")
    name, agent_cmd = agent_choice(options, config)
    agent = get_agent(name, agent_cmd=agent_cmd, config=config.agent.model_dump())
    now = datetime.now(timezone.utc)
    probed = probe() if sandbox_mode(options, config) != "none" else None  # once per run
    settings = resolve_settings(options, config, repo=repo, sage_dir=sage_dir, checked_out=git.current_branch(repo),
                                index=loaded, now=now, cpus=cpu_budget(), agent=agent, ask=_ask_before_start,
                                probed=probed, graph=graph)
    if settings.remote:
        _check_remote(git, settings)
    elif git.rev_parse(f"refs/heads/{settings.target}") is None:
        raise SageError(f"target branch '{settings.target}' does not exist in {repo} (it needs at least one commit)")
    if options.dry_run:
        plan, ready = _make_plan(loaded, settings, now, graph=graph)
        checks = _agent_checks(name, options, config, plan)
        return _print_dry_run(loaded, plan, ready, settings, options.output == "json", agent_checks=checks)
    handed_over = [graph]  # this frame must not keep it (50 MB at 100,000 tickets) for the whole run
    del graph
    return _run_locked(settings, store, git, wait=options.wait, validated_graph=handed_over)


def _run_locked(settings: StreamSettings, store: IndexStore, git: Git, *, wait: bool,
                validated_graph: list[DependencyGraph] | None = None) -> int:
    """Hold the run lock, recover what an earlier run left, then run. `validated_graph`:
    the graph validation built, handed over to be used for the plan and then let go."""
    from sage_stream.durable import wait_until_freed
    from sage_stream.engine.display import make_display
    from sage_stream.engine.recovery import recover, release_after_remote_stop
    from sage_stream.engine.remote_landing import RemoteStopped
    from sage_stream.engine.run_lock import RunLock, RunOwner, describe_owner, process_identity
    from sage_stream.engine.run_record import new_run_id
    from sage_stream.engine.stream import local_stream_run
    from sage_stream.text import now_iso

    run_lock = RunLock(settings.sage_dir)
    settings.sage_dir.mkdir(parents=True, exist_ok=True)
    if not run_lock.acquire(wait=wait):
        click.echo(f"sage stream: {describe_owner(run_lock.owner())}; nothing to do here", err=False)
        return EXIT_OK
    try:
        run_id = new_run_id()
        pid, create_time = process_identity()
        run_lock.write_owner(RunOwner(pid=pid, pid_create_time=create_time, run_id=run_id, started=now_iso()))
        display = make_display(settings.output)
        run, recovery = local_stream_run(store, git, settings, display, run_id)
        try:
            recover(recovery)
            _say_whether_sandboxed(run, settings)
            _say_what_the_agent_lacks(run, settings)
            _say_which_identity(run, git)
            _warn_about_dirty_checkouts(run, git, settings.target)
            _warn_about_rewound_landings(run, git, settings.target, store)
            with gc_paused():
                graph = validated_graph.pop() if validated_graph else None
                plan, ready = _make_plan(store.load(), settings, datetime.now(timezone.utc), graph=graph)
                del graph
                if not ready:
                    _say_what_is_parked(run, plan)
                reachable = plan.reachable()  # every ticket this run may start: its plan, and what predictions count
                if ready:
                    _say_what_is_left_out(run, plan, reachable)
                tickets_meta = {tid: {"title": ticket.title, "estimate": ticket.estimate,
                                      "deps": list(ticket.dependencies)} for tid, ticket in reachable.items()}
                predicted = _predicted_makespan(reachable, settings.workers, settings.schedule)
            # What is alive now (the index, the plan: millions of objects at 100,000 tickets)
            # lives the whole run: left out of every later collection, which would otherwise
            # walk it all again (the run_started event's encoding alone: 1.9 s of collections).
            gc.freeze()
            try:
                code = run.execute(plan, tickets_meta, ready, predicted)
            finally:
                gc.unfreeze()
            _prune_landed_attempts(git, settings.target, run.states.current())
            return code
        except RemoteStopped as stopped:
            release_after_remote_stop(recovery, stopped.message)
            raise
        finally:
            run.runner.close()  # a Dask client, say: not left reconnecting once the run is over
            display.close()
            wait_until_freed()  # the index files the run replaced (durable.py): no descriptor outlives it
    finally:
        run_lock.release()


def _check_remote(git: Git, settings: StreamSettings) -> None:
    """--remote: the remote exists, answers, and has the target branch; else a clear error
    (exit 7 when it cannot be reached) before anything is changed."""
    from sage_stream.engine.remote_landing import RemoteTarget

    RemoteTarget(git, name=settings.remote or "", branch=settings.target).check_reachable()


def _make_plan(index: IndexView, settings: StreamSettings, now: datetime, *,
               graph: DependencyGraph | None = None) -> tuple[DispatchPlan, list[str]]:
    """The dispatch plan for `index` and the tickets ready to start now; `graph`: the one
    validation built, used when it is of these very tickets (recovery may have changed them)."""
    from sage_stream.engine.scheduler import DispatchPlan
    from sage_stream.graph.analysis import analyze

    analysis = analyze(index.tickets, now, graph=graph if graph is not None and graph.tickets is index.tickets else None)
    plan = DispatchPlan(tickets=index.by_id(), bottom_levels=analysis.bottom_level, now=now,
                        schedule=settings.schedule, only=settings.only, max_tickets=settings.max_tickets,
                        max_reruns=settings.max_reruns, unblocked=analysis.unblocked)
    return plan, plan.ready()


def _prune_landed_attempts(git: Git, target: str, tickets: dict[str, Ticket]) -> None:
    """Earlier attempts of tickets that have landed, kept as sage/ID-attempt-K, go once
    they hold nothing the target lacks (said on stderr: the run's own output has ended)."""
    from sage_stream.engine.kept_landing import prune_landed_attempts
    from sage_stream.tickets.models import State

    completed = [tid for tid, t in tickets.items() if t.state is State.COMPLETED]  # as of the last write
    try:
        pruned = prune_landed_attempts(git, target, completed)
    except SageError as error:  # housekeeping: the run's outcome and exit code stand
        click.echo(f"warning: could not prune earlier attempt branches: {error.message}", err=True)
        return
    if pruned:
        click.echo(f"deleted {len(pruned)} earlier attempt branch{'es' if len(pruned) != 1 else ''} of landed "
                   f"tickets, holding nothing {target} lacks: {', '.join(pruned)}", err=True)


def _selected(plan: DispatchPlan) -> list[Ticket]:
    """The tickets this run is about (all, or --ticket's)."""
    return [ticket for tid, ticket in plan.tickets.items() if plan.only is None or tid in plan.only]


def _say_what_is_parked(run, plan: DispatchPlan) -> None:
    """Nothing is ready: say which tickets wait for a time or for `sage retry`, and the command."""
    from sage_stream.engine import events as ev
    from sage_stream.graph.parked import describe_parked, parked_tickets

    for line in describe_parked(parked_tickets(_selected(plan), datetime.now(timezone.utc))):
        run.emit(ev.MESSAGE, None, level="warning", text=f"nothing is ready: {line}")


def _say_what_is_left_out(run, plan: DispatchPlan, reachable: Mapping[str, Ticket]) -> None:
    """Some tickets are ready, but not every unfinished one can be reached: say how many are
    left for a later run, what they wait on (a time, `sage retry`), and where to look."""
    from sage_stream.engine import events as ev
    from sage_stream.graph.parked import describe_parked, parked_tickets

    pending = plan.pending()
    left_out = len(pending) - len(reachable)
    if left_out <= 0:
        return
    its = "it is, or waits on, a ticket" if left_out == 1 else "they are, or wait on, tickets"
    run.emit(ev.MESSAGE, None, level="info", text=(
        f"{left_out} of the {len(pending)} unfinished ticket{'s' if len(pending) != 1 else ''} "
        f"{'is' if left_out == 1 else 'are'} left for a later run: {its} this run cannot start;"
        " `sage ready` says which and why"))
    # only DEFERRED tickets and those told to wait can be parked: a pass over those few
    candidates = [plan.tickets[tid] for tid in pending
                  if plan.tickets[tid].state is State.DEFERRED or plan.tickets[tid].not_before]
    for line in describe_parked(parked_tickets(candidates, datetime.now(timezone.utc))):
        run.emit(ev.MESSAGE, None, level="info", text=line)


def _say_which_identity(run, git: Git) -> None:
    """Once, at the start: the author of the landed commits when git has no identity here."""
    from sage_stream.engine import events as ev

    identity = git.fallback_identity()
    if identity is not None:
        run.emit(ev.MESSAGE, None, level="warning", text=(
            f"no git identity (user.name / user.email) is set for {git.repo}: landed commits are made as "
            f"{identity}; set one with `git config user.name ...` and `git config user.email ...`"))


def _say_whether_sandboxed(run, settings: StreamSettings) -> None:
    """Once, at the start: whether agents can write only their worktree (process/sandbox.py)."""
    from sage_stream.engine import events as ev

    if settings.sandbox.message:
        run.emit(ev.MESSAGE, None, level=settings.sandbox.level, text=settings.sandbox.message)


def _say_what_the_agent_lacks(run, settings: StreamSettings) -> None:
    """Once, at the start: no credentials for the agent, or its CLI's variables not passed."""
    from sage_stream.engine import events as ev
    from sage_stream.validation.agent_readiness import start_notes

    for note in start_notes(settings.agent):
        run.emit(ev.MESSAGE, None, level="warning", text=note)


def _agent_checks(name: str, options: StreamOptions, config, plan: DispatchPlan) -> list:
    """The dry run checks the agent that will run (--agent too): CLI, version, credentials;
    for `exec`, the `command` of every ticket the run can start (not of those it leaves parked)."""
    from sage_stream.validation.agent_readiness import agent_readiness

    return agent_readiness(name, config.agent.model_dump(), chosen_by="--agent" if options.agent else "[agent] preset",
                           tickets=list(plan.reachable().values()))


def _warn_about_dirty_checkouts(run, git, target: str) -> None:
    """Landings never move a checked-out target with uncommitted changes: they wait for it
    (engine/checkout_wait.py); said once at the start, and again when a landing waits."""
    from sage_stream.engine import events as ev
    from sage_stream.engine.checkout_wait import dirty_checkouts, waiting_message

    dirty = dirty_checkouts(git, target)
    if dirty:
        run.lander.announced_wait = text = waiting_message(target, dirty)  # the lander does not repeat it
        run.emit(ev.MESSAGE, None, level="warning", text=text, whole=True)


def _warn_about_rewound_landings(run, git, target: str, store: IndexStore) -> None:
    """Landed work rewound between runs is said at the start (engine/target_watch.py)."""
    from sage_stream.engine import events as ev
    from sage_stream.engine.target_watch import rewound_landing

    text = rewound_landing(git, target, store.load().index.tickets)
    if text:
        run.emit(ev.MESSAGE, None, level="error", text=text, whole=True)


def _check_mode_flags(options: StreamOptions) -> StreamOptions:
    """The flags' own rules (engine/settings.py), then whether there is a terminal to ask on."""
    options = check_mode_flags(options)
    if options.interactive and not options.dry_run and not sys.stdin.isatty():
        raise SageError("--interactive (the default) asks before each ticket, but there is no terminal to ask on:"
                        " pass --auto to run unattended")
    return options


def _load_valid(store: IndexStore) -> tuple[IndexView, DependencyGraph]:
    """The index, if `sage validate` finds no error in it (unsafe ids and paths, cycles,
    unknown dependencies, missing fields...), and its graph (built once, for the plan too);
    else a SageError and nothing is started."""
    from sage_stream.findings import Severity
    from sage_stream.graph.columns import Columns
    from sage_stream.graph.dependency_graph import DependencyGraph
    from sage_stream.validation.checks import index_findings

    index_path = store.path
    with gc_paused():  # 100,000 tickets: millions of objects that all stay alive; collections were 4 s
        loaded = store.load()
        columns = Columns.of(loaded.tickets)
        graph = DependencyGraph(loaded.tickets, columns=columns)
        errors = [f for f in index_findings(loaded, graph=graph, columns=columns) if f.severity is Severity.ERROR]
        # The index and its graph live as long as the run: out of the collector's sight, no
        # collection walks their millions of objects again (the first one, right after the
        # load, took 0.5 s at 100,000 tickets).
        gc.freeze()
    if errors:
        lines = "\n".join(f"  {finding.message}" for finding in errors[:20])
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise SageError(f"{index_path}: the ticket index has errors; nothing was started:\n{lines}{more}\n"
                        "Run `sage validate` for the full report.")
    return loaded, graph


def _work_tree_of(git: Git, index_path: Path) -> Path:
    """The repository's work tree; outside one, the message `sage validate` gives (exit 1)."""
    from sage_stream.git import GitError
    from sage_stream.validation.prerequisites import not_a_work_tree

    if not git.repo.is_dir():
        raise SageError(not_a_work_tree(str(index_path.parent)))
    try:
        return git.toplevel()
    except GitError:
        raise SageError(not_a_work_tree(str(index_path.parent))) from None


def _repo_root(index_path: Path) -> Path:
    return index_path.parent.parent.parent if index_path.parent.name == "tickets" else index_path.parent


def _ask_before_start(ticket: Ticket) -> str:
    answer = click.prompt(f"Start {ticket.id} \"{ticket.title}\"? [y]es / [s]kip / [q]uit", default="y",
                          show_default=False).strip().lower()
    if answer.startswith("q"):
        return "quit"
    if answer.startswith("s") or answer.startswith("n"):
        return "skip"
    return "yes"


def _predicted_makespan(pending: dict[str, Ticket], workers: int, schedule: str) -> float | None:
    """The makespan greedy list scheduling predicts for `pending` (what the run can start)."""
    from sage_stream.graph.simulate import simulate

    if not pending:
        return 0.0
    durations = {tid: t.estimate for tid, t in pending.items()}
    deps = {tid: list(t.dependencies) for tid, t in pending.items()}
    ranks = {tid: t.priority_rank for tid, t in pending.items()}
    files = {tid: t.files for tid, t in pending.items()}
    return round(simulate(durations, deps, workers, policy=schedule, priority_rank=ranks, files=files).makespan, 2)


def _print_dry_run(loaded: IndexView, plan, ready: list[str], settings: StreamSettings, as_json: bool, *,
                   agent_checks: list = ()) -> int:
    """The plan, and the agent's checks; exit 4 when one of them would halt the run."""
    from sage_stream.graph.simulate import simulate
    from sage_stream.validation.agent_readiness import setup_problems

    pending = plan.reachable()
    durations = {tid: t.estimate for tid, t in pending.items()}
    deps = {tid: list(t.dependencies) for tid, t in pending.items()}
    ranks = {tid: t.priority_rank for tid, t in pending.items()}
    files = {tid: t.files for tid, t in pending.items()}  # the scheduler's rule: overlapping ones never together
    schedule_result = simulate(durations, deps, settings.workers, policy=settings.schedule, priority_rank=ranks,
                               files=files)
    order = sorted(schedule_result.starts, key=lambda tid: (schedule_result.starts[tid][0], tid))
    waves: list[list[str]] = []
    last_start = None
    for tid in order:
        start = schedule_result.starts[tid][0]
        if last_start is None or start > last_start:
            waves.append([])
            last_start = start
        waves[-1].append(tid)
    if as_json:
        import json

        click.echo(json.dumps({
            "target": settings.target, "remote": settings.remote, "workers": settings.workers,
            "workers_reason": settings.workers_reason,
            "schedule": settings.schedule, "ready": ready, "order": order,
            "starts": {tid: {"start": s, "end": e, "worker": w} for tid, (s, e, w) in schedule_result.starts.items()},
            "predicted_makespan_minutes": schedule_result.makespan,
            "agent": {"name": settings.agent.name, "checks": [check.as_json() for check in agent_checks]},
        }, indent=2))
        return EXIT_SETUP if setup_problems(agent_checks) else EXIT_OK
    click.echo(f"dry run: nothing will be started or changed ({loaded.path})")
    click.echo(f"target branch: {settings.target}" + (f" on remote {settings.remote}" if settings.remote else ""))
    click.echo(f"workers: {settings.workers} ({settings.workers_reason})")
    click.echo(f"schedule: {settings.schedule}")
    click.echo(f"sandbox: {settings.sandbox.message}")
    click.echo(f"ready now ({len(ready)}): {', '.join(ready) if ready else 'none'}")
    if not ready:
        from sage_stream.graph.parked import describe_parked, parked_tickets

        for line in describe_parked(parked_tickets(_selected(plan), datetime.now(timezone.utc))):
            click.echo(f"  {line}")
    click.echo("predicted order (minute: tickets starting then):")
    for wave in waves:
        start = schedule_result.starts[wave[0]][0]
        names = ", ".join(f"{tid} ({plan.tickets[tid].estimate:g}m)" for tid in wave)
        click.echo(f"  {start:7.1f}  {names}")
    click.echo(f"predicted makespan: {schedule_result.makespan:.1f} min of agent time "
               f"for {len(pending)} ticket{'' if len(pending) == 1 else 's'} "
               f"({sum(durations.values()):.1f} min of work)")
    left_out = plan.pending_count() - len(pending)
    if left_out:
        click.echo(f"not counted: {left_out} ticket{'' if left_out == 1 else 's'} this run cannot start "
                   "(parked until a later time or `sage retry`, or waiting on one that is)")
    for check in agent_checks:
        click.echo(f"agent: {'ok  ' if check.ok else 'FAIL' if check.blocking else 'note'}  {check.message}")
    if setup_problems(agent_checks):
        click.echo("setup error: the run would halt at its first ticket (exit 4); fix the FAIL line above")
        return EXIT_SETUP
    return EXIT_OK


@click.command("stream")
@click.option("--auto", is_flag=True, help="Run unattended (no question before each ticket).")
@click.option("--interactive", is_flag=True, help="Ask before each ticket starts (the default).")
@click.option("--parallel", is_flag=False, flag_value="auto", default=None, metavar="[N|auto]",
              help="Run N tickets at once (needs --auto); bare --parallel means auto.")
@click.option("--dry-run", is_flag=True, help="Print the order, workers and predicted makespan; change nothing.")
@click.option("--schedule", type=click.Choice(["greedy", "batch"]), default=None,
              help="greedy: start work the moment a slot frees (default); batch: the original's barrier.")
@click.option("--agent", "agent", default=None, help="exec (a ticket's own command), command, or an agent CLI.")
@click.option("--agent-cmd", default=None, metavar="CMD",
              help="Agent argv template with {prompt_file} {ticket} {worktree}; never run through a shell.")
@click.option("--ticket", "tickets", multiple=True, metavar="ID", help="Run only these tickets (repeatable).")
@click.option("--max-tickets", type=click.IntRange(min=1), default=None, help="Start at most N tickets.")
@click.option("--timeout", "timeout_minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="MINUTES", help="Per-ticket wall-clock limit (default 30).")
@click.option("--idle-timeout", "idle_timeout_minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="MINUTES", help="Stop an agent that prints nothing for this long (default 10).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event on stdout.")
@click.option("--plain", is_flag=True, help="Timestamped lines instead of the live view.")
@click.option("--index", default=None, metavar="PATH", help="The ticket index (default: found upward from here).")
@click.option("--target", default=None, metavar="BRANCH",
              help="Land on this branch (default: [stream] target, else where this backlog's earlier landings went,"
                   " else the checked-out branch).")
@click.option("--remote", default=None, metavar="NAME",
              help="Land on NAME's branch (the --target or checked-out branch name there): fetch, merge, and a"
                   " plain non-forced push per ticket; teammates may push to it meanwhile.")
@click.option("--push-branches", is_flag=True,
              help="With --remote: push each ticket's sage/<ID> branch too (failures are only warnings).")
@click.option("--wait", is_flag=True, help="If another run holds this repository, wait for it instead of exiting.")
@click.option("--max-load", type=click.FloatRange(min=0), default=None, metavar="L",
              help="Start nothing new while the 1-minute load average is above L.")
@click.option("--max-cost", type=click.FloatRange(min=0, min_open=True), default=None, metavar="USD",
              help="Start nothing new once the agents of this run have cost USD dollars (as they report it);"
                   " running agents finish and land.")
@click.option("--reuse-sessions", is_flag=True,
              help="A ticket whose only dependency landed in this run continues that agent session"
                   " (agents with sessions).")
@click.option("--sandbox", type=click.Choice(["auto", "bwrap", "none"]), default=None,
              help="Run agents and checks so that they can write only their worktree (bwrap): auto (default:"
                   " when bwrap works), bwrap (refuse to start without it), none.")
@click.option("--executor", default=None, metavar="local|dask://HOST:PORT",
              help="Where agents run: this machine (local, the default) or the workers of a Dask scheduler"
                   " (landing stays here). Needs pip install 'sage-stream[dask]'.")
@click.option("--hub", default=None, metavar="URL",
              help="With --executor dask://: the git URL workers fetch from and push attempts to"
                   " (default: the --remote's URL, else this repository's path).")
@click.option("--insecure", is_flag=True,
              help="Allow plain tcp to a Dask scheduler beyond this machine (it runs pickled code: prefer TLS).")
@click.option("--tls-ca", default=None, metavar="FILE", help="TLS to the Dask scheduler: CA certificate.")
@click.option("--tls-cert", default=None, metavar="FILE", help="TLS to the Dask scheduler: client certificate.")
@click.option("--tls-key", default=None, metavar="FILE", help="TLS to the Dask scheduler: client key.")
def command(auto: bool, interactive: bool, parallel: str | None, dry_run: bool, schedule: str | None,
            agent: str | None, agent_cmd: str | None, tickets: tuple[str, ...], max_tickets: int | None,
            timeout_minutes: float | None, idle_timeout_minutes: float | None, as_json: bool, plain: bool,
            index: str | None, target: str | None, remote: str | None, push_branches: bool, wait: bool,
            max_load: float | None, max_cost: float | None,
            reuse_sessions: bool, sandbox: str | None, executor: str | None, hub: str | None, insecure: bool,
            tls_ca: str | None, tls_cert: str | None, tls_key: str | None) -> int:
    """Run ready tickets with sub-agents in parallel worktrees and land each as one commit.

    Before a ticket lands, its checks run in its worktree (validation_config.verification_scripts,
    sub-task validation_script, [checks] commands); a failing check gives the agent another turn.

    Exit codes: 0 nothing failed (including nothing to do, another run is active, or
    --max-cost reached), 1 error, 3 some tickets deferred or rate limits stopped the run,
    6 --remote refused a push (hook, protected branch, permissions), 7 --remote could not be
    reached, 130 interrupted.
    """
    output = "json" if as_json else "plain" if plain else "auto"
    return run_stream(StreamOptions(
        auto=auto, interactive=interactive, parallel=parallel, dry_run=dry_run, schedule=schedule, agent=agent,
        agent_cmd=agent_cmd, tickets=tickets, max_tickets=max_tickets, timeout_minutes=timeout_minutes,
        idle_timeout_minutes=idle_timeout_minutes, output=output, index=index, target=target, wait=wait,
        remote=remote, push_branches=push_branches,
        max_load=max_load, max_cost=max_cost, reuse_sessions=reuse_sessions, sandbox=sandbox,
        executor=executor, hub=hub, insecure=insecure, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key,
    ))

