"""The Sage ticket format: the one source of truth for what a ticket is.

Every key Sage writes is typed here; keys nobody knows are kept (`extra="allow"`)
so that a file survives a load/save round trip. The models are the *typed view*
used for decisions: the raw JSON objects are kept beside them by the index store,
which is what gets written back (see `tickets/store.py`).

Checks that Sage reports as findings with a severity (id format, priority range,
type names...) live in `validation/`, not here: the models only reject what no
code could work with (a state we do not know, a dependency list that is not a list).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sage_stream.text import parse_timestamp


class State(str, enum.Enum):
    UNPROCESSED = "UNPROCESSED"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    DEFERRED = "DEFERRED"

    def __str__(self) -> str:  # "COMPLETED", not "State.COMPLETED", in messages
        return self.value


PRIORITIES = ("P0", "P1", "P2", "P3", "P4")
TICKET_TYPES = (
    "implementation",
    "enhancement",
    "bugfix",
    "refactor",
    "Epic",
    "Story",
    "Subtask",
    "legacy",
)
VALIDATION_TYPES = ("stateflow", "content", "interactive", "integration", "generic")
DEFER_CATEGORIES = (
    "agent_failed",
    "timeout",
    "conflict",
    "no_changes",
    "scope_violation",
    "rate_limit",
    "persistent_test_failure",
    "interrupted",
    "error",
)


class _Open(BaseModel):
    """A JSON object whose unknown keys are kept."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Docs(_Open):
    spec: str | None = None
    plan: str | None = None
    tasks: str | None = None
    breakdown: str | None = None


class LastCommit(_Open):
    sha: str | None = None
    message: str | None = None
    timestamp: str | None = None


class GitInfo(_Open):
    branch: str | None = None
    target: str | None = None  # the branch the ticket lands on, recorded when it starts
    commits: list[str] = Field(default_factory=list)
    last_commit: LastCommit | None = None


class StateChange(_Open):
    state: str
    timestamp: str | None = None


class DeferReason(_Open):
    category: str | None = None
    message: str | None = None
    attempts: int | None = None
    last_error: str | None = None
    deferred_at: str | None = None
    log: str | None = None


class SubTask(_Open):
    id: str | None = None
    type: str | None = None
    description: str | None = None
    status: str | None = None
    validation_script: str | None = None
    auto_fix: bool | None = None
    max_retries: int | None = None


class VerificationScript(_Open):
    name: str | None = None
    command: str
    success_pattern: str | None = None
    failure_action: str | None = None


class ValidationConfig(_Open):
    validator: str | None = None
    auto_fix: bool | None = None
    max_retries: int | None = None
    verification_scripts: list[VerificationScript] = Field(default_factory=list)


class Ticket(_Open):
    # Sage's keys
    id: str
    title: str
    state: State
    priority: str | None = None
    type: str | None = None
    validation_type: str | None = None
    dependencies: list[str] = Field(default_factory=list)
    parent: str | None = None
    children: list[str] = Field(default_factory=list)
    docs: Docs | None = None
    git: GitInfo | None = None
    created: str | None = None
    updated: str | None = None
    completed_at: str | None = None
    state_history: list[StateChange] = Field(default_factory=list)
    defer_reason: DeferReason | None = None
    acceptanceCriteria: list[str] = Field(default_factory=list)
    tasks: list[SubTask] = Field(default_factory=list)
    validation_config: ValidationConfig | None = None
    summary: Any = None
    notes: Any = None
    inferred_from: Any = None
    blocks: list[str] = Field(default_factory=list)
    blockedBy: list[str] = Field(default_factory=list)
    relatedTo: list[str] = Field(default_factory=list)
    discoveredFrom: list[str] = Field(default_factory=list)

    # sage-stream's additions, all optional
    estimate: float = Field(default=1.0, gt=0, description="minutes of agent work")
    files: list[str] = Field(default_factory=list, description="globs the ticket may touch")
    command: list[str] | None = Field(default=None, description="argv for the exec agent")
    attempts: int = Field(default=0, ge=0)
    not_before: str | None = None
    allow_empty: bool = False
    description: str | None = None

    @field_validator("command")
    @classmethod
    def _command_not_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("must name a program: an empty argv cannot run")
        return value

    @field_validator("not_before")
    @classmethod
    def _not_before_is_a_time(cls, value: str | None) -> str | None:
        if value is not None:
            parse_timestamp(value)
        return value

    @property
    def priority_rank(self) -> int:
        """0 for P0 ... 4 for P4; unknown or missing priorities sort after P4."""
        if self.priority in PRIORITIES:
            return PRIORITIES.index(self.priority)
        return len(PRIORITIES)

    def not_before_time(self) -> datetime | None:
        return parse_timestamp(self.not_before) if self.not_before else None

    def doc_paths(self) -> list[str]:
        """The paths `docs` names, those that are set: spec, plan, tasks, breakdown."""
        if self.docs is None:
            return []
        return [path for path in (self.docs.spec, self.docs.plan, self.docs.tasks, self.docs.breakdown) if path]


class TicketIndex(_Open):
    version: str | None = None
    tickets: list[Ticket] = Field(default_factory=list)

    def by_id(self) -> dict[str, Ticket]:
        """Tickets by id; with duplicate ids, the first one wins (validate reports the rest)."""
        result: dict[str, Ticket] = {}
        for ticket in self.tickets:
            result.setdefault(ticket.id, ticket)
        return result
