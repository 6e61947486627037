"""The run record's timeline (plan, attempts with phases, marks), folded from events only."""

from __future__ import annotations

import json

from sage_stream.engine import events as ev
from sage_stream.engine.run_record import RunRecord, record_from_events

T = 1_800_000_000.0


def event(kind: str, ticket: str | None, at: float, **data) -> ev.Event:
    return ev.Event(kind=kind, ticket=ticket, data=data, time=T + at)


def one_ticket_with_a_fix_turn() -> list[ev.Event]:
    return [
        event(ev.RUN_STARTED, None, 0, run_id="r", workers=2, tickets={"A": {"title": "a", "estimate": 2,
                                                                               "deps": []}},
              ready=["A"], predicted_makespan_minutes=2.5),
        event(ev.TICKET_STARTED, "A", 1.5, row=1, slot=2, attempt=1, log="a.log", prepare_s=0.5),
        event(ev.AGENT_FINISHED, "A", 10, outcome="exited", returncode=0, duration_s=8.5, turn=0,
              cost_usd=0.25, tokens=1000),
        event(ev.TICKET_CHECKING, "A", 10, turn=0),
        event(ev.TICKET_CHECKED, "A", 12, passed=False, turn=0, fix_turn_next=True),
        event(ev.AGENT_FINISHED, "A", 15, outcome="exited", returncode=0, duration_s=3, turn=1,
              cost_usd=0.05, tokens=200),
        event(ev.TICKET_CHECKING, "A", 15, turn=1),
        event(ev.TICKET_CHECKED, "A", 16, passed=True, turn=1, fix_turn_next=False),
        event(ev.TICKET_QUEUED, "A", 17),
        event(ev.TICKET_LANDED, "A", 18, commit="abc", duration_s=17),
        event(ev.RUN_FINISHED, None, 19, exit_code=0),
    ]


def test_an_attempt_is_split_into_its_phases_as_the_events_say():
    record = record_from_events("r", one_ticket_with_a_fix_turn())
    [attempt] = record.timeline.attempts
    phases = [(p["phase"], p.get("turn"), p["start"] - T, p["end"] - T) for p in attempt["phases"]]
    assert phases == [("prepare", None, 1.0, 1.5), ("agent", 0, 1.5, 10), ("checks", 0, 10, 12),
                      ("agent", 1, 12, 15), ("checks", 1, 15, 16), ("queue", None, 16, 17),
                      ("landing", None, 17, 18)]
    assert (attempt["row"], attempt["slot"], attempt["outcome"], attempt["commit"]) == (1, 2, "landed", "abc")
    assert (attempt["cost_usd"], attempt["tokens"], attempt["log"]) == (0.3, 1200, "a.log")
    assert record.timeline.plan["tickets"]["A"]["estimate"] == 2


def test_conflicts_pauses_and_halts_are_marks_and_a_rerun_is_a_second_attempt():
    events = [
        event(ev.TICKET_STARTED, "A", 0, row=0, attempt=1),
        event(ev.AGENT_FINISHED, "A", 5, duration_s=5, turn=0),
        event(ev.TICKET_QUEUED, "A", 5),
        event(ev.DISPATCH_PAUSED, None, 5.5, reason="rate limited"),
        event(ev.TICKET_REQUEUED, "A", 6, reason="conflict in x.py", category="conflict", attempt=2),
        event(ev.DISPATCH_RESUMED, None, 8, reason="over"),
        event(ev.TICKET_STARTED, "A", 9, row=0, attempt=2),
        event(ev.MESSAGE, None, 9.5, level="warning", text="stopped starting tickets: cost", halt="cost"),
        event(ev.MESSAGE, None, 9.6, level="warning", text="just a warning"),
        event(ev.TICKET_DEFERRED, "A", 10, category="agent_failed", message="exit 1"),
    ]
    timeline = record_from_events("r", events).timeline
    assert [(a["attempt"], a["outcome"], a["category"]) for a in timeline.attempts] == [
        (1, "requeued", "conflict"), (2, "deferred", "agent_failed")]
    assert [(m["kind"], m["start"] - T, (m.get("end") or T) - T) for m in timeline.marks] == [
        ("pause", 5.5, 8), ("conflict", 6, 0), ("halt", 9.5, 0)]


def test_a_run_that_ends_closes_what_was_open_and_a_killed_run_leaves_it_open():
    events = [event(ev.TICKET_STARTED, "A", 0, row=0, attempt=1), event(ev.TICKET_CHECKING, "A", 4)]
    killed = record_from_events("r", events).timeline
    assert killed.attempts[0]["end"] is None and killed.attempts[0]["phases"][-1]["end"] is None
    assert killed.updated == T + 4
    ended = record_from_events("r", [*events, event(ev.RUN_FINISHED, None, 7, exit_code=130)]).timeline
    assert ended.attempts[0]["outcome"] == "interrupted" and ended.attempts[0]["end"] == T + 7


def test_the_timeline_survives_the_file_and_an_older_record_without_it_still_reads():
    record = record_from_events("r", one_ticket_with_a_fix_turn())
    again = RunRecord.from_json(json.loads(json.dumps(record.to_json())))
    assert again == record
    older = {key: value for key, value in record.to_json().items()
             if key not in ("plan", "attempts", "marks", "updated")}
    old = RunRecord.from_json(older)
    assert old.timeline.attempts == [] and old.tickets["A"].outcome == "landed"
