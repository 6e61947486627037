"""The validate report: exit codes, the human lines and the JSON contract."""

from __future__ import annotations

import json

import pytest

from sage_stream.findings import Finding, Severity
from sage_stream.validation.prerequisites import Prerequisite
from sage_stream.validation.report import (
    MAX_LINES_PER_CHECK,
    PRETTY_JSON_LIMIT,
    ValidationReport,
    finding_json,
    finding_line,
    render_human,
    render_json,
    summary_line,
)

FILE = "/repo/.sage/tickets/index.json"


def error(code: str = "cycle", **fields) -> Finding:
    return Finding(Severity.ERROR, code, fields.pop("message", "A depends on B"), file=FILE, **fields)


def warning(code: str = "priority", **fields) -> Finding:
    return Finding(Severity.WARNING, code, fields.pop("message", "P9 is not P0..P4"), file=FILE, **fields)


@pytest.mark.parametrize("findings, exit_code, valid", [
    ([], 0, True),
    ([warning()], 2, True),
    ([warning(), error()], 1, False),
])
def test_exit_code_and_validity(findings: list[Finding], exit_code: int, valid: bool) -> None:
    report = ValidationReport(index=FILE, tickets=3, findings=findings)
    assert report.exit_code == exit_code
    assert report.valid is valid
    assert report.as_json()["exit_code"] == exit_code


def test_finding_json_is_exactly_finding_as_json() -> None:
    findings = [
        error(ticket="A-1", field="dependencies", expected="no cycle", found="A-1 -> A-1"),
        warning(),
        Finding(Severity.WARNING, "prerequisite_git_work_tree", "not a work tree"),
    ]
    for finding in findings:
        assert finding_json(finding) == finding.as_json()
        assert list(finding_json(finding)) == list(finding.as_json())


def test_a_finding_line_names_file_ticket_and_field() -> None:
    graph_style = error(ticket="TKT-002", field="dependencies", message="TKT-002 depends on TKT-9")
    assert finding_line(graph_style) == f"{FILE}: ticket TKT-002, field 'dependencies': TKT-002 depends on TKT-9"
    store_style = error(ticket="#2", field="id", message=f"{FILE}: ticket #2, field 'id': required field is missing")
    assert finding_line(store_style) == store_style.message
    multi_line = error(message="first\nsecond")
    assert "\n" not in finding_line(multi_line)
    escape = error(ticket="X-1", field="dependencies", message="X-1 depends on \x1b[2J, unknown")
    assert finding_line(escape).endswith("X-1 depends on \\x1b[2J, unknown")
    no_file = Finding(Severity.WARNING, "prerequisite_git_installed", "git is not installed")
    assert finding_line(no_file) == "git is not installed"


def test_human_output_groups_by_check_errors_before_warnings() -> None:
    report = ValidationReport(index=FILE, tickets=4, findings=[
        error("cycle", ticket="A-1", field="dependencies"),
        error("cycle", ticket="B-1", field="dependencies"),
        error("invalid_type", ticket="C-1", field="type", message="feature is not a type"),
        warning("priority", ticket="D-1", field="priority"),
    ])
    text = render_human(report)
    assert text.index("errors:") < text.index("  cycle (2):") < text.index("  invalid_type (1):")
    assert text.index("  invalid_type (1):") < text.index("warnings:") < text.index("  priority (1):")
    assert text.splitlines()[-1] == "4 tickets: 3 errors, 1 warning; no schedule analysis until the errors are fixed"


def test_human_output_shows_a_bounded_number_of_lines_per_check() -> None:
    findings = [warning(ticket=f"T-{n}", field="priority") for n in range(MAX_LINES_PER_CHECK + 50)]
    text = render_human(ValidationReport(index=FILE, tickets=len(findings), findings=findings))
    assert sum("ticket T-" in line for line in text.splitlines()) == MAX_LINES_PER_CHECK
    assert "... and 50 more" in text and "--json" in text


def test_failed_prerequisites_are_listed_once_in_their_section() -> None:
    failed = Prerequisite("git_work_tree", False, "/x is not inside a git work tree", "/x")
    report = ValidationReport(
        index=FILE, tickets=0, prerequisites=[Prerequisite("git_version", True, "git 2.39"), failed],
        findings=[Finding(Severity.WARNING, "prerequisite_git_work_tree", failed.message, file="/x")],
    )
    text = render_human(report)
    assert text.count("not inside a git work tree") == 1
    assert "  FAIL  /x is not inside" in text and "  ok    git 2.39" in text


def test_summary_line_when_the_index_did_not_load() -> None:
    report = ValidationReport(index=FILE, tickets=None, findings=[error("invalid_json")])
    assert summary_line(report) == "index not loaded: 1 error, 0 warnings"


def test_json_report_has_the_documented_keys() -> None:
    report = ValidationReport(index=FILE, tickets=2, findings=[warning()],
                              prerequisites=[Prerequisite("git_version", True, "git 2.39")],
                              states={"UNPROCESSED": 2, "IN_PROGRESS": 0, "COMPLETED": 0, "DEFERRED": 0})
    data = json.loads(render_json(report))
    assert list(data) == ["valid", "exit_code", "strict", "index", "summary", "errors", "warnings",
                          "analysis", "prerequisites"]
    assert data["summary"] == {"tickets": 2, "errors": 0, "warnings": 1, "states": report.states,
                               "ready": None, "recommended_workers": None, "auto_workers": None,
                               "auto_workers_rule": None}
    assert data["warnings"] == [warning().as_json()]
    assert data["prerequisites"] == [{"name": "git_version", "ok": True, "message": "git 2.39", "path": None}]


def test_large_json_reports_are_one_line_and_say_the_same() -> None:
    small = ValidationReport(index=FILE, tickets=1, findings=[warning()])
    assert "\n" in render_json(small)
    many = [warning(ticket=f"T-{n}") for n in range(PRETTY_JSON_LIMIT + 1)]
    large = ValidationReport(index=FILE, tickets=len(many), findings=many)
    text = render_json(large)
    assert "\n" not in text
    assert json.loads(text) == large.as_json()


def test_the_summary_says_which_rule_chose_the_worker_count(monkeypatch: pytest.MonkeyPatch) -> None:
    from sage_stream.graph import analysis as analysis_module
    from sage_stream.tickets.models import Ticket

    tickets = [Ticket(id=f"T-{n}", title="t", state="UNPROCESSED") for n in range(4)]
    analysis = analysis_module.analyze(tickets)
    simulated = ValidationReport(index=FILE, tickets=4, findings=[], analysis=analysis)
    assert summary_line(simulated).endswith("(smallest count within 5% of the best predicted makespan)")
    assert json.loads(render_json(simulated))["analysis"]["recommended_workers_rule"] == "simulation"

    monkeypatch.setattr(analysis_module, "SIMULATED_UP_TO", 3)
    bounded = ValidationReport(index=FILE, tickets=4, findings=[], analysis=analysis_module.analyze(tickets))
    assert summary_line(bounded).endswith(
        "recommended workers: 4 (smallest count whose lower bound max(critical path, work / workers)"
        " is within 5% of the best; not simulated above 20,000 unfinished tickets)")
    assert json.loads(render_json(bounded))["analysis"]["recommended_workers_rule"] == "lower_bound"
