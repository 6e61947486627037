"""`sage init [--path DIR]`: an empty index, a commented config, a commented example ticket,
and .gitignore entries.

Never overwrites: a file that exists is reported as skipped, and `.gitignore` only
gets the lines it lacks appended.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from sage_stream.paths import REPO_RELATIVE

INDEX = REPO_RELATIVE.index
CONFIG = REPO_RELATIVE.config
GITIGNORE_LINES = (".sage/",)
"""As Sage: all of .sage/ is local state of this checkout, never part of a commit."""

_EQUIVALENT_IGNORES = {".sage/": {".sage", ".sage/", "/.sage", "/.sage/", ".sage/*", "/.sage/*"}}

EMPTY_INDEX = json.dumps({"version": "1.0", "tickets": []}, indent=2) + "\n"

CONFIG_TEXT = """\
# sage-stream configuration. Every key is optional: the values shown are the defaults,
# uncomment a line to change it. Command-line flags override this file.

[stream]
# Tickets worked on at once: a number, or "auto" (usable CPUs / 0.4 per agent and available
# memory / 250 MB per agent, at most 8 and the count `sage validate` recommends
# and to the number of ready tickets). Used with `sage stream --auto`.
# parallel = "auto"
# Minutes one agent may work on one ticket before it is stopped and the ticket deferred.
# timeout_minutes = 30.0
# Minutes without any agent output before the agent is taken as stuck and stopped.
# idle_timeout_minutes = 10.0
# Seconds between asking an agent to stop (SIGTERM) and killing it.
# grace_seconds = 10.0
# Automatic attempts of a ticket that failed for a passing reason (timeout, rate limit...).
# max_attempts = 3
# Minutes to wait before retrying such a ticket.
# retry_backoff_minutes = 10.0
# Reruns of a ticket whose work conflicts with what landed meanwhile.
# max_reruns = 2
# The branch finished tickets land on (default: where this backlog's earlier landings
# went, else the branch checked out).
# target = "main"
# Land on this remote's branch instead of a local one (`sage stream --remote NAME`):
# fetch, merge, plain push; teammates may push to it meanwhile.
# remote = "origin"
# With a remote: push each ticket's sage/<ID> branch too, for teammates to see.
# push_branches = false
# "greedy" (start the next ready ticket as soon as a worker is free) or "batch"
# (the original /stream: wait for the whole batch).
# schedule = "greedy"
# Where agents run: "local" (this machine) or "dask://HOST:PORT" (the workers of a Dask
# scheduler; see [executor] and the README's "Agents on many machines").
# executor = "local"
# Start no new ticket while the 1-minute load average is above this (default: no limit).
# max_load = 4.0
# Start no new ticket once the agents of this run have cost this many US dollars (as the
# agents report it); running agents finish and land (default: no limit).
# max_cost_usd = 5.0
# A rate limit or exhausted quota pauses dispatch for every worker: first for this many
# seconds, doubling with each further limit in a row up to the maximum (or until the reset
# time the agent reported); dispatch resumes with half the workers and adds one back after
# every 2 successful agent runs.
# rate_limit_backoff_seconds = 30.0
# rate_limit_max_backoff_seconds = 600.0
# Rate limits in a row after which the run starts no more tickets (they stay UNPROCESSED).
# rate_limit_stop_after = 5
# A quota that resets later than this many minutes from now defers the ticket until the
# reset and stops starting tickets in this run.
# quota_wait_minutes = 15.0

[agent]
# Which agent works on tickets: "exec" (each ticket's own `command`), "command", or an
# agent CLI ("claude", "opencode", "codex", "gemini", "aider").
# preset = "exec"
# The command agent's command line; {prompt_file} is replaced by the prompt's path.
# command = "my-agent --prompt-file {prompt_file}"
# The model to ask for, for agents that take one.
# model = "sonnet"
# Extra arguments appended to the agent's command line.
# extra_args = []
# Minutes per ticket for this agent (default: [stream] timeout_minutes).
# timeout_minutes = 30.0
# Names of environment variables passed to agents, beyond a small standard set
# (a trailing * passes every variable with that prefix).
# env = ["ANTHROPIC_API_KEY"]
# Continue the agent's session of a ticket's only dependency, when it landed in the same
# run (agents that support sessions; like `sage stream --reuse-sessions`).
# reuse_sessions = false
# Run agents, their checks and fix turns in a sandbox (bubblewrap) where they can write
# only their worktree, their git refs, their CLI's own state and a private /tmp: "auto"
# (when bwrap is installed and works), "bwrap" (refuse to start without it) or "none".
# sandbox = "auto"
# More paths sandboxed agents may write: absolute, or ~/... in the agent's HOME.
# writable = ["~/.cache/pip"]

[checks]
# Commands run in the ticket's worktree before it lands, besides the ticket's own
# validation_config.verification_scripts and sub-task validation_script. Each string is
# split into arguments like a shell would, but never run by a shell: no pipes, &&,
# redirections or $VARIABLES (put those in a script file and run the script).
# commands = ["python -m pytest -q"]
# Minutes one check may run before it is stopped (and counts as failed).
# timeout_minutes = 10.0
# When checks fail, the agent gets their output and another turn, this many times;
# then the ticket is deferred (persistent_test_failure). A ticket's
# validation_config.max_retries overrides it.
# max_fix_turns = 2
# Checks of one ticket that run at the same time (1 to 4).
# max_parallel = 4
# Names of environment variables checks may see, beyond the agents' standard set and
# [agent] env.
# env = ["DATABASE_URL"]

[executor]
# With executor = "dask://HOST:PORT": the git URL workers fetch from and push attempts to
# (default: the remote's URL, else this repository's path).
# hub = "git@git.example.com:team/app.git"
# TLS to the scheduler (needed beyond this machine: the scheduler runs pickled code).
# tls_ca = "/etc/sage/ca.pem"
# tls_cert = "/etc/sage/client.pem"
# tls_key = "/etc/sage/client.key"
# Plain tcp to a scheduler on another machine, on a private network you trust.
# insecure = false
"""


EXAMPLE = REPO_RELATIVE.root / "example-ticket.md"
"""Beside the tickets directory, not in it: a `.md` there would read as a ticket's prose."""

EXAMPLE_TICKET = {
    "id": "CALC-001",
    "title": "Add a --verbose flag to the calculator CLI",
    "state": "UNPROCESSED",
    "priority": "P1",
    "type": "enhancement",
    "validation_type": "generic",
    "dependencies": [],
    "description": "calc.py gets a --verbose flag that prints each step. Acceptance: `python calc.py"
                   " --verbose 1+2` prints the steps and 3; the tests pass.",
    "estimate": 10,
    "files": ["calc.py", "tests/**"],
    "validation_config": {"verification_scripts": [{"name": "tests", "command": "python -m pytest -q"}]},
}


def example_ticket_text() -> str:
    """The commented example `sage init` writes: every field, the allowed values, a ticket to copy."""
    from sage_stream.tickets.models import PRIORITIES, TICKET_TYPES, VALIDATION_TYPES

    ticket = json.dumps({"version": "1.0", "tickets": [EXAMPLE_TICKET]}, indent=2)
    return f"""\
# A ticket for sage-stream (an example; sage reads only .sage/tickets/index.json)

Copy the ticket below into the `tickets` list of `.sage/tickets/index.json`, change it, then run
`sage validate` (it names the file, the ticket and the field of anything wrong).

```json
{ticket}
```

Required (unless the ticket is COMPLETED):

- `id`: letters, digits, `-`, `_`, `.` (Sage's form is `AREA-001`); it names the branch `sage/<id>`.
- `title`: one line; it becomes the commit title.
- `state`: `UNPROCESSED` for new work (then `IN_PROGRESS`, `COMPLETED`, `DEFERRED`, set by sage).
- `priority`: {", ".join(PRIORITIES)} (P0 first).
- `type`: {", ".join(TICKET_TYPES)}.
- `validation_type`: {", ".join(VALIDATION_TYPES)}.
- `dependencies`: ids that must be COMPLETED first (`[]` for none).

Optional:

- `description`: what to do and how to tell it is done (or write `.sage/tickets/<id>.md`).
- `estimate`: minutes of agent work (default 1): orders the work and feeds `sage plan`.
- `files`: globs the ticket may change (`src/**`, `docs/*.md`); a change outside them is not
  landed (DEFERRED `scope_violation`; after fixing `files`, `sage retry <id> --land` lands it).
- `validation_config.verification_scripts`: checks run in the ticket's worktree before it lands;
  a failing one gives the agent another turn.
- `command`: an argv list run by `--agent exec` instead of an AI agent.
- `allow_empty`: land even when the ticket changes nothing.

Then: `sage stream --dry-run` shows the order, `sage stream --auto --parallel` runs it.
"""


def ensure_file(path: Path, content: str) -> str:
    """Create `path` with `content` unless something exists there: 'created' or 'skipped'."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("x", encoding="utf-8") as handle:  # "x": fails instead of overwriting
            handle.write(content)
    except FileExistsError:
        return "skipped (exists)"
    return "created"


def ensure_gitignore(path: Path, lines: tuple[str, ...] = GITIGNORE_LINES) -> str:
    """Append the missing `lines` to `path` (creating it if needed)."""
    if path.exists() and not path.is_file():
        return "skipped (not a file)"
    existing = path.read_bytes().decode("utf-8", errors="surrogateescape") if path.exists() else ""
    present = {line.strip() for line in existing.splitlines()}
    missing = [line for line in lines if not (_EQUIVALENT_IGNORES.get(line, {line}) & present)]
    if not missing:
        return "skipped (already ignores " + ", ".join(lines) + ")"
    prefix = "" if not existing or existing.endswith("\n") else "\n"
    with path.open("a", encoding="utf-8", errors="surrogateescape") as handle:
        handle.write(prefix + "".join(f"{line}\n" for line in missing))
    return ("appended " if existing else "created with ") + ", ".join(missing)


def init_sage(root: Path) -> list[tuple[Path, str]]:
    """Set up `root` for sage; returns (path, what was done) per file."""
    root.mkdir(parents=True, exist_ok=True)
    return [
        (root / INDEX, ensure_file(root / INDEX, EMPTY_INDEX)),
        (root / CONFIG, ensure_file(root / CONFIG, CONFIG_TEXT)),
        (root / EXAMPLE, ensure_file(root / EXAMPLE, example_ticket_text())),
        (root / ".gitignore", ensure_gitignore(root / ".gitignore")),
    ]


@click.command("init")
@click.option("--path", "path", type=click.Path(file_okay=False), default=".",
              help="The repository to set up (default: the current directory).")
def command(path: str) -> int:
    """Create .sage/ with an empty index, a commented config and an example ticket; ignore .sage/ in git."""
    root = Path(path).resolve()
    for target, action in init_sage(root):
        click.echo(f"{target}: {action}")
        if target.name == ".gitignore" and action.startswith(("appended", "created")):
            # an uncommitted .gitignore makes the checkout dirty: landings onto it would wait
            click.echo(f"note: commit it: `git -C {root} add .gitignore && git -C {root} commit -m 'Ignore .sage/'`"
                       " (sage never lands onto a checked-out branch with uncommitted changes)")
    if not any(parent.joinpath(".git").exists() for parent in (root, *root.parents)):
        click.echo(f"note: {root} is not in a git repository; sage stream needs one (git init)")
    click.echo(f"next: add tickets to {INDEX} (a complete, commented example: {EXAMPLE}),"
               " then run `sage validate`")
    return 0
