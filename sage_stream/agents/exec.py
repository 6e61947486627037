"""The `exec` agent: runs the ticket's own `command` argv in its worktree.

For backlogs whose work is a program rather than a model (and for `sage demo`): the
ticket says what to run, as an argv list that never goes through a shell. Success is
exit code 0; see `base.process_result` for the summary and the optional result file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from sage_stream.agents.base import AgentJob, AgentResult, AgentState, Invocation, process_result, standard_environment
from sage_stream.agents.environment import check_passthrough
from sage_stream.errors import AgentSetupError
from sage_stream.process.supervise import FAILED_TO_START, AgentExit
from sage_stream.tickets.models import Ticket


class ExecAgent:
    name = "exec"

    def __init__(self, *, passthrough: Sequence[str] = ()) -> None:
        self.passthrough = check_passthrough(passthrough)

    def invocation(self, job: AgentJob) -> Invocation:
        return Invocation(argv=ticket_command(job.ticket), env=standard_environment(job, self.passthrough))

    def parse_result(self, job: AgentJob, exit: AgentExit) -> AgentResult:
        ticket_command(job.ticket)
        result = process_result(job, exit)
        if exit.outcome == FAILED_TO_START:  # the program is the ticket's own `command`: its failure, not the setup's
            return replace(result, error_kind="other")
        return result

    def supports_sessions(self) -> bool:
        return False

    def state(self, env: Mapping[str, str]) -> AgentState:
        return AgentState()  # a plain program: whatever it needs besides its worktree goes in [agent] writable


def ticket_command(ticket: Ticket) -> list[str]:
    """The ticket's argv, or AgentSetupError naming the ticket and the field (a backlog
    without commands meets an exec agent: the run halts rather than fail every ticket)."""
    if not ticket.command:
        raise AgentSetupError(
            f"ticket {ticket.id} has no `command`: the exec agent runs a ticket's command argv "
            '(add e.g. "command": ["python3", "scripts/do_it.py"] to the ticket, or choose another agent)'
        )
    return list(ticket.command)
