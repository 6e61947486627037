"""The command agent: `--agent-cmd CMD`, split once, placeholders filled per argument."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sage_stream.agents.base import AgentJob
from sage_stream.agents.command import CommandAgent
from sage_stream.errors import SageError

MakeJob = Callable[..., AgentJob]


def test_template_is_split_shell_style_once(make_job: MakeJob) -> None:
    job = make_job()
    agent = CommandAgent("my-agent --flag 'two words' --prompt={prompt_file} {ticket}")
    assert agent.invocation(job).argv == [
        "my-agent",
        "--flag",
        "two words",
        f"--prompt={job.prompt_file}",
        "CALC-001",
    ]


def test_every_placeholder(make_job: MakeJob) -> None:
    job = make_job()
    argv = CommandAgent("a {prompt_file} {ticket} {worktree} {result_file}").invocation(job).argv
    assert argv == ["a", str(job.prompt_file), "CALC-001", str(job.worktree), str(job.result_file)]


def test_relative_paths_are_made_absolute(make_job: MakeJob, monkeypatch: pytest.MonkeyPatch) -> None:
    job = make_job()
    monkeypatch.chdir(job.worktree.parent)
    job.prompt_file = Path("work/prompt.md")
    assert CommandAgent("a {prompt_file}").invocation(job).argv[1] == str(job.worktree.parent / "work/prompt.md")


def test_substituted_text_is_never_split_or_substituted_again(make_job: MakeJob) -> None:
    job = make_job(id="X-1; rm -rf ~ {worktree} $(id)")
    argv = CommandAgent("agent --ticket {ticket}").invocation(job).argv
    assert argv == ["agent", "--ticket", "X-1; rm -rf ~ {worktree} $(id)"]


def test_unknown_placeholders_stay_as_written(make_job: MakeJob) -> None:
    argv = CommandAgent("agent {model} {TICKET} {{ticket}}").invocation(make_job()).argv
    assert argv == ["agent", "{model}", "{TICKET}", "{CALC-001}"]


@pytest.mark.parametrize(("template", "message"), [("agent 'unclosed", "cannot be split"), ("   ", "is empty")])
def test_bad_templates_are_user_errors(template: str, message: str) -> None:
    with pytest.raises(SageError, match=message):
        CommandAgent(template)


def test_environment_is_the_standard_one(make_job: MakeJob, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    env = CommandAgent("agent").invocation(make_job()).env
    assert env["SAGE_TICKET_ID"] == "CALC-001" and "OPENAI_API_KEY" not in env
    env = CommandAgent("agent", passthrough=["OPENAI_API_KEY"]).invocation(make_job()).env
    assert env["OPENAI_API_KEY"] == "sk-x"


def test_no_sessions() -> None:
    assert CommandAgent("agent").supports_sessions() is False


def test_runs_the_command_on_the_prompt(make_job: MakeJob, run_job, tmp_path: Path) -> None:
    script = tmp_path / "agent.py"
    script.write_text(
        "import json, os, sys\n"
        "prompt = open(sys.argv[1]).read()\n"
        "open('done.txt', 'w').write(sys.argv[2])\n"
        "json.dump({'summary': 'read ' + prompt.strip(), 'success': True}, open(os.environ['SAGE_RESULT_FILE'], 'w'))\n"
    )
    job = make_job()
    exit, result = run_job(CommandAgent(f"{sys.executable} {script} {{prompt_file}} {{ticket}}"), job)
    assert exit.outcome == "exited"
    assert (job.worktree / "done.txt").read_text() == "CALC-001"
    assert result.success is True and result.summary == "read # the prompt"


def test_summary_from_a_result_block_in_the_output(make_job: MakeJob, run_job, tmp_path: Path) -> None:
    script = tmp_path / "agent.py"
    script.write_text("print('thinking...')\nprint('```SAGE-RESULT\\nstatus: done\\nsummary: added calc\\n```')\n")
    _, result = run_job(CommandAgent(f"{sys.executable} {script}"), make_job())
    assert result.success is True and result.summary == "added calc"


def test_failure_is_the_exit_code(make_job: MakeJob, run_job) -> None:
    _, result = run_job(CommandAgent(f"{sys.executable} -c 'import sys; sys.exit(4)'"), make_job())
    assert result.success is False and result.message == "exit code 4"
    assert json.dumps(result.__dict__)  # plain data, ready for events and summaries
