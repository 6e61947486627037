"""The exec agent runs a ticket's own `command` argv in its worktree."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sage_stream.agents.base import AgentJob
from sage_stream.agents.exec import ExecAgent
from sage_stream.process.supervise import AgentExit
from sage_stream.errors import AgentSetupError, SageError

MakeJob = Callable[..., AgentJob]

PY = sys.executable


def test_ticket_without_command_is_a_user_error_naming_ticket_and_field(make_job: MakeJob) -> None:
    job = make_job()
    message = "ticket CALC-001 has no `command`: the exec agent runs a ticket's command argv"
    with pytest.raises(AgentSetupError, match=message):  # not the ticket's failure: the run halts
        ExecAgent().invocation(job)
    with pytest.raises(SageError, match=message):
        ExecAgent().parse_result(job, AgentExit("exited", 0, 0.1, "", None, 1))


def test_invocation_is_the_ticket_argv_and_the_standard_environment(
    make_job: MakeJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret")
    monkeypatch.setenv("CUSTOM_SETTING", "1")
    job = make_job(command=["python3", "scripts/demo_agent.py", "CALC-001", "0.6"])
    invocation = ExecAgent(passthrough=["CUSTOM_SETTING"]).invocation(job)
    assert invocation.argv == ["python3", "scripts/demo_agent.py", "CALC-001", "0.6"]
    invocation.argv.append("changed")
    assert job.ticket.command == ["python3", "scripts/demo_agent.py", "CALC-001", "0.6"]
    assert invocation.env["SAGE_TICKET_ID"] == "CALC-001"
    assert invocation.env["CUSTOM_SETTING"] == "1" and "GITHUB_TOKEN" not in invocation.env


def test_no_sessions() -> None:
    assert ExecAgent().supports_sessions() is False


def test_success_runs_in_the_worktree_and_summarises_with_the_last_line(make_job: MakeJob, run_job) -> None:
    source = "open('made.txt', 'w').write('x'); print('step 1'); print('wrote made.txt')"
    job = make_job(command=[PY, "-c", source])
    exit, result = run_job(ExecAgent(), job)
    assert (job.worktree / "made.txt").read_text() == "x"
    assert result.success is True
    assert result.summary == "wrote made.txt"
    assert result.error_kind is None and result.message is None


def test_nonzero_exit_fails(make_job: MakeJob, run_job) -> None:
    job = make_job(command=[PY, "-c", "import sys; print('tests failed: 3'); sys.exit(2)"])
    _, result = run_job(ExecAgent(), job)
    assert result.success is False
    assert result.error_kind == "other" and result.retryable is False
    assert result.message == "exit code 2: tests failed: 3"


def test_ticket_text_is_not_interpreted_by_a_shell(make_job: MakeJob, run_job) -> None:
    job = make_job(command=["echo", "$(touch pwned)", ";", "touch", "pwned2"])
    _, result = run_job(ExecAgent(), job)
    assert result.summary == "$(touch pwned) ; touch pwned2"
    assert not (job.worktree / "pwned").exists() and not (job.worktree / "pwned2").exists()


def write_result(value: str) -> list[str]:
    return [PY, "-c", f"import os; open(os.environ['SAGE_RESULT_FILE'], 'w').write({value!r}); print('last line')"]


def test_result_file_gives_the_summary(make_job: MakeJob, run_job) -> None:
    job = make_job(command=write_result(json.dumps({"summary": "created calc/", "success": True})))
    _, result = run_job(ExecAgent(), job)
    assert result.success is True and result.summary == "created calc/"


def test_result_file_can_report_failure_despite_exit_zero(make_job: MakeJob, run_job) -> None:
    job = make_job(command=write_result(json.dumps({"summary": "could not parse", "success": False})))
    _, result = run_job(ExecAgent(), job)
    assert result.success is False
    assert result.summary == "could not parse"
    assert "the result file says it failed" in result.message


@pytest.mark.parametrize(
    ("content", "note"),
    [
        ("{not json", "not valid JSON"),
        ('{"summary": "cut off', "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"success": "yes", "summary": 3}', "`success` ignored"),
    ],
)
def test_bad_result_file_is_ignored_with_a_note(make_job: MakeJob, run_job, content: str, note: str) -> None:
    job = make_job(command=write_result(content))
    _, result = run_job(ExecAgent(), job)
    assert result.success is True
    assert result.summary == "last line"
    assert note in result.message


def test_result_file_from_an_earlier_attempt_is_ignored(make_job: MakeJob, run_job) -> None:
    job = make_job(command=[PY, "-c", "print('this attempt')"])
    job.result_file.write_text(json.dumps({"summary": "old attempt", "success": False}))
    old = time.time() - 3600
    os.utime(job.result_file, (old, old))
    _, result = run_job(ExecAgent(), job)
    assert result.success is True and result.summary == "this attempt"
    assert "written before this run started" in result.message


def test_a_blocked_result_block_fails(make_job: MakeJob, run_job) -> None:
    source = "print('```SAGE-RESULT'); print('status: blocked'); print('summary: needs an API key'); print('```')"
    _, result = run_job(ExecAgent(), make_job(command=[PY, "-c", source]))
    assert result.success is False and result.summary == "needs an API key"


def test_timeout_is_a_timeout_error(make_job: MakeJob, run_job) -> None:
    _, result = run_job(ExecAgent(), make_job(command=["sleep", "30"]), timeout_s=0.3)
    assert result.success is False and result.error_kind == "timeout"
    assert "timed out" in result.message


def test_missing_program_fails_with_a_clear_message(make_job: MakeJob, run_job) -> None:
    exit, result = run_job(ExecAgent(), make_job(command=["sage-no-such-program"]))
    assert exit.outcome == "failed_to_start"
    assert result.success is False and "sage-no-such-program" in result.message
    assert result.error_kind == "other"  # the program is the ticket's own `command`: its failure, not a setup error


def test_demo_ticket_runs(make_job: MakeJob, run_job) -> None:
    """The built-in example's command works through the exec agent."""
    import sage_stream

    script = Path(sage_stream.__file__).parent / "example" / "repo" / "scripts" / "demo_agent.py"
    job = make_job(command=[PY, str(script), "CALC-001", "0"])
    _, result = run_job(ExecAgent(), job)
    assert result.success is True
    assert result.summary == "CALC-001: done (run-1)"
    assert (job.worktree / "calc" / "__init__.py").exists()
