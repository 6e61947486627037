"""The run's HTML page, rewritten as the run goes: live (it reloads itself) while the run
runs, final once it is over, always whole (written atomically), and never the run's end."""

from __future__ import annotations

from pathlib import Path

from sage_stream.engine import events as ev
from sage_stream.engine.run_record import RunRecord, RunReport, run_page_path
from sage_stream.report import html as report_html_module


class Shown:
    def __init__(self) -> None:
        self.events: list[ev.Event] = []

    def handle(self, event: ev.Event) -> None:
        self.events.append(event)


def report(tmp_path: Path, **kwargs) -> tuple[RunReport, Shown]:
    shown = Shown()
    return RunReport(tmp_path, RunRecord(run_id="20261202T000000Z-abcdef", started="2026-12-02T00:00:00Z"),
                     shown, min_interval_s=0, record_cost_factor=0, **kwargs), shown


def test_the_page_is_live_while_the_run_runs_and_final_after(tmp_path):
    run, shown = report(tmp_path, page_interval_s=0, page_cost_factor=0)
    run.emit(ev.RUN_STARTED, None, run_id="20261202T000000Z-abcdef", workers=2,
             tickets={"A": {"title": "<b>a</b>", "estimate": 1, "deps": []}})
    run.emit(ev.TICKET_STARTED, "A", row=0, attempt=1, prepare_s=0.1)
    page = run_page_path(tmp_path, "20261202T000000Z-abcdef")
    assert page == tmp_path / "runs" / "20261202T000000Z-abcdef.html"
    live = page.read_text()
    assert '<meta http-equiv="refresh"' in live and 'data-ticket="A"' in live and "&lt;b&gt;a&lt;/b&gt;" in live
    assert shown.events[0].data["report_path"] == str(page)

    run.finish(remaining=0, interrupted=False, halt_exit=None, halted=None)
    assert "http-equiv" not in page.read_text()
    assert shown.events[-1].data["report_path"] == str(page)
    assert not [path for path in page.parent.iterdir() if path.name.startswith(".tmp-")]


def test_the_page_is_throttled_and_a_held_back_page_is_written_when_the_loop_is_idle(tmp_path):
    run, _ = report(tmp_path, page_interval_s=3600)
    run.emit(ev.RUN_STARTED, None, run_id="x", workers=1, tickets={})
    page = run_page_path(tmp_path, "20261202T000000Z-abcdef")
    first = page.read_text()
    run.emit(ev.TICKET_STARTED, "A", row=0, attempt=1)
    run.flush()
    assert page.read_text() == first  # within the interval: held back
    run.page_interval_s = run.page_cost_factor = 0
    run.flush()
    assert 'data-ticket="A"' in page.read_text()


def test_a_page_that_cannot_be_drawn_warns_once_and_the_run_goes_on(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("renderer bug")
    monkeypatch.setattr(report_html_module, "report_html", broken)
    run, shown = report(tmp_path, page_interval_s=0)
    run.emit(ev.RUN_STARTED, None, run_id="x", workers=1, tickets={})
    run.emit(ev.TICKET_STARTED, "A", row=0, attempt=1)
    code = run.finish(remaining=0, interrupted=False, halt_exit=None, halted=None)
    warnings = [e for e in shown.events if e.kind == ev.MESSAGE and "report page" in e.data["text"]]
    assert len(warnings) == 1 and "renderer bug" in warnings[0].data["text"]
    assert code == 0 and (tmp_path / "runs" / "20261202T000000Z-abcdef.json").exists()


def planned(count: int) -> dict[str, dict]:
    return {f"T-{n}": {"title": f"t{n}", "estimate": 1, "deps": []} for n in range(count)}


def test_a_big_runs_first_page_waits_for_the_first_agents_not_the_other_way_round(tmp_path):
    from sage_stream.engine.run_record import PAGE_AT_START_LIMIT

    run, _ = report(tmp_path, page_interval_s=0, page_cost_factor=0)
    run.emit(ev.RUN_STARTED, None, run_id="x", workers=1, tickets=planned(PAGE_AT_START_LIMIT + 1))
    page = run_page_path(tmp_path, "20261202T000000Z-abcdef")
    assert (tmp_path / "runs" / "20261202T000000Z-abcdef.json").exists()  # the record is written at once
    assert not page.exists()
    run.flush()  # the loop, idle after starting what was ready
    assert 'data-ticket="T-0"' in page.read_text()


def test_a_small_runs_page_is_there_from_the_start(tmp_path):
    from sage_stream.engine.run_record import PAGE_AT_START_LIMIT

    run, _ = report(tmp_path, page_interval_s=0, page_cost_factor=0)
    run.emit(ev.RUN_STARTED, None, run_id="x", workers=1, tickets=planned(PAGE_AT_START_LIMIT))
    assert run_page_path(tmp_path, "20261202T000000Z-abcdef").exists()


def test_a_run_too_big_to_draw_writes_a_page_that_says_how_to_draw_it(tmp_path):
    from sage_stream.engine.run_record import DRAWN_PAGE_LIMIT

    run, _ = report(tmp_path, page_interval_s=0, page_cost_factor=0)
    run.emit(ev.RUN_STARTED, None, run_id="x", workers=1, tickets=planned(DRAWN_PAGE_LIMIT + 1))
    run.emit(ev.TICKET_STARTED, "T-0", row=0, attempt=1)
    run.finish(remaining=0, interrupted=False, halt_exit=None, halted=None)
    page = run_page_path(tmp_path, "20261202T000000Z-abcdef").read_text()
    assert f"plans {DRAWN_PAGE_LIMIT + 1:,} tickets" in page
    assert "sage report 20261202T000000Z-abcdef" in page and 'data-ticket="T-0"' not in page


def test_a_record_that_is_slow_to_write_is_written_less_often(tmp_path, monkeypatch):
    """At 100,000 tickets one write of the record takes 0.1 s: written twice a second it
    took a quarter of the loop. Now at least 20 times as long as the last write apart."""
    from sage_stream.engine import run_record

    clock = [1000.0]
    monkeypatch.setattr(run_record.time, "monotonic", lambda: clock[0])
    written: list[float] = []

    def slow_write(sage_dir, record):
        written.append(clock[0])
        clock[0] += 0.1  # the write takes 0.1 s
    monkeypatch.setattr(run_record, "write_run", slow_write)
    run, _ = report(tmp_path, page_interval_s=3600)
    run.min_interval_s, run.record_cost_factor = 0.5, 20.0
    run.emit(ev.RUN_STARTED, None, run_id="x", workers=1, tickets={})
    for second in range(1, 4):
        clock[0] = 1000.0 + second * 0.6  # past min_interval_s, within 20 x 0.1 s
        run.emit(ev.TICKET_STARTED, f"T-{second}", row=0, attempt=1)
    assert written == [1000.0]  # held back: 2 s have not passed since the last write
    clock[0] = 1002.2
    run.flush()
    assert written == [1000.0, 1002.2]  # the held-back write, once its time has come
    assert run.record.tickets["T-3"].outcome == "running"


def test_a_big_runs_first_page_also_waits_until_its_cost_is_a_small_part_of_the_run(tmp_path, monkeypatch):
    """Drawn as soon as the first agents started, a 7,000-ticket plan's page (0.29 s) was
    11% of a 50-ticket drain. Its cost is estimated from the plan until one was drawn."""
    from sage_stream.engine import run_record

    clock = [1000.0]
    monkeypatch.setattr(run_record.time, "monotonic", lambda: clock[0])
    run, _ = report(tmp_path, page_interval_s=2.0, page_cost_factor=20.0)
    run.emit(ev.RUN_STARTED, None, run_id="x", workers=1, tickets=planned(5000))  # about 0.2 s to draw
    page = run_page_path(tmp_path, "20261202T000000Z-abcdef")
    clock[0] += 2.5  # past the interval, not past 20 x the estimate (4 s)
    run.emit(ev.TICKET_STARTED, "T-0", row=0, attempt=1)
    run.flush()
    assert not page.exists()
    clock[0] += 2.0
    run.flush()
    assert 'data-ticket="T-0"' in page.read_text()


def test_a_big_runs_record_keeps_its_plan_whole_and_every_change_after_it(tmp_path):
    """Above PRETTY_JSON_LIMIT the record is one compact line whose plan is encoded once
    per run (it never changes); what changes after it is written every time."""
    import json

    from sage_stream.engine.run_record import read_run, run_path
    from sage_stream.text import PRETTY_JSON_LIMIT

    run, _ = report(tmp_path, page_interval_s=3600)
    tickets = planned(PRETTY_JSON_LIMIT + 5)
    tickets["T-1"]["title"] = 'quotes " and \\u00e9 and </script>'
    run.emit(ev.RUN_STARTED, None, run_id="x", workers=1, tickets=tickets)
    run.emit(ev.TICKET_STARTED, "T-0", row=0, attempt=1)
    path = run_path(tmp_path, "20261202T000000Z-abcdef")
    first = json.loads(path.read_text())
    assert first["plan"]["tickets"] == tickets and first["tickets"]["T-0"]["outcome"] == "running"
    run.emit(ev.TICKET_LANDED, "T-0", commit="c0ffee", duration_s=1.0)
    again = read_run(path)
    assert again.timeline.plan["tickets"] == tickets
    assert again.tickets["T-0"].outcome == "landed" and again.tickets["T-0"].commit == "c0ffee"
    assert json.loads(path.read_text()) == run.record.to_json()
