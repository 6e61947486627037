"""Agents by name: the one place that knows which agents exist.

A CLI agent is one module `sage_stream/agents/<name>.py` with
`make_agent(config: Mapping[str, Any]) -> Agent`; its name goes in `CLI_AGENTS`.
Configuration keys read here (`config` is the `[agent]` section of `.sage/config.toml`
as a mapping; keys an agent does not use are ignored):

    env   list of environment variable names (or `PREFIX_*`) the agent may inherit
          beyond the standard allow list (see agents/environment.py)
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from typing import Any

from sage_stream.agents.base import Agent, env_passthrough
from sage_stream.agents.command import CommandAgent
from sage_stream.agents.exec import ExecAgent
from sage_stream.errors import SageError


def _exec_agent(agent_cmd: str | None, config: Mapping[str, Any]) -> Agent:
    return ExecAgent(passthrough=env_passthrough(config))


def _command_agent(agent_cmd: str | None, config: Mapping[str, Any]) -> Agent:
    if agent_cmd is None:
        raise SageError("the command agent needs the command to run: --agent-cmd 'my-agent {prompt_file}'")
    return CommandAgent(agent_cmd, passthrough=env_passthrough(config))


_FACTORIES: dict[str, Callable[[str | None, Mapping[str, Any]], Agent]] = {
    "command": _command_agent,
    "exec": _exec_agent,
}
CLI_AGENTS = ("claude", "opencode", "codex", "gemini", "aider")


def known_agents() -> list[str]:
    return sorted([*_FACTORIES, *(name for name in CLI_AGENTS if _cli_module_exists(name))])


def get_agent(name: str, *, agent_cmd: str | None = None, config: Mapping[str, Any] | None = None) -> Agent:
    """The agent called `name`; `agent_cmd` is the command agent's template (ignored by others)."""
    factory = _FACTORIES.get(name)
    if factory is not None:
        return factory(agent_cmd, config or {})
    if name in CLI_AGENTS and _cli_module_exists(name):
        module = importlib.import_module(f"sage_stream.agents.{name}")
        return module.make_agent(config or {})
    raise SageError(f"unknown agent {name!r}: known agents are {', '.join(known_agents())}")


def _cli_module_exists(name: str) -> bool:
    return importlib.util.find_spec(f"sage_stream.agents.{name}") is not None

