"""What ran when: the run record's `plan`, `attempts` and `marks`, folded from events only.

`RunRecord.apply` hands every event here; `sage report` draws the timeline from it. Times
are epoch seconds (two decimals). A phase or attempt still open has `"end": null` (the
run is going on, or was killed: the report ends it at the record's `updated` time).

    "plan": {"tickets": {"CALC-002": {"title": "...", "estimate": 3.0, "deps": ["CALC-001"]}},
             "ready": ["CALC-001"], "predicted_makespan_minutes": 7.5},
    "attempts": [{"ticket": "CALC-002", "attempt": 1, "row": 0, "slot": 1,
                  "start": 1795252443.1, "end": 1795252499.8,
                  "outcome": "landed",     # running | queued | landed | deferred | requeued | interrupted
                  "phases": [{"phase": "prepare", "start": ..., "end": ...},
                             {"phase": "agent", "turn": 0, "start": ..., "end": ...},
                             {"phase": "checks", "turn": 0, "start": ..., "end": ...},
                             {"phase": "queue", ...}, {"phase": "landing", ...}],
                  "cost_usd": 0.14, "tokens": 5120, "exit": "exited", "returncode": 0,
                  "category": null, "message": null, "commit": "3f2a1c9...",
                  "log": ".sage/workers/<run-id>/CALC-002.log"}],
    "marks": [{"kind": "pause", "start": ..., "end": ..., "text": "rate limited"},
              {"kind": "conflict", "start": ..., "ticket": "CALC-004", "text": "..."},
              {"kind": "halt", "start": ..., "text": "cost $5.00 reached --max-cost $5.00"}],
    "updated": 1795252501.2
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from sage_stream.engine import events as ev

PHASES = ("prepare", "agent", "checks", "queue", "landing")
Json = dict[str, Any]


def _stamp(epoch: float) -> float:
    return round(epoch, 2)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


@dataclass
class RunTimeline:
    """The attempts, their phases and the run's marks, as JSON-shaped lists (kept as read)."""

    plan: Json | None = None
    attempts: list[Json] = field(default_factory=list)
    marks: list[Json] = field(default_factory=list)
    updated: float | None = None
    # ticket -> its attempt still open (this process only)
    _open: dict[str, Json] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, data: Json) -> RunTimeline:
        def dicts(value: Any) -> list[Json]:
            return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []
        plan = data.get("plan")
        return cls(plan if isinstance(plan, dict) else None, dicts(data.get("attempts")),
                   dicts(data.get("marks")), _number(data.get("updated")))

    def to_json(self) -> Json:
        return {"plan": self.plan, "attempts": self.attempts, "marks": self.marks, "updated": self.updated}

    def apply(self, event: ev.Event) -> None:
        handler = _TIMELINE_UPDATES.get(event.kind)
        if event.kind == ev.MESSAGE and not event.data.get("halt"):
            return
        if handler is not None:
            self.updated = _stamp(event.time)
            handler(self, event)

    # ---------------------------------------------------------------- attempts

    def _attempt(self, event: ev.Event) -> Json | None:
        return self._open.get(event.ticket or "")

    def _open_phase(self, attempt: Json, phase: str, start: float, **extra: Any) -> None:
        self._close_phase(attempt, start)
        attempt["phases"].append({"phase": phase, **extra, "start": _stamp(start), "end": None})

    @staticmethod
    def _close_phase(attempt: Json, end: float) -> None:
        phases = attempt["phases"]
        if phases and phases[-1]["end"] is None:
            phases[-1]["end"] = _stamp(max(end, phases[-1]["start"]))

    def _finish(self, event: ev.Event, outcome: str, **extra: Any) -> Json | None:
        attempt = self._open.pop(event.ticket or "", None)
        if attempt is None:
            return None
        self._close_phase(attempt, event.time)
        attempt.update(outcome=outcome, end=_stamp(event.time), **extra)
        return attempt

    def on_started(self, event: ev.Event) -> None:
        data = event.data
        prepare_s = _number(data.get("prepare_s")) or 0.0
        attempt: Json = {
            "ticket": event.ticket, "attempt": data.get("attempt"), "row": data.get("row"),
            "slot": data.get("slot"), "start": _stamp(event.time - prepare_s), "end": None,
            "outcome": "running", "phases": [], "cost_usd": None, "tokens": None, "exit": None,
            "returncode": None, "category": None, "message": None, "commit": None, "log": data.get("log"),
        }
        if prepare_s:
            attempt["phases"].append({"phase": "prepare", "start": attempt["start"], "end": _stamp(event.time)})
        attempt["phases"].append({"phase": "agent", "turn": 0, "start": _stamp(event.time), "end": None})
        self._finish(event, "interrupted")  # an earlier attempt never closed: the record says so
        self._open[event.ticket or ""] = attempt
        self.attempts.append(attempt)

    def on_agent_finished(self, event: ev.Event) -> None:
        attempt = self._attempt(event)
        if attempt is None:
            return
        data = event.data
        phases = attempt["phases"]
        if not phases or phases[-1]["phase"] != "agent" or phases[-1]["end"] is not None:
            started = event.time - (_number(data.get("duration_s")) or 0.0)
            self._open_phase(attempt, "agent", started, turn=data.get("turn"))
        self._close_phase(attempt, event.time)
        for key, value in (("cost_usd", _number(data.get("cost_usd"))), ("tokens", _number(data.get("tokens")))):
            if value is not None:
                attempt[key] = round((attempt[key] or 0) + value, 6)
        attempt["exit"], attempt["returncode"] = data.get("outcome"), data.get("returncode")

    def on_checking(self, event: ev.Event) -> None:
        attempt = self._attempt(event)
        if attempt is not None:
            self._open_phase(attempt, "checks", event.time, turn=event.data.get("turn"))

    def on_checked(self, event: ev.Event) -> None:
        attempt = self._attempt(event)
        if attempt is None:
            return
        self._close_phase(attempt, event.time)
        if event.data.get("fix_turn_next"):
            self._open_phase(attempt, "agent", event.time, turn=(event.data.get("turn") or 0) + 1)

    def on_queued(self, event: ev.Event) -> None:
        attempt = self._attempt(event)
        if attempt is None:
            return
        self._close_phase(attempt, event.time)
        waited_from = attempt["phases"][-1]["end"] if attempt["phases"] else attempt["start"]
        if event.time - waited_from >= 0.01:
            attempt["phases"].append({"phase": "queue", "start": waited_from, "end": _stamp(event.time)})
        self._open_phase(attempt, "landing", event.time)
        attempt["outcome"] = "queued"

    def on_landed(self, event: ev.Event) -> None:
        self._finish(event, "landed", commit=event.data.get("commit"))

    def on_requeued(self, event: ev.Event) -> None:
        category = event.data.get("category") or "conflict"
        if self._finish(event, "requeued", category=category, message=event.data.get("reason")) is not None:
            self.marks.append({"kind": "conflict" if category == "conflict" else "rerun", "start": _stamp(event.time),
                               "ticket": event.ticket, "text": f"{category}: {event.data.get('reason') or ''}"})

    def on_deferred(self, event: ev.Event) -> None:
        self._finish(event, "deferred", category=event.data.get("category"), message=event.data.get("message"))

    def on_stopped(self, event: ev.Event) -> None:
        self._finish(event, "interrupted", message=event.data.get("message"))

    # ---------------------------------------------------------------- the run

    def on_run_started(self, event: ev.Event) -> None:
        data = event.data
        tickets = data.get("tickets") if isinstance(data.get("tickets"), dict) else {}
        self.plan = {"tickets": tickets, "ready": data.get("ready") or [],
                     "predicted_makespan_minutes": data.get("predicted_makespan_minutes")}

    def on_paused(self, event: ev.Event) -> None:
        self._end_pause(event.time)
        self.marks.append({"kind": "pause", "start": _stamp(event.time), "end": None,
                           "text": str(event.data.get("reason") or "dispatch paused")})

    def on_resumed(self, event: ev.Event) -> None:
        self._end_pause(event.time)

    def _end_pause(self, end: float) -> None:
        for mark in self.marks:
            if mark["kind"] == "pause" and mark.get("end") is None:
                mark["end"] = _stamp(end)

    def on_halt(self, event: ev.Event) -> None:
        self.marks.append({"kind": "halt", "start": _stamp(event.time), "text": str(event.data.get("halt"))})

    def on_run_finished(self, event: ev.Event) -> None:
        for ticket in list(self._open):
            self._finish(ev.Event(kind=ev.TICKET_STOPPED, ticket=ticket, time=event.time), "interrupted")
        self._end_pause(event.time)


_TIMELINE_UPDATES = {
    ev.RUN_STARTED: RunTimeline.on_run_started,
    ev.TICKET_STARTED: RunTimeline.on_started,
    ev.AGENT_FINISHED: RunTimeline.on_agent_finished,
    ev.TICKET_CHECKING: RunTimeline.on_checking,
    ev.TICKET_CHECKED: RunTimeline.on_checked,
    ev.TICKET_QUEUED: RunTimeline.on_queued,
    ev.TICKET_LANDED: RunTimeline.on_landed,
    ev.TICKET_REQUEUED: RunTimeline.on_requeued,
    ev.TICKET_DEFERRED: RunTimeline.on_deferred,
    ev.TICKET_STOPPED: RunTimeline.on_stopped,
    ev.DISPATCH_PAUSED: RunTimeline.on_paused,
    ev.DISPATCH_RESUMED: RunTimeline.on_resumed,
    ev.MESSAGE: RunTimeline.on_halt,
    ev.RUN_FINISHED: RunTimeline.on_run_finished,
}
