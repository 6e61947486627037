"""`sage validate` on every malformed index of tests/corpus/ (see expected.json).

Each case is copied to `.sage/tickets/index.json` of its own directory in a git
repository, validated in-process (human and --json), and must: exit with the expected
code, name the file / ticket / field in its messages, never show a traceback, and leave
the file's bytes, its mtime and the directory listing exactly as they were.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sage_stream.cli import run

MakeGitRepo = Callable[[Path], Path]

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
EXPECTED: dict[str, dict] = json.loads((CORPUS / "expected.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def corpus_repo(tmp_path_factory: pytest.TempPathFactory, make_git_repo: MakeGitRepo) -> Path:
    return make_git_repo(tmp_path_factory.mktemp("corpus") / "repo")


def place_case(repo: Path, name: str, *, group: str = "cases") -> Path:
    """Copy a corpus entry to `<repo>/<group>/<name>/.sage/tickets/index.json`."""
    index = repo / group / name / ".sage" / "tickets" / "index.json"
    index.parent.mkdir(parents=True, exist_ok=True)
    source = CORPUS / name
    if source.is_dir():
        shutil.copytree(source, index)
    else:
        shutil.copyfile(source, index)
    return index


def snapshot(directory: Path) -> dict[str, tuple[int, int, bytes | None]]:
    """Every entry under `directory`: mtime, size and (for files) bytes."""
    state = {}
    for root, dirs, files in os.walk(directory):
        for name in [*dirs, *files]:
            path = Path(root) / name
            info = path.lstat()
            content = path.read_bytes() if path.is_file() else None
            state[str(path.relative_to(directory))] = (info.st_mtime_ns, info.st_size, content)
    return state


def test_corpus_has_at_least_30_cases_and_every_file_has_an_expectation() -> None:
    entries = {path.name for path in CORPUS.iterdir() if path.name != "expected.json"}
    assert len(entries) >= 30
    assert entries == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_validate_reports_the_corpus_case(
    name: str, corpus_repo: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    expected = EXPECTED[name]
    index = place_case(corpus_repo, name)
    case_dir = index.parent.parent.parent
    before = snapshot(case_dir)

    code = run(["validate", "--index", str(index)])
    human = capsys.readouterr()
    assert code == expected["exit_code"], human.out + human.err
    assert "Traceback" not in human.out + human.err
    for text in expected["contains"]:
        assert text in human.out, f"{text!r} not in:\n{human.out}"
    finding_lines = [line for line in human.out.splitlines() if line.startswith("    ")]
    assert finding_lines or expected["exit_code"] == 0
    for line in finding_lines:
        if not line.lstrip().startswith("... and"):
            assert str(index) in line, f"finding line does not name the file: {line}"

    code = run(["validate", "--json", "--index", str(index)])
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert code == report["exit_code"] == expected["exit_code"]
    assert report["valid"] is (expected["exit_code"] != 1)
    assert report["index"] == str(index)
    findings = report["errors"] + report["warnings"]
    assert {finding["file"] for finding in findings} <= {str(index)}
    codes = {finding["code"] for finding in findings}
    assert set(expected.get("codes", [])) <= codes, codes
    if expected["exit_code"] == 1:
        assert report["analysis"] is None

    assert snapshot(case_dir) == before


@pytest.mark.parametrize("name", ["deep_nesting.json", "invalid_utf8.json",
                                  "index_is_a_directory.json", "two_cycles.json"])
def test_validate_subprocess_shows_no_traceback(name: str, corpus_repo: Path) -> None:
    index = place_case(corpus_repo, name, group="subprocess")
    result = subprocess.run(
        [sys.executable, "-m", "sage_stream", "validate", "--index", str(index)],
        capture_output=True, text=True, check=False, timeout=60,
    )
    assert result.returncode == EXPECTED[name]["exit_code"]
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr == ""
    for text in EXPECTED[name]["contains"]:
        assert text in result.stdout
