"""`sage report` and `sage graph --format svg|html` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.synthetic_run import synthetic_run
from sage_stream.cli import run
from sage_stream.engine.run_record import record_from_events, write_run


@pytest.fixture
def sage_dir(tmp_path: Path) -> Path:
    sage = tmp_path / ".sage"
    (sage / "tickets").mkdir(parents=True)
    tickets = [{"id": f"G-{n}", "title": f"g{n}", "state": "COMPLETED" if n == 1 else "UNPROCESSED",
                "priority": "P1", "type": "implementation", "validation_type": "generic",
                "dependencies": [f"G-{n - 1}"] if n > 1 else []} for n in (1, 2, 3)]
    (sage / "tickets" / "index.json").write_text(json.dumps({"version": "1.0", "tickets": tickets}))
    return sage


def sage(sage_dir: Path, *args: str) -> int:
    return run([*args, "--index", str(sage_dir / "tickets" / "index.json")])


def test_html_goes_beside_the_record_and_json_and_text_to_stdout(sage_dir, capsys):
    older = synthetic_run(5, 2, run_id="20261201T000000Z-aaaaaa").record
    newer = synthetic_run(12, 3, run_id="20261202T000000Z-bbbbbb").record
    write_run(sage_dir, older)
    write_run(sage_dir, newer)

    assert sage(sage_dir, "report") == 0
    page = sage_dir / "runs" / "20261202T000000Z-bbbbbb.html"
    assert capsys.readouterr().out.strip() == str(page)
    assert page.read_text().startswith("<!DOCTYPE html>") and "http-equiv" not in page.read_text()

    assert sage(sage_dir, "report", "20261201T000000Z-aaaaaa", "--format", "json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["run_id"] == "20261201T000000Z-aaaaaa" and len(data["tickets"]) == 5

    assert sage(sage_dir, "report", "--format", "text", "-o", str(sage_dir / "r.txt")) == 0
    assert "makespan" in (sage_dir / "r.txt").read_text()


@pytest.mark.parametrize("args, message", [
    ((), "no run recorded in"),
    (("nope",), "no run 'nope'"),
    (("../escape",), "invalid run id '../escape'"),
    (("--format", "json", "--open"), "--open shows an html page"),
])
def test_a_missing_or_invalid_run_is_a_message_and_exit_1(sage_dir, capsys, args, message):
    assert sage(sage_dir, "report", *args) == 1
    captured = capsys.readouterr()
    assert message in captured.err and "Traceback" not in captured.err
    assert not (sage_dir / "runs").exists() or not list((sage_dir / "runs").glob("*.html"))


def test_an_unreadable_record_is_named_and_nothing_is_written(sage_dir, capsys):
    (sage_dir / "runs").mkdir()
    (sage_dir / "runs" / "20261202T000000Z-cccccc.json").write_text("{not json")
    assert sage(sage_dir, "report") == 1
    err = capsys.readouterr().err
    assert "20261202T000000Z-cccccc.json" in err and "invalid JSON" in err
    assert sorted(path.name for path in (sage_dir / "runs").iterdir()) == ["20261202T000000Z-cccccc.json"]


def test_an_output_that_cannot_be_written_is_named(sage_dir, capsys, tmp_path):
    write_run(sage_dir, synthetic_run(3, 1).record)
    target = tmp_path / "no-such-dir" / "r.html"
    assert sage(sage_dir, "report", "-o", str(target)) == 1
    assert f"{target}: cannot write the report" in capsys.readouterr().err


def test_graph_draws_the_whole_backlog_as_svg_or_a_page(sage_dir, capsys):
    assert sage(sage_dir, "graph", "--format", "svg") == 0
    svg = capsys.readouterr().out
    assert svg.startswith('<svg id="graph"') and svg.count('class="node') == 3
    assert 'data-ticket="G-1" data-state="completed"' in svg and "<style>" in svg
    assert svg.count("edge-line crit") == 1  # the critical path of what is left: G-2 -> G-3
    assert sage(sage_dir, "graph", "--format", "html") == 0
    assert capsys.readouterr().out.startswith("<!DOCTYPE html>")


def test_a_run_killed_mid_way_reports_what_happened_without_reloading(sage_dir, capsys):
    killed = synthetic_run(12, 3, finished=False)
    cut = [event for event in killed.events if event.time < killed.events[len(killed.events) // 2].time]
    record = record_from_events("20261202T000000Z-dddddd", cut)
    assert record.status == "running" and record.pid is None  # its process is gone: not alive
    write_run(sage_dir, record)
    assert sage(sage_dir, "report") == 0
    page = Path(capsys.readouterr().out.strip()).read_text()
    assert "http-equiv" not in page and 'class="bar o-running open"' in page
    assert sage(sage_dir, "report", "--format", "json") == 0
    data = json.loads(capsys.readouterr().out)
    assert [bar["ticket"] for bar in data["bars"] if bar["open"]]
    assert all(bar["end"] <= data["totals"]["makespan_s"] for bar in data["bars"])


def test_open_shows_the_written_page_in_a_browser(sage_dir, capsys, monkeypatch, tmp_path):
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    write_run(sage_dir, synthetic_run(3, 1).record)
    target = tmp_path / "r.html"
    assert sage(sage_dir, "report", "-o", str(target), "--open") == 0
    assert opened == [target.resolve().as_uri()] and target.read_text().startswith("<!DOCTYPE html>")
