"""`sage ready`, `sage graph` and `sage plan`, run through the CLI entry point."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sage_stream.cli import run
from sage_stream.commands.plan import recommendation_reason
from sage_stream.graph.simulate import WorkerPlan, recommend_workers
from sage_stream.text import PRETTY_JSON_LIMIT

CALC = [
    {"id": "CALC-001", "priority": "P0", "estimate": 1},
    {"id": "CALC-002", "priority": "P1", "estimate": 2, "dependencies": ["CALC-001"]},
    {"id": "CALC-003", "priority": "P1", "estimate": 2, "dependencies": ["CALC-001"]},
    {"id": "CALC-004", "priority": "P1", "estimate": 3, "dependencies": ["CALC-001"]},
    {"id": "CALC-005", "priority": "P1", "estimate": 2, "dependencies": ["CALC-002", "CALC-003", "CALC-004"]},
    {"id": "CALC-006", "priority": "P2", "estimate": 1, "dependencies": ["CALC-005"]},
    {"id": "CALC-007", "priority": "P1", "estimate": 2, "dependencies": ["CALC-005"]},
    {"id": "CALC-008", "priority": "P3", "estimate": 1},
]


def write_index(tmp_path: Path, tickets: list[dict[str, Any]]) -> Path:
    full = []
    for item in tickets:
        full.append(
            {
                "title": f"title of {item['id']}",
                "state": "UNPROCESSED",
                "type": "implementation",
                "validation_type": "generic",
                "dependencies": [],
                **item,
            }
        )
    path = tmp_path / ".sage" / "tickets" / "index.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"version": "1.0", "tickets": full}, indent=2), encoding="utf-8")
    return path


def sage(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = run(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---------------------------------------------------------------- ready


def test_ready_lists_what_starts_next_in_order_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index = write_index(tmp_path, CALC)
    code, out, _ = sage(capsys, "ready", "--index", str(index))
    assert code == 0
    first = out.index("1. CALC-001")
    second = out.index("2. CALC-008")
    assert first < second
    assert "(P0, 8.0 min of work waits on it)" in out
    assert "(P3, 1.0 min of work waits on it)" in out
    assert "Critical path, 8.0 min: CALC-001 -> CALC-004 -> CALC-005 -> CALC-007" in out


def test_ready_explains_why_blocked_tickets_wait(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = write_index(
        tmp_path,
        [
            {"id": "TKT-001", "state": "COMPLETED"},
            {
                "id": "TKT-004",
                "state": "DEFERRED",
                "dependencies": ["TKT-001"],
                "defer_reason": {"category": "persistent_test_failure", "message": "tests failed"},
            },
            {"id": "TKT-005", "dependencies": ["TKT-004"]},
            {"id": "TKT-006", "dependencies": ["TKT-005"]},
            {"id": "TKT-007", "state": "IN_PROGRESS"},
        ],
    )
    code, out, _ = sage(capsys, "ready", "--index", str(index))
    assert code == 0
    assert "TKT-005  title of TKT-005  (blocked by TKT-004, DEFERRED: tests failed)" in out
    assert "TKT-006  title of TKT-006  (waits on TKT-005; blocked by TKT-004, DEFERRED: tests failed)" in out
    assert "In progress (1):\n  TKT-007" in out
    assert "TKT-004  title of TKT-004  (persistent_test_failure: tests failed)" in out
    assert "Ready to start" not in out


def test_ready_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = write_index(
        tmp_path,
        [
            {"id": "A-1", "state": "DEFERRED", "defer_reason": {"message": "boom"}},
            {"id": "A-2", "dependencies": ["A-1"]},
            {"id": "A-3", "priority": "P1", "estimate": 4},
        ],
    )
    code, out, _ = sage(capsys, "ready", "--json", "--index", str(index))
    assert code == 0
    data = json.loads(out)
    assert [item["id"] for item in data["ready"]] == ["A-3"]
    assert data["ready"][0]["reason"] == "P1, 4.0 min of work waits on it"
    [blocked] = data["blocked"]
    assert blocked["id"] == "A-2"
    assert blocked["root_causes"] == [{"id": "A-1", "state": "DEFERRED", "reason": "boom"}]
    assert data["deferred"] == [{"id": "A-1", "title": "title of A-1", "category": None, "message": "boom"}]


def test_ready_keeps_ticket_text_on_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = write_index(tmp_path, [{"id": "A-1", "title": "two\nlines \x1b[31mred"}])
    _, out, _ = sage(capsys, "ready", "--index", str(index))
    assert "1. A-1  two lines  [31mred" in out
    assert "\x1b" not in out


def test_ready_when_everything_is_done(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = write_index(tmp_path, [{"id": "A-1", "state": "COMPLETED"}])
    code, out, _ = sage(capsys, "ready", "--index", str(index))
    assert (code, out.strip()) == (0, "Nothing left to do: all 1 tickets are COMPLETED.")


@pytest.mark.parametrize("name", ["ready", "graph", "plan"])
def test_graph_errors_stop_the_command_and_point_at_validate(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index = write_index(
        tmp_path,
        [
            {"id": "A-1", "dependencies": ["A-2"]},
            {"id": "A-2", "dependencies": ["A-1"]},
            {"id": "A-3", "dependencies": ["A-03"]},
        ],
    )
    code, out, err = sage(capsys, name, "--index", str(index))
    assert code == 1
    assert out == ""
    assert f"error: {index}: the dependency graph has 2 errors:" in err
    assert "dependency cycle: A-1 -> A-2 -> A-1" in err
    assert "A-3 depends on A-03, which is not in the index; did you mean A-3?" in err
    assert "sage validate" in err
    assert "Traceback" not in err


def test_a_missing_index_is_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = sage(capsys, "ready", "--index", str(tmp_path / "nope.json"))
    assert code == 1
    assert "no such file" in err


def test_the_index_is_found_from_the_working_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_index(tmp_path, CALC)
    (tmp_path / ".git").mkdir()
    monkeypatch.chdir(tmp_path)
    code, out, _ = sage(capsys, "ready")
    assert code == 0 and "1. CALC-001" in out


# ---------------------------------------------------------------- graph

NASTY_TITLES = [
    'Quote " in the middle',
    "Brackets [x] (y) {z} <b>",
    "Hash #35; & &amp; entity",
    "New\nline\r\nand\ttab",
    'Back\\slash \\n \\" end\\',
    "`code` ; semicolon |pipe| --> arrow",
]


def nasty_backlog() -> list[dict[str, Any]]:
    tickets: list[dict[str, Any]] = [{"id": f"N-{n}", "title": title} for n, title in enumerate(NASTY_TITLES)]
    for n in range(1, len(tickets)):
        tickets[n]["dependencies"] = [f"N-{n - 1}"]
    tickets[0]["state"] = "COMPLETED"
    tickets[1]["state"] = "IN_PROGRESS"
    return tickets


def test_graph_mermaid_highlights_the_critical_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index = write_index(tmp_path, CALC)
    code, out, _ = sage(capsys, "graph", "--index", str(index))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "flowchart TD"
    assert '    n0["CALC-001: title of CALC-001<br/>UNPROCESSED"]' in lines
    assert "    n0 --> n3" in lines  # CALC-001 before CALC-004
    assert any(line.strip().startswith("classDef critical ") for line in lines)
    assert "    class n0,n3,n4,n6 critical;" in lines
    assert "    linkStyle 2,5,7 stroke:#d00000,stroke-width:3px;" in lines


def test_graph_mermaid_titles_cannot_break_the_syntax(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index = write_index(tmp_path, nasty_backlog())
    code, out, _ = sage(capsys, "graph", "--format", "mermaid", "--index", str(index))
    assert code == 0
    nodes = [line for line in out.splitlines() if re.match(r"\s+n\d+\[", line)]
    assert len(nodes) == len(NASTY_TITLES)
    for line in nodes:
        # one quoted label per node line, nothing but entities and plain text inside
        assert re.fullmatch(r'    n\d+\["[^"<>`;\n]*(<br/>)[A-Z_]+"\]', re.sub(r"#\d+;", "", line)), line
    assert 'n0["N-0: Quote #34; in the middle<br/>COMPLETED"]' in out
    assert "Hash #35;35#59; #38; #38;amp#59; entity" in out
    assert "New line  and tab" in out
    assert "    class n0 completed;" in out
    assert "    class n1 in_progress;" not in out  # IN_PROGRESS but on the critical path: critical wins


def test_graph_dot_escapes_quotes_backslashes_and_entities(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index = write_index(tmp_path, nasty_backlog())
    code, out, _ = sage(capsys, "graph", "--format", "dot", "--index", str(index))
    assert code == 0
    assert out.startswith("digraph dependencies {")
    assert out.rstrip().endswith("}")
    assert '"N-0" [label="N-0\\nQuote \\" in the middle\\nCOMPLETED"' in out
    assert 'Back\\\\slash \\\\n \\\\\\" end\\\\\\nUNPROCESSED' in out
    assert "Hash #35; &amp; &amp;amp; entity" in out
    # every line holds balanced, properly escaped strings: strip escapes, then count quotes
    for line in out.splitlines():
        assert re.sub(r"\\.", "", line).count('"') % 2 == 0, line
    assert '"N-4" -> "N-5" [color="#d00000", penwidth=3];' in out


def test_graph_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = write_index(tmp_path, CALC)
    code, out, _ = sage(capsys, "graph", "--format", "json", "--index", str(index))
    assert code == 0
    data = json.loads(out)
    assert [node["id"] for node in data["nodes"]] == [item["id"] for item in CALC]
    assert {"from": "CALC-001", "to": "CALC-004", "critical": True} in data["edges"]
    assert {"from": "CALC-001", "to": "CALC-002", "critical": False} in data["edges"]
    assert data["critical_path"] == ["CALC-001", "CALC-004", "CALC-005", "CALC-007"]
    assert data["critical_path_minutes"] == 8
    assert next(node for node in data["nodes"] if node["id"] == "CALC-004")["critical"] is True


def test_graph_refuses_an_unknown_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = write_index(tmp_path, CALC)
    code, _, err = sage(capsys, "graph", "--format", "png", "--index", str(index))
    assert code == 1
    assert "png" in err


# ---------------------------------------------------------------- plan


def test_plan_predicts_one_to_eight_workers_and_recommends(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index = write_index(tmp_path, CALC)
    code, out, _ = sage(capsys, "plan", "--index", str(index))
    assert code == 0
    rows = re.findall(r"^\s+(\d+)\s+([\d.]+) min\s+([\d.]+) min", out, re.MULTILINE)
    assert [(int(w), float(m), float(b)) for w, m, b in rows] == [
        (1, 14, 14),
        (2, 9, 8),
        (3, 8, 8),
        (4, 8, 8),
        (5, 8, 8),
        (6, 8, 8),
        (7, 8, 8),
        (8, 8, 8),
    ]
    assert re.search(r"^\s+3\s+8.0 min\s+8.0 min  <- recommended$", out, re.MULTILINE)
    assert "Recommended: 3 workers already reach the critical path (8.0 min)" in out
    assert "Remaining work: 8 tickets, 14.0 min of agent time." in out


def test_plan_for_one_worker_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = write_index(tmp_path, CALC)
    code, out, _ = sage(capsys, "plan", "--workers", "2", "--json", "--index", str(index))
    assert code == 0
    data = json.loads(out)
    assert data["plans"] == [{"workers": 2, "makespan_minutes": 9.0, "lower_bound_minutes": 8.0}]
    assert data["recommended_workers"] == 3
    assert data["critical_path_minutes"] == 8
    assert data["total_minutes"] == 14


def test_plan_for_more_than_eight_workers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = write_index(tmp_path, [{"id": f"J-{n}", "estimate": 1} for n in range(32)])
    code, out, _ = sage(capsys, "plan", "--workers", "16", "--json", "--index", str(index))
    assert code == 0
    data = json.loads(out)
    assert data["plans"] == [{"workers": 16, "makespan_minutes": 2.0, "lower_bound_minutes": 2.0}]
    assert data["recommended_workers"] == 16
    assert "the best prediction" in data["reason"]


def test_plan_reason_when_the_critical_path_is_reached(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 20 one-minute jobs and one of 4: 5 workers take 5 min, 6..8 take 4 min (the long job)
    index = write_index(
        tmp_path, [*({"id": f"J-{n}", "estimate": 1} for n in range(20)), {"id": "L-1", "estimate": 4}]
    )
    code, out, _ = sage(capsys, "plan", "--json", "--index", str(index))
    data = json.loads(out)
    makespans = {row["workers"]: row["makespan_minutes"] for row in data["plans"]}
    assert makespans[6] == 4.0 and makespans[5] == 5.0
    assert data["recommended_workers"] == 6
    assert data["reason"].startswith("6 workers already reach the critical path (4.0 min)")


def test_plan_reason_when_more_workers_save_less_than_five_percent() -> None:
    plans = [WorkerPlan(1, 100.0), WorkerPlan(2, 52.0), WorkerPlan(3, 50.0)]
    assert recommend_workers(plans) == 2
    assert recommendation_reason(plans, 2, critical_path=10.0) == (
        "2 workers finish in 52.0 min, within 5% of the best prediction (50.0 min with 3);"
        " more workers save less than that"
    )


def test_plan_rejects_zero_workers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = write_index(tmp_path, CALC)
    code, _, err = sage(capsys, "plan", "--workers", "0", "--index", str(index))
    assert code == 1
    assert "--workers" in err


def test_plan_with_nothing_left(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = write_index(tmp_path, [{"id": "A-1", "state": "COMPLETED"}])
    code, out, _ = sage(capsys, "plan", "--index", str(index))
    assert (code, out.strip()) == (0, "Nothing left to do: every ticket is COMPLETED.")


# ---------------------------------------------------------------- JSON of a big index


def chain_of(count: int) -> list[dict[str, Any]]:
    """`count` tickets, each depending on the one before: one ready, the rest blocked."""
    return [{"id": f"C-{n:05d}", **({"dependencies": [f"C-{n - 1:05d}"]} if n else {})} for n in range(count)]


def test_ready_json_of_a_small_index_is_indented(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = write_index(tmp_path, chain_of(3))
    _, out, _ = sage(capsys, "ready", "--json", "--index", str(index))
    assert out.startswith('{\n  "index": ')


def test_ready_json_of_a_big_index_is_one_compact_line_with_every_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index = write_index(tmp_path, chain_of(PRETTY_JSON_LIMIT + 1))
    code, out, _ = sage(capsys, "ready", "--json", "--index", str(index))
    assert code == 0
    assert out.count("\n") == 1 and '": ' not in out  # json's C encoder, not the indenting one
    data = json.loads(out)
    assert [item["id"] for item in data["ready"]] == ["C-00000"]
    assert len(data["blocked"]) == PRETTY_JSON_LIMIT
    assert data["blocked"][-1] == {
        "id": f"C-{PRETTY_JSON_LIMIT:05d}", "title": f"title of C-{PRETTY_JSON_LIMIT:05d}",
        "waiting_on": [f"C-{PRETTY_JSON_LIMIT - 1:05d}"],
        "root_causes": [{"id": "C-00000", "state": "UNPROCESSED", "reason": "ready, not started yet"}],
        "more_root_causes": False, "reason": f"waits on C-{PRETTY_JSON_LIMIT - 1:05d}; blocked by "
        "C-00000, UNPROCESSED: ready, not started yet",
    }


def test_graph_json_of_a_big_index_is_one_compact_line_with_every_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    count = PRETTY_JSON_LIMIT // 2 + 1  # nodes and edges together are over the limit
    index = write_index(tmp_path, chain_of(count))
    code, out, _ = sage(capsys, "graph", "--format", "json", "--index", str(index))
    assert code == 0
    assert out.count("\n") == 1 and '": ' not in out
    data = json.loads(out)
    assert len(data["nodes"]) == count and len(data["edges"]) == count - 1
    assert data["edges"][0] == {"from": "C-00000", "to": "C-00001", "critical": True}
    assert data["critical_path_minutes"] == count


def test_big_graph_json_is_the_text_json_writes_for_the_same_graph(tmp_path: Path) -> None:
    # written column by column above the limit: the very text json.dumps gives the dicts
    from sage_stream.commands.graph import GraphView, as_json
    from sage_stream.graph.dependency_graph import read_sound_index

    tickets: list[dict[str, Any]] = [
        {"id": "Z-1", "title": 'quote " back \\ slash, tab\t, é, \u2028, emoji \U0001F600, 100% \x00',
         "state": "COMPLETED", "estimate": 0.1},
        {"id": "Y-1", "title": "", "priority": "P0", "estimate": 1e-7, "dependencies": ["Z-1"]},
        {"id": "X-1", "title": "x", "state": "IN_PROGRESS", "priority": "odd", "estimate": 12345678.9},
        {"id": "W-1", "state": "DEFERRED", "dependencies": ["Y-1", "X-1", "Y-1"], "estimate": 3},
    ]
    tickets += chain_of(PRETTY_JSON_LIMIT // 2)
    tickets[-1]["dependencies"] = ["W-1", "C-00003"]
    loaded, graph = read_sound_index(write_index(tmp_path, tickets))
    view = GraphView(loaded.tickets, graph)
    assert len(view.tickets) + len(view.edges) > PRETTY_JSON_LIMIT
    path = view.critical_path
    steps = set(zip(path, path[1:]))
    expected = {
        "nodes": [{"id": t.id, "title": t.title, "state": t.state.value, "priority": t.priority,
                   "estimate": t.estimate, "critical": t.id in path} for t in loaded.tickets],
        "edges": [{"from": before.id, "to": after.id, "critical": (before.id, after.id) in steps}
                  for before in loaded.tickets for after in loaded.tickets if before.id in after.dependencies],
        "critical_path": path,
        "critical_path_minutes": view.critical_path_minutes,
    }
    assert as_json(view) == json.dumps(expected, ensure_ascii=False, separators=(",", ":"))
    assert len(path) > 2 and '"critical":true' in as_json(view)


# ---------------------------------------------------------------- big outputs: shared work, no teardown


def _many_blocked() -> list[dict[str, Any]]:
    """Blocked tickets of every kind: behind one root, behind several, behind more roots than
    are kept, behind their own not_before, and chains that repeat the same root causes."""
    tickets: list[dict[str, Any]] = [
        {"id": "ROOT-1", "state": "DEFERRED", "defer_reason": {"category": "conflict", "message": "merge"}},
        {"id": "ROOT-2", "state": "IN_PROGRESS"},
        {"id": "LATER", "not_before": "2999-01-01T00:00:00Z"},
        {"id": "LATER-DEP", "not_before": "2999-01-01T00:00:00Z", "dependencies": ["ROOT-1"]},
    ]
    tickets += [{"id": f"WIDE-{n}", "state": "DEFERRED"} for n in range(12)]
    tickets.append({"id": "WIDE-ALL", "dependencies": [f"WIDE-{n}" for n in range(12)]})
    for chain in range(20):
        below = ["ROOT-1"] if chain % 3 == 0 else ["ROOT-1", "ROOT-2"] if chain % 3 == 1 else ["WIDE-ALL"]
        for step in range(5):
            ticket_id = f"C{chain}-{step}"
            tickets.append({"id": ticket_id, "dependencies": below})
            below = [ticket_id, "LATER"] if step == 2 else [ticket_id]
    return tickets


def test_ready_shares_one_description_per_root_causes_and_says_what_each_ticket_would_alone(
    tmp_path: Path,
) -> None:
    from sage_stream.commands.ready import BlockedReasons, blocked_reason
    from sage_stream.graph.analysis import analyze
    from sage_stream.tickets.store import read_index

    index = write_index(tmp_path, _many_blocked())
    analysis = analyze(read_index(index).tickets)
    shared = BlockedReasons()
    assert len(analysis.blocked) > 100
    assert [shared(b) for b in analysis.blocked] == [blocked_reason(b) for b in analysis.blocked]
    assert any(b.more_root_causes for b in analysis.blocked)
    assert any(b.ticket_id in {c.ticket_id for c in b.root_causes} for b in analysis.blocked)
    assert any(shared(b).startswith("waits on ") for b in analysis.blocked)


@pytest.mark.parametrize(("argv", "at_least"), [
    (["ready", "--json"], 70_000), (["ready"], 70_000), (["plan"], 500), (["graph", "--format", "json"], 70_000),
])
def test_read_only_commands_end_without_freeing_after_writing_all_their_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], at_least: int,
) -> None:
    # like validate, these only read: `main` ends them with os._exit once the output (here far
    # longer than a pipe's buffer) is written and the atexit functions ran; the garbage
    # collector stays off for the whole process, which is what the atexit function sees
    index = write_index(tmp_path, _many_blocked() + [{"id": f"FREE-{n}"} for n in range(1500)])
    code, expected, _ = sage(capsys, *argv, "--index", str(index))
    marker = tmp_path / "atexit-ran"
    program = ("import atexit, gc, sys; from pathlib import Path;"
               " atexit.register(lambda: Path(sys.argv[1]).write_text(f'gc enabled: {gc.isenabled()}'));"
               " from sage_stream.cli import main; main(sys.argv[2:])")
    result = subprocess.run([sys.executable, "-c", program, str(marker), *argv, "--index", str(index)],
                            capture_output=True, text=True, check=False, timeout=120)
    assert len(expected) > at_least

    def steady(text: str) -> str:  # `plan` names the memory available now, which moves between two runs
        return re.sub(r"[\d,]+ MB available", "N MB available", text)

    assert (result.returncode, steady(result.stdout), result.stderr) == (code, steady(expected), "")
    assert marker.read_text() == "gc enabled: False"
