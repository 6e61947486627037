"""Agents by name."""

from __future__ import annotations

import pytest

from sage_stream.agents.command import CommandAgent
from sage_stream.agents.exec import ExecAgent
from sage_stream.agents.registry import get_agent, known_agents
from sage_stream.errors import SageError


def test_known_agents_include_the_generic_ones_and_every_cli_module_present() -> None:
    import importlib.util

    from sage_stream.agents.registry import CLI_AGENTS

    present = [name for name in CLI_AGENTS if importlib.util.find_spec(f"sage_stream.agents.{name}")]
    assert known_agents() == sorted(["command", "exec", *present])


def test_exec() -> None:
    agent = get_agent("exec")
    assert isinstance(agent, ExecAgent) and agent.name == "exec"


def test_command_needs_agent_cmd() -> None:
    assert isinstance(get_agent("command", agent_cmd="my-agent {prompt_file}"), CommandAgent)
    with pytest.raises(SageError, match="--agent-cmd"):
        get_agent("command")


def test_agent_cmd_is_only_for_the_command_agent() -> None:
    assert isinstance(get_agent("exec", agent_cmd="from the config file"), ExecAgent)


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(SageError, match="unknown agent 'klaude': known agents are ") as raised:
        get_agent("klaude")
    assert raised.value.message.endswith(", ".join(known_agents()))


def test_config_passthrough_reaches_the_agent() -> None:
    agent = get_agent("exec", config={"env": ["ANTHROPIC_*"], "model": None, "extra_args": []})
    assert agent.passthrough == ["ANTHROPIC_*"]


@pytest.mark.parametrize("value", ["ANTHROPIC_API_KEY", [1], {"a": 1}])
def test_config_passthrough_must_be_a_list_of_names(value) -> None:
    with pytest.raises(SageError, match=r"\[agent\] env"):
        get_agent("exec", config={"env": value})


def test_config_passthrough_cannot_pass_git_variables() -> None:
    with pytest.raises(SageError, match="GIT_DIR cannot be passed"):
        get_agent("exec", config={"env": ["GIT_DIR"]})


def test_the_agent_section_of_the_config_file_is_accepted() -> None:
    from sage_stream.config import AgentConfig

    section = AgentConfig(env=["OPENAI_API_KEY"], command="my-agent {prompt_file}").model_dump()
    agent = get_agent("command", agent_cmd=section["command"], config=section)
    assert agent.passthrough == ["OPENAI_API_KEY"] and agent.template == ["my-agent", "{prompt_file}"]
