"""Ticket state transitions, as edits of the raw ticket JSON (applied by the index store).

UNPROCESSED -> IN_PROGRESS -> COMPLETED | DEFERRED. Every transition stamps `updated`
and appends to `state_history`. COMPLETED is written only after the commit landed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sage_stream.agents.base import AgentResult
from sage_stream.engine.outcomes import Defer
from sage_stream.faults import crash_point
from sage_stream.text import clip_tail, now_iso
from sage_stream.tickets.models import State, Ticket
from sage_stream.tickets.store import IndexStore

RawTicket = dict[str, Any]
Edit = Callable[[RawTicket], None]

# How long a run holds a landing's COMPLETED for the index's next write (TicketStates.hold):
# longer than one ticket's cycle, short enough that a reader of the index barely sees it.
HOLD_COMPLETED_S = 1.0
RUN_KEY = "sage_run"  # who is working on an IN_PROGRESS ticket: {run_id, pid, pid_create_time, started}


def _transition(item: RawTicket, state: State, now: str) -> None:
    item["state"] = state.value
    item["updated"] = now
    history = item.get("state_history")
    if not isinstance(history, list):
        history = []
    item["state_history"] = [*history, {"state": state.value, "timestamp": now}]


def start(*, run_id: str, pid: int, pid_create_time: float, branch: str, target: str | None = None) -> Edit:
    """IN_PROGRESS, with who runs it and (`target`) the branch it will land on."""
    def edit(item: RawTicket) -> None:
        now = now_iso()
        _transition(item, State.IN_PROGRESS, now)
        git = item.get("git") if isinstance(item.get("git"), dict) else {}
        item["git"] = {**git, "branch": branch, **({"target": target} if target else {})}
        item[RUN_KEY] = {"run_id": run_id, "pid": pid, "pid_create_time": pid_create_time, "started": now}

    return edit


def complete(*, commit: str, message: str, branch: str, result: dict[str, Any] | None = None,
             landed_at: str | None = None) -> Edit:
    """COMPLETED as of `landed_at` (default: when the edit is written)."""
    def edit(item: RawTicket) -> None:
        now = landed_at or now_iso()
        _transition(item, State.COMPLETED, now)
        item["completed_at"] = now
        git = item.get("git") if isinstance(item.get("git"), dict) else {}
        commits = git.get("commits") if isinstance(git.get("commits"), list) else []
        item["git"] = {
            **git,
            "branch": branch,
            "commits": [*commits, commit] if commit not in commits else commits,
            "last_commit": {"sha": commit, "message": message.splitlines()[0], "timestamp": now},
        }
        item.pop(RUN_KEY, None)
        item.pop("not_before", None)
        if result:
            item["agent_result"] = result

    return edit


def defer(
    *,
    category: str,
    message: str,
    last_error: str | None = None,
    log: str | None = None,
    retryable: bool = False,
    not_before: str | None = None,
    result: dict[str, Any] | None = None,
) -> Edit:
    def edit(item: RawTicket) -> None:
        now = now_iso()
        _transition(item, State.DEFERRED, now)
        attempts = _attempts(item) + 1
        item["attempts"] = attempts
        reason: dict[str, Any] = {
            "category": category,
            "message": message,
            "attempts": attempts,
            "last_error": last_error,
            "deferred_at": now,
            "log": log,
            "retryable": retryable,
        }
        item["defer_reason"] = {key: value for key, value in reason.items() if value is not None}
        if not_before:
            item["not_before"] = not_before
        else:
            item.pop("not_before", None)
        item.pop(RUN_KEY, None)
        if result:
            item["agent_result"] = result

    return edit


def release(*, count_attempt: bool, note: str | None = None) -> Edit:
    """Back to UNPROCESSED: an interrupted or crashed attempt; its branch is kept."""

    def edit(item: RawTicket) -> None:
        _transition(item, State.UNPROCESSED, now_iso())
        if count_attempt:
            item["attempts"] = _attempts(item) + 1
        item.pop(RUN_KEY, None)
        if note:
            item["last_interruption"] = note

    return edit


def retry() -> Edit:
    """`sage retry`: a DEFERRED ticket goes back to the queue; its history stays."""

    def edit(item: RawTicket) -> None:
        _transition(item, State.UNPROCESSED, now_iso())
        item.pop("not_before", None)
        reason = item.pop("defer_reason", None)
        if reason is not None:
            item["last_defer_reason"] = reason

    return edit


def _attempts(item: RawTicket) -> int:
    value = item.get("attempts")
    return value if isinstance(value, int) and value >= 0 else 0


def apply(store: IndexStore, edits: dict[str, Edit]) -> dict[str, Ticket]:
    """Apply edits to tickets by id in one locked, atomic index write; the tickets by id
    as written (the store's own copy: read it, do not keep it across writes)."""
    return store.edit_tickets(edits)


class TicketStates:
    """The engine's one door to the index: edits applied in one locked, atomic write,
    and the index as of the last write kept, so that reading it back costs nothing.

    With `hold_s`, edits that a crash cannot lose (`hold`: a landing's COMPLETED, whose
    commit-queue entry stays until it is written, so that recovery records it from there)
    wait up to `hold_s` seconds for the next write and go with it: at 100,000 tickets each
    write is a 20 MB file and two fsyncs (~30 ms), and a drained ticket took two of them,
    its own COMPLETED and the next ticket's IN_PROGRESS. The owner calls `flush_if_due`
    while it waits, and `flush` before it ends."""

    def __init__(self, store: IndexStore, *, hold_s: float = 0.0) -> None:
        self.store = store
        self.hold_s = hold_s
        self._tickets: dict[str, Ticket] | None = None
        self._held: dict[str, Edit] = {}
        self._after_held: list[Callable[[], None]] = []
        self._held_since: float | None = None

    def apply(self, edits: dict[str, Edit]) -> None:
        """`edits` now, the held ones with them. When the write fails, the held ones are
        written alone first: a failure of theirs is raised as theirs (`flush`)."""
        if not self._held:
            self._tickets = apply(self.store, edits)
            return
        try:
            self._tickets = apply(self.store, _joined(self._held, edits))
        except Exception:
            self.flush()
            self._tickets = apply(self.store, edits)
            return
        self._done_holding()

    def hold(self, edits: dict[str, Edit], *, then: Callable[[], None]) -> None:
        """Edits that may wait for the next write (or `flush`), and what to do once they
        are written (`then`: remove what keeps them recoverable until then)."""
        if self.hold_s <= 0:
            self.apply(edits)
            then()
            return
        self._held = _joined(self._held, edits)
        self._after_held.append(then)
        if self._held_since is None:
            self._held_since = time.monotonic()
        crash_point("after_hold_edit")

    def flush_if_due(self) -> float | None:
        """Write the held edits once they have waited `hold_s`; else the seconds until
        they will have (None: nothing is held)."""
        if self._held_since is None:
            return None
        left = self._held_since + self.hold_s - time.monotonic()
        if left > 0:
            return left
        self.flush()
        return None

    def flush(self) -> None:
        """Write the held edits. When that fails they are dropped and the error raised:
        what they record stays recoverable (their `then` did not run)."""
        if not self._held:
            return
        try:
            self._tickets = apply(self.store, self._held)
        except BaseException:
            self._held, self._after_held, self._held_since = {}, [], None
            raise
        self._done_holding()

    def _done_holding(self) -> None:
        after = self._after_held
        self._held, self._after_held, self._held_since = {}, [], None
        for step in after:
            step()

    def defer(self, ticket_id: str, decision: Defer, *, result: AgentResult | None = None) -> None:
        """DEFERRED with the decision's reason (and the agent's result, when given)."""
        self.apply({ticket_id: defer(category=decision.category, message=decision.message,
                                     last_error=clip_tail(decision.last_error, decision.clip), log=decision.log,
                                     retryable=decision.retryable, not_before=decision.not_before,
                                     result=agent_result_json(result) if result else None)})
        crash_point("after_defer_edit")

    def current(self) -> dict[str, Ticket]:
        self.flush()
        if self._tickets is None:
            self._tickets = self.store.load().by_id()
        return self._tickets


def _joined(first: dict[str, Edit], then: dict[str, Edit]) -> dict[str, Edit]:
    """`first`'s edits, then `then`'s: one edit per ticket."""
    joined = dict(first)
    for ticket_id, edit in then.items():
        joined[ticket_id] = _both(joined[ticket_id], edit) if ticket_id in joined else edit
    return joined


def _both(first: Edit, second: Edit) -> Edit:
    def edit(item: RawTicket) -> None:
        first(item)
        second(item)

    return edit


def agent_result_json(result: AgentResult | None, **extra: Any) -> dict[str, Any]:
    """What the index keeps of an agent's result (`agent_result`), without empty keys."""
    if result is None:
        return {}
    data = {"summary": result.summary, "session_id": result.session_id, "cost_usd": result.cost_usd,
            "tokens": result.tokens, "turns": result.turns, "error_kind": result.error_kind,
            "note": result.message if result.success else None,  # e.g. why a result file was ignored
            **extra}
    return {key: value for key, value in data.items() if value is not None}

