"""`sage status`: the current or last run, then the ticket counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sage_stream.cli import run
from sage_stream.engine.run_record import RunRecord, TicketRecord, write_run

TICKETS = [
    {"id": "CALC-001", "title": "Parse numbers", "state": "COMPLETED"},
    {"id": "CALC-002", "title": "Add addition", "state": "COMPLETED"},
    {"id": "CALC-003", "title": "Add subtraction", "state": "IN_PROGRESS"},
    {"id": "CALC-004", "title": "Parse input", "state": "DEFERRED"},
    {"id": "CALC-005", "title": "Multiply", "state": "UNPROCESSED"},
]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    index = tmp_path / ".sage" / "tickets" / "index.json"
    index.parent.mkdir(parents=True)
    index.write_text(json.dumps({"version": "1.0", "tickets": TICKETS}))
    return tmp_path


def sage_status(repo: Path, capsys, *args: str) -> tuple[int, str]:
    code = run(["status", "--index", str(repo / ".sage" / "tickets" / "index.json"), *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def finished_run(repo: Path) -> RunRecord:
    return RunRecord(
        run_id="20261121T091403Z-abc123", pid=999999, pid_create_time=1.0,
        started="2026-11-21T09:14:03Z", finished="2026-11-21T09:19:15Z", status="finished",
        target="main", workers=2, workers_reason="2 usable CPUs", schedule="critical-path",
        agent="claude", exit_code=3, total_cost_usd=0.42,
        tickets={
            "CALC-002": TicketRecord(id="CALC-002", title="Add addition", outcome="landed",
                                     start="2026-11-21T09:14:04Z", end="2026-11-21T09:14:16Z",
                                     commit="3f2a1c9d0e8b", attempts=1, duration_s=12.4,
                                     log=str(repo / ".sage" / "workers" / "CALC-002.log")),
            "CALC-004": TicketRecord(id="CALC-004", title="Parse [bold]input[/]\n\x1b[31m!",
                                     outcome="deferred", start="2026-11-21T09:14:04Z",
                                     end="2026-11-21T09:14:34Z", attempts=2, category="conflict",
                                     message="calc/parse.py changed on main",
                                     log=str(repo / ".sage" / "workers" / "CALC-004.log")),
        },
    )


def test_no_runs_yet(repo: Path, capsys):
    code, out = sage_status(repo, capsys)
    assert code == 0
    assert out.splitlines() == [
        "no runs yet",
        "tickets: 1 UNPROCESSED, 1 IN_PROGRESS, 2 COMPLETED, 1 DEFERRED",
    ]


def test_the_last_finished_run_with_its_tickets(repo: Path, capsys):
    write_run(repo / ".sage", finished_run(repo))
    code, out = sage_status(repo, capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == ("last run 20261121T091403Z-abc123: finished at 2026-11-21T09:19:15Z"
                        " (exit 3: some tickets were deferred), took 5m12s")
    assert "onto main" in lines[1] and "2 workers (2 usable CPUs)" in lines[1] and "cost $0.42" in lines[1]
    landed = next(line for line in lines if "CALC-002" in line)
    deferred = next(line for line in lines if "CALC-004" in line)
    assert "landed" in landed and "12.4s" in landed and "3f2a1c9" in landed and "3f2a1c9d" not in landed
    assert "log" not in landed
    assert "deferred" in deferred and "30.0s" in deferred
    assert "conflict: calc/parse.py changed on main" in deferred
    assert "log .sage/workers/CALC-004.log" in deferred  # relative to the repository
    assert "\x1b" not in out and '"Parse [bold]input[/] !"' in deferred
    assert lines[-1] == "tickets: 1 UNPROCESSED, 1 IN_PROGRESS, 2 COMPLETED, 1 DEFERRED"


def test_a_run_whose_process_is_gone_is_reported_as_crashed(repo: Path, capsys):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    record = RunRecord(run_id="20261121T091403Z-abc123", pid=child.pid, pid_create_time=1.0,
                       started="2026-11-21T09:14:03Z", status="running",
                       tickets={"CALC-003": TicketRecord(id="CALC-003", title="Add subtraction",
                                                         start="2026-11-21T09:14:04Z")})
    write_run(repo / ".sage", record)
    code, out = sage_status(repo, capsys)
    assert code == 0
    assert out.splitlines()[0] == (
        f"last run 20261121T091403Z-abc123: crashed (pid {child.pid} gone), started"
        " 2026-11-21T09:14:03Z; the next `sage stream` will recover it")
    assert "CALC-003" in out and "running" in out


def test_the_alive_run_is_shown_even_if_a_newer_record_exists(repo: Path, capsys):
    live = RunRecord.for_this_process("20261121T091403Z-000001", started="2026-11-21T09:14:03Z")
    live.status = "running"
    live.tickets["CALC-003"] = TicketRecord(id="CALC-003", title="Add subtraction", outcome="running",
                                            start="2026-11-21T09:14:04Z")
    write_run(repo / ".sage", live)
    newer = finished_run(repo)
    newer.run_id, newer.status, newer.exit_code = "20261121T091500Z-000002", "failed", 1
    write_run(repo / ".sage", newer)
    code, out = sage_status(repo, capsys)
    assert code == 0
    assert out.startswith(f"current run 20261121T091403Z-000001: running (pid {os.getpid()}) since"
                          " 2026-11-21T09:14:03Z")


def test_json_output(repo: Path, capsys):
    write_run(repo / ".sage", finished_run(repo))
    code, out = sage_status(repo, capsys, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["run"]["run_id"] == "20261121T091403Z-abc123"
    assert data["run"]["state"] == "finished" and data["run"]["alive"] is False
    assert data["run"]["tickets"]["CALC-002"]["commit"] == "3f2a1c9d0e8b"
    assert data["index"]["counts"] == {"UNPROCESSED": 1, "IN_PROGRESS": 1, "COMPLETED": 2, "DEFERRED": 1}


def test_json_output_without_runs(repo: Path, capsys):
    code, out = sage_status(repo, capsys, "--json")
    assert code == 0 and json.loads(out)["run"] is None


def test_the_index_is_found_from_the_working_directory(repo: Path, capsys, monkeypatch):
    (repo / ".git").mkdir()
    (repo / "src").mkdir()
    monkeypatch.chdir(repo / "src")
    assert run(["status"]) == 0
    assert "no runs yet" in capsys.readouterr().out


def test_a_broken_index_still_shows_the_run_and_fails(repo: Path, capsys):
    write_run(repo / ".sage", finished_run(repo))
    (repo / ".sage" / "tickets" / "index.json").write_text("{not json")
    code, out = sage_status(repo, capsys)
    assert code == 1
    assert "last run 20261121T091403Z-abc123" in out
    assert "tickets: " in out and "invalid JSON" in out


def test_a_garbage_run_record_is_an_error_naming_the_file(repo: Path, capsys):
    runs = repo / ".sage" / "runs"
    runs.mkdir()
    (runs / "20261121T091403Z-abc123.json").write_text("[]")
    code, out = sage_status(repo, capsys)
    assert code == 1
    assert "20261121T091403Z-abc123.json" in out and "Traceback" not in out


def test_status_does_not_import_rich(repo: Path):
    code = ("import sys; from sage_stream.cli import run; "
            f"code = run(['status', '--index', {str(repo / '.sage/tickets/index.json')!r}]); "
            "sys.exit(10 + code if 'rich' in sys.modules else code)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_one_worker_reads_as_one_worker(repo: Path, capsys):
    from dataclasses import replace

    write_run(repo / ".sage", replace(finished_run(repo), workers=1, workers_reason="requested 1"))
    code, out = sage_status(repo, capsys)
    assert "1 worker (requested 1)" in out and "1 workers" not in out
