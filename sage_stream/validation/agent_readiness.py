"""Whether the agent that will run can run: for `sage stream --dry-run` and the start of a run.

The same checks as `sage validate` (validation/prerequisites.py `agent_check`): the CLI
installed and answering `--version`, its version, its credentials (a key variable it gets or
its CLI's login file) - no model is called. For `exec`, the tickets that would run without
a `command`. Anything that would stop the run at its first ticket is a setup problem: the
dry run ends with exit 4, as the run itself would.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sage_stream.agents.registry import CLI_AGENTS
from sage_stream.tickets.models import Ticket
from sage_stream.validation.prerequisites import Prerequisite, agent_check

SHOWN_TICKETS = 5


def agent_readiness(name: str, agent_config: Mapping[str, Any], *, chosen_by: str,
                    tickets: Iterable[Ticket] = (), config_path: str | None = None) -> list[Prerequisite]:
    """The checks of agent `name`; `tickets` are the ones the run would start (for `exec`)."""
    if name in CLI_AGENTS:
        return agent_check(name, dict(agent_config), config_path, chosen_by=chosen_by)
    if name == "exec":
        without = sorted(ticket.id for ticket in tickets if not ticket.command)
        if not without:
            return [Prerequisite("agent_exec", True, "exec: every ticket to run has a `command`")]
        shown = ", ".join(without[:SHOWN_TICKETS]) + (f" and {len(without) - SHOWN_TICKETS} more"
                                                      if len(without) > SHOWN_TICKETS else "")
        return [Prerequisite("agent_exec", False, (
            f"exec runs each ticket's `command`, and {len(without)} ticket(s) have none: {shown}; choose an agent "
            "CLI (--agent claude, or [agent] preset in .sage/config.toml) or give them a `command`"), blocking=True)]
    return []


def setup_problems(checks: Iterable[Prerequisite]) -> list[Prerequisite]:
    """The checks that would halt the run at its first ticket."""
    return [check for check in checks if not check.ok and check.blocking]


def start_notes(agent: object) -> list[str]:
    """Said once when a run starts: the agent has no credentials here, or the user exported a
    variable of its CLI's own that it will not get."""
    from sage_stream.agents import credentials

    declared = credentials.agent_credentials(agent)
    if declared is None:
        return []
    home = Path(os.environ.get("HOME") or os.path.expanduser("~"))
    return credentials.start_notes(declared, os.environ, list(getattr(agent, "passthrough", ())), home)
