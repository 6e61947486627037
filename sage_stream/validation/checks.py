"""`sage validate`: every check of the index, in Sage's order, plus ours.

Sage's order: the index exists and parses; required fields; duplicate ids; id format;
valid states; every dependency exists; no cycles; every parent exists; `<ID>.md`
exists; priority P0-P4; valid type; valid validation_type; sub-task fields; empty
`validation_script`; component `checkpoint_id` resolves in git. Then ours: safe ids,
`docs` paths and `files` globs that stay inside the repository, finite estimates, and
whether the index is tracked by git (Sage keeps `.sage/` ignored).

Parsing, the JSON types, valid states, `command`, `estimate > 0` and `not_before` are
checked by `tickets.store.load_index` through the models; the dependency graph by
`graph.dependency_graph.graph_findings`. Each check here is one pass over the tickets,
and nothing here writes to disk.
"""

from __future__ import annotations

import gc
import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from sage_stream.errors import SageError
from sage_stream.tickets.models import PRIORITIES, TICKET_TYPES, VALIDATION_TYPES, State, Ticket
from sage_stream.tickets.prose import SAGE_ID, is_safe_id
from sage_stream.tickets.store import (
    INDEX_RELATIVE,
    IndexLoadError,
    LoadedIndex,
    find_index,
    load_index,
)
from sage_stream.validation.findings import Finding, Severity
from sage_stream.validation.prerequisites import (
    GitContext,
    Prerequisite,
    check_prerequisites,
    is_tracked,
    prerequisite_findings,
    unresolved_commits,
)
from sage_stream.validation.report import ValidationReport

CHECK_ORDER = (
    # the index exists and parses (tickets/store.py)
    "index_missing", "index_unreadable", "invalid_utf8", "invalid_json", "invalid_schema",
    "missing_field",
    "duplicate_id",
    "unsafe_id", "id_format",
    "unknown_dependency", "self_dependency", "completed_depends_on_unfinished",
    "cycle",
    "unknown_parent", "parent_children_mismatch",
    "missing_prose",
    "priority",
    "invalid_type",
    "invalid_validation_type",
    "subtask_field",
    "empty_validation_script",
    "invalid_checkpoint", "unresolved_checkpoint", "unchecked_checkpoint",
    "unsafe_path",
    "estimate_not_finite",
    "index_tracked",
    "prerequisite_git_installed", "prerequisite_git_version", "prerequisite_git_work_tree",
    "prerequisite_sage_dir_writable",
)
"""How `sage validate` groups its output; a code not listed goes last, in order found."""

REQUIRED_UNLESS_COMPLETED = (
    ("priority", "P0..P4"),
    ("type", "one of " + ", ".join(TICKET_TYPES)),
    ("validation_type", "one of " + ", ".join(VALIDATION_TYPES)),
)
"""Lightweight COMPLETED records and `type: legacy` records carry only id, state and title."""

_TYPES_BY_LOWER = {name.lower(): name for name in TICKET_TYPES}
_VALIDATION_TYPES_BY_LOWER = {name.lower(): name for name in VALIDATION_TYPES}


class Row(NamedTuple):
    """One ticket as written (`raw`) and as typed (`ticket`), with how messages name it."""

    raw: dict[str, Any]
    ticket: Ticket
    label: str  # the id, or "#N" (1-based position) when the id is empty or unprintable
    safe_id: bool  # tickets.prose.is_safe_id, asked once per ticket


# ---------------------------------------------------------------- entry point


def validate_index(
    index_option: str | Path | None = None,
    *,
    strict: bool = False,
    now: datetime | None = None,
    cwd: Path | None = None,
) -> ValidationReport:
    """Run every check on the index at `index_option` (found from `cwd` when None).

    Never raises for a problem of the index: a file that cannot be loaded is a report
    with its load findings and no analysis.
    """
    with gc_paused():
        return _validate(index_option, strict=strict, now=now, cwd=cwd)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Validation builds millions of long-lived objects (models, graphs) and frees almost
    none before it returns; the cyclic GC would rescan them all again and again. At 100k
    tickets that is 3 of the 3.5 s of `load_index` and half of the whole run."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _validate(
    index_option: str | Path | None, *, strict: bool, now: datetime | None, cwd: Path | None
) -> ValidationReport:
    try:
        path = Path(index_option).resolve() if index_option else find_index(cwd)
    except SageError as error:
        finding = Finding(Severity.ERROR, "index_missing", error.message,
                          file=str((cwd or Path.cwd()) / INDEX_RELATIVE))
        return ValidationReport(index=finding.file, tickets=None, findings=[finding], strict=strict)
    context, prerequisites = check_prerequisites(path)
    try:
        loaded = load_index(path)
    except IndexLoadError as error:
        findings = order_findings([*error.findings, *prerequisite_findings(prerequisites)])
        return ValidationReport(index=str(path), tickets=None,
                                findings=as_strict(findings) if strict else findings,
                                prerequisites=prerequisites, strict=strict)
    findings = [*index_findings(loaded, context), *prerequisite_findings(prerequisites)]
    return _report(loaded, order_findings(findings), prerequisites, strict=strict, now=now)


def _report(
    loaded: LoadedIndex,
    findings: list[Finding],
    prerequisites: list[Prerequisite],
    *,
    strict: bool,
    now: datetime | None,
) -> ValidationReport:
    tickets = loaded.tickets
    analysis = None
    # the analysis needs an acyclic graph of known tickets: only on an index without errors
    if not any(finding.severity is Severity.ERROR for finding in findings):
        from sage_stream.graph.analysis import analyze

        analysis = analyze(tickets, now=now)
    return ValidationReport(
        index=str(loaded.path), tickets=len(tickets),
        findings=as_strict(findings) if strict else findings,
        prerequisites=prerequisites, strict=strict, states=_count_states(tickets),
        analysis=analysis,
    )


def _count_states(tickets: Iterable[Ticket]) -> dict[str, int]:
    counts = Counter(ticket.state for ticket in tickets)
    return {state.value: counts[state] for state in State}


def index_findings(loaded: LoadedIndex, context: GitContext | None = None) -> list[Finding]:
    """Every finding about a loaded index, in Sage's order; `context` is None without git."""
    from sage_stream.graph.dependency_graph import graph_findings

    file = str(loaded.path)
    rows = _rows(loaded)
    findings: list[Finding] = []
    findings += required_field_findings(rows, file)
    findings += graph_findings(loaded.tickets, file=file)
    findings += id_findings(rows, file)
    findings += prose_findings(rows, loaded.tickets_dir, file)
    findings += priority_findings(rows, file)
    findings += type_findings(rows, file)
    findings += subtask_findings(rows, file)
    findings += checkpoint_findings(rows, context, file)
    findings += path_findings(rows, file)
    findings += estimate_findings(rows, file)
    if context is not None and is_tracked(context, loaded.path):
        findings.append(Finding(
            Severity.WARNING, "index_tracked",
            f"{file}: the index is tracked by git; Sage keeps .sage/ in .gitignore so that"
            " ticket state never dirties the work tree or conflicts with a landing"
            " (git rm --cached the file and ignore .sage/)",
            file=file,
        ))
    return findings


def order_findings(findings: Sequence[Finding]) -> list[Finding]:
    """Errors first, then warnings; each grouped by check in CHECK_ORDER, stable inside."""
    rank = {code: position for position, code in enumerate(CHECK_ORDER)}
    first_seen: dict[str, int] = {}
    for finding in findings:
        first_seen.setdefault(finding.code, len(CHECK_ORDER) + len(first_seen))

    def key(finding: Finding) -> tuple[int, int]:
        severity = 0 if finding.severity is Severity.ERROR else 1
        return severity, rank.get(finding.code, first_seen[finding.code])

    return sorted(findings, key=key)


def as_strict(findings: Iterable[Finding]) -> list[Finding]:
    """`--strict`: every warning becomes an error."""
    return [
        replace(finding, severity=Severity.ERROR) if finding.severity is Severity.WARNING else finding
        for finding in findings
    ]


def _rows(loaded: LoadedIndex) -> list[Row]:
    # load_index succeeded, so raw["tickets"] is a list of objects in the models' order
    raw_tickets = loaded.raw.get("tickets", [])
    return [
        Row(raw, ticket, ticket.id if ticket.id.isprintable() and ticket.id.strip() else f"#{position}",
            is_safe_id(ticket.id))
        for position, (raw, ticket) in enumerate(zip(raw_tickets, loaded.tickets), start=1)
    ]


def _finding(
    severity: Severity, code: str, file: str, row: Row, field: str | None, text: str,
    *, expected: str | None = None, found: str | None = None,
) -> Finding:
    where = f"ticket {row.label}" + (f", field '{field}'" if field else "")
    return Finding(severity, code, f"{file}: {where}: {text}", file=file, ticket=row.label,
                   field=field, expected=expected, found=found)


def _shown(value: Any, limit: int = 60) -> str:
    """A value as JSON (control characters escaped), cut to `limit` characters."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------- Sage's checks


def required_field_findings(rows: Iterable[Row], file: str) -> Iterator[Finding]:
    """id, state and title always (the models enforce presence); priority, type and
    validation_type unless the ticket is COMPLETED or a legacy record."""
    for row in rows:
        if not row.ticket.title.strip():
            yield _finding(Severity.ERROR, "missing_field", file, row, "title",
                           "is empty; a ticket needs a one-line title",
                           expected="a one-line title", found='""')
        if row.ticket.state is State.COMPLETED or row.ticket.type == "legacy":
            continue
        for field, expected in REQUIRED_UNLESS_COMPLETED:
            if row.raw.get(field) is None:
                yield _finding(Severity.ERROR, "missing_field", file, row, field,
                               f"required field is missing (on a ticket that is not COMPLETED):"
                               f" expected {expected}", expected=expected, found="nothing")


def id_findings(rows: Iterable[Row], file: str) -> Iterator[Finding]:
    """Unsafe ids are errors (ids name files, logs and branches); ids outside Sage's
    `^[A-Z0-9]+-[0-9]+$` format are warnings."""
    for row in rows:
        ticket_id = row.ticket.id
        if not row.safe_id:
            yield _finding(
                Severity.ERROR, "unsafe_id", file, row, "id",
                f"{_shown(ticket_id)} cannot be used: ids name files, logs and git branches, so"
                " they must be 1-128 letters, digits, '-', '_' or '.', start with a letter or digit,"
                " and not contain '..' or end with '.' or '.lock'",
                expected="a safe id such as AUTH-001", found=_shown(ticket_id),
            )
        elif not SAGE_ID.match(ticket_id):
            yield _finding(
                Severity.WARNING, "id_format", file, row, "id",
                f"{_shown(ticket_id)} is not in Sage's id format ^[A-Z0-9]+-[0-9]+$ (e.g. AUTH-001)",
                expected="^[A-Z0-9]+-[0-9]+$", found=_shown(ticket_id),
            )


def prose_findings(rows: Sequence[Row], tickets_dir: Path, file: str) -> list[Finding]:
    """A suggestion, as in Sage: `<ID>.md` beside the index gives the agent the ticket's
    Description, Acceptance Criteria and Context. COMPLETED tickets need none any more.

    One warning per ticket without one when the index uses prose files; when no ticket
    has one, a single warning says so instead of one identical line per ticket.
    """
    with_prose = {name[:-3] for name in _file_names(tickets_dir) if name.endswith(".md")}
    unfinished = [row for row in rows if row.safe_id and row.ticket.state is not State.COMPLETED]
    missing = [row for row in unfinished if row.ticket.id not in with_prose]
    if not missing:
        return []
    uses_prose = any(row.ticket.id in with_prose for row in rows)
    if len(missing) == len(unfinished) and len(missing) > 1 and not uses_prose:
        shown = ", ".join(row.label for row in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        return [Finding(
            Severity.WARNING, "missing_prose",
            f"{file}: no ticket has an <ID>.md beside the index ({shown}{more}); optional,"
            " Sage suggests one per ticket: Description, Acceptance Criteria, Context",
            file=file, expected="<ID>.md per ticket", found=f"none for {len(missing)} tickets",
        )]
    return [
        _finding(Severity.WARNING, "missing_prose", file, row, None,
                 f"no {row.ticket.id}.md beside the index (optional; Sage suggests one per ticket:"
                 " Description, Acceptance Criteria, Context)",
                 expected=f"{row.ticket.id}.md", found="nothing")
        for row in missing
    ]


def _file_names(directory: Path) -> frozenset[str]:
    """One directory listing instead of a stat per ticket."""
    try:
        with os.scandir(directory) as entries:
            return frozenset(entry.name for entry in entries if entry.is_file())
    except OSError:
        return frozenset()


def priority_findings(rows: Iterable[Row], file: str) -> Iterator[Finding]:
    for row in rows:
        priority = row.ticket.priority
        if priority is not None and priority not in PRIORITIES:
            yield _finding(Severity.WARNING, "priority", file, row, "priority",
                           f"{_shown(priority)} is not P0..P4; it sorts after P4",
                           expected="P0..P4", found=_shown(priority))


def type_findings(rows: Iterable[Row], file: str) -> Iterator[Finding]:
    for row in rows:
        ticket = row.ticket
        if ticket.type is not None and ticket.type not in TICKET_TYPES:
            yield _unknown_name(file, row, "type", "invalid_type", ticket.type, TICKET_TYPES,
                                _TYPES_BY_LOWER)
        if ticket.validation_type is not None and ticket.validation_type not in VALIDATION_TYPES:
            yield _unknown_name(file, row, "validation_type", "invalid_validation_type",
                                ticket.validation_type, VALIDATION_TYPES, _VALIDATION_TYPES_BY_LOWER)


def _unknown_name(file: str, row: Row, field: str, code: str, value: str,
                  names: Sequence[str], by_lower: dict[str, str]) -> Finding:
    near = by_lower.get(value.strip().lower())
    hint = f"; did you mean {near}?" if near else ""
    return _finding(Severity.ERROR, code, file, row, field,
                    f"{_shown(value)} is not one of {', '.join(names)}{hint}",
                    expected="one of " + ", ".join(names), found=_shown(value))


def subtask_findings(rows: Iterable[Row], file: str) -> Iterator[Finding]:
    """Each sub-task needs an id and a description; an empty validation_script is a warning."""
    for row in rows:
        for position, task in enumerate(row.ticket.tasks):
            for field in ("id", "description"):
                value = getattr(task, field)
                if value is None or not str(value).strip():
                    yield _finding(Severity.ERROR, "subtask_field", file, row,
                                   f"tasks[{position}].{field}",
                                   f"sub-task {position + 1} has no {field}",
                                   expected="a non-empty string", found="nothing")
            script = task.validation_script
            if script is not None and not script.strip():
                yield _finding(Severity.WARNING, "empty_validation_script", file, row,
                               f"tasks[{position}].validation_script",
                               f"sub-task {position + 1} has an empty validation_script: nothing"
                               " would check it (remove the key or give it a command)",
                               expected="a command", found='""')


def checkpoint_findings(rows: Sequence[Row], context: GitContext | None, file: str) -> list[Finding]:
    """`checkpoint_id` (on the ticket, or on each of its `components`) must name a commit."""
    wanted: list[tuple[Row, str, str]] = []
    findings: list[Finding] = []
    for row in rows:
        for field, value in _checkpoints(row.raw):
            if isinstance(value, str) and value.strip():
                wanted.append((row, field, value.strip()))
            else:
                findings.append(_finding(Severity.ERROR, "invalid_checkpoint", file, row, field,
                                         f"expected a commit id, found {_shown(value)}",
                                         expected="a commit id", found=_shown(value)))
    if not wanted:
        return findings
    missing = unresolved_commits(context, (rev for _, _, rev in wanted)) if context else None
    for row, field, rev in wanted:
        if missing is None:
            findings.append(_finding(Severity.WARNING, "unchecked_checkpoint", file, row, field,
                                     f"cannot check {rev}: git or a git work tree is not available",
                                     expected="a commit in the repository", found=rev))
        elif rev in missing:
            findings.append(_finding(Severity.ERROR, "unresolved_checkpoint", file, row, field,
                                     f"{rev} is not a commit in this repository",
                                     expected="a commit in the repository", found=rev))
    return findings


def _checkpoints(raw: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    if "checkpoint_id" in raw:
        yield "checkpoint_id", raw["checkpoint_id"]
    components = raw.get("components")
    if isinstance(components, list):
        for position, component in enumerate(components):
            if isinstance(component, dict) and "checkpoint_id" in component:
                yield f"components[{position}].checkpoint_id", component["checkpoint_id"]


# ---------------------------------------------------------------- our checks


def path_findings(rows: Iterable[Row], file: str) -> Iterator[Finding]:
    """`docs` paths and `files` globs are repository-relative and must stay inside it."""
    for row in rows:
        docs = row.raw.get("docs")
        if isinstance(docs, dict):
            for key, value in docs.items():
                if isinstance(value, str) and escapes_repository(value):
                    yield _unsafe_path(file, row, f"docs.{key}", value, "path")
        for position, pattern in enumerate(row.ticket.files):
            if escapes_repository(pattern):
                yield _unsafe_path(file, row, f"files[{position}]", pattern, "glob")


def _unsafe_path(file: str, row: Row, field: str, value: str, kind: str) -> Finding:
    return _finding(Severity.ERROR, "unsafe_path", file, row, field,
                    f"{_shown(value)} leaves the repository: a {kind} must be relative to the"
                    " repository root, without '..' segments that climb out of it",
                    expected="a repository-relative " + kind, found=_shown(value))


def escapes_repository(path: str) -> bool:
    """Absolute (`/x`, `\\x`, `C:x`, `~/x`) or climbing above the root with `..` segments."""
    if path.startswith(("/", "\\", "~")) or (len(path) >= 2 and path[1] == ":" and path[0].isalpha()):
        return True
    if ".." not in path:
        return False
    depth = 0
    for segment in path.replace("\\", "/").split("/"):
        if segment == "..":
            depth -= 1
            if depth < 0:
                return True
        elif segment not in ("", "."):
            depth += 1
    return False


def estimate_findings(rows: Iterable[Row], file: str) -> Iterator[Finding]:
    """The models take any estimate > 0; 1e400 parses as infinity and would break planning."""
    for row in rows:
        if not math.isfinite(row.ticket.estimate):
            yield _finding(Severity.ERROR, "estimate_not_finite", file, row, "estimate",
                           f"expected a finite number of minutes, found {row.raw.get('estimate')!r}",
                           expected="a finite number > 0", found=str(row.raw.get("estimate")))
