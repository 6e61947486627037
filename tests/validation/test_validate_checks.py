"""The checks of `sage validate`, one behaviour at a time (validation/checks.py)."""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sage_stream.errors import EXIT_ERROR, EXIT_OK, EXIT_WARNINGS
from sage_stream.validation.checks import CHECK_ORDER, escapes_repository, validate_index
from sage_stream.findings import Severity

MakeIndex = Callable[..., Path]
MakeTicket = Callable[..., dict[str, Any]]
RunGit = Callable[..., str]


def codes(report) -> list[str]:
    return [finding.code for finding in report.findings]


def add_prose(index: Path, *ids: str) -> None:
    for ticket_id in ids:
        (index.parent / f"{ticket_id}.md").write_text(f"# {ticket_id}\n", encoding="utf-8")


def test_a_clean_index_is_valid_and_gets_an_analysis(
    git_repo: Path, make_ticket: MakeTicket, make_index: MakeIndex,
) -> None:
    index = make_index(git_repo, [
        make_ticket("TKT-001"), make_ticket("TKT-002"), make_ticket("TKT-003", "TKT-001", "TKT-002"),
    ])
    add_prose(index, "TKT-001", "TKT-002", "TKT-003")
    report = validate_index(index)
    assert report.findings == []
    assert report.exit_code == EXIT_OK
    assert report.analysis is not None
    assert sorted(report.analysis.ready) == ["TKT-001", "TKT-002"]
    assert report.states == {"UNPROCESSED": 3, "IN_PROGRESS": 0, "COMPLETED": 0, "DEFERRED": 0}
    assert all(item.ok for item in report.prerequisites)


def test_lightweight_completed_records_need_only_id_state_and_title(
    git_repo: Path, make_index: MakeIndex,
) -> None:
    index = make_index(git_repo, [
        {"id": "OLD-001", "title": "Done long ago", "state": "COMPLETED"},
        {"id": "OLD-002", "title": "Imported", "state": "UNPROCESSED", "type": "legacy"},
        {"id": "NEW-001", "title": "Still to do", "state": "UNPROCESSED", "priority": "P2"},
    ])
    add_prose(index, "NEW-001", "OLD-002")
    report = validate_index(index)
    missing = [(f.ticket, f.field) for f in report.findings if f.code == "missing_field"]
    assert missing == [("NEW-001", "type"), ("NEW-001", "validation_type")]
    assert report.exit_code == EXIT_ERROR


def test_findings_come_errors_first_grouped_in_sages_check_order(
    git_repo: Path, make_ticket: MakeTicket, make_index: MakeIndex,
) -> None:
    index = make_index(git_repo, [
        make_ticket("TKT-001", type="feature"),  # invalid_type (late in Sage's order)
        make_ticket("TKT-002", "TKT-404"),  # unknown_dependency
        make_ticket("lower-1"),  # id_format warning
        {"id": "TKT-003", "title": "t", "state": "UNPROCESSED"},  # missing_field (early)
    ])
    report = validate_index(index)
    found = [code for code in codes(report) if not code.startswith("prerequisite")]
    errors = [f.code for f in report.findings if f.severity is Severity.ERROR]
    assert errors == ["missing_field", "missing_field", "missing_field", "unknown_dependency", "invalid_type"]
    assert found[len(errors):][0] == "id_format"
    assert all(code in CHECK_ORDER for code in found)


def test_unsafe_ids_are_errors_and_non_sage_ids_are_warnings(
    git_repo: Path, make_ticket: MakeTicket, make_index: MakeIndex,
) -> None:
    index = make_index(git_repo, [make_ticket("../x"), make_ticket("feature_7"), make_ticket("AUTH-001")])
    report = validate_index(index)
    by_ticket = {(f.ticket, f.code) for f in report.findings if f.field == "id"}
    assert by_ticket == {("../x", "unsafe_id"), ("feature_7", "id_format")}


@pytest.mark.parametrize(("ticket_id", "code"), [
    ("AUTH-" + "1" * 130, "unsafe_id"),  # Sage's format, but longer than a file name may be
    ("AUTH-" + "1" * 124, "unsafe_id"),  # 129 characters: one too many
    ("AUTH-1\nAUTH-2", "unsafe_id"),  # two Sage ids on two lines are not one id
    ("auth-1", "id_format"),
])
def test_one_odd_id_among_many_sage_ids_is_found(
    git_repo: Path, make_ticket: MakeTicket, make_index: MakeIndex, ticket_id: str, code: str,
) -> None:
    tickets = [make_ticket(f"AUTH-{n}") for n in range(1, 50)]
    tickets.insert(20, make_ticket(ticket_id))
    report = validate_index(make_index(git_repo, tickets))
    [finding] = [f for f in report.findings if f.field == "id"]
    assert finding.code == code and json.dumps(ticket_id).startswith(finding.found.rstrip("."))
    assert finding.ticket == (ticket_id if ticket_id.isprintable() else "#21")


@pytest.mark.parametrize("position", [0, 20, 49])
def test_sage_ids_of_128_characters_are_fine_anywhere_in_the_index(
    git_repo: Path, make_ticket: MakeTicket, make_index: MakeIndex, position: int,
) -> None:
    tickets = [make_ticket(f"AUTH-{n}") for n in range(1, 50)]
    tickets.insert(position, make_ticket("AUTH-" + "1" * 123))
    longer = [make_ticket(t["id"]) for t in tickets]
    longer[position] = make_ticket("AUTH-" + "1" * 124)
    assert [f for f in validate_index(make_index(git_repo, tickets)).findings if f.field == "id"] == []
    [finding] = [f for f in validate_index(make_index(git_repo, longer)).findings if f.field == "id"]
    assert finding.code == "unsafe_id"


def test_lightweight_completed_records_do_not_hide_a_missing_field(
    git_repo: Path, make_ticket: MakeTicket, make_index: MakeIndex,
) -> None:
    index = make_index(git_repo, [
        {"id": "OLD-1", "title": "Done", "state": "COMPLETED"},  # no priority: fine when COMPLETED
        make_ticket("NEW-1", validation_type=None),
        {**make_ticket("NEW-2"), "title": "  "},
    ])
    found = [(f.ticket, f.field) for f in validate_index(index).findings if f.code == "missing_field"]
    assert found == [("NEW-1", "validation_type"), ("NEW-2", "title")]


@pytest.mark.parametrize("path, escapes", [
    ("docs/spec.md", False),
    ("src/**/*.py", False),
    ("a/../b.md", False),
    ("./a/./b", False),
    ("../x", True),
    ("a/../../x", True),
    ("../../etc/passwd", True),
    ("/etc/*", True),
    ("\\\\server\\share", True),
    ("C:\\Windows", True),
    ("~/secrets", True),
    ("a\\..\\..\\x", True),
    ("file..name.md", False),
])
def test_escapes_repository(path: str, escapes: bool) -> None:
    assert escapes_repository(path) is escapes


def test_docs_paths_and_file_globs_must_stay_in_the_repository(
    git_repo: Path, make_ticket: MakeTicket, make_index: MakeIndex,
) -> None:
    index = make_index(git_repo, [make_ticket(
        "TKT-001",
        docs={"spec": "docs/spec.md", "plan": "../../etc/passwd", "extra_key": "/abs/notes.md"},
        files=["src/*.py", "../outside/*"],
    )])
    report = validate_index(index)
    unsafe = sorted(f.field for f in report.findings if f.code == "unsafe_path")
    assert unsafe == ["docs.extra_key", "docs.plan", "files[1]"]


def test_prose_is_warned_per_ticket_when_the_index_uses_prose_files(
    git_repo: Path, make_ticket: MakeTicket, make_index: MakeIndex,
) -> None:
    index = make_index(git_repo, [make_ticket("TKT-001"), make_ticket("TKT-002"),
                                   make_ticket("TKT-003", state="COMPLETED")])
    add_prose(index, "TKT-001")
    report = validate_index(index)
    prose = [f for f in report.findings if f.code == "missing_prose"]
    assert [f.ticket for f in prose] == ["TKT-002"]  # COMPLETED tickets need no prose
    assert prose[0].severity is Severity.WARNING
    assert "TKT-002.md" in prose[0].message and str(index) in prose[0].message
    assert report.exit_code == EXIT_WARNINGS


def test_an_index_without_any_prose_gets_one_warning_not_one_per_ticket(
    git_repo: Path, make_ticket: MakeTicket, make_index: MakeIndex,
) -> None:
    index = make_index(git_repo, [make_ticket(f"TKT-{n:03d}") for n in range(1, 41)])
    prose = [f for f in validate_index(index).findings if f.code == "missing_prose"]
    assert len(prose) == 1
    assert "TKT-001" in prose[0].message and "35 more" in prose[0].message
    assert prose[0].found == "none for 40 tickets"


def test_a_ticket_with_an_inline_description_needs_no_prose_file(
    git_repo: Path, make_ticket: MakeTicket, make_index: MakeIndex,
) -> None:
    # the --strict CI recipe of EXAMPLES.md on an index that describes its tickets inline
    index = make_index(git_repo, [make_ticket("TKT-001", description="Add a --verbose flag to the CLI."),
                                   make_ticket("TKT-002", description="Document --verbose in the README.")])
    report = validate_index(index, strict=True)
    assert [f for f in report.findings if f.code == "missing_prose"] == []
    assert report.exit_code == 0
    mixed = make_index(git_repo, [make_ticket("TKT-001", description="inline"), make_ticket("TKT-002"),
                                   make_ticket("TKT-003", description="   ")])
    prose = [f for f in validate_index(mixed).findings if f.code == "missing_prose"]
    assert len(prose) == 1 and "TKT-002" in prose[0].message and "TKT-003" in prose[0].message
    assert "TKT-001" not in prose[0].message


def test_priority_type_and_validation_type_names(
    git_repo: Path, make_ticket: MakeTicket, make_index: MakeIndex,
) -> None:
    index = make_index(git_repo, [
        make_ticket("TKT-001", priority="P5"),
        make_ticket("TKT-002", type="Bugfix"),
        make_ticket("TKT-003", validation_type="unit"),
        make_ticket("TKT-004", type="Epic"),  # template types are valid
    ])
    report = validate_index(index)
    found = {(f.ticket, f.code, f.severity) for f in report.findings if f.ticket}
    assert ("TKT-001", "priority", Severity.WARNING) in found
    assert ("TKT-002", "invalid_type", Severity.ERROR) in found
    assert ("TKT-003", "invalid_validation_type", Severity.ERROR) in found
    assert not any(ticket_id == "TKT-004" for ticket_id, code, _ in found if code != "missing_prose")
    hint = next(f for f in report.findings if f.code == "invalid_type")
    assert "did you mean bugfix?" in hint.message


def test_sub_tasks_need_id_and_description_and_a_non_empty_script(
    git_repo: Path, make_ticket: MakeTicket, make_index: MakeIndex,
) -> None:
    index = make_index(git_repo, [make_ticket("TKT-001", tasks=[
        {"id": "T1", "description": "ok", "validation_script": "pytest"},
        {"id": "T2", "description": " ", "validation_script": "  "},
    ])])
    report = validate_index(index)
    found = {(f.code, f.field) for f in report.findings if f.ticket == "TKT-001"}
    assert ("subtask_field", "tasks[1].description") in found
    assert ("empty_validation_script", "tasks[1].validation_script") in found
    assert not any(field and field.startswith("tasks[0]") for _, field in found)


def test_checkpoint_ids_must_name_commits_of_the_repository(
    git_repo: Path, make_ticket: MakeTicket, make_index: MakeIndex, run_git: RunGit,
) -> None:
    head = run_git(git_repo, "rev-parse", "HEAD").strip()
    index = make_index(git_repo, [
        make_ticket("TKT-001", checkpoint_id=head),
        make_ticket("TKT-002", components=[{"name": "api", "checkpoint_id": head[:12]},
                                      {"name": "ui", "checkpoint_id": "f" * 40},
                                      {"name": "db", "checkpoint_id": 42}]),
    ])
    report = validate_index(index)
    found = {(f.code, f.ticket, f.field) for f in report.findings if "checkpoint" in f.code}
    assert found == {
        ("unresolved_checkpoint", "TKT-002", "components[1].checkpoint_id"),
        ("invalid_checkpoint", "TKT-002", "components[2].checkpoint_id"),
    }


def test_checkpoint_ids_outside_git_are_a_warning_not_an_error(
    tmp_path: Path, make_ticket: MakeTicket, make_index: MakeIndex,
) -> None:
    index = make_index(tmp_path, [make_ticket("TKT-001", checkpoint_id="abc1234")])
    report = validate_index(index)
    unchecked = [f for f in report.findings if f.code == "unchecked_checkpoint"]
    assert len(unchecked) == 1 and unchecked[0].severity is Severity.WARNING
    assert not any(f.code == "unresolved_checkpoint" for f in report.findings)


def test_an_index_tracked_by_git_is_a_warning(
    git_repo: Path, make_ticket: MakeTicket, make_index: MakeIndex, run_git: RunGit,
) -> None:
    index = make_index(git_repo, [make_ticket("TKT-001")])
    assert "index_tracked" not in codes(validate_index(index))
    run_git(git_repo, "add", "--force", str(index))
    tracked = [f for f in validate_index(index).findings if f.code == "index_tracked"]
    assert len(tracked) == 1 and tracked[0].severity is Severity.WARNING
    assert ".gitignore" in tracked[0].message


def test_an_infinite_estimate_is_an_error(
    git_repo: Path, make_ticket: MakeTicket, make_index: MakeIndex,
) -> None:
    index = git_repo / ".sage" / "tickets" / "index.json"
    make_index(git_repo, [make_ticket("TKT-001", estimate=5)])
    index.write_text(index.read_text().replace('"estimate": 5', '"estimate": 1e999'))
    report = validate_index(index)
    assert [(f.code, f.field) for f in report.errors] == [("estimate_not_finite", "estimate")]


def test_strict_turns_warnings_into_errors(
    git_repo: Path, make_ticket: MakeTicket, make_index: MakeIndex,
) -> None:
    index = make_index(git_repo, [make_ticket("TKT-001", priority="P9")])
    assert validate_index(index).exit_code == EXIT_WARNINGS
    strict = validate_index(index, strict=True)
    assert strict.exit_code == EXIT_ERROR
    assert strict.warnings == [] and any(f.code == "priority" for f in strict.errors)
    assert strict.analysis is not None  # the analysis depends on real errors only


def test_errors_skip_the_analysis(git_repo: Path, make_ticket: MakeTicket, make_index: MakeIndex) -> None:
    index = make_index(git_repo, [make_ticket("TKT-001", "TKT-002"), make_ticket("TKT-002", "TKT-001")])
    report = validate_index(index)
    assert "cycle" in codes(report)
    assert report.analysis is None and report.exit_code == EXIT_ERROR


def test_a_load_error_is_a_report_not_an_exception(git_repo: Path) -> None:
    index = git_repo / ".sage" / "tickets" / "index.json"
    index.parent.mkdir(parents=True)
    index.write_text('{"tickets": [}')
    report = validate_index(index)
    assert report.tickets is None and report.analysis is None
    assert codes(report) == ["invalid_json"]
    assert report.prerequisites  # still checked


def test_no_index_found_is_an_index_missing_error(tmp_path: Path) -> None:
    report = validate_index(None, cwd=tmp_path)
    assert codes(report) == ["index_missing"]
    assert report.exit_code == EXIT_ERROR
    assert report.findings[0].file == str(tmp_path / ".sage" / "tickets" / "index.json")


def test_validate_finds_the_index_from_a_subdirectory(
    git_repo: Path, make_ticket: MakeTicket, make_index: MakeIndex,
) -> None:
    index = make_index(git_repo, [make_ticket("TKT-001")])
    sub = git_repo / "src" / "deep"
    sub.mkdir(parents=True)
    assert validate_index(None, cwd=sub).index == str(index)


def test_validate_writes_nothing_anywhere_in_the_repository(
    git_repo: Path, make_ticket: MakeTicket, make_index: MakeIndex, run_git: RunGit,
) -> None:
    index = make_index(git_repo, [make_ticket("TKT-001", checkpoint_id="HEAD"), make_ticket("TKT-002", "TKT-001")])
    run_git(git_repo, "add", "--force", str(index))  # so that ls-files has something to look at

    def state() -> dict[str, tuple[int, int]]:
        result = {}
        for root, dirs, files in os.walk(git_repo):
            for name in [*dirs, *files]:
                info = (Path(root) / name).lstat()
                result[os.path.join(root, name)] = (info.st_mtime_ns, info.st_size)
        return result

    before = state()
    validate_index(index)
    validate_index(index, strict=True)
    assert state() == before
    assert not (git_repo / ".sage" / "commit-queue").exists()


def test_the_garbage_collector_is_back_on_after_validation(
    git_repo: Path, make_ticket: MakeTicket, make_index: MakeIndex,
) -> None:
    index = make_index(git_repo, [make_ticket("TKT-001")])
    assert gc.isenabled()
    validate_index(index)
    assert gc.isenabled()


def test_a_files_glob_that_matches_nothing_in_the_repository_is_a_warning(
    git_repo: Path, make_ticket: MakeTicket, make_index: MakeIndex,
) -> None:
    index = make_index(git_repo, [make_ticket("TKT-001", files=["README.md", "**/*.md", "scr/**"],
                                              description="d"),
                                   make_ticket("TKT-002", files=["nowhere/**"], state="COMPLETED")])
    report = validate_index(index)
    found = [f for f in report.findings if f.code == "files_match_nothing"]
    assert [(f.ticket, f.field, f.found) for f in found] == [("TKT-001", "files[2]", "scr/**")]
    assert found[0].severity is Severity.WARNING and str(index) in found[0].message
    assert report.exit_code == EXIT_WARNINGS
