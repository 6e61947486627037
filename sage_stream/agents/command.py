"""The `command` agent: any program, from a template given with `--agent-cmd CMD`.

The template is split into an argv once, shell-style (`shlex.split`), when the agent is
made; then each argument gets its placeholders replaced in a single pass:

    {prompt_file}   absolute path of the ticket's prompt (markdown)
    {ticket}        the ticket id
    {worktree}      absolute path of the ticket's worktree (also the working directory)
    {result_file}   absolute path where the program may write its JSON result

A substituted value is never split again and never seen by a shell, so ticket text
cannot become arguments or commands; `{anything_else}` is left as written. Success is
exit code 0; see `base.process_result` for the summary and the optional result file.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

from sage_stream.agents.base import AgentJob, AgentResult, AgentState, Invocation, process_result, standard_environment
from sage_stream.agents.environment import check_passthrough
from sage_stream.errors import SageError
from sage_stream.process.supervise import AgentExit

PLACEHOLDER = re.compile(r"\{(prompt_file|ticket|worktree|result_file)\}")


class CommandAgent:
    name = "command"

    def __init__(self, template: str, *, passthrough: Sequence[str] = ()) -> None:
        self.template = split_template(template)
        self.passthrough = check_passthrough(passthrough)

    def invocation(self, job: AgentJob) -> Invocation:
        values = {
            "prompt_file": str(Path(job.prompt_file).absolute()),
            "ticket": job.ticket.id,
            "worktree": str(Path(job.worktree).absolute()),
            "result_file": str(Path(job.result_file).absolute()),
        }
        argv = [fill_placeholders(argument, values) for argument in self.template]
        return Invocation(argv=argv, env=standard_environment(job, self.passthrough))

    def parse_result(self, job: AgentJob, exit: AgentExit) -> AgentResult:
        return process_result(job, exit)

    def supports_sessions(self) -> bool:
        return False

    def state(self, env: Mapping[str, str]) -> AgentState:
        return AgentState()  # a plain program: whatever it needs besides its worktree goes in [agent] writable


def split_template(template: str) -> list[str]:
    try:
        argv = shlex.split(template)
    except ValueError as error:
        raise SageError(f"--agent-cmd {template!r} cannot be split into arguments: {error}") from None
    if not argv:
        raise SageError("--agent-cmd is empty: give the program to run, e.g. --agent-cmd 'my-agent {prompt_file}'")
    return argv


def fill_placeholders(argument: str, values: Mapping[str, str]) -> str:
    # one pass: a value that itself contains "{ticket}" is not substituted again
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], argument)
