"""The one error type a user can cause, and the documented exit codes.

Anything a user can get wrong (a bad index, a bad flag, a missing git) is raised as
`SageError`; the entry point prints its message and exits with its code. Any other
exception is our bug and keeps its traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1  # invalid input, invalid index, usage errors, failed prerequisites
EXIT_WARNINGS = 2  # `sage validate`: warnings only
EXIT_DEFERRED = 3  # `sage stream`: the run finished but some tickets were deferred
EXIT_SETUP = 4  # `sage stream`: halted by a setup error (credentials, CLI missing, bad flag): fix it, run again
EXIT_REMOTE_REFUSED = 6  # `sage stream --remote`: the remote refused a push (hook, protection, permissions)
EXIT_REMOTE_UNREACHABLE = 7  # `sage stream --remote`: the remote could not be reached
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGTERM


class SageError(Exception):
    """A problem the user can fix: printed as a message, never as a traceback."""

    def __init__(self, message: str, *, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class AgentSetupError(SageError):
    """The agent cannot run at all as set up (not a ticket's fault): `sage stream` halts the
    run and puts the ticket back, unspent (exit code 4)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=EXIT_SETUP)
