"""The run summary file: format, tolerant reading, newest run, liveness."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from sage_stream.durable import write_json_atomic
from sage_stream.engine.events import Event
from sage_stream.engine.run_record import (
    RunRecord,
    TicketRecord,
    alive_run,
    is_run_alive,
    latest_run,
    new_run_id,
    read_run,
    record_from_events,
    run_path,
    runs_dir,
    write_run,
)
from sage_stream.errors import SageError

T0 = 1795252443.0  # 2026-11-21T09:14:03Z


def full_record(run_id: str = "20261121T091403Z-abc123") -> RunRecord:
    return RunRecord(
        run_id=run_id, pid=4242, pid_create_time=1795252440.25, started="2026-11-21T09:14:03Z",
        finished="2026-11-21T09:20:00Z", status="finished", target="main", workers=3,
        workers_reason="3 ready", schedule="critical-path", agent="claude", exit_code=3,
        tickets={"CALC-002": TicketRecord(
            id="CALC-002", title="Add addition", outcome="landed", start="2026-11-21T09:14:04Z",
            end="2026-11-21T09:14:16Z", commit="3f2a1c9", attempts=1, category=None, message=None,
            log=".sage/workers/CALC-002/agent.log", summary="added", cost_usd=0.12,
            session_id="s-1", duration_s=12.4)},
        total_cost_usd=0.12,
    )


def test_a_record_survives_the_json_round_trip():
    record = full_record()
    data = json.loads(json.dumps(record.to_json()))
    assert data["format"] == 1
    assert RunRecord.from_json(data) == record


def test_reading_tolerates_missing_extra_and_mistyped_keys():
    record = RunRecord.from_json({
        "run_id": "old-run", "from_the_future": {"x": 1}, "workers": "3", "pid": True,
        "exit_code": None, "tickets": {"A-1": {"outcome": "landed", "attempts": "two", "cost_usd": "NaN",
                                               "title": ["not", "text"]},
                                       "A-2": "garbage"},
    })
    assert record.run_id == "old-run" and record.status == "running"
    assert record.workers is None and record.pid is None and record.started is None
    assert record.tickets["A-1"] == TicketRecord(id="A-1", outcome="landed")
    assert record.tickets["A-2"].outcome == "unknown"
    assert RunRecord.from_json({"run_id": "x", "tickets": ["A-1"]}).tickets == {}


@pytest.mark.parametrize("text", ['{"run_id": "x", "tick', "[1, 2]", "", '{"tickets": {}}', "\xff\xfe"])
def test_reading_a_file_that_is_not_a_record_names_the_file(tmp_path: Path, text: str):
    path = tmp_path / "runs" / "bad.json"
    path.parent.mkdir()
    path.write_text(text, encoding="latin-1")
    with pytest.raises(SageError) as caught:
        read_run(path)
    assert str(path) in caught.value.message


def test_new_run_ids_sort_by_time_and_are_unique():
    ids = {new_run_id() for _ in range(200)}
    assert len(ids) == 200
    for run_id in ids:
        assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", run_id)


def test_write_run_creates_the_runs_directory_and_latest_run_is_the_newest_id(tmp_path: Path):
    sage = tmp_path / ".sage"
    assert latest_run(sage) is None
    newer = full_record("20261121T100000Z-000001")
    older = full_record("20261121T090000Z-ffffff")
    path = write_run(sage, newer)
    write_run(sage, older)  # written last, still older
    assert path == runs_dir(sage) / "20261121T100000Z-000001.json"
    (runs_dir(sage) / ".tmp-20991231T000000Z-aaaaaa.json.x1y2").write_text("{half")
    assert latest_run(sage) == newer


def test_a_run_id_cannot_leave_the_runs_directory(tmp_path: Path):
    for bad in ("../escape", "a/b", "", ".hidden"):
        with pytest.raises(SageError):
            run_path(tmp_path, bad)


def test_write_run_replaces_the_file_whole(tmp_path: Path):
    record = full_record()
    write_run(tmp_path, record)
    record.status = "running"
    record.tickets["CALC-003"] = TicketRecord(id="CALC-003", outcome="running")
    write_run(tmp_path, record)
    assert read_run(run_path(tmp_path, record.run_id)) == record
    assert [path.name for path in runs_dir(tmp_path).iterdir()] == [f"{record.run_id}.json"]


def test_a_big_record_is_written_compact_and_reads_back_the_same(tmp_path: Path):
    from sage_stream.text import PRETTY_JSON_LIMIT

    record = full_record()
    record.apply(Event(kind="run_started", ticket=None, data=dict(
        run_id=record.run_id, workers=1,
        tickets={f"T-{n}": {"title": f"t{n}", "estimate": 1.0, "deps": []} for n in range(PRETTY_JSON_LIMIT + 1)})))
    path = write_run(tmp_path, record)
    text = path.read_text()
    assert text.count("\n") == 1 and '": ' not in text  # one compact line: json's C encoder
    assert read_run(path) == record
    assert len(json.loads(text)["plan"]["tickets"]) == PRETTY_JSON_LIMIT + 1


def test_a_small_record_stays_indented(tmp_path: Path):
    text = write_run(tmp_path, full_record()).read_text()
    assert text.startswith('{\n  "format": ')


# ---------------------------------------------------------------- liveness


def test_this_process_is_alive():
    record = RunRecord.for_this_process("20261121T091403Z-abc123")
    assert record.pid == os.getpid()
    assert is_run_alive(record)


def test_a_reused_pid_does_not_look_alive():
    record = RunRecord.for_this_process("r")
    record.pid_create_time -= 3600  # same pid, but a process created an hour earlier owned it
    assert not is_run_alive(record)


def test_a_finished_process_is_not_alive():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    created = psutil.Process(child.pid).create_time()
    child.wait()
    assert not is_run_alive(RunRecord(run_id="r", pid=child.pid, pid_create_time=created))
    assert not is_run_alive(RunRecord(run_id="r", pid=None, pid_create_time=created))


def test_alive_run_finds_the_live_run_behind_a_newer_record(tmp_path: Path):
    live = RunRecord.for_this_process("20261121T090000Z-000001")
    write_run(tmp_path, live)
    write_run(tmp_path, full_record("20261121T100000Z-000002"))
    crashed = RunRecord(run_id="20261121T110000Z-000003", pid=os.getpid(), pid_create_time=1.0)
    write_run(tmp_path, crashed)
    (runs_dir(tmp_path) / "20261121T120000Z-000004.json").write_text("garbage")
    assert alive_run(tmp_path) == live


# ---------------------------------------------------------------- events -> record


def test_events_fold_into_the_record():
    events = [
        Event("run_started", data=dict(run_id="r", target="main", workers=2, workers_reason="2 CPUs",
                                        schedule="critical-path", agent="claude", tickets={}, ready=[],
                                        predicted_makespan_minutes=3.0), time=T0),
        Event("ticket_started", "A-1", dict(title="One", slot=0, attempt=1, log="/r/.sage/a.log"), time=T0),
        Event("ticket_started", "A-2", dict(title="Two", slot=1, attempt=1), time=T0),
        Event("ticket_started", "A-3", dict(title="Three", slot=2, attempt=1), time=T0),
        Event("agent_finished", "A-1", dict(outcome="exited", returncode=0, duration_s=5, success=True,
                                            summary="did it", cost_usd=0.25, session_id="abc"), time=T0 + 5),
        Event("ticket_queued", "A-1", {}, time=T0 + 5),
        Event("ticket_landed", "A-1", dict(commit="3f2a1c9", duration_s=6.5), time=T0 + 6),
        Event("agent_finished", "A-2", dict(outcome="timeout", success=False, cost_usd=0.5), time=T0 + 7),
        Event("ticket_deferred", "A-2", dict(category="timeout", message="no output for 600s",
                                             retryable=True, not_before=None), time=T0 + 7),
        Event("run_finished", data=dict(completed=1, deferred=1, interrupted=1, remaining=0,
                                        exit_code=130, duration_s=8), time=T0 + 8),
    ]
    record = record_from_events("r", events, pid=10, pid_create_time=2.0)
    assert (record.status, record.exit_code, record.target, record.workers) == ("interrupted", 130, "main", 2)
    assert record.started == "2026-11-21T09:14:03Z" and record.finished == "2026-11-21T09:14:11Z"
    one, two, three = record.tickets["A-1"], record.tickets["A-2"], record.tickets["A-3"]
    assert (one.outcome, one.commit, one.duration_s, one.summary, one.session_id, one.log) == (
        "landed", "3f2a1c9", 6.5, "did it", "abc", "/r/.sage/a.log")
    assert (two.outcome, two.category, two.message) == ("deferred", "timeout", "no output for 600s")
    assert three.outcome == "interrupted" and three.end == record.finished
    assert record.total_cost_usd == pytest.approx(0.75)


def test_a_requeued_ticket_runs_again_and_counts_its_attempts():
    record = RunRecord(run_id="r")
    record.apply(Event("ticket_started", "A-1", dict(title="One", slot=0, attempt=1), time=T0))
    record.apply(Event("ticket_requeued", "A-1", dict(reason="calc.py changed", attempt=2), time=T0 + 1))
    assert record.tickets["A-1"].outcome == "requeued"
    record.apply(Event("ticket_started", "A-1", dict(title="One", slot=1, attempt=2), time=T0 + 2))
    ticket = record.tickets["A-1"]
    assert (ticket.outcome, ticket.attempts, ticket.end, ticket.message) == ("running", 2, None, None)


def test_a_run_with_no_exit_code_written_is_still_readable_while_it_runs(tmp_path: Path):
    path = tmp_path / "runs" / "20261121T091403Z-abc123.json"
    path.parent.mkdir()
    write_json_atomic(path, {"run_id": "20261121T091403Z-abc123", "status": "running"})
    record = read_run(path)
    assert record.exit_code is None and record.finished is None and record.tickets == {}
