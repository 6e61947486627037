"""A run's settings: each flag beats its config key, which beats the default.

`resolve_settings` is pure, so these tests need no repository, git or process: the facts the
command would find out (checked-out branch, index, CPUs, agent) are plain values here.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from sage_stream.config import SageConfig
from sage_stream.process.cpus import CpuBudget
from sage_stream.engine.dispatch_control import RateLimitPolicy
from sage_stream.engine.settings import (
    ONE_WORKER,
    StreamOptions,
    StreamSettings,
    agent_choice,
    check_mode_flags,
    resolve_settings,
)
from sage_stream.errors import SageError
from sage_stream.process.sandbox import Probe
from sage_stream.tickets.models import Ticket, TicketIndex
from sage_stream.tickets.store import IndexView

REPO = Path("/nowhere/repo")  # never looked at: resolve_settings touches no file
SAGE_DIR = REPO / ".sage"
INDEX_PATH = SAGE_DIR / "tickets" / "index.json"
NOW = datetime(2030, 6, 1, 12, 0, tzinfo=timezone.utc)
AGENT: Any = object()
AUTO = StreamOptions(auto=True)


def ask(ticket: Ticket) -> str:
    return "yes"


def make_ticket(ticket_id: str, state: str = "UNPROCESSED", **fields: Any) -> Ticket:
    return Ticket.model_validate({"id": ticket_id, "title": f"Do {ticket_id}", "state": state, **fields})


FIVE_READY = [make_ticket(f"T-{n}") for n in range(1, 6)]


def config(**sections: dict[str, Any]) -> SageConfig:
    """A config as `.sage/config.toml` would give it: `config(stream={"target": "dev"})`."""
    return SageConfig.model_validate(sections)


def resolve(options: StreamOptions = AUTO, cfg: SageConfig | None = None, *, checked_out: str | None = "main",
            tickets: list[Ticket] | None = None, cpus: CpuBudget = CpuBudget(affinity=8, quota=None)) -> StreamSettings:
    index = IndexView(path=INDEX_PATH, index=TicketIndex(tickets=FIVE_READY if tickets is None else tickets))
    return resolve_settings(options, cfg or SageConfig(), repo=REPO, sage_dir=SAGE_DIR, checked_out=checked_out,
                            index=index, now=NOW, cpus=cpus, agent=AGENT, ask=ask)


def fails(message: str, options: StreamOptions = AUTO, cfg: SageConfig | None = None, **facts: Any) -> None:
    with pytest.raises(SageError) as raised:
        resolve(options, cfg, **facts)
    assert raised.value.message == message


# ---------------------------------------------------------------- target


@pytest.mark.parametrize(("flag", "configured", "checked_out", "target"), [
    ("release", "dev", "main", "release"),  # --target beats everything
    (None, "dev", "main", "dev"),  # [stream] target beats the checked-out branch
    (None, None, "main", "main"),  # the checked-out branch when neither says
    ("release", None, None, "release"),  # a detached HEAD is fine when told where to land
    (None, "dev", None, "dev"),
])
def test_target_is_the_flag_then_the_config_then_the_checked_out_branch(flag, configured, checked_out, target):
    settings = resolve(StreamOptions(auto=True, target=flag), config(stream={"target": configured}),
                       checked_out=checked_out)
    assert settings.target == target


def landed(ticket_id: str, target: str, at: str) -> Ticket:
    return make_ticket(ticket_id, "COMPLETED", completed_at=at, git={"branch": f"sage/{ticket_id}", "target": target})


@pytest.mark.parametrize(("flag", "configured", "checked_out", "target", "reason"), [
    ("release", "dev", "feature", "release", "given by --target"),
    (None, "dev", "feature", "dev", "[stream] target in .sage/config.toml"),
    (None, None, "feature", "main", "this backlog's earlier landings went there (you have 'feature' checked out; "
                                    "pass --target feature to land there)"),
    (None, None, "main", "main", "this backlog's earlier landings went there"),
    (None, None, None, "main", "this backlog's earlier landings went there"),  # even on a detached HEAD
])
def test_a_backlog_keeps_the_target_its_latest_landing_went_to(flag, configured, checked_out, target, reason):
    tickets = [landed("T-1", "old-main", "2030-01-01T00:00:00Z"), landed("T-2", "main", "2030-02-01T00:00:00Z"),
               make_ticket("T-3")]
    settings = resolve(StreamOptions(auto=True, target=flag), config(stream={"target": configured}),
                       checked_out=checked_out, tickets=tickets)
    assert (settings.target, settings.target_reason) == (target, reason)


def test_without_earlier_landings_the_target_is_the_checked_out_branch_and_says_so():
    settings = resolve(tickets=[make_ticket("T-1"), make_ticket("T-2", "DEFERRED", git={"target": "elsewhere"})])
    assert (settings.target, settings.target_reason) == ("main", "the checked-out branch")


def test_a_detached_head_without_a_target_is_an_error():
    fails(f"{REPO}: HEAD is detached: check out the branch tickets should land on, or pass --target",
          checked_out=None)


# ---------------------------------------------------------------- schedule


# ---------------------------------------------------------------- remote


@pytest.mark.parametrize(("flag", "configured", "target_flag", "remote", "target"), [
    ("origin", "upstream", None, "origin", "main"),  # --remote beats [stream] remote
    (None, "upstream", None, "upstream", "main"),  # the config's remote when no flag
    (None, None, None, None, "main"),  # neither: land on the local branch
    ("origin", None, "release", "origin", "release"),  # the target names the branch on the remote
])
def test_remote_is_the_flag_then_the_config_and_the_target_names_its_branch(flag, configured, target_flag, remote,
                                                                          target):
    settings = resolve(StreamOptions(auto=True, remote=flag, target=target_flag), config(stream={"remote": configured}))
    assert (settings.remote, settings.target) == (remote, target)


@pytest.mark.parametrize(("flag", "configured", "remote", "push"), [
    (True, False, "origin", True),
    (False, True, "origin", True),
    (False, False, "origin", False),
])
def test_push_branches_is_the_flag_or_the_config(flag, configured, remote, push):
    settings = resolve(StreamOptions(auto=True, remote=remote, push_branches=flag),
                       config(stream={"push_branches": configured}))
    assert settings.push_branches is push


@pytest.mark.parametrize(("options", "configured", "message"), [
    (StreamOptions(auto=True, remote="-uorigin"), {}, "--remote: '-uorigin' is not a git remote name"),
    (StreamOptions(auto=True, remote="a b"), {}, "--remote: 'a b' is not a git remote name"),
    (AUTO, {"remote": "../x"}, f"{SAGE_DIR / 'config.toml'}: [stream] remote: '../x' is not a git remote name"),
    (StreamOptions(auto=True, push_branches=True), {},
     "--push-branches needs a remote to push to: pass --remote NAME or set [stream] remote"),
    (AUTO, {"push_branches": True},
     "--push-branches needs a remote to push to: pass --remote NAME or set [stream] remote"),
])
def test_a_remote_that_cannot_be_a_remote_name_or_push_branches_without_one_is_an_error(options, configured, message):
    fails(message, options, config(stream=configured))


@pytest.mark.parametrize(("flag", "configured", "schedule"), [
    ("batch", "greedy", "batch"),
    ("greedy", "batch", "greedy"),
    (None, "batch", "batch"),
    (None, None, "greedy"),
])
def test_schedule_is_the_flag_then_the_config_then_greedy(flag, configured, schedule):
    cfg = config(stream={"schedule": configured}) if configured else SageConfig()
    assert resolve(StreamOptions(auto=True, schedule=flag), cfg).schedule == schedule


@pytest.mark.parametrize(("flag", "configured", "named"), [(None, "fastest", "fastest"), ("eager", "greedy", "eager")])
def test_an_unknown_schedule_is_an_error(flag, configured, named):
    fails(f"--schedule must be one of greedy, batch, not {named!r}",
          StreamOptions(auto=True, schedule=flag), config(stream={"schedule": configured}))


# ---------------------------------------------------------------- workers


AUTO_ON_8_CPUS = ("auto: min(8 usable CPUs (affinity 8, cgroup quota none) / 0.4 per agent = 20; 16,000 MB available"
                  " / 250 MB per agent = 64; at most 8; 5 recommended for this backlog) = 5")


@pytest.fixture(autouse=True)
def memory_available(monkeypatch):
    from sage_stream.process import cpus

    monkeypatch.setattr(cpus, "available_memory_mb", lambda: 16_000.0)


@pytest.mark.parametrize(("options", "configured", "workers", "reason"), [
    (AUTO, None, 1, ONE_WORKER),
    (StreamOptions(auto=True, parallel="3"), None, 3, "requested 3"),
    (AUTO, 2, 2, "requested 2"),  # [stream] parallel counts with --auto
    (AUTO, "auto", 5, AUTO_ON_8_CPUS),
    (StreamOptions(auto=True, parallel="3"), 2, 3, "requested 3"),  # --parallel beats [stream] parallel
    (StreamOptions(auto=True, parallel="auto"), 2, 5, AUTO_ON_8_CPUS),
    (StreamOptions(interactive=True), 4, 1, ONE_WORKER),  # ... but only with --auto
    (StreamOptions(dry_run=True), 4, 1, ONE_WORKER),
    (StreamOptions(dry_run=True, parallel="2"), None, 2, "requested 2"),  # a dry run may preview --parallel
    (StreamOptions(auto=True, parallel="9"), None, 5, "requested 9, capped at the 5 tickets this run can start"),
])
def test_workers_are_one_unless_asked_for_more(options, configured, workers, reason):
    settings = resolve(options, config(stream={"parallel": configured}))
    assert (settings.workers, settings.workers_reason) == (workers, reason)


def test_auto_workers_use_the_cpu_budget_passed_in():
    settings = resolve(StreamOptions(auto=True, parallel="auto"), cpus=CpuBudget(affinity=16, quota=3.5))
    assert settings.workers == 5
    assert settings.workers_reason.startswith("auto: min(4 usable CPUs (affinity 16, cgroup quota 3.5) / 0.4 per agent"
                                              " = 10;")


@pytest.mark.parametrize(("tickets", "only", "workers"), [
    # A dependency does not lower the cap: B-1 becomes ready when A-1 lands.
    ([make_ticket("A-1"), make_ticket("B-1", dependencies=["A-1"])], (), 2),
    # Completed, deferred for good and not-yet-due tickets will not start in this run.
    ([make_ticket("A-1"), make_ticket("B-1", "COMPLETED"), make_ticket("C-1", "DEFERRED"),
      make_ticket("D-1", not_before="2030-06-02T00:00:00Z"), make_ticket("E-1", not_before="2030-05-01T00:00:00Z")],
     (), 2),
    # A retryable deferred ticket will.
    ([make_ticket("A-1"), make_ticket("B-1", "DEFERRED", defer_reason={"category": "timeout", "retryable": True})],
     (), 2),
    # --ticket: only the selected ones count.
    (FIVE_READY, ("T-1", "T-2"), 2),
    # Nothing startable: one worker, said so.
    ([make_ticket("A-1", "COMPLETED")], (), 1),
])
def test_workers_are_capped_by_the_tickets_this_run_could_ever_start(tickets, only, workers):
    settings = resolve(StreamOptions(auto=True, parallel="8", tickets=only), tickets=tickets)
    assert settings.workers == workers


@pytest.mark.parametrize(("options", "configured", "message"), [
    (StreamOptions(auto=True, parallel="many"), None, "--parallel takes a number or 'auto', not 'many'"),
    (StreamOptions(auto=True, parallel="0"), None, "--parallel must be at least 1, not 0"),
    (AUTO, "lots", "--parallel takes a number or 'auto', not 'lots'"),
    (AUTO, -2, "--parallel must be at least 1, not -2"),
])
def test_a_worker_count_that_is_not_a_positive_number_or_auto_is_an_error(options, configured, message):
    fails(message, options, config(stream={"parallel": configured}))


# ---------------------------------------------------------------- time limits


@pytest.mark.parametrize(("flag", "agent", "stream", "seconds"), [
    (5, 20, 40, 300),  # --timeout beats both config keys
    (None, 20, 40, 1200),  # [agent] timeout_minutes beats [stream] timeout_minutes
    (None, None, 40, 2400),
    (None, None, None, 1800),  # 30 minutes by default
    (0.5, None, None, 30),
])
def test_timeout_is_the_flag_then_agent_then_stream_config_in_seconds(flag, agent, stream, seconds):
    cfg = config(agent={"timeout_minutes": agent}, stream={"timeout_minutes": stream} if stream else {})
    assert resolve(StreamOptions(auto=True, timeout_minutes=flag), cfg).timeout_s == seconds


@pytest.mark.parametrize(("flag", "configured", "seconds"), [(2, 7, 120), (None, 7, 420), (None, None, 600)])
def test_idle_timeout_is_the_flag_then_the_config_then_ten_minutes(flag, configured, seconds):
    cfg = config(stream={"idle_timeout_minutes": configured}) if configured else SageConfig()
    assert resolve(StreamOptions(auto=True, idle_timeout_minutes=flag), cfg).idle_timeout_s == seconds


# ---------------------------------------------------------------- limits and sessions


@pytest.mark.parametrize(("flag", "configured", "limit"), [
    (0.0, 4.0, 0.0),  # zero is a limit, not "not given"
    (2.5, 4.0, 2.5),
    (None, 4.0, 4.0),
    (None, None, None),  # no limit by default
])
def test_max_load_is_the_flag_then_the_config(flag, configured, limit):
    settings = resolve(StreamOptions(auto=True, max_load=flag), config(stream={"max_load": configured}))
    assert settings.max_load == limit


@pytest.mark.parametrize(("flag", "configured", "limit"), [(1.5, 10.0, 1.5), (None, 10.0, 10.0), (None, None, None)])
def test_max_cost_is_the_flag_then_the_config(flag, configured, limit):
    settings = resolve(StreamOptions(auto=True, max_cost=flag), config(stream={"max_cost_usd": configured}))
    assert settings.max_cost_usd == limit


@pytest.mark.parametrize(("flag", "configured", "reuse"), [
    (True, False, True), (False, True, True), (False, False, False),
])
def test_sessions_are_reused_when_the_flag_or_the_config_says_so(flag, configured, reuse):
    settings = resolve(StreamOptions(auto=True, reuse_sessions=flag), config(agent={"reuse_sessions": configured}))
    assert settings.reuse_sessions is reuse


def test_ticket_selection_and_max_tickets_come_from_the_flags():
    settings = resolve(StreamOptions(auto=True, tickets=("T-2", "T-1", "T-2"), max_tickets=3))
    assert (settings.only, settings.max_tickets) == (frozenset({"T-1", "T-2"}), 3)
    assert (resolve().only, resolve().max_tickets) == (None, None)


def test_selecting_a_ticket_that_is_not_in_the_index_is_an_error():
    fails(f"{INDEX_PATH}: --ticket names tickets that are not in the index: X-9, Y-9",
          StreamOptions(auto=True, tickets=("Y-9", "T-1", "X-9")))


# ---------------------------------------------------------------- config-only settings


def test_config_only_settings_have_their_defaults():
    settings = resolve()
    assert (settings.grace_s, settings.max_reruns, settings.max_attempts, settings.retry_backoff_s) == (10, 2, 3, 600)
    assert (settings.checks, settings.check_timeout_s, settings.max_fix_turns, settings.check_parallel,
            settings.check_env) == ((), 600, 2, 4, ())
    assert settings.rate_limits == RateLimitPolicy(backoff_s=30, max_backoff_s=600, stop_after=5, far_reset_s=900)


def test_config_only_settings_come_from_the_config_minutes_in_seconds():
    settings = resolve(cfg=config(
        stream={"grace_seconds": 3, "max_reruns": 0, "max_attempts": 5, "retry_backoff_minutes": 0.5,
                "rate_limit_backoff_seconds": 7, "rate_limit_max_backoff_seconds": 70,
                "rate_limit_stop_after": 2, "quota_wait_minutes": 4},
        agent={"env": ["OPENAI_API_KEY"]},
        checks={"timeout_minutes": 2, "max_fix_turns": 0, "max_parallel": 1, "env": ["CI"]},
    ))
    assert (settings.grace_s, settings.max_reruns, settings.max_attempts, settings.retry_backoff_s) == (3, 0, 5, 30)
    assert (settings.check_timeout_s, settings.max_fix_turns, settings.check_parallel) == (120, 0, 1)
    assert settings.check_env == ("OPENAI_API_KEY", "CI")  # the agent's names, then the checks' own
    assert settings.rate_limits == RateLimitPolicy(backoff_s=7, max_backoff_s=70, stop_after=2, far_reset_s=240)


def test_the_rate_limit_backoff_never_grows_past_a_smaller_maximum():
    cfg = config(stream={"rate_limit_backoff_seconds": 90, "rate_limit_max_backoff_seconds": 60})
    assert resolve(cfg=cfg).rate_limits.max_backoff_s == 90


def test_project_checks_are_parsed_into_argv():
    settings = resolve(cfg=config(checks={"commands": ["pytest -q", "ruff check 'src dir'"]}))
    assert [(check.name, check.argv) for check in settings.checks] == [
        ("check 1", ("pytest", "-q")), ("check 2", ("ruff", "check", "src dir"))]


@pytest.mark.parametrize(("checks", "message"), [
    ({"commands": ["make test && make lint"]},
     f"{SAGE_DIR / 'config.toml'}: [checks] commands[0] 'make test && make lint' uses shell syntax (&&), but checks"
     " never run through a shell: put the commands in a script file in the repository and run that"
     " (e.g. `sh scripts/check.sh`)"),
    ({"env": ["GIT_DIR"]},
     f"{SAGE_DIR / 'config.toml'}: [checks] env: GIT_DIR cannot be passed to agents: GIT_* variables would point"
     " git away from the ticket's worktree"),
])
def test_a_check_that_cannot_run_is_an_error_naming_the_config_file(checks, message):
    fails(message, cfg=config(checks=checks))


# ---------------------------------------------------------------- asking, display, facts


@pytest.mark.parametrize(("options", "asks", "output"), [
    (StreamOptions(), True, "plain"),  # interactive is the default; a live view would draw over the question
    (StreamOptions(interactive=True, output="json"), True, "json"),
    (StreamOptions(auto=True), False, "auto"),
    (StreamOptions(auto=True, output="live"), False, "live"),
    (StreamOptions(dry_run=True), False, "auto"),  # a dry run asks nothing
])
def test_an_interactive_run_asks_before_each_ticket_and_shows_plain_lines(options, asks, output):
    settings = resolve(options)
    assert (settings.confirm is ask, settings.output) == (asks, output)


def test_the_facts_are_passed_through_unchanged():
    settings = resolve()
    assert (settings.repo, settings.sage_dir, settings.agent) == (REPO, SAGE_DIR, AGENT)


def test_settings_cannot_be_changed_once_resolved():
    with pytest.raises(dataclasses.FrozenInstanceError):
        resolve().workers = 3  # type: ignore[misc]


def test_the_first_unusable_setting_is_the_one_named():
    # a detached HEAD, an unknown schedule and a bad --parallel at once: the target is named
    fails(f"{REPO}: HEAD is detached: check out the branch tickets should land on, or pass --target",
          StreamOptions(auto=True, parallel="x"), config(stream={"schedule": "fastest"}), checked_out=None)


# ---------------------------------------------------------------- mode flags


@pytest.mark.parametrize(("options", "interactive"), [
    (StreamOptions(), True),  # Sage asks unless told --auto
    (StreamOptions(interactive=True), True),
    (StreamOptions(auto=True), False),
    (StreamOptions(dry_run=True), False),
    (StreamOptions(auto=True, parallel="4"), False),
    (StreamOptions(dry_run=True, parallel="4"), False),
])
def test_mode_flags_decide_whether_to_ask(options, interactive):
    checked = check_mode_flags(options)
    assert checked.interactive is interactive
    assert check_mode_flags(checked) == checked  # checking again changes nothing


@pytest.mark.parametrize(("options", "message"), [
    (StreamOptions(auto=True, interactive=True), "--auto and --interactive exclude each other"),
    (StreamOptions(parallel="4"), "--parallel needs --auto: parallel workers cannot each stop to ask (Sage's rule)"),
    (StreamOptions(interactive=True, parallel="auto"),
     "--parallel needs --auto: parallel workers cannot each stop to ask (Sage's rule)"),
])
def test_mode_flags_that_exclude_each_other_are_an_error(options, message):
    with pytest.raises(SageError) as raised:
        check_mode_flags(options)
    assert raised.value.message == message
    with pytest.raises(SageError):
        resolve(options)  # resolve_settings applies the same rule


# ---------------------------------------------------------------- agent


@pytest.mark.parametrize(("flag", "flag_cmd", "preset", "configured_cmd", "choice"), [
    (None, None, None, None, ("exec", None)),  # a ticket's own command by default
    (None, "run {ticket}", None, None, ("command", "run {ticket}")),  # a template means the command agent
    (None, None, None, "cfg {ticket}", ("command", "cfg {ticket}")),
    (None, "flag {ticket}", None, "cfg {ticket}", ("command", "flag {ticket}")),  # --agent-cmd beats [agent] command
    (None, None, "codex", "cfg {ticket}", ("codex", "cfg {ticket}")),  # [agent] preset beats the template rule
    ("claude", None, "codex", None, ("claude", None)),  # --agent beats [agent] preset
    ("exec", "flag {ticket}", None, None, ("exec", "flag {ticket}")),
])
def test_agent_is_the_flag_then_the_preset_then_command_or_exec(flag, flag_cmd, preset, configured_cmd, choice):
    options = StreamOptions(auto=True, agent=flag, agent_cmd=flag_cmd)
    assert agent_choice(options, config(agent={"preset": preset, "command": configured_cmd})) == choice


# ---------------------------------------------------------------- the sandbox

WORKS = Probe("/usr/bin/bwrap")
MISSING = Probe(None, "bwrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)")


def resolve_sandbox(options: StreamOptions, cfg: SageConfig | None, probed: Probe | None) -> StreamSettings:
    index = IndexView(path=INDEX_PATH, index=TicketIndex(tickets=FIVE_READY))
    return resolve_settings(options, cfg or SageConfig(), repo=REPO, sage_dir=SAGE_DIR, checked_out="main",
                            index=index, now=NOW, cpus=CpuBudget(affinity=8, quota=None), agent=AGENT, ask=ask,
                            probed=probed)


@pytest.mark.parametrize(("flag", "configured", "probed", "sandboxed", "level"), [
    (None, None, WORKS, True, "info"),  # auto is the default: bwrap when it works
    (None, None, MISSING, False, "warning"),  # ... else unsandboxed, and a warning says so
    ("none", None, WORKS, False, "info"),  # asked not to: no sandbox, and no warning
    (None, "none", None, False, "info"),
    ("bwrap", "none", WORKS, True, "info"),  # the flag beats the config
    ("auto", "bwrap", MISSING, False, "warning"),
])
def test_the_sandbox_is_the_flag_then_the_config_then_auto(flag, configured, probed, sandboxed, level):
    cfg = config(agent={"sandbox": configured}) if configured else None
    settings = resolve_sandbox(StreamOptions(auto=True, sandbox=flag), cfg, probed)
    assert (settings.sandbox.sandbox is not None) == sandboxed
    assert settings.sandbox.level == level and settings.sandbox.message
    if sandboxed:
        assert settings.sandbox.sandbox.bwrap == "/usr/bin/bwrap"


@pytest.mark.parametrize(("flag", "configured"), [("bwrap", None), (None, "bwrap")])
def test_sandbox_bwrap_without_a_working_bwrap_is_an_error(flag, configured):
    cfg = config(agent={"sandbox": configured}) if configured else None
    with pytest.raises(SageError) as raised:
        resolve_sandbox(StreamOptions(auto=True, sandbox=flag), cfg, MISSING)
    assert raised.value.message.startswith('sandbox "bwrap" was asked for, but bwrap is not installed')


def test_an_unknown_sandbox_flag_is_an_error():
    with pytest.raises(SageError) as raised:
        resolve_sandbox(StreamOptions(auto=True, sandbox="docker"), None, WORKS)
    assert raised.value.message == "--sandbox must be one of auto, bwrap, none, not 'docker'"


def test_writable_paths_come_from_the_config_and_must_be_absolute_or_under_home():
    settings = resolve_sandbox(AUTO, config(agent={"writable": ["/var/cache/tool", "~/.npm"]}), WORKS)
    assert settings.writable == ("/var/cache/tool", "~/.npm")
    with pytest.raises(SageError) as raised:
        resolve_sandbox(AUTO, config(agent={"writable": ["build/out"]}), WORKS)
    assert raised.value.message == (f"{SAGE_DIR / 'config.toml'}: [agent] writable: 'build/out' must be an absolute"
                                    " path or start with ~/ (the agent's HOME)")
