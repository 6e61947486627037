"""`sage report [RUN_ID]`: a run as one page, or its data as JSON, or a terminal summary.

Built from the run record only (`.sage/runs/<run-id>.json`), so a run that was killed
mid-way still reports what happened up to its last write. HTML goes to
`.sage/runs/<run-id>.html` (the page `sage stream` keeps live) unless `-o FILE` says
otherwise; JSON and text go to stdout unless `-o FILE`. Exit 1 (with the file or run id
named) when there is no such run, its record is unreadable, or the output cannot be written.
"""

from __future__ import annotations

import json
import webbrowser
from pathlib import Path

import click

from sage_stream.durable import write_atomic
from sage_stream.engine.run_record import (RUNNING, RunRecord, is_run_alive, latest_run, read_run, run_page_path,
                                           run_path)
from sage_stream.errors import EXIT_OK, SageError
from sage_stream.report.html import report_html
from sage_stream.report.model import build_report
from sage_stream.report.text import report_text
from sage_stream.tickets.store import resolve_index_path

FORMATS = ("html", "json", "text")


@click.command("report")
@click.argument("run_id", required=False)
@click.option("--format", "output_format", type=click.Choice(FORMATS), default="html", show_default=True,
              help="html: one self-contained page; json: the same data; text: the table and totals.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write here (default: html to .sage/runs/<run-id>.html, json and text to stdout).")
@click.option("--open", "open_page", is_flag=True, help="Open the html page in a browser.")
@click.option("--index", "index_option", type=click.Path(dir_okay=False), default=None,
              help="The ticket index (default: .sage/tickets/index.json here or above).")
def command(run_id: str | None, output_format: str, output: str | None, open_page: bool,
            index_option: str | None) -> int:
    """Show a run (the last one by default): timeline, dependency graph, tickets and totals."""
    if open_page and output_format != "html":
        raise SageError(f"--open shows an html page, not --format {output_format}")
    sage_dir = resolve_index_path(index_option).parent.parent
    record = find_record(sage_dir, run_id)
    model = build_report(record.to_json(), live=record.status == RUNNING and is_run_alive(record))
    if output_format == "json":
        text = json.dumps(model.to_json(), indent=2, ensure_ascii=False) + "\n"
    elif output_format == "text":
        text = report_text(model) + "\n"
    else:
        text = report_html(model)
    if output is None and output_format != "html":
        click.echo(text, nl=False)
        return EXIT_OK
    target = Path(output) if output is not None else run_page_path(sage_dir, record.run_id)
    try:
        write_atomic(target, text.encode("utf-8"))
    except OSError as error:
        raise SageError(f"{target}: cannot write the report: {error.strerror or error}")
    click.echo(str(target))
    if open_page:
        webbrowser.open(target.resolve().as_uri())
    return EXIT_OK


def find_record(sage_dir: Path, run_id: str | None) -> RunRecord:
    """The named run's record, else the newest; SageError naming what is missing."""
    if run_id is None:
        record = latest_run(sage_dir)
        if record is None:
            raise SageError(f"no run recorded in {sage_dir / 'runs'} yet: `sage stream` records one")
        return record
    path = run_path(sage_dir, run_id)
    if not path.is_file():
        raise SageError(f"no run {run_id!r}: {path} does not exist (`sage status` names the last run)")
    return read_run(path)
