"""`sage validate` from the command line: flags, exit codes, JSON, and no side effects."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sage_stream.cli import run

MakeIndex = Callable[..., Path]
MakeTicket = Callable[..., dict[str, Any]]
RunGit = Callable[..., str]

EXAMPLE = Path(__file__).resolve().parents[2] / "sage_stream" / "example" / "tickets"


def copy_example(repo: Path) -> Path:
    tickets = repo / ".sage" / "tickets"
    shutil.copytree(EXAMPLE, tickets)
    return tickets / "index.json"


def test_the_example_backlog_has_no_errors_and_gets_a_plan(
    git_repo: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    index = copy_example(git_repo)
    code = run(["validate", "--index", str(index)])
    out = capsys.readouterr().out
    assert code in (0, 2), out  # warnings at most (e.g. a ticket without its <ID>.md)
    assert "8 tickets: 0 errors" in out and "; ready now: 2; recommended workers:" in out


def test_json_report_of_the_example(git_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = copy_example(git_repo)
    code = run(["validate", "--json", "--index", str(index)])
    report = json.loads(capsys.readouterr().out)
    assert report["exit_code"] == code and report["valid"] is True and report["strict"] is False
    assert report["index"] == str(index.resolve())
    assert report["summary"]["tickets"] == 8 and report["summary"]["errors"] == 0
    assert report["summary"]["ready"] == 2
    analysis = report["analysis"]
    assert analysis["ready"] == ["CALC-001", "CALC-008"]  # P0 before P3
    assert analysis["ready_count"] == 2 and analysis["blocked_count"] == 6
    assert analysis["critical_path"][0] == "CALC-001"
    assert analysis["recommended_workers"] == report["summary"]["recommended_workers"] >= 1
    assert analysis["recommended_workers_rule"] == "simulation"
    assert analysis["waves"] == 4 and analysis["max_parallelism"] == 3
    assert {item["name"] for item in report["prerequisites"]} == {"git_version", "git_work_tree",
                                                                  "sage_dir_writable"}


def test_warnings_exit_2_and_strict_makes_them_errors(
    git_repo: Path, capsys: pytest.CaptureFixture[str], make_ticket: MakeTicket, make_index: MakeIndex,
) -> None:
    index = make_index(git_repo, [make_ticket("TKT-001", priority="P9"), make_ticket("TKT-002", "TKT-001")])
    assert run(["validate", "--json", "--index", str(index)]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is True and report["errors"] == []
    assert {finding["code"] for finding in report["warnings"]} == {"priority", "missing_prose"}
    assert run(["validate", "--strict", "--json", "--index", str(index)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is False and report["warnings"] == [] and report["strict"] is True
    assert {finding["code"] for finding in report["errors"]} == {"priority", "missing_prose"}
    assert {finding["severity"] for finding in report["errors"]} == {"error"}
    assert report["analysis"] is not None  # warnings made errors do not hide the plan


def test_a_clean_index_exits_0(
    git_repo: Path, capsys: pytest.CaptureFixture[str], make_ticket: MakeTicket, make_index: MakeIndex,
) -> None:
    index = make_index(git_repo, [make_ticket("TKT-001", state="COMPLETED"), make_ticket("TKT-002", "TKT-001")])
    (index.parent / "TKT-002.md").write_text("# TKT-002\n")
    assert run(["validate", "--index", str(index)]) == 0
    assert "2 tickets: 0 errors, 0 warnings; ready now: 1" in capsys.readouterr().out


def test_a_load_error_still_prints_the_json_report(
    git_repo: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    index = git_repo / ".sage" / "tickets" / "index.json"
    index.parent.mkdir(parents=True)
    index.write_text("{\n  \"tickets\": [\n    oops\n  ]\n}\n")
    assert run(["validate", "--json", "--index", str(index)]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["valid"] is False and report["exit_code"] == 1 and report["analysis"] is None
    assert report["summary"]["tickets"] is None
    assert report["errors"][0]["code"] == "invalid_json"
    assert "line 3, column 5" in report["errors"][0]["message"]
    assert captured.err == ""


def test_no_index_here_is_exit_1_with_a_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(["validate"]) == 1
    out = capsys.readouterr().out
    assert "sage init" in out and "index_missing" in out
    assert not (tmp_path / ".sage").exists()


def test_sage_validate_as_a_program_finds_the_index_from_the_work_tree(
    git_repo: Path, make_ticket: MakeTicket, make_index: MakeIndex,
) -> None:
    index = make_index(git_repo, [make_ticket("TKT-001"), make_ticket("TKT-002", "TKT-001", type="feature")])
    result = subprocess.run([sys.executable, "-m", "sage_stream", "validate"], cwd=git_repo,
                            capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 1
    assert result.stderr == ""
    assert f"{index}: ticket TKT-002, field 'type'" in result.stdout


def test_sage_validate_as_a_program_writes_all_of_a_long_report_and_runs_atexit(
    git_repo: Path, make_ticket: MakeTicket, make_index: MakeIndex, tmp_path: Path,
) -> None:
    # `main` ends a validate process with os._exit (nothing freed): only after the atexit
    # functions ran and the output, far longer than a pipe's buffer here, is all written
    index = make_index(git_repo, [make_ticket(f"tkt-{number}") for number in range(3000)])
    marker = tmp_path / "atexit-ran"
    program = ("import atexit, sys; from pathlib import Path;"
               " atexit.register(lambda: Path(sys.argv[1]).write_text('ran'));"
               " from sage_stream.cli import main; main(['validate', '--json', '--index', sys.argv[2]])")
    result = subprocess.run([sys.executable, "-c", program, str(marker), str(index)],
                            capture_output=True, text=True, check=False, timeout=120)
    report = json.loads(result.stdout)
    assert result.returncode == report["exit_code"] == 2
    assert len([w for w in report["warnings"] if w["code"] == "id_format"]) == 3000
    assert marker.read_text() == "ran"
    assert result.stderr == ""


def test_validate_leaves_the_repository_as_it_was(
    git_repo: Path, capsys: pytest.CaptureFixture[str], run_git: RunGit,
) -> None:
    index = copy_example(git_repo)
    run_git(git_repo, "add", "--force", str(index))

    def listing() -> dict[str, int]:
        return {os.path.join(root, name): (Path(root) / name).lstat().st_mtime_ns
                for root, dirs, files in os.walk(git_repo) for name in [*dirs, *files]}

    before = listing()
    for args in (["validate"], ["validate", "--json"], ["validate", "--strict"]):
        run([*args, "--index", str(index)])
    capsys.readouterr()
    assert listing() == before


def test_the_garbage_collector_is_back_on_after_the_command(
    git_repo: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    import gc

    index = copy_example(git_repo)
    assert gc.isenabled()
    run(["validate", "--json", "--index", str(index)])
    assert gc.isenabled()
