"""The environment an agent process gets: an allow list, never the whole of ours.

An agent runs code written by a model from text written by anyone who can edit a ticket,
so it inherits only what a program needs to run, plus the names the configuration (or
the agent's own plugin, e.g. its API key) asks for. Everything else is dropped: tokens,
cloud credentials (`AWS_*`, `GITHUB_TOKEN`, ...), proxies, `PYTHONPATH`, and so on.

Passed through when set:

- `PATH`, `HOME`, `USER`, `LOGNAME`, `SHELL`, `TERM`, `TMPDIR`, `TZ`
- `LANG`, `LANGUAGE` and every `LC_*`
- names listed in the configuration (`[agent] env = [...]` in `.sage/config.toml`); a name
  ending in `*` passes every variable with that prefix (`ANTHROPIC_*`)

Never passed, even when listed:

- `GIT_*`: `GIT_DIR`, `GIT_WORK_TREE`, `GIT_INDEX_FILE`... would point git inside the
  worktree at another repository, index or work tree.
- `SAGE_*` of our own environment: the variables below are set per ticket instead.

`SHELL` is kept because agent CLIs run their tool commands with it. `VIRTUAL_ENV` is not:
`uv`, `poetry` and `pipenv` install into `$VIRTUAL_ENV`, which would be sage-stream's own
environment rather than the project's (list it in `[agent] env` if that is wanted).
When `PATH` is not set, the system default path is used.

Set for every agent:

- `SAGE_TICKET_ID`     the ticket's id
- `SAGE_RUN_ID`        the run's id
- `SAGE_WORKTREE`      the absolute path of the ticket's worktree (also the working directory)
- `SAGE_PROMPT_FILE`   the absolute path of the prompt written for the ticket
- `SAGE_RESULT_FILE`   where the agent may write `{"success": bool, "summary": "...", "cost_usd": 0.12,
                      "error_kind": "rate_limit", "retryable": true, "reset_at": "<ISO-8601>"}`
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

from sage_stream.errors import SageError

ALLOWED_NAMES = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "TMPDIR", "TZ", "LANG", "LANGUAGE")
ALLOWED_PREFIXES = ("LC_",)
FORBIDDEN_PREFIXES = ("GIT_", "SAGE_")

SAGE_TICKET_ID = "SAGE_TICKET_ID"
SAGE_RUN_ID = "SAGE_RUN_ID"
SAGE_WORKTREE = "SAGE_WORKTREE"
SAGE_PROMPT_FILE = "SAGE_PROMPT_FILE"
SAGE_RESULT_FILE = "SAGE_RESULT_FILE"


def check_passthrough(names: Iterable[str]) -> list[str]:
    """The configured names, or SageError for one that may not or cannot be passed."""
    checked = []
    for name in names:
        if not isinstance(name, str) or not name or "=" in name or name == "*":
            raise SageError(f"[agent] env: {name!r} is not an environment variable name")
        if name.upper().startswith("GIT_"):
            raise SageError(
                f"[agent] env: {name} cannot be passed to agents: "
                "GIT_* variables would point git away from the ticket's worktree"
            )
        if name.upper().startswith("SAGE_"):
            raise SageError(f"[agent] env: {name} cannot be passed to agents: sage-stream sets SAGE_* itself")
        checked.append(name)
    return checked


def agent_environment(
    source: Mapping[str, str],
    *,
    passthrough: Sequence[str] = (),
    sage: Mapping[str, str],
) -> dict[str, str]:
    """The complete environment for an agent: allowed names from `source`, then `sage`."""
    wanted = check_passthrough(passthrough)
    exact = set(ALLOWED_NAMES) | {name for name in wanted if not name.endswith("*")}
    prefixes = ALLOWED_PREFIXES + tuple(name[:-1] for name in wanted if name.endswith("*"))
    environment = {
        name: value
        for name, value in source.items()
        if (name in exact or name.startswith(prefixes)) and not name.upper().startswith(FORBIDDEN_PREFIXES)
    }
    environment.setdefault("PATH", os.defpath)
    environment.update(sage)
    return environment
