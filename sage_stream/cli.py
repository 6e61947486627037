"""The `sage` entry point: parses arguments and hands over to `commands/`.

Each subcommand lives in `sage_stream/commands/<name>.py` as a click command named
`command`; they are imported only when used, so `sage validate` does not pay for the
stream engine's imports.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import importlib.util
import os
import sys

import click

from sage_stream import __version__
from sage_stream.errors import EXIT_ERROR, EXIT_INTERRUPTED, SageError

COMMANDS = {
    "validate": "Check the ticket index, the dependency graph and the prerequisites.",
    "tickets": "List tickets.",
    "show": "Show one ticket.",
    "ready": "Show what would start next, in order, and why blocked tickets wait.",
    "graph": "Print the dependency graph (mermaid, dot, json, svg or html).",
    "plan": "Predict the makespan for 1..8 workers.",
    "init": "Create .sage/ with an empty index and a config file.",
    "stream": "Run ready tickets with sub-agents in parallel worktrees and land them.",
    "status": "Show the current or last run.",
    "report": "A run as one page: timeline, graph, tickets and totals (html, json or text).",
    "retry": "Put a DEFERRED ticket back in the queue.",
    "demo": "Drain the built-in example backlog in a throwaway repository.",
}


EXIT_WITHOUT_FREEING = frozenset({"validate", "ready", "plan", "graph"})
"""Commands after which `main` ends the process at once (`os._exit`) once the output is
flushed and the atexit functions have run: they only read, and freeing what they built
(100,000 ticket models) would take another 0.1 s for nothing - 0.3-0.5 s after `ready --json`
or `graph --format json`, which also free their graph and output. The garbage collector is
off for the whole of such a process: what it builds stays alive to the end, where
nothing is freed, and its collections during the imports alone cost 20-30 ms."""


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if _module_exists(name)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS or not _module_exists(name):
            return None
        module = importlib.import_module(f"sage_stream.commands.{name}")
        return module.command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _module_exists(name: str) -> bool:
    return importlib.util.find_spec(f"sage_stream.commands.{name}") is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sage")
def cli() -> None:
    """sage-stream: drain a Sage ticket backlog with AI coding agents in parallel."""


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    exit_without_freeing = bool(args) and args[0] in EXIT_WITHOUT_FREEING
    if exit_without_freeing:
        gc.disable()
    code = run(args)
    if exit_without_freeing:
        _exit_without_freeing(code)
    sys.exit(code)


def _exit_without_freeing(code: int) -> None:
    """End the process as `sys.exit(code)` would, but without freeing every object first.

    Only when everything is written: should a flush fail (a closed pipe), this returns
    and the caller exits the usual way, which reports that as python always does.
    """
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    os._exit(code)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return the exit code: SageError -> its message; usage errors -> 1."""
    try:
        result = cli.main(args=argv, prog_name="sage", standalone_mode=False)
    except SageError as error:
        click.echo(f"error: {error.message}", err=True)
        return error.exit_code
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except click.ClickException as error:
        error.show()
        return EXIT_ERROR
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    return result if isinstance(result, int) else 0
