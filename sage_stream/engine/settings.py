"""The settings of one `sage stream` run, decided from flags, config and defaults.

`resolve_settings` is the one place where a flag beats the config and the config beats the
default. It is pure (no git, files, environment or clock): the command finds out what
needs them - the checked-out branch, the index, the CPUs, the agent, the time - and
passes it in.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sage_stream.agents.base import Agent
from sage_stream.agents.environment import check_passthrough
from sage_stream.config import SageConfig
from sage_stream.engine.dispatch_control import RateLimitPolicy
from sage_stream.engine.executor_settings import ExecutorChoice, resolve_executor
from sage_stream.engine.remote_landing import check_remote_name
from sage_stream.engine.scheduler import SCHEDULES
from sage_stream.engine.verification import Check, project_checks
from sage_stream.errors import SageError
from sage_stream.graph.ordering import startable_count
from sage_stream.paths import SagePaths
from sage_stream.process.cpus import MAX_AUTO_WORKERS, CpuBudget, WorkerDecision, decide_workers
from sage_stream.process.sandbox import Probe, SandboxChoice, check_mode, decide_sandbox
from sage_stream.tickets.models import State, Ticket
from sage_stream.tickets.store import IndexView

if TYPE_CHECKING:
    from sage_stream.graph.dependency_graph import DependencyGraph

ONE_WORKER = "one worker (pass --auto --parallel to run several)"


@dataclass(frozen=True)
class StreamOptions:
    """The flags of `sage stream`, as parsed; None where not given."""

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
    remote: str | None = None  # --remote NAME: land on NAME's branch
    push_branches: bool = False
    wait: bool = False
    max_load: float | None = None
    max_cost: float | None = None  # US dollars
    reuse_sessions: bool = False
    sandbox: str | None = None  # auto | bwrap | none
    executor: str | None = None  # local | dask://HOST:PORT (engine/executor_settings.py)
    hub: str | None = None
    insecure: bool = False
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None


@dataclass(frozen=True)
class StreamSettings:
    """Everything the loop needs to know, already decided from flags and config."""

    repo: Path
    sage_dir: Path
    target: str
    workers: int
    workers_reason: str
    schedule: str
    agent: Agent
    timeout_s: float
    idle_timeout_s: float
    grace_s: float
    max_reruns: int
    max_attempts: int
    retry_backoff_s: float
    only: frozenset[str] | None = None
    max_tickets: int | None = None
    max_load: float | None = None
    confirm: Callable[[Ticket], str] | None = None  # interactive: "yes" | "skip" | "quit"
    max_cost_usd: float | None = None  # start nothing new once the run's agents cost this much
    reuse_sessions: bool = False  # continue the session of a ticket's only dependency
    checks: Sequence[Check] = ()  # the project's [checks] commands, for every ticket
    check_timeout_s: float = 600.0
    max_fix_turns: int = 2  # when the ticket does not say (validation_config.max_retries)
    check_parallel: int = 4
    check_env: Sequence[str] = ()  # names passed to checks beyond the standard set
    rate_limits: RateLimitPolicy = field(default_factory=RateLimitPolicy)
    clock: Callable[[], float] = time.time  # the dispatch controller's clock
    output: str = "auto"  # the display: auto | live | plain | json
    sandbox: SandboxChoice = SandboxChoice(None, "")  # None: agents run unsandboxed
    writable: tuple[str, ...] = ()  # [agent] writable: more paths sandboxed agents may write
    remote: str | None = None  # land on this remote's `target` branch (engine/remote_landing.py)
    push_branches: bool = False  # push each ticket's sage/<ID> branch to the remote too
    target_reason: str = ""  # why `target` (said once at the start, kept in the run record)
    executor: ExecutorChoice | None = None  # None: agents run on this machine

    def described(self) -> dict[str, Any]:
        """What a run says about its settings when it starts (the `run_started` event)."""
        return {"target": self.target, "target_reason": self.target_reason, "workers": self.workers,
                "workers_reason": self.workers_reason, "schedule": self.schedule, "agent": self.agent.name}


def check_mode_flags(options: StreamOptions) -> StreamOptions:
    """`options` with `interactive` decided (Sage asks before each ticket unless --auto), or a
    SageError for mode flags that exclude each other. Calling it again changes nothing."""
    if options.auto and options.interactive:
        raise SageError("--auto and --interactive exclude each other")
    if not options.auto and not options.dry_run:
        options = replace(options, interactive=True)  # Sage's default
    if options.parallel is not None and not options.auto and not options.dry_run:
        raise SageError("--parallel needs --auto: parallel workers cannot each stop to ask (Sage's rule)")
    return options


def agent_choice(options: StreamOptions, config: SageConfig) -> tuple[str, str | None]:
    """The agent to run and the `command` agent's template: --agent over [agent] preset; without
    either, `command` when there is a template (--agent-cmd over [agent] command), else `exec`."""
    agent_cmd = options.agent_cmd or config.agent.command
    return options.agent or config.agent.preset or ("command" if agent_cmd else "exec"), agent_cmd


def sandbox_mode(options: StreamOptions, config: SageConfig) -> str:
    """--sandbox over [agent] sandbox (the config's value is checked when it loads)."""
    if options.sandbox is None:
        return config.agent.sandbox
    return check_mode(options.sandbox, source="--sandbox")


def resolve_settings(options: StreamOptions, config: SageConfig, *, repo: Path, sage_dir: Path,
                     checked_out: str | None, index: IndexView, now: datetime, cpus: CpuBudget,
                     agent: Agent, ask: Callable[[Ticket], str], probed: Probe | None = None,
                     graph: DependencyGraph | None = None) -> StreamSettings:
    """The run's settings: each flag over its config key over the default.

    The facts: `checked_out` the branch checked out in `repo` (None when HEAD is detached),
    `index` the validated ticket index, `cpus` this process's CPU budget, `agent` the agent
    `agent_choice` names, `ask` the question before each ticket of an interactive run, `probed`
    whether bwrap works here (process/sandbox.py `probe`; None when not probed), `graph` the
    index's dependency graph when validation built it already.
    A SageError names the first setting that cannot be used, in the order written here.
    """
    options = check_mode_flags(options)
    target, target_reason = backlog_target(options, config, checked_out=checked_out, repo=repo,
                                           tickets=index.index.tickets)
    remote, push_branches = _remote(options, config, sage_dir=sage_dir)
    executor = resolve_executor(executor=options.executor, hub=options.hub, insecure=options.insecure,
                                tls_ca=options.tls_ca, tls_cert=options.tls_cert, tls_key=options.tls_key,
                                config=config, config_path=str(SagePaths(sage_dir).config))
    schedule = options.schedule or config.stream.schedule
    if schedule not in SCHEDULES:
        raise SageError(f"--schedule must be one of {', '.join(SCHEDULES)}, not {schedule!r}")
    checks = _project_checks(config, sage_dir)
    sandbox = decide_sandbox(sandbox_mode(options, config), probed)
    writable = _writable_paths(config, sage_dir)
    tickets = index.by_id()
    only = _selected_tickets(options, tickets, index_path=index.path)
    workers = _workers(options, config, index=index, tickets=tickets.values(), only=only, now=now, cpus=cpus,
                       graph=graph)
    stream = config.stream
    return StreamSettings(
        repo=repo, sage_dir=sage_dir, target=target, workers=workers.workers, workers_reason=workers.reason,
        schedule=schedule, agent=agent,
        timeout_s=60 * (options.timeout_minutes or config.agent.timeout_minutes or stream.timeout_minutes),
        idle_timeout_s=60 * (options.idle_timeout_minutes or stream.idle_timeout_minutes),
        grace_s=stream.grace_seconds, max_reruns=stream.max_reruns, max_attempts=stream.max_attempts,
        retry_backoff_s=60 * stream.retry_backoff_minutes, only=only, max_tickets=options.max_tickets,
        max_load=options.max_load if options.max_load is not None else stream.max_load,
        confirm=ask if options.interactive else None,
        max_cost_usd=options.max_cost if options.max_cost is not None else stream.max_cost_usd,
        reuse_sessions=options.reuse_sessions or config.agent.reuse_sessions,
        checks=tuple(checks), check_timeout_s=60 * config.checks.timeout_minutes,
        max_fix_turns=config.checks.max_fix_turns, check_parallel=config.checks.max_parallel,
        check_env=(*config.agent.env, *config.checks.env), rate_limits=_rate_limit_policy(config),
        # questions are asked between the lines of the display: a live view would draw over them
        output="plain" if (options.interactive and options.output == "auto") else options.output,
        sandbox=sandbox, writable=writable, remote=remote, push_branches=push_branches, executor=executor,
        target_reason=target_reason,
    )


def backlog_target(options: StreamOptions, config: SageConfig, *, checked_out: str | None, repo: Path,
                   tickets: Sequence[Ticket]) -> tuple[str, str]:
    """The branch this run lands on, and why: --target, else [stream] target, else the branch
    this backlog's earlier landings went to (recorded in the index; the latest, should they
    differ), else the checked-out branch. A backlog keeps its target when the user checks
    out another branch; one run lands on one branch."""
    if options.target:
        return options.target, "given by --target"
    if config.stream.target:
        return config.stream.target, "[stream] target in .sage/config.toml"
    earlier = _earlier_target(tickets)
    if earlier:
        other = f" (you have '{checked_out}' checked out; pass --target {checked_out} to land there)" \
            if checked_out and checked_out != earlier else ""
        return earlier, f"this backlog's earlier landings went there{other}"
    if not checked_out:
        raise SageError(f"{repo}: HEAD is detached: check out the branch tickets should land on, or pass --target")
    return checked_out, "the checked-out branch"


def _earlier_target(tickets: Sequence[Ticket]) -> str | None:
    """The target recorded for the most recently completed ticket that has one."""
    landed = [(ticket.completed_at or "", ticket.git.target) for ticket in tickets
              if ticket.git is not None and ticket.git.target and ticket.state is State.COMPLETED]
    return max(landed)[1] if landed else None


def _remote(options: StreamOptions, config: SageConfig, *, sage_dir: Path) -> tuple[str | None, bool]:
    """--remote over [stream] remote (None: land locally); --push-branches or [stream]
    push_branches, which needs a remote."""
    if options.remote is not None:
        remote = check_remote_name(options.remote, source="--remote")
    elif config.stream.remote is not None:
        remote = check_remote_name(config.stream.remote, source=f"{SagePaths(sage_dir).config}: [stream] remote")
    else:
        remote = None
    push_branches = options.push_branches or config.stream.push_branches
    if push_branches and remote is None:
        raise SageError("--push-branches needs a remote to push to: pass --remote NAME or set [stream] remote")
    return remote, push_branches


def _project_checks(config: SageConfig, sage_dir: Path) -> list[Check]:
    """`[checks] commands`, parsed now: a check that cannot run stops the run before it starts."""
    config_path = SagePaths(sage_dir).config
    try:
        check_passthrough(config.checks.env)
    except SageError as error:
        raise SageError(f"{config_path}: [checks] {error.message.removeprefix('[agent] ')}") from None
    return project_checks(config.checks.commands, config_path=str(config_path))


def _writable_paths(config: SageConfig, sage_dir: Path) -> tuple[str, ...]:
    """`[agent] writable`: each an absolute path or one under the agent's HOME (`~/...`)."""
    for path in config.agent.writable:
        if not (path.startswith("/") or path == "~" or path.startswith("~/")) or "\0" in path:
            raise SageError(f"{SagePaths(sage_dir).config}: [agent] writable: {path!r} must be an absolute path or"
                            " start with ~/ (the agent's HOME)")
    return tuple(config.agent.writable)


def _selected_tickets(options: StreamOptions, tickets: Mapping[str, Ticket], *,
                      index_path: Path) -> frozenset[str] | None:
    """The --ticket IDs (None: every ticket), each of which must be in the index."""
    if not options.tickets:
        return None
    only = frozenset(options.tickets)
    unknown = sorted(only - set(tickets))
    if unknown:
        raise SageError(f"{index_path}: --ticket names tickets that are not in the index: {', '.join(unknown)}")
    return only


def _workers(options: StreamOptions, config: SageConfig, *, index: IndexView, tickets: Iterable[Ticket],
             only: frozenset[str] | None, now: datetime, cpus: CpuBudget,
             graph: DependencyGraph | None) -> WorkerDecision:
    """One worker unless asked for more (--parallel, or [stream] parallel with --auto);
    `auto` is the rule `sage validate` and `sage plan` show (process/cpus.py).

    Capped by what this run could ever start, not by what is ready this instant: tickets
    unblock as others land (a backlog with one root still fans out)."""
    requested = _requested_workers(options, config)
    if requested is None:
        return WorkerDecision(workers=1, reason=ONE_WORKER)
    most = max(MAX_AUTO_WORKERS, 0 if requested == "auto" else requested)  # no cap on workers needs more
    startable = startable_count(tickets, now, only, at_most=most)
    if requested != "auto":
        return decide_workers(requested, startable, budget=cpus)
    from sage_stream.graph.analysis import analyze

    useful = analyze(index.tickets, graph=graph).recommended_workers
    return decide_workers(None, startable, budget=cpus, useful=useful)


def _requested_workers(options: StreamOptions, config: SageConfig) -> int | Literal["auto"] | None:
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


def _rate_limit_policy(config: SageConfig) -> RateLimitPolicy:
    stream = config.stream
    return RateLimitPolicy(backoff_s=stream.rate_limit_backoff_seconds,
                           max_backoff_s=max(stream.rate_limit_max_backoff_seconds, stream.rate_limit_backoff_seconds),
                           stop_after=stream.rate_limit_stop_after, far_reset_s=60 * stream.quota_wait_minutes)
