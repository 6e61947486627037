"""Checks before landing: where they come from, how they run (never through a shell), and
what a failure hands the agent for its fix turn."""

from __future__ import annotations

import os
import shlex
import sys
import threading
from pathlib import Path

import pytest

from sage_stream.engine.verification import (
    OUTPUT_TAIL_BYTES,
    CheckDefinitionError,
    fix_prompt,
    fix_turns_allowed,
    parse_check,
    project_checks,
    run_checks,
    ticket_checks,
)
from sage_stream.tickets.models import Ticket

PY = shlex.quote(sys.executable)


def make_ticket(**fields) -> Ticket:
    return Ticket.model_validate({"id": "CHK-1", "title": "checked", "state": "UNPROCESSED", **fields})


def check(command: str, pattern: str | None = None, name: str = "c"):
    return parse_check(name=name, source="test", command=command, success_pattern=pattern, where="test")


def run(checks, worktree: Path, *, timeout_s: float | None = 30, cancel: threading.Event | None = None):
    return run_checks(checks, worktree=worktree, env=dict(os.environ), log_dir=worktree / "logs", stem="CHK-1",
                      timeout_s=timeout_s, cancel=cancel or threading.Event())


def python(code: str) -> str:
    return f"{PY} -c {shlex.quote(code)}"


# ---------------------------------------------------------------- where checks come from


def test_a_ticket_s_checks_are_its_verification_scripts_then_its_sub_task_scripts() -> None:
    ticket = make_ticket(
        validation_config={"verification_scripts": [
            {"name": "unit tests", "command": "pytest -q tests/unit", "success_pattern": r"\d+ passed"},
            {"command": "ruff check ."},
        ]},
        tasks=[{"id": "T1", "validation_script": "python -m mypy 'src dir'"},
               {"id": "T2", "validation_script": "  "}],  # empty: skipped
    )
    checks = ticket_checks(ticket)
    assert [(c.name, c.argv, c.success_pattern) for c in checks] == [
        ("unit tests", ("pytest", "-q", "tests/unit"), r"\d+ passed"),
        ("verification script 2", ("ruff", "check", "."), None),
        ("sub-task T1", ("python", "-m", "mypy", "src dir"), None),
    ]
    assert checks[2].source == "tasks[0].validation_script"


@pytest.mark.parametrize(("command", "pattern", "expected"), [
    ("pytest | tee out.txt", None, "shell syntax (|)"),
    ("make && make test", None, "shell syntax (&&)"),
    ("pytest > out.txt", None, "shell syntax (>)"),
    ("echo 'unterminated", None, "cannot be split into arguments"),
    ("   ", None, "is empty"),
    ("pytest", "([unclosed", "not a valid regular expression"),
])
def test_a_check_that_cannot_run_as_written_names_the_ticket_and_the_field(command, pattern, expected) -> None:
    ticket = make_ticket(validation_config={"verification_scripts": [{"command": command,
                                                                      "success_pattern": pattern}]})
    with pytest.raises(CheckDefinitionError) as raised:
        ticket_checks(ticket)
    message = raised.value.message
    assert expected in message and "ticket CHK-1" in message and "verification_scripts[0]" in message


def test_project_checks_name_the_config_file() -> None:
    assert project_checks(["python -m pytest -q"])[0].argv == ("python", "-m", "pytest", "-q")
    with pytest.raises(CheckDefinitionError, match=r"cfg\.toml: \[checks\] commands\[1\]"):
        project_checks(["true", "a || b"], config_path="cfg.toml")


@pytest.mark.parametrize(("config", "default", "turns"), [
    (None, 2, 2),
    ({"max_retries": 5}, 2, 5),
    ({"max_retries": 0}, 2, 0),
    ({"auto_fix": False, "max_retries": 3}, 2, 0),
])
def test_fix_turns_come_from_the_ticket_else_the_config(config, default, turns) -> None:
    ticket = make_ticket(validation_config=config) if config else make_ticket()
    assert fix_turns_allowed(ticket, default) == turns


# ---------------------------------------------------------------- running them


def test_success_is_exit_code_zero_and_a_matching_pattern(tmp_path: Path) -> None:
    checks = [
        check(python("print('12 passed')"), r"^\d+ passed$", name="ok"),
        check(python("import sys; print('3 failed'); sys.exit(1)"), name="exit"),
        check(python("print('0 tests ran')"), r"\d+ passed", name="pattern"),
        check(python("print('fine')"), name="plain"),
    ]
    verification = run(checks, tmp_path)
    assert [r.passed for r in verification.results] == [True, False, False, True]
    assert not verification.passed
    exit_failure, pattern_failure = verification.failed
    assert exit_failure.reason == "exit code 1" and "3 failed" in exit_failure.output_tail
    assert "does not match success_pattern" in pattern_failure.reason
    assert "0 tests ran" in pattern_failure.output_tail
    assert [r.log_path.name for r in verification.results] == [f"CHK-1.check-{n}.log" for n in (1, 2, 3, 4)]
    report = verification.failure_report()
    assert "### exit: exit code 1" in report and "3 failed" in report and "12 passed" not in report


def test_a_command_string_never_reaches_a_shell(tmp_path: Path) -> None:
    verification = run([check("echo ok; touch pwned"), check("echo $HOME `touch pwned2` $(touch pwned3)")],
                       tmp_path)
    assert verification.passed  # echo ran, with everything as its arguments
    assert "ok; touch pwned" in verification.results[0].output_tail
    assert "$HOME `touch pwned2` $(touch pwned3)" in verification.results[1].output_tail
    assert not list(tmp_path.glob("pwned*"))


def test_checks_run_in_the_worktree_and_in_parallel(tmp_path: Path) -> None:
    # each check announces itself, then waits for the other one: run one after the
    # other, the first would give up and fail
    rendezvous = ("import pathlib, sys, time\n"
                  "me, other = sys.argv[1], sys.argv[2]\n"
                  "pathlib.Path(me).touch()\n"
                  "deadline = time.time() + 20\n"
                  "while not pathlib.Path(other).exists():\n"
                  "    if time.time() > deadline: sys.exit('the other check never ran alongside')\n"
                  "    time.sleep(0.02)\n")
    script = tmp_path / "rendezvous.py"
    script.write_text(rendezvous)
    verification = run([check(f"{PY} rendezvous.py a.flag b.flag"), check(f"{PY} rendezvous.py b.flag a.flag")],
                       tmp_path)
    assert verification.passed, verification.failure_report()


def test_a_check_that_runs_too_long_is_stopped_and_fails(tmp_path: Path) -> None:
    verification = run([check(python("import time; print('started', flush=True); time.sleep(60)"))], tmp_path,
                       timeout_s=0.5)
    (result,) = verification.results
    assert not result.passed and result.outcome == "timeout" and "timed out" in result.reason
    assert "started" in result.output_tail


def test_a_missing_program_fails_with_a_reason(tmp_path: Path) -> None:
    (result,) = run([check("no-such-program-for-sage --flag")], tmp_path).results
    assert not result.passed and "not found" in result.reason


def test_cancel_stops_the_checks(tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    verification = run([check(python("print('x')"))], tmp_path, cancel=cancel)
    assert verification.cancelled and not verification.passed


def test_a_long_output_is_cut_to_its_tail_and_each_run_appends_to_the_log(tmp_path: Path) -> None:
    noisy = check(python("import sys; [print(i) for i in range(5000)]; print('the real', 'error'); sys.exit(3)"))
    first = run([noisy], tmp_path).results[0]
    assert len(first.output_tail.encode()) <= OUTPUT_TAIL_BYTES + 4
    assert first.output_tail.rstrip().endswith("the real error") and "\n0\n" not in first.output_tail
    second = run([noisy], tmp_path).results[0]
    log = second.log_path.read_text()
    assert log.count("\nthe real error\n") == 2 and log.count("[sage-stream] c: ") == 2


# ---------------------------------------------------------------- the fix turn


def test_the_fix_prompt_carries_the_failing_output(tmp_path: Path) -> None:
    verification = run([check(python("import sys; print('AssertionError: 2 != 3'); sys.exit(1)"), name="tests"),
                        check(python("print('fine')"), name="lint")], tmp_path)
    ticket = make_ticket()
    continued = fix_prompt(ticket, verification, fix_turn=1, max_fix_turns=2, original_prompt=None)
    assert "AssertionError: 2 != 3" in continued and "Fix it: the checks must pass" in continued
    assert "1 of 2 checks failed: tests" in continued and "1 of 2 fix turns" in continued
    cold = fix_prompt(ticket, verification, fix_turn=2, max_fix_turns=2, original_prompt="# CHK-1: the ticket\n")
    assert cold.startswith("# CHK-1: the ticket\n") and "AssertionError: 2 != 3" in cold
