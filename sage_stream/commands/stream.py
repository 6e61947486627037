"""`sage stream`: decide the run from flags and config, then hand it to the engine."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import click

from sage_stream.config import SageConfig, load_config
from sage_stream.errors import EXIT_OK, SageError
from sage_stream.tickets.models import Ticket
from sage_stream.tickets.store import IndexStore, LoadedIndex, load_index, resolve_index_path

if TYPE_CHECKING:
    from sage_stream.engine.dispatch_control import RateLimitPolicy
    from sage_stream.engine.verification import Check

MIN_GIT = (2, 38, 0)


@dataclass
class StreamOptions:
    auto: bool = False
    interactive: bool = False
    parallel: str | None = None  # None: one worker; "auto"; or a number
    dry_run: bool = False
    schedule: str | None = None
    agent: str | None = None
    agent_cmd: str | None = None
    tickets: tuple[str, ...] = ()
    max_tickets: int | None = None
    timeout_minutes: float | None = None
    idle_timeout_minutes: float | None = None
    output: str = "auto"  # auto | live | plain | json
    index: str | None = None
    target: str | None = None
    wait: bool = False
    max_load: float | None = None
    max_cost: float | None = None  # US dollars
    reuse_sessions: bool = False


def run_stream(options: StreamOptions) -> int:
    from sage_stream.agents.registry import get_agent
    from sage_stream.process.cpus import decide_workers
    from sage_stream.engine.display import make_display
    from sage_stream.engine.recovery import recover
    from sage_stream.engine.run_lock import RunLock, describe_owner
    from sage_stream.engine.run_record import new_run_id
    from sage_stream.engine.scheduler import SCHEDULES, DispatchPlan
    from sage_stream.engine.settings import StreamSettings
    from sage_stream.engine.stream import StreamRun
    from sage_stream.git import Git

    _check_mode_flags(options)
    index_path = resolve_index_path(options.index)
    loaded = _load_valid(index_path)
    sage_dir = index_path.parent.parent
    config = load_config(sage_dir)
    git = Git(_repo_root(index_path), worktree_lock=sage_dir / "worktree.lock")
    repo = git.toplevel()
    if git.version() < MIN_GIT:
        raise SageError(f"git {'.'.join(map(str, git.version()))} is too old: sage stream needs git >= 2.38 "
                        "(for `git merge-tree --write-tree`)")
    target = options.target or config.stream.target or git.current_branch(repo)
    if not target:
        raise SageError(f"{repo}: HEAD is detached: check out the branch tickets should land on, or pass --target")
    if git.rev_parse(f"refs/heads/{target}") is None:
        raise SageError(f"target branch '{target}' does not exist in {repo} (it needs at least one commit)")
    schedule = options.schedule or config.stream.schedule
    if schedule not in SCHEDULES:
        raise SageError(f"--schedule must be one of {', '.join(SCHEDULES)}, not {schedule!r}")
    agent = get_agent(options.agent or config.agent.preset or ("command" if (options.agent_cmd or config.agent.command) else "exec"),
                      agent_cmd=options.agent_cmd or config.agent.command, config=config.agent.model_dump())
    checks = _project_checks(config, sage_dir)
    only = frozenset(options.tickets) if options.tickets else None
    _check_selected(loaded, only)

    def make_plan(index: LoadedIndex) -> tuple[DispatchPlan, list[str]]:
        from sage_stream.graph.analysis import analyze

        analysis = analyze(index.tickets)
        plan = DispatchPlan(tickets=index.index.by_id(), bottom_levels=analysis.bottom_level,
                            now=datetime.now(timezone.utc), schedule=schedule, only=only,
                            max_tickets=options.max_tickets, max_reruns=config.stream.max_reruns)
        return plan, plan.ready()

    plan, ready = make_plan(loaded)
    requested = _requested_workers(options, config)
    # Cap by what this run could ever start, not by what is ready this instant: tickets
    # unblock as others land (a backlog with one root still fans out).
    startable = _startable_count(plan)
    decision = decide_workers(None if requested == "auto" else requested, startable or 1)
    if requested is None:
        decision = type(decision)(workers=1, reason="one worker (pass --auto --parallel to run several)")

    if options.dry_run:
        return _print_dry_run(loaded, plan, ready, decision, schedule, target, options.output == "json")

    run_lock = RunLock(sage_dir)
    sage_dir.mkdir(parents=True, exist_ok=True)
    if not run_lock.acquire(wait=options.wait):
        click.echo(f"sage stream: {describe_owner(run_lock.owner())}; nothing to do here", err=False)
        return EXIT_OK
    try:
        from sage_stream.engine.run_lock import RunOwner, process_identity
        from sage_stream.text import now_iso

        run_id = new_run_id()
        pid, create_time = process_identity()
        run_lock.write_owner(RunOwner(pid=pid, pid_create_time=create_time, run_id=run_id, started=now_iso()))
        display = make_display("plain" if (options.interactive and options.output == "auto") else options.output)
        settings = StreamSettings(
            repo=repo, sage_dir=sage_dir, target=target, workers=decision.workers, workers_reason=decision.reason,
            schedule=schedule, agent=agent,
            timeout_s=60 * (options.timeout_minutes or config.agent.timeout_minutes or config.stream.timeout_minutes),
            idle_timeout_s=60 * (options.idle_timeout_minutes or config.stream.idle_timeout_minutes),
            grace_s=config.stream.grace_seconds, max_reruns=config.stream.max_reruns,
            max_attempts=config.stream.max_attempts, retry_backoff_s=60 * config.stream.retry_backoff_minutes,
            only=only, max_tickets=options.max_tickets,
            max_load=options.max_load if options.max_load is not None else config.stream.max_load,
            confirm=_ask_before_start if options.interactive else None, config=config,
            max_cost_usd=options.max_cost if options.max_cost is not None else config.stream.max_cost_usd,
            reuse_sessions=options.reuse_sessions or config.agent.reuse_sessions,
            checks=checks, check_timeout_s=60 * config.checks.timeout_minutes,
            max_fix_turns=config.checks.max_fix_turns, check_parallel=config.checks.max_parallel,
            check_env=[*config.agent.env, *config.checks.env], rate_limits=_rate_limit_policy(config),
        )
        store = IndexStore(index_path)
        run = StreamRun(store, git, settings, display, run_id)
        try:
            recover(run)
            _warn_about_dirty_checkouts(run, git, target)
            plan, ready = make_plan(store.load())
            tickets_meta = {tid: {"title": t.title, "estimate": t.estimate} for tid, t in plan.tickets.items()
                            if tid not in plan.done and (only is None or tid in only)}
            predicted = _predicted_makespan(plan, decision.workers, schedule)
            return run.execute(plan, tickets_meta, ready, predicted)
        finally:
            display.close()
    finally:
        run_lock.release()


def _project_checks(config: SageConfig, sage_dir: Path) -> list[Check]:
    """`[checks] commands`, parsed now: a check that cannot run stops the run before it starts."""
    from sage_stream.agents.environment import check_passthrough
    from sage_stream.engine.verification import project_checks

    try:
        check_passthrough(config.checks.env)
    except SageError as error:
        raise SageError(f"{sage_dir / 'config.toml'}: [checks] {error.message.removeprefix('[agent] ')}") from None
    return project_checks(config.checks.commands, config_path=str(sage_dir / "config.toml"))


def _rate_limit_policy(config: SageConfig) -> RateLimitPolicy:
    from sage_stream.engine.dispatch_control import RateLimitPolicy

    stream = config.stream
    return RateLimitPolicy(backoff_s=stream.rate_limit_backoff_seconds,
                           max_backoff_s=max(stream.rate_limit_max_backoff_seconds, stream.rate_limit_backoff_seconds),
                           stop_after=stream.rate_limit_stop_after, far_reset_s=60 * stream.quota_wait_minutes)


def _warn_about_dirty_checkouts(run, git, target: str) -> None:
    """Landings move the target by ref; a checkout of it with uncommitted changes is never
    touched, so it falls behind - and a later `git commit -a` there would undo landed work."""
    from sage_stream.engine import events as ev

    for tree in git.worktrees():
        if tree.branch == target and tree.path.is_dir() and not git.is_clean(tree.path):
            run.emit(ev.MESSAGE, None, level="warning", text=(
                f"{tree.path} has '{target}' checked out with uncommitted changes: sage lands on '{target}' "
                "by ref and never touches that work tree, so it will fall behind (each landing says how "
                "to catch up). Commit or stash first, or land on another branch with --target."))


def _startable_count(plan) -> int:
    from sage_stream.graph.ordering import is_startable

    return sum(1 for tid, t in plan.tickets.items()
               if tid not in plan.done and (plan.only is None or tid in plan.only) and is_startable(t, plan.now))


def _check_mode_flags(options: StreamOptions) -> None:
    if options.auto and options.interactive:
        raise SageError("--auto and --interactive exclude each other")
    if not options.auto and not options.dry_run:
        options.interactive = True  # Sage's default
    if options.parallel is not None and not options.auto and not options.dry_run:
        raise SageError("--parallel needs --auto: parallel workers cannot each stop to ask (Sage's rule)")
    if options.interactive and not options.dry_run and not sys.stdin.isatty():
        raise SageError("--interactive (the default) asks before each ticket, but there is no terminal to ask on:"
                        " pass --auto to run unattended")


def _requested_workers(options: StreamOptions, config: SageConfig) -> int | str | None:
    value = options.parallel
    if value is None and options.auto and config.stream.parallel is not None:
        value = str(config.stream.parallel)
    if value is None:
        return None
    if value == "auto":
        return "auto"
    try:
        number = int(value)
    except ValueError:
        raise SageError(f"--parallel takes a number or 'auto', not {value!r}")
    if number < 1:
        raise SageError(f"--parallel must be at least 1, not {number}")
    return number


def _load_valid(index_path: Path) -> LoadedIndex:
    """The index, if `sage validate` finds no error in it (unsafe ids and paths, cycles,
    unknown dependencies, missing fields...); else a SageError and nothing is started."""
    from sage_stream.validation.checks import index_findings
    from sage_stream.findings import Severity

    loaded = load_index(index_path)
    errors = [f for f in index_findings(loaded) if f.severity is Severity.ERROR]
    if errors:
        lines = "\n".join(f"  {finding.message}" for finding in errors[:20])
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise SageError(f"{index_path}: the ticket index has errors; nothing was started:\n{lines}{more}\n"
                        "Run `sage validate` for the full report.")
    return loaded


def _repo_root(index_path: Path) -> Path:
    return index_path.parent.parent.parent if index_path.parent.name == "tickets" else index_path.parent


def _check_selected(loaded: LoadedIndex, only: frozenset[str] | None) -> None:
    if not only:
        return
    known = loaded.index.by_id()
    unknown = sorted(only - set(known))
    if unknown:
        raise SageError(f"{loaded.path}: --ticket names tickets that are not in the index: {', '.join(unknown)}")


def _ask_before_start(ticket: Ticket) -> str:
    answer = click.prompt(f"Start {ticket.id} \"{ticket.title}\"? [y]es / [s]kip / [q]uit", default="y",
                          show_default=False).strip().lower()
    if answer.startswith("q"):
        return "quit"
    if answer.startswith("s") or answer.startswith("n"):
        return "skip"
    return "yes"


def _predicted_makespan(plan, workers: int, schedule: str) -> float | None:
    from sage_stream.graph.simulate import simulate

    pending = {tid: t for tid, t in plan.tickets.items()
               if tid not in plan.done and (plan.only is None or tid in plan.only)}
    if not pending:
        return 0.0
    durations = {tid: t.estimate for tid, t in pending.items()}
    deps = {tid: list(t.dependencies) for tid, t in pending.items()}
    ranks = {tid: t.priority_rank for tid, t in pending.items()}
    return round(simulate(durations, deps, workers, policy=schedule, priority_rank=ranks).makespan, 2)


def _print_dry_run(loaded: LoadedIndex, plan, ready: list[str], decision, schedule: str, target: str,
                   as_json: bool) -> int:
    from sage_stream.graph.simulate import simulate

    pending = {tid: t for tid, t in plan.tickets.items()
               if tid not in plan.done and tid not in plan.failed and (plan.only is None or tid in plan.only)
               and t.state.value in ("UNPROCESSED", "DEFERRED")}
    durations = {tid: t.estimate for tid, t in pending.items()}
    deps = {tid: list(t.dependencies) for tid, t in pending.items()}
    ranks = {tid: t.priority_rank for tid, t in pending.items()}
    schedule_result = simulate(durations, deps, decision.workers, policy=schedule, priority_rank=ranks)
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
            "target": target, "workers": decision.workers, "workers_reason": decision.reason,
            "schedule": schedule, "ready": ready, "order": order,
            "starts": {tid: {"start": s, "end": e, "worker": w} for tid, (s, e, w) in schedule_result.starts.items()},
            "predicted_makespan_minutes": schedule_result.makespan,
        }, indent=2))
        return EXIT_OK
    click.echo(f"dry run: nothing will be started or changed ({loaded.path})")
    click.echo(f"target branch: {target}")
    click.echo(f"workers: {decision.workers} ({decision.reason})")
    click.echo(f"schedule: {schedule}")
    click.echo(f"ready now ({len(ready)}): {', '.join(ready) if ready else 'none'}")
    click.echo("predicted order (minute: tickets starting then):")
    for wave in waves:
        start = schedule_result.starts[wave[0]][0]
        names = ", ".join(f"{tid} ({plan.tickets[tid].estimate:g}m)" for tid in wave)
        click.echo(f"  {start:7.1f}  {names}")
    click.echo(f"predicted makespan: {schedule_result.makespan:.1f} min of agent time "
               f"for {len(pending)} tickets ({sum(durations.values()):.1f} min of work)")
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
@click.option("--target", default=None, metavar="BRANCH", help="Land on this branch (default: the checked-out one).")
@click.option("--wait", is_flag=True, help="If another run holds this repository, wait for it instead of exiting.")
@click.option("--max-load", type=click.FloatRange(min=0), default=None, metavar="L",
              help="Start nothing new while the 1-minute load average is above L.")
@click.option("--max-cost", type=click.FloatRange(min=0, min_open=True), default=None, metavar="USD",
              help="Start nothing new once the agents of this run have cost USD dollars (as they report it);"
                   " running agents finish and land.")
@click.option("--reuse-sessions", is_flag=True,
              help="A ticket whose only dependency landed in this run continues that agent session"
                   " (agents with sessions).")
def command(auto: bool, interactive: bool, parallel: str | None, dry_run: bool, schedule: str | None,
            agent: str | None, agent_cmd: str | None, tickets: tuple[str, ...], max_tickets: int | None,
            timeout_minutes: float | None, idle_timeout_minutes: float | None, as_json: bool, plain: bool,
            index: str | None, target: str | None, wait: bool, max_load: float | None, max_cost: float | None,
            reuse_sessions: bool) -> int:
    """Run ready tickets with sub-agents in parallel worktrees and land each as one commit.

    Before a ticket lands, its checks run in its worktree (validation_config.verification_scripts,
    sub-task validation_script, [checks] commands); a failing check gives the agent another turn.

    Exit codes: 0 nothing failed (including nothing to do, another run is active, or
    --max-cost reached), 1 error, 3 some tickets deferred or rate limits stopped the run,
    130 interrupted.
    """
    output = "json" if as_json else "plain" if plain else "auto"
    return run_stream(StreamOptions(
        auto=auto, interactive=interactive, parallel=parallel, dry_run=dry_run, schedule=schedule, agent=agent,
        agent_cmd=agent_cmd, tickets=tickets, max_tickets=max_tickets, timeout_minutes=timeout_minutes,
        idle_timeout_minutes=idle_timeout_minutes, output=output, index=index, target=target, wait=wait,
        max_load=max_load, max_cost=max_cost, reuse_sessions=reuse_sessions,
    ))

