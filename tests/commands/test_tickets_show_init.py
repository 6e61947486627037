"""`sage tickets`, `sage show` and `sage init`."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sage_stream.cli import run
from sage_stream.commands.init import CONFIG_TEXT
from sage_stream.config import SageConfig

MakeIndex = Callable[..., Path]
MakeTicket = Callable[..., dict[str, Any]]


@pytest.fixture
def backlog(tmp_path: Path, make_ticket: MakeTicket, make_index: MakeIndex) -> Path:
    index = make_index(tmp_path, [
        make_ticket("TKT-001", state="COMPLETED", title="Set up the package"),
        make_ticket("TKT-002", "TKT-001", priority="P0", title="Add login", docs={"spec": "docs/login.md"},
                    component="auth"),
        make_ticket("TKT-003", "TKT-001", "TKT-002", "TKT-099", state="DEFERRED", title="Wire it\n\x1b[31mup",
                    defer_reason={"category": "timeout", "message": "agent ran 30 minutes", "attempts": 2,
                                  "last_error": "killed"}),
    ])
    (index.parent / "TKT-002.md").write_text("# TKT-002\n\n## Description\nLogin form.\x07\n", encoding="utf-8")
    return index


# ---------------------------------------------------------------- sage tickets


def test_tickets_lists_one_line_per_ticket(backlog: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["tickets", "--index", str(backlog)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "TKT-001  COMPLETED    P1  Set up the package",
        "TKT-002  UNPROCESSED  P0  Add login  (after TKT-001)",
        "TKT-003  DEFERRED     P1  Wire it [31mup  (after TKT-001, TKT-002, TKT-099)",
    ]


def test_tickets_filters_by_state_in_any_case(backlog: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["tickets", "--state", "deferred", "--index", str(backlog)]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["TKT-003"]
    assert run(["tickets", "--state", "IN_PROGRESS", "--index", str(backlog)]) == 0
    assert "no IN_PROGRESS tickets" in capsys.readouterr().out
    assert run(["tickets", "--state", "DONE", "--index", str(backlog)]) == 1


def test_tickets_json(backlog: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["tickets", "--json", "--state", "UNPROCESSED", "--index", str(backlog)]) == 0
    assert json.loads(capsys.readouterr().out) == [{
        "id": "TKT-002", "state": "UNPROCESSED", "priority": "P0", "title": "Add login",
        "dependencies": ["TKT-001"],
    }]


def test_tickets_on_a_broken_index_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make_ticket: MakeTicket, make_index: MakeIndex,
) -> None:
    index = make_index(tmp_path, [make_ticket("TKT-001", state="DONE")])
    assert run(["tickets", "--index", str(index)]) == 1
    err = capsys.readouterr().err
    assert str(index) in err and "ticket TKT-001, field 'state'" in err
    assert "Traceback" not in err


# ---------------------------------------------------------------- sage show


def test_show_prints_every_field_dependencies_and_prose(
    backlog: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(["show", "TKT-002", "--index", str(backlog)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("TKT-002: Add login\n")
    for line in ("  state            UNPROCESSED", "  priority         P0",
                 '  docs             {"spec": "docs/login.md"}', "  component        auth",
                 "  TKT-001  COMPLETED", "waiting for it: TKT-003"):
        assert line in out
    assert f"--- {backlog.parent / 'TKT-002.md'} ---" in out
    assert "Login form." in out and "\x07" not in out


def test_show_explains_a_deferred_ticket_and_missing_dependencies(
    backlog: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(["show", "TKT-003", "--index", str(backlog)]) == 0
    out = capsys.readouterr().out
    assert "TKT-003: Wire it [31mup" in out and "\x1b" not in out
    assert "  TKT-002  UNPROCESSED" in out
    assert "  TKT-099  MISSING  (not in the index)" in out
    assert "deferred: timeout: agent ran 30 minutes" in out
    assert "  attempts: 2" in out and "  last_error: killed" in out


def test_show_json(backlog: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["show", "TKT-003", "--json", "--index", str(backlog)]) == 0
    details = json.loads(capsys.readouterr().out)
    raw = json.loads(backlog.read_text())["tickets"][2]
    assert details["ticket"] == raw
    assert details["dependencies"] == [{"id": "TKT-001", "state": "COMPLETED"},
                                       {"id": "TKT-002", "state": "UNPROCESSED"},
                                       {"id": "TKT-099", "state": "MISSING"}]
    assert details["defer_reason"]["category"] == "timeout"
    assert details["prose"] is None and details["prose_path"] is None


def test_show_unknown_id_suggests_the_closest(backlog: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["show", "TKT-02", "--index", str(backlog)]) == 1
    err = capsys.readouterr().err
    assert "no ticket 'TKT-02'" in err and "did you mean TKT-002?" in err
    assert run(["show", "tkt-003", "--index", str(backlog)]) == 1
    assert "did you mean TKT-003?" in capsys.readouterr().err
    assert run(["show", "ZZZZZZ", "--index", str(backlog)]) == 1
    assert "did you mean" not in capsys.readouterr().err


def test_show_never_reads_prose_outside_the_tickets_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make_ticket: MakeTicket, make_index: MakeIndex,
) -> None:
    index = make_index(tmp_path, [make_ticket("../secret")])
    (tmp_path / ".sage" / "secret.md").write_text("do not show\n")
    assert run(["show", "../secret", "--index", str(index)]) == 0
    assert "do not show" not in capsys.readouterr().out


# ---------------------------------------------------------------- sage init


def test_init_creates_index_config_and_gitignore(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["init", "--path", str(tmp_path)]) == 0
    index = tmp_path / ".sage" / "tickets" / "index.json"
    assert json.loads(index.read_text()) == {"version": "1.0", "tickets": []}
    assert tomllib.loads((tmp_path / ".sage" / "config.toml").read_text())
    assert (tmp_path / ".gitignore").read_text() == ".sage/\n"
    out = capsys.readouterr().out
    assert f"{index}: created" in out
    assert run(["validate", "--index", str(index)]) == 1  # a failed prerequisite: not a git repository
    assert "is not inside a git work tree" in capsys.readouterr().out


def test_init_writes_a_complete_commented_example_ticket_that_validates(
    make_git_repo, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    from sage_stream.tickets.models import TICKET_TYPES, VALIDATION_TYPES

    repo = make_git_repo(tmp_path / "repo")
    assert run(["init", "--path", str(repo)]) == 0
    example = repo / ".sage" / "example-ticket.md"
    assert f"{example.relative_to(repo)}" in capsys.readouterr().out  # `sage init` points at it
    text = example.read_text()
    assert all(value in text for value in (*TICKET_TYPES, *VALIDATION_TYPES, "P0", "P4"))
    block = text.split("```json\n", 1)[1].split("```", 1)[0]
    index = repo / ".sage" / "tickets" / "index.json"
    index.write_text(block)  # the example, pasted as it is, is a valid index
    capsys.readouterr()
    assert run(["validate", "--json", "--index", str(index)]) in (0, 2)
    report = json.loads(capsys.readouterr().out)
    assert report["errors"] == [] and report["summary"]["tickets"] == 1
    assert not (repo / ".sage" / "tickets" / "example-ticket.md").exists()  # not beside the index: not prose


def test_init_says_to_commit_the_gitignore_line_it_added(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Uncommitted, it leaves the checkout dirty: landings onto that branch would wait."""
    (tmp_path / ".gitignore").write_text("build/\n")
    assert run(["init", "--path", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"commit it: `git -C {tmp_path.resolve()} add .gitignore && git -C {tmp_path.resolve()} commit" in out
    capsys.readouterr()
    assert run(["init", "--path", str(tmp_path)]) == 0
    assert "commit it" not in capsys.readouterr().out  # nothing added the second time


def test_init_twice_changes_nothing_and_says_what_it_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    run(["init", "--path", str(tmp_path)])
    sage = tmp_path / ".sage"
    files = [sage / "tickets" / "index.json", sage / "config.toml", tmp_path / ".gitignore"]
    before = [(path.read_bytes(), path.stat().st_mtime_ns) for path in files]
    capsys.readouterr()
    assert run(["init", "--path", str(tmp_path)]) == 0
    assert [(path.read_bytes(), path.stat().st_mtime_ns) for path in files] == before
    out = capsys.readouterr().out
    assert out.count("skipped (exists)") == 3 and "skipped (already ignores .sage/)" in out


def test_init_never_overwrites_an_existing_index_or_config(
    tmp_path: Path, make_ticket: MakeTicket, make_index: MakeIndex,
) -> None:
    index = make_index(tmp_path, [make_ticket("TKT-001")])
    content = index.read_bytes()
    config = tmp_path / ".sage" / "config.toml"
    config.write_text("[stream]\nparallel = 4\n")
    run(["init", "--path", str(tmp_path)])
    assert index.read_bytes() == content
    assert config.read_text() == "[stream]\nparallel = 4\n"


@pytest.mark.parametrize("existing, expected", [
    ("node_modules/\n", "node_modules/\n.sage/\n"),
    ("node_modules/", "node_modules/\n.sage/\n"),  # no trailing newline: one is added first
    ("build/\n/.sage\n", "build/\n/.sage\n"),  # an equivalent line counts
])
def test_init_appends_only_missing_gitignore_lines(tmp_path: Path, existing: str, expected: str) -> None:
    (tmp_path / ".gitignore").write_text(existing)
    assert run(["init", "--path", str(tmp_path)]) == 0
    assert (tmp_path / ".gitignore").read_text() == expected


def test_config_comments_show_the_real_defaults() -> None:
    """Uncommenting every `# key = value` line gives a config sage accepts, and each value
    shown equals the default (keys whose default is 'not set' show an example)."""
    uncommented = re.sub(r"^# (\w+ = .*)$", r"\1", CONFIG_TEXT, flags=re.MULTILINE)
    data = tomllib.loads(uncommented)
    config = SageConfig.model_validate(data)
    defaults = SageConfig()
    assert set(data) == {"stream", "agent", "checks", "executor"}
    for section, values in data.items():
        for key, value in values.items():
            default = getattr(getattr(defaults, section), key)
            if default not in (None, []):
                assert value == default, f"[{section}] {key}: comment says {value!r}, default is {default!r}"
            assert getattr(getattr(config, section), key) == value
    documented = {(section, key) for section, values in data.items() for key in values}
    for section in ("stream", "agent", "checks", "executor"):
        for key in type(getattr(defaults, section)).model_fields:
            assert (section, key) in documented, f"[{section}] {key} is not documented in config.toml"
