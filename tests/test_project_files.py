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
