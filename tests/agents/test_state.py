"""Each agent says where its CLI keeps state of its own (a sandboxed agent may write it there)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sage_stream.agents.base import AgentState, agent_state
from sage_stream.agents.registry import get_agent

HOME = {"HOME": "/home/u"}


@pytest.mark.parametrize(("name", "env", "state"), [
    ("claude", HOME, AgentState(dirs=(Path("/home/u/.claude"),), files=(Path("/home/u/.claude.json"),))),
    ("opencode", HOME, AgentState(dirs=tuple(Path("/home/u") / p / "opencode" for p in (
        ".local/share", ".config", ".cache", ".local/state")))),
    ("opencode", {**HOME, "XDG_DATA_HOME": "/data", "XDG_CACHE_HOME": "/cache"},
     AgentState(dirs=(Path("/data/opencode"), Path("/home/u/.config/opencode"), Path("/cache/opencode"),
                      Path("/home/u/.local/state/opencode")))),
    ("codex", HOME, AgentState(dirs=(Path("/home/u/.codex"),))),
    ("codex", {**HOME, "CODEX_HOME": "/srv/codex"}, AgentState(dirs=(Path("/srv/codex"),))),
    ("gemini", HOME, AgentState(dirs=(Path("/home/u/.gemini"),))),
    ("gemini", {**HOME, "GEMINI_CLI_HOME": "/srv/g"}, AgentState(dirs=(Path("/srv/g/.gemini"),))),
    ("aider", HOME, AgentState(dirs=(Path("/home/u/.aider"),))),
    ("exec", HOME, AgentState()),
])
def test_each_agent_declares_its_state_under_the_processs_home(name, env, state):
    config = {"model": "openai/m"} if name == "aider" else {}  # aider will not start without one
    assert agent_state(get_agent(name, config=config), env) == state


def test_the_command_agent_and_an_agent_that_declares_nothing_have_no_state():
    assert agent_state(get_agent("command", agent_cmd="my-agent {prompt_file}"), HOME) == AgentState()
    assert agent_state(object(), HOME) == AgentState()  # type: ignore[arg-type]
