"""The project's own files agree with each other: README, CI and the example backlog."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = lines.index("```sh")
    return lines[start + 1:start + 3]


def test_the_readme_opens_with_the_demo_and_the_test_command():
    demo, tests = readme_commands()
    assert demo.endswith("sage demo")
    assert "pytest" in tests and "'.[test]'" in tests


def test_ci_runs_the_readmes_test_command():
    assert readme_commands()[1] in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_the_repositorys_example_backlog_is_the_packaged_one():
    packaged = ROOT / "sage_stream" / "example" / "tickets"
    shown = ROOT / ".sage" / "tickets"
    names = sorted(path.name for path in packaged.iterdir())
    assert names == sorted(path.name for path in shown.iterdir() if not path.name.endswith(".lock"))
    for name in names:
        assert (shown / name).read_bytes() == (packaged / name).read_bytes(), name


def test_the_demo_hint_names_a_sage_that_runs_in_a_fresh_shell(monkeypatch, tmp_path) -> None:
    from sage_stream.commands.demo import sage_command

    script = tmp_path / "venv" / "bin" / "sage"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.setattr("sys.argv", [str(script), "demo"])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # a fresh shell: the venv is not active
    assert sage_command() == str(script)
    monkeypatch.setenv("PATH", f"{script.parent}:/usr/bin:/bin")  # activated: plain `sage` works
    assert sage_command() == "sage"


def test_the_readme_shows_a_complete_valid_ticket_and_every_allowed_type() -> None:
    import json

    from sage_stream.tickets.models import PRIORITIES, TICKET_TYPES, VALIDATION_TYPES, TicketIndex

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## The ticket index", 1)[1].split("\n## ", 1)[0]
    example = json.loads(section.split("```json\n", 1)[1].split("```", 1)[0])
    (ticket,) = TicketIndex.model_validate(example).tickets
    assert ticket.type in TICKET_TYPES and ticket.validation_type in VALIDATION_TYPES and ticket.files
    assert all(f"`{value}`" in section for value in (*TICKET_TYPES, *VALIDATION_TYPES))
    assert PRIORITIES[0] in section and PRIORITIES[-1] in section


def test_the_readmes_first_screen_says_what_to_do_after_the_demo() -> None:
    first_screen = "\n".join((ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:40])
    assert "After the demo" in first_screen and ".venv/bin/sage" in first_screen
    assert all(step in first_screen for step in ("sage init", "sage validate", "sage stream --dry-run"))
