"""What the report shows, from a run record: lanes, bars, the critical path, totals, and
what a run killed mid-way leaves."""

from __future__ import annotations

import json

from bench.synthetic_run import synthetic_run, ticket_ids
from sage_stream.engine import events as ev
from sage_stream.engine.run_record import record_from_events
from sage_stream.report.model import build_report
from sage_stream.report.text import report_text

T = 1_800_000_000.0


def event(kind, ticket, at, **data):
    return ev.Event(kind=kind, ticket=ticket, data=data, time=T + at)


def diamond_events(*, finished: bool = True) -> list[ev.Event]:
    """A -> (B, C) -> D on two workers; B is slow, so D waited on B."""
    meta = {"A": {"title": "a", "estimate": 1, "deps": []}, "B": {"title": "b", "estimate": 1, "deps": ["A"]},
            "C": {"title": "c", "estimate": 1, "deps": ["A"]}, "D": {"title": "d", "estimate": 1, "deps": ["B", "C"]}}
    out = [event(ev.RUN_STARTED, None, 0, run_id="r", workers=2, tickets=meta, ready=["A"],
                 predicted_makespan_minutes=3)]
    for ticket, row, start, end in (("A", 0, 0, 60), ("B", 0, 60, 180), ("C", 1, 60, 90), ("D", 1, 180, 240)):
        if not finished and ticket == "D":
            out.append(event(ev.TICKET_STARTED, ticket, start, row=row, attempt=1))
            out.append(event(ev.AGENT_FINISHED, ticket, start + 20, duration_s=20, turn=0, cost_usd=1.0))
            break
        out += [event(ev.TICKET_STARTED, ticket, start, row=row, attempt=1),
                event(ev.AGENT_FINISHED, ticket, end - 2, duration_s=end - 2 - start, turn=0, cost_usd=1.0,
                      tokens=100),
                event(ev.TICKET_QUEUED, ticket, end - 1), event(ev.TICKET_LANDED, ticket, end, commit="c")]
    if finished:
        out.append(event(ev.RUN_FINISHED, None, 241, exit_code=0))
    return out


def test_the_critical_path_is_what_the_end_waited_on_and_totals_add_up():
    model = build_report(record_from_events("r", diamond_events()).to_json())
    assert model.critical_path == ["A", "B", "D"]
    assert {bar.ticket for bar in model.bars if bar.critical} == {"A", "B", "D"}
    assert model.lanes == [0, 1]
    totals = model.totals
    assert totals.makespan_s == 241
    assert totals.lower_bound_s == 180  # chain of 3 estimated minutes; 4 minutes of work on 2 workers
    assert totals.predicted_s == 180
    assert totals.ran_lower_bound_s == 240  # A + B + D as they ran
    assert (totals.landed, totals.cost_usd, totals.tokens, totals.attempts) == (4, 4.0, 400, 4)
    assert totals.landings_per_minute == round(4 / (241 / 60), 2)
    assert 0 < totals.utilisation < 1


def test_a_killed_run_reports_what_happened_up_to_its_last_write():
    record = record_from_events("r", diamond_events(finished=False))
    model = build_report(json.loads(json.dumps(record.to_json())))
    [open_bar] = [bar for bar in model.bars if bar.open]
    assert open_bar.ticket == "D" and open_bar.end == 200  # the record's last event
    assert {row.id: row.outcome for row in model.tickets} == {"A": "landed", "B": "landed", "C": "landed",
                                                              "D": "running"}
    assert model.status == "running"


def test_a_record_from_before_the_timeline_still_gives_tickets_and_totals():
    data = record_from_events("r", diamond_events()).to_json()
    for key in ("plan", "attempts", "marks", "updated"):
        data.pop(key)
    model = build_report(data)
    assert [row.id for row in model.tickets] == ["A", "B", "C", "D"] and model.bars == []
    assert model.totals.landed == 4 and model.totals.lower_bound_s is None


def test_deferrals_retries_and_reruns_are_counted_and_the_text_summary_lists_every_ticket():
    run = synthetic_run(40, 4)
    model = build_report(run.record.to_json())
    deferred = [row for row in model.tickets if row.outcome == "deferred"]
    assert model.totals.deferrals == {"checks_failed": len(deferred)} and deferred
    reruns = [bar for bar in model.bars if bar.outcome == "requeued"]
    assert model.totals.reruns == len(reruns) > 0
    text = report_text(model)
    assert all(tid in text for tid in ticket_ids(40))
    assert f"reruns {len(reruns)}" in text and "deferred checks_failed" in text


def test_the_json_is_plain_data_with_every_bar_and_phase():
    model = build_report(record_from_events("r", diamond_events()).to_json())
    data = json.loads(json.dumps(model.to_json()))
    assert data["format"] == 1 and data["run_id"] == "r" and len(data["bars"]) == 4
    assert [phase["phase"] for phase in data["bars"][0]["phases"]] == ["agent", "queue", "landing"]
    assert data["edges"] == [["A", "B"], ["A", "C"], ["B", "D"], ["C", "D"]]


def test_estimates_far_from_what_ran_are_named_at_the_edge_not_drawn_to_scale():
    """Agents that took seconds against estimates in minutes (the demo): the timeline is scaled
    to what ran, and a far lower bound or prediction is named, not drawn, so bars keep their width."""
    from sage_stream.report.svg import timeline_span, timeline_svg

    near = build_report(record_from_events("r", diamond_events()).to_json())  # bounds of 3 min, 241 s ran
    assert timeline_span(near) == 241
    assert timeline_svg(near).count('class="bound"') == 2

    events = diamond_events()
    meta = {tid: {**info, "estimate": 100} for tid, info in events[0].data["tickets"].items()}
    events[0] = event(ev.RUN_STARTED, None, 0, run_id="r", workers=2, tickets=meta, ready=["A"],
                      predicted_makespan_minutes=300)
    far = build_report(record_from_events("r", events).to_json())
    assert far.totals.lower_bound_s > 2 * far.totals.makespan_s and timeline_span(far) == 241
    drawn = timeline_svg(far)
    assert drawn.count('class="bound"') == 0 and drawn.count('class="bound off-scale"') == 2
