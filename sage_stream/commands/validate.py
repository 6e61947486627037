"""`sage validate [--strict] [--json] [--index PATH] [--agent NAME]`: check the index, graph
and prerequisites, the agent that will run included (`--agent`, else `[agent] preset`).

Exit 0 valid, 1 errors (or warnings with --strict), 2 warnings only. Reads only: it
never writes, locks or creates anything.
"""

from __future__ import annotations

import click

from sage_stream.tickets.store import gc_paused
from sage_stream.validation.checks import validate_index
from sage_stream.validation.report import render_human, render_json


@click.command("validate")
@click.option("--strict", is_flag=True, help="Treat warnings as errors (exit 1).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--index", "index_path", type=click.Path(dir_okay=True), default=None,
              help="The ticket index (default: .sage/tickets/index.json here or above).")
@click.option("--agent", "agent", default=None, metavar="NAME",
              help="Check this agent (its CLI, version and credentials) instead of [agent] preset.")
def command(strict: bool, as_json: bool, index_path: str | None, agent: str | None) -> int:
    """Check the ticket index, the dependency graph and the prerequisites of `sage stream`."""
    # The collector stays paused until the report is printed and freed: re-enabled while
    # the report still holds the tickets, its first pass would walk all of them again
    # (0.2 s at 100,000 tickets) for no garbage.
    with gc_paused():
        return _validate_and_print(strict=strict, as_json=as_json, index_path=index_path, agent=agent)


def _validate_and_print(*, strict: bool, as_json: bool, index_path: str | None, agent: str | None = None) -> int:
    report = validate_index(index_path, strict=strict, agent=agent)
    click.echo(render_json(report) if as_json else render_human(report))
    return report.exit_code
