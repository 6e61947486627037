"""The settings of one `sage stream` run, already decided from flags, config and defaults."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sage_stream.agents.base import Agent
from sage_stream.engine.dispatch_control import RateLimitPolicy
from sage_stream.engine.verification import Check
from sage_stream.tickets.models import Ticket


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
