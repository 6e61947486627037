"""The result of `sage validate`, and its two renderings: human lines and stable JSON.

JSON shape (a public contract; keys are only ever added):

    {"valid": bool, "exit_code": 0|1|2, "strict": bool, "index": path or null,
     "summary": {"tickets", "errors", "warnings", "states", "ready", "recommended_workers",
                 "auto_workers", "auto_workers_rule"},
     "errors": [finding...], "warnings": [finding...],
     "analysis": {"ready", "ready_count", "blocked_count", "waves", "max_parallelism",
                  "critical_path", "critical_path_minutes", "total_minutes",
                  "recommended_workers", "recommended_workers_rule"} or null,
     "prerequisites": [{"name", "ok", "message", "path"}...]}

A finding is `Finding.as_json()`: severity, code, message, file, ticket, field,
expected, found. `auto_workers` is what `sage stream --parallel=auto` runs on this machine
(`process.cpus.decide_workers`; `auto_workers_rule` its reason, the run prints the same).
`recommended_workers_rule` says how the count was chosen: "simulation"
(the smallest count whose simulated makespan is within 5% of the best) or, above
`graph.simulate.SIMULATED_UP_TO` unfinished tickets, "lower_bound" (the smallest count
whose lower bound max(critical path, work / workers) is within 5% of the best bound).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sage_stream.errors import EXIT_ERROR, EXIT_OK, EXIT_WARNINGS
from sage_stream.findings import Finding, Severity
from sage_stream.validation.prerequisites import PREREQUISITE_PREFIX, Prerequisite

if TYPE_CHECKING:
    from sage_stream.graph.analysis import Analysis
    from sage_stream.process.cpus import WorkerDecision

MAX_LINES_PER_CHECK = 100
"""Human output shows this many findings of one check; `--json` always has all of them."""

PRETTY_JSON_LIMIT = 1000
"""Up to this many findings the JSON is indented; above it, one line (json's indenting
encoder is pure Python and would take seconds for 100k findings)."""


@dataclass
class ValidationReport:
    index: str | None
    tickets: int | None  # None when the index could not be loaded
    findings: list[Finding]  # errors first, grouped by check (see checks.order_findings)
    prerequisites: list[Prerequisite] = field(default_factory=list)
    strict: bool = False
    states: dict[str, int] | None = None
    analysis: Analysis | None = None
    sandbox: Prerequisite | None = None  # whether agents would be sandboxed (a note unless it blocks)
    auto_workers: WorkerDecision | None = None  # what --parallel=auto runs here (process/cpus.py)

    @property
    def errors(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.severity is Severity.WARNING]

    @property
    def exit_code(self) -> int:
        if any(finding.severity is Severity.ERROR for finding in self.findings):
            return EXIT_ERROR
        return EXIT_WARNINGS if self.findings else EXIT_OK

    @property
    def valid(self) -> bool:
        return self.exit_code != EXIT_ERROR

    def summary(self) -> dict[str, Any]:
        return {
            "tickets": self.tickets,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "states": self.states,
            "ready": len(self.analysis.ready) if self.analysis else None,
            "recommended_workers": self.analysis.recommended_workers if self.analysis else None,
            "auto_workers": self.auto_workers.workers if self.auto_workers else None,
            "auto_workers_rule": self.auto_workers.reason if self.auto_workers else None,
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "exit_code": self.exit_code,
            "strict": self.strict,
            "index": self.index,
            "summary": self.summary(),
            "errors": [finding_json(finding) for finding in self.errors],
            "warnings": [finding_json(finding) for finding in self.warnings],
            "analysis": analysis_json(self.analysis) if self.analysis else None,
            "prerequisites": [item.as_json() for item in self.prerequisites],
            **({"sandbox": self.sandbox.as_json()} if self.sandbox else {}),
        }


def finding_json(finding: Finding) -> dict[str, Any]:
    """`Finding.as_json()` without `dataclasses.asdict` (deep copies: 10x slower at 100k)."""
    return {
        "severity": finding.severity.value,
        "code": finding.code,
        "message": finding.message,
        "file": finding.file,
        "ticket": finding.ticket,
        "field": finding.field,
        "expected": finding.expected,
        "found": finding.found,
    }


def analysis_json(analysis: Analysis) -> dict[str, Any]:
    return {
        "ready": analysis.ready,
        "ready_count": len(analysis.ready),
        "blocked_count": analysis.blocked_count,
        "waves": analysis.wave_count,
        "max_parallelism": analysis.max_parallelism,
        "critical_path": analysis.critical_path,
        "critical_path_minutes": analysis.critical_path_minutes,
        "total_minutes": analysis.total_minutes,
        "recommended_workers": analysis.recommended_workers,
        "recommended_workers_rule": analysis.recommended_workers_rule,
    }


def render_json(report: ValidationReport) -> str:
    data = report.as_json()
    indent = 2 if len(report.findings) <= PRETTY_JSON_LIMIT else None
    return json.dumps(data, indent=indent, ensure_ascii=False)


# ---------------------------------------------------------------- human output


def render_human(report: ValidationReport) -> str:
    lines = [f"sage validate {report.index or '(no index)'}"]
    for title, findings in (("errors", report.errors), ("warnings", report.warnings)):
        # failed prerequisites are shown once, in their own section below
        findings = [finding for finding in findings if not finding.code.startswith(PREREQUISITE_PREFIX)]
        if findings:
            lines += ["", f"{title}:"]
            lines += _grouped_lines(findings)
    if report.prerequisites:
        lines += ["", "prerequisites of sage stream:"]
        lines += [f"  {'ok  ' if item.ok else 'FAIL'}  {item.message}" for item in report.prerequisites]
    if report.sandbox is not None:
        item = report.sandbox
        lines += [f"  {'ok  ' if item.ok else 'FAIL' if item.blocking else 'note'}  {item.message}"]
    lines += ["", summary_line(report)]
    return "\n".join(lines)


def _grouped_lines(findings: list[Finding]) -> list[str]:
    groups: dict[str, list[Finding]] = {}
    for finding in findings:
        groups.setdefault(finding.code, []).append(finding)
    lines = []
    for code, group in groups.items():
        lines.append(f"  {code} ({len(group)}):")
        lines += [f"    {finding_line(finding)}" for finding in group[:MAX_LINES_PER_CHECK]]
        if len(group) > MAX_LINES_PER_CHECK:
            lines.append(f"    ... and {len(group) - MAX_LINES_PER_CHECK} more"
                         " (`sage validate --json` lists every finding)")
    return lines


def finding_line(finding: Finding) -> str:
    """One line naming the file, then the ticket and field, then what is wrong.

    Messages from the store and from validate start with the file already; the graph's
    name the ticket in words, so the place is put in front of them here.
    """
    message = " ".join(finding.message.split("\n"))
    if finding.file and message.startswith(finding.file):
        return printable(message)
    where = []
    if finding.ticket:
        where.append(f"ticket {finding.ticket}")
    if finding.field:
        where.append(f"field '{finding.field}'")
    prefix = [part for part in (finding.file, ", ".join(where)) if part]
    return printable(": ".join([*prefix, message]))


def printable(text: str) -> str:
    """Ticket text can hold terminal escape sequences: show them, never send them."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text)


def summary_line(report: ValidationReport) -> str:
    errors, warnings = len(report.errors), len(report.warnings)
    counts = f"{_plural(errors, 'error')}, {_plural(warnings, 'warning')}"
    if report.tickets is None:
        return f"index not loaded: {counts}"
    line = f"{_plural(report.tickets, 'ticket')}: {counts}"
    analysis = report.analysis
    if analysis is None:
        return f"{line}; no schedule analysis until the errors are fixed"
    line = (f"{line}; ready now: {len(analysis.ready)}; recommended workers:"
            f" {analysis.recommended_workers} ({worker_rule_text(analysis.recommended_workers_rule)})")
    if report.auto_workers is not None:
        line += f"\n--parallel=auto on this machine: {report.auto_workers.workers} ({report.auto_workers.reason})"
    return line


def worker_rule_text(rule: str) -> str:
    """How the recommended worker count was chosen, in words."""
    from sage_stream.graph.simulate import RULE_LOWER_BOUND, SIMULATED_UP_TO, WITHIN_BEST

    within = round((WITHIN_BEST - 1) * 100)
    if rule == RULE_LOWER_BOUND:
        return (f"smallest count whose lower bound max(critical path, work / workers) is within"
                f" {within}% of the best; not simulated above {SIMULATED_UP_TO:,} unfinished tickets")
    return f"smallest count within {within}% of the best predicted makespan"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
