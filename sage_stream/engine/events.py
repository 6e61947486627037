"""What happens during a run, as events: the engine emits them, displays and logs read them.

The display never decides anything; it only renders these. Every event is one JSON
object with `--json` (see `as_json`), so the field names below are a public contract.

kind               data keys
-----------------  -------------------------------------------------------------------
run_started        run_id, target, workers, workers_reason, schedule, agent,
                   tickets: {id: {title, estimate, deps}} (every ticket this run may start),
                   ready (ids ready now, in order), predicted_makespan_minutes
ticket_started     title, row (0-based worker row, < workers), slot (its worktree slot:
                   .sage/worktrees/slot-<slot>, <= workers: one spare, as a ticket that
                   unblocks nothing frees its worker before it lands), attempt, branch,
                   worktree, log, continues (the dependency whose agent session it
                   continues, or null), prepare_s (seconds from dispatch to its
                   worktree being ready)
agent_output       line (the agent's latest non-empty output line; throttled)
agent_finished     outcome (exited|timeout|idle_timeout|cancelled|failed_to_start),
                   returncode, duration_s, success, summary, turn (0 = the ticket's
                   first turn, n = the n-th fix turn), cost_usd, session_id, error_kind,
                   tokens (one per agent turn; cost, session and tokens may be null)
ticket_checking    checks (names), turn (the agent turn being checked)
ticket_checked     passed, failed (names of failing checks), turn, fix_turn_next
                   (bool: the agent gets another turn), duration_s
ticket_queued      commit queue entry written, waiting to land
ticket_landed      commit, duration_s
ticket_requeued    reason, attempt (a conflict: run again on the new tip; a rate limit:
                   run again after the pause), category (conflict|rate_limit|quota)
ticket_deferred    category, message, retryable, not_before
ticket_stopped     message, branch (Ctrl-C / SIGTERM stopped its agent: UNPROCESSED again,
                   its work kept on `branch`)
dispatch_paused    reason, until (epoch seconds or null)
dispatch_resumed   workers, reason (a pause ended, or a worker was given back)
message            level (info|warning|error), text, halt (only when the run stops
                   starting tickets: why)
run_finished       completed, deferred, interrupted, remaining, exit_code, duration_s, summary_path,
                   report_path (the run's HTML page; also in run_started),
                   total_cost_usd, stopped (why the run stopped starting tickets, or null)
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

RUN_STARTED = "run_started"
TICKET_STARTED = "ticket_started"
AGENT_OUTPUT = "agent_output"
AGENT_FINISHED = "agent_finished"
TICKET_CHECKING = "ticket_checking"
TICKET_CHECKED = "ticket_checked"
TICKET_QUEUED = "ticket_queued"
TICKET_LANDED = "ticket_landed"
TICKET_REQUEUED = "ticket_requeued"
TICKET_DEFERRED = "ticket_deferred"
TICKET_STOPPED = "ticket_stopped"
DISPATCH_PAUSED = "dispatch_paused"
DISPATCH_RESUMED = "dispatch_resumed"
MESSAGE = "message"
RUN_FINISHED = "run_finished"


@dataclass(frozen=True)
class Event:
    kind: str
    ticket: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)

    def as_json(self) -> dict[str, Any]:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.time))
        head: dict[str, Any] = {"event": self.kind, "time": f"{stamp}.{int(self.time % 1 * 1000):03d}Z"}
        if self.ticket is not None:
            head["ticket"] = self.ticket
        return {**head, **self.data}


def json_line(event: Event) -> str:
    """The event as one line of JSON, ASCII only (it survives any locale and undecodable
    agent output). run_started's `tickets` goes last, encoded by `plan_tickets_json`."""
    body = event.as_json()
    tickets = body.get("tickets") if event.kind == RUN_STARTED else None
    if not isinstance(tickets, Mapping):
        return json.dumps(body, ensure_ascii=True, default=str)
    del body["tickets"]
    head = json.dumps(body, ensure_ascii=True, default=str)
    return f'{head[:-1]}, "tickets": {plan_tickets_json(tickets)}}}'


_plan_tickets_encoded: tuple[Mapping[str, Any], str] | None = None


def plan_tickets_json(tickets: Mapping[str, Any]) -> str:
    """run_started's `tickets` (every ticket the run may start) as compact ASCII JSON,
    encoded once per run: the --json line and the run record both carry it, and at 70,000
    planned tickets one encoding took 0.17 s before the first agent."""
    global _plan_tickets_encoded
    if _plan_tickets_encoded is None or _plan_tickets_encoded[0] is not tickets:
        _plan_tickets_encoded = (tickets, json.dumps(tickets, ensure_ascii=True, separators=(",", ":"), default=str))
    return _plan_tickets_encoded[1]
