"""Jobs for agent tests: a worktree directory, a work directory, and a way to run them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from sage_stream.agents.base import Agent, AgentJob, AgentResult
from sage_stream.process.supervise import AgentExit, AgentLaunch, run_agent
from sage_stream.tickets.models import Ticket

MakeJob = Callable[..., AgentJob]


@pytest.fixture
def make_job(tmp_path: Path) -> MakeJob:
    def make(**ticket_fields) -> AgentJob:
        fields = {"id": "CALC-001", "title": "Create the calc package", "state": "UNPROCESSED", **ticket_fields}
        worktree = tmp_path / "worktree"
        work = tmp_path / "work"
        worktree.mkdir(exist_ok=True)
        work.mkdir(exist_ok=True)
        prompt = work / "prompt.md"
        prompt.write_text("# the prompt\n")
        return AgentJob(
            ticket=Ticket.model_validate(fields),
            worktree=worktree,
            prompt_file=prompt,
            result_file=work / "result.json",
            log_path=work / "agent.log",
            run_id="run-1",
        )

    return make


def _run_job(agent: Agent, job: AgentJob, *, timeout_s: float = 30.0) -> tuple[AgentExit, AgentResult]:
    """What the engine does with an agent: invocation, run_agent, parse_result."""
    invocation = agent.invocation(job)
    launch = AgentLaunch(
        argv=invocation.argv,
        cwd=job.worktree,
        env=invocation.env,
        log_path=job.log_path,
        timeout_s=timeout_s,
        idle_timeout_s=None,
        grace_s=0.5,
    )
    exit = run_agent(launch, cancel=threading.Event())
    return exit, agent.parse_result(job, exit)


RunJob = Callable[..., tuple[AgentExit, AgentResult]]


@pytest.fixture
def run_job() -> RunJob:
    return _run_job
