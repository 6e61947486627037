"""The environment an agent gets: an allow list, never secrets or git redirections."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sage_stream.agents.base import AgentJob, standard_environment
from sage_stream.agents.environment import agent_environment, check_passthrough
from sage_stream.errors import SageError
from sage_stream.tickets.models import Ticket

OURS = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/home/dev",
    "USER": "dev",
    "LOGNAME": "dev",
    "SHELL": "/bin/bash",
    "TERM": "xterm",
    "TMPDIR": "/tmp",
    "TZ": "UTC",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "LC_TIME": "en_GB.UTF-8",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "GITHUB_TOKEN": "ghp_secret",
    "ANTHROPIC_API_KEY": "sk-ant",
    "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",
    "OPENAI_API_KEY": "sk-openai",
    "GIT_DIR": "/elsewhere/.git",
    "GIT_WORK_TREE": "/elsewhere",
    "GIT_INDEX_FILE": "/elsewhere/index",
    "VIRTUAL_ENV": "/opt/sage-venv",
    "PYTHONPATH": "/opt/inject",
    "https_proxy": "http://user:pw@proxy:3128",
    "SAGE_TICKET_ID": "stale",
}
SAGE = {"SAGE_TICKET_ID": "CALC-001", "SAGE_RUN_ID": "run-1"}


def test_only_the_allow_list_passes() -> None:
    env = agent_environment(OURS, sage={})
    assert env == {
        name: OURS[name]
        for name in ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "TMPDIR", "TZ", "LANG", "LC_ALL", "LC_TIME")
    }


def test_sage_variables_are_set_per_ticket_not_inherited() -> None:
    env = agent_environment(OURS, sage=SAGE)
    assert env["SAGE_TICKET_ID"] == "CALC-001" and env["SAGE_RUN_ID"] == "run-1"


def test_configured_names_and_prefixes_pass() -> None:
    env = agent_environment(OURS, passthrough=["ANTHROPIC_*", "VIRTUAL_ENV", "NOT_SET"], sage={})
    assert env["ANTHROPIC_API_KEY"] == "sk-ant" and env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:9"
    assert env["VIRTUAL_ENV"] == "/opt/sage-venv"
    assert "NOT_SET" not in env and "OPENAI_API_KEY" not in env


@pytest.mark.parametrize("name", ["GIT_DIR", "GIT_*", "git_dir", "SAGE_RUN_ID"])
def test_git_and_sage_names_cannot_be_passed(name: str) -> None:
    with pytest.raises(SageError, match=re.escape(f"{name} cannot be passed")):
        agent_environment(OURS, passthrough=[name], sage={})


def test_a_broad_prefix_still_drops_git_variables() -> None:
    env = agent_environment(OURS, passthrough=["G*"], sage={})
    assert "GITHUB_TOKEN" in env and not any(name.startswith("GIT_") for name in env)


@pytest.mark.parametrize("name", ["", "*", "A=B", 3])
def test_malformed_names_are_user_errors(name) -> None:
    with pytest.raises(SageError, match=r"\[agent\] env"):
        check_passthrough([name])


def test_path_defaults_when_missing() -> None:
    assert agent_environment({}, sage={})["PATH"]


def test_standard_environment_of_a_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret")
    monkeypatch.setenv("GIT_DIR", "/elsewhere/.git")
    monkeypatch.chdir(tmp_path)
    job = AgentJob(
        ticket=Ticket(id="CALC-001", title="t", state="UNPROCESSED"),
        worktree=Path("wt"),
        prompt_file=Path("w/prompt.md"),
        result_file=Path("w/result.json"),
        log_path=Path("w/log"),
        run_id="run-7",
    )
    env = standard_environment(job)
    assert {name: value for name, value in env.items() if name.startswith("SAGE_")} == {
        "SAGE_TICKET_ID": "CALC-001",
        "SAGE_RUN_ID": "run-7",
        "SAGE_WORKTREE": str(tmp_path / "wt"),
        "SAGE_PROMPT_FILE": str(tmp_path / "w" / "prompt.md"),
        "SAGE_RESULT_FILE": str(tmp_path / "w" / "result.json"),
    }
    assert "GITHUB_TOKEN" not in env and "GIT_DIR" not in env
