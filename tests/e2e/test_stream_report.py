"""A real `sage stream` (exec agent) leaves a record the report draws: every ticket, its
attempt's phases in order, one lane per worker, and the page the run kept live."""

from __future__ import annotations

import json

import pytest

from sage_stream.cli import run
from tests.e2e.test_stream_exec import make_ticket, repo, stream, write_file_cmd, write_index  # noqa: F401


@pytest.mark.slow
def test_a_real_run_is_reported_from_its_record(repo, capsys):  # noqa: F811
    write_index(repo, [
        make_ticket("R-001", write_file_cmd("a.txt", "a\n", sleep=0.3), files=["a.txt"]),
        make_ticket("R-002", write_file_cmd("b.txt", "b\n"), files=["b.txt"], deps=["R-001"]),
        make_ticket("R-003", write_file_cmd("c.txt", "c\n"), files=["c.txt"]),
    ])
    code, events = stream(repo, capsys, "--parallel", "2")
    assert code == 0
    [started] = [e for e in events if e["event"] == "run_started"]
    [finished] = [e for e in events if e["event"] == "run_finished"]
    page = repo / ".sage" / "runs" / f"{started['run_id']}.html"
    assert started["report_path"] == finished["report_path"] == str(page)
    assert page.is_file() and "http-equiv" not in page.read_text()  # the final page no longer reloads

    index = str(repo / ".sage/tickets/index.json")
    assert run(["report", "--format", "json", "--index", index]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["run_id"] == started["run_id"] and data["lanes"] == [0, 1]
    bars = {bar["ticket"]: bar for bar in data["bars"]}
    assert set(bars) == {"R-001", "R-002", "R-003"}
    for bar in bars.values():
        names = [phase["phase"] for phase in bar["phases"]]
        assert bar["outcome"] == "landed" and names[-1] == "landing"
        assert "agent" in names and bar["row"] in (0, 1) and bar["log"]
        assert all(a["end"] <= b["start"] + 0.01 for a, b in zip(bar["phases"], bar["phases"][1:]))
    assert bars["R-002"]["start"] >= bars["R-001"]["end"] - 0.01  # it waited on its dependency
    assert data["critical_path"][-1] == "R-002" and data["totals"]["landed"] == 3
