"""`sage validate`: every check of the index, in Sage's order, plus ours.

Sage's order: the index exists and parses; required fields; duplicate ids; id format;
valid states; every dependency exists; no cycles; every parent exists; `<ID>.md`
exists; priority P0-P4; valid type; valid validation_type; sub-task fields; empty
`validation_script`; component `checkpoint_id` resolves in git. Then ours: safe ids,
`docs` paths and `files` globs that stay inside the repository, finite estimates, and
whether the index is tracked by git (Sage keeps `.sage/` ignored).

Parsing, the JSON types, valid states, `command`, `estimate > 0` and `not_before` are
checked by `tickets.store.read_index` through the models; the dependency graph by
`graph.dependency_graph.graph_findings`, on a `DependencyGraph` built once and shared
with the analysis. Each check here is one pass over the typed tickets (validate keeps
no raw JSON: unknown keys such as `checkpoint_id` are the models' extras), and nothing
here writes to disk. The garbage collector is paused for the whole run (`gc_paused`).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from itertools import compress, repeat
from operator import is_not
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from sage_stream.errors import SageError
from sage_stream.findings import Finding, Severity
from sage_stream.graph.columns import Columns
from sage_stream.paths import INDEX_RELATIVE
from sage_stream.tickets.models import PRIORITIES, TICKET_TYPES, VALIDATION_TYPES, Docs, State, Ticket
from sage_stream.tickets.prose import SAGE_ID, is_safe_id
from sage_stream.tickets.store import IndexLoadError, IndexView, find_index, gc_paused, read_index
from sage_stream.validation.prerequisites import (
    GitContext,
    Prerequisite,
    check_prerequisites,
    sage_dir_for,
    sandbox_prerequisite,
    is_tracked,
    prerequisite_findings,
    unresolved_commits,
)
from sage_stream.validation.file_globs import unmatched_glob_findings
from sage_stream.validation.report import ValidationReport

if TYPE_CHECKING:
    from sage_stream.graph.analysis import Analysis
    from sage_stream.graph.dependency_graph import DependencyGraph
    from sage_stream.process.cpus import WorkerDecision

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
    "unsafe_path", "files_match_nothing",
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


_VALID_PRIORITIES = frozenset({None, *PRIORITIES})
_VALID_TYPES = frozenset({None, *TICKET_TYPES})
_VALID_VALIDATION_TYPES = frozenset({None, *VALIDATION_TYPES})
_LONGEST_SAFE_ID = 128  # tickets.prose.SAFE_ID


class Row(NamedTuple):
    """A ticket a check has something to say about, with its place in the ticket list."""

    position: int  # 1-based
    ticket: Ticket

    @property
    def label(self) -> str:
        """How messages name the ticket: its id, or "#N" when the id is empty or unprintable."""
        ticket_id = self.ticket.id
        return ticket_id if ticket_id.isprintable() and ticket_id.strip() else f"#{self.position}"


class OddIds(NamedTuple):
    """Tickets whose id is not plainly in Sage's format, by position: whether it is safe.

    Asked once per index and shared by the id and prose checks. A Sage-format id of at
    most 128 characters is always safe (letters, digits and one '-'), so on a clean index
    this is one regex match over all ids.
    """

    safe: dict[int, bool]

    @classmethod
    def of(cls, columns: Columns) -> OddIds:
        ids = columns.ids
        if _all_sage_ids(ids):
            return cls({})
        sage = SAGE_ID.fullmatch
        return cls({
            position: is_safe_id(ticket_id)
            for position, ticket_id in enumerate(ids, start=1)
            if not sage(ticket_id) or len(ticket_id) > _LONGEST_SAFE_ID
        })


_LINE_OF_SAFE_LENGTH = rf"(?=[^\n]{{1,{_LONGEST_SAFE_ID}}}(?:\n|\Z))"  # a lookahead: 1-128 characters
_SAGE_ID_LINES = re.compile(  # ids in SAGE_ID's format, each of at most 128 characters, one per line
    rf"(?:{_LINE_OF_SAFE_LENGTH}[A-Z0-9]+-[0-9]+\n)*{_LINE_OF_SAFE_LENGTH}[A-Z0-9]+-[0-9]+")


def _all_sage_ids(ids: Sequence[str]) -> bool:
    """Whether every id matches SAGE_ID and is at most 128 characters long: one match over
    the ids joined by newlines (an id with a newline of its own makes the line count wrong)."""
    if not ids:
        return False
    joined = "\n".join(ids)
    return joined.count("\n") == len(ids) - 1 and _SAGE_ID_LINES.fullmatch(joined) is not None


# ---------------------------------------------------------------- entry point


def validate_index(
    index_option: str | Path | None = None,
    *,
    strict: bool = False,
    now: datetime | None = None,
    cwd: Path | None = None,
    agent: str | None = None,
) -> ValidationReport:
    """Run every check on the index at `index_option` (found from `cwd` when None);
    `agent`: the agent to check (`--agent NAME`) instead of the configured one.

    Never raises for a problem of the index: a file that cannot be loaded is a report
    with its load findings and no analysis.
    """
    with gc_paused():  # millions of long-lived objects, no cyclic garbage worth collecting
        return _validate(index_option, strict=strict, now=now, cwd=cwd, agent=agent)


def _validate(
    index_option: str | Path | None, *, strict: bool, now: datetime | None, cwd: Path | None,
    agent: str | None = None,
) -> ValidationReport:
    try:
        path = Path(index_option).resolve() if index_option else find_index(cwd)
    except SageError as error:
        finding = Finding(Severity.ERROR, "index_missing", error.message,
                          file=str((cwd or Path.cwd()) / INDEX_RELATIVE))
        return ValidationReport(index=finding.file, tickets=None, findings=[finding], strict=strict)
    context, prerequisites = check_prerequisites(path, agent=agent)
    sandbox = sandbox_prerequisite(sage_dir_for(path, context.work_tree))
    blocking = [sandbox] if sandbox.blocking else []  # a note otherwise: not a warning, and said once
    try:
        loaded = read_index(path)
    except IndexLoadError as error:
        findings = order_findings([*error.findings, *prerequisite_findings([*prerequisites, *blocking])])
        return ValidationReport(index=str(path), tickets=None,
                                findings=as_strict(findings) if strict else findings,
                                prerequisites=prerequisites, strict=strict, sandbox=sandbox)
    from sage_stream.graph.dependency_graph import DependencyGraph

    # one read of the models, for the checks and the graph; fresh from read_index: the
    # fields no ticket was given are not read
    columns = Columns.of(loaded.tickets, as_validated=True)
    graph = DependencyGraph(loaded.tickets, columns=columns)
    findings = [*index_findings(loaded, context, graph=graph, columns=columns),
                *prerequisite_findings([*prerequisites, *blocking])]
    report = _report(loaded, graph, columns, order_findings(findings), prerequisites, strict=strict, now=now)
    report.sandbox = sandbox
    return report


def _report(
    loaded: IndexView,
    graph: DependencyGraph,
    columns: Columns,
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

        analysis = analyze(tickets, now=now, graph=graph)
    return ValidationReport(
        index=str(loaded.path), tickets=len(tickets),
        findings=as_strict(findings) if strict else findings,
        prerequisites=prerequisites, strict=strict, states=_count_states(columns.states),
        analysis=analysis, auto_workers=_auto_workers(tickets, columns, analysis, now),
    )


def _auto_workers(tickets: Sequence[Ticket], columns: Columns, analysis: Analysis | None,
                  now: datetime | None) -> WorkerDecision | None:
    """What `sage stream --parallel=auto` would run here: the same rule, the same inputs."""
    if analysis is None:
        return None
    from sage_stream.graph.ordering import is_startable
    from sage_stream.process.cpus import decide_workers

    moment = now or datetime.now(timezone.utc)
    # `startable_count`, by columns: an UNPROCESSED ticket with no `not_before` needs no look
    states = columns.states
    plain = [state is State.UNPROCESSED and not_before is None
             for state, not_before in zip(states, columns.not_befores)]
    startable = plain.count(True) + sum(
        1 for ticket, state, quick in zip(tickets, states, plain)
        if not quick and state in (State.UNPROCESSED, State.DEFERRED) and is_startable(ticket, moment))
    return decide_workers(None, startable, useful=analysis.recommended_workers)


def _count_states(states: Sequence[State]) -> dict[str, int]:
    # count: identity tests in C; a Counter would hash every enum member in Python
    return {state.value: states.count(state) for state in State}


def index_findings(
    loaded: IndexView,
    context: GitContext | None = None,
    *,
    graph: DependencyGraph | None = None,
    columns: Columns | None = None,
) -> list[Finding]:
    """Every finding about a loaded index (`order_findings` puts them in Sage's order);
    `context` is None without git. `graph` and `columns`, when given, are
    `DependencyGraph(loaded.tickets)` and `Columns.of(loaded.tickets)`, built once by the caller."""
    from sage_stream.graph.dependency_graph import graph_findings

    file = str(loaded.path)
    columns = columns if columns is not None else Columns.of(loaded.tickets)
    findings = ticket_findings(columns, loaded.tickets_dir, context, file)
    findings += graph_findings(loaded.tickets, file=file, graph=graph)
    if context is not None and is_tracked(context, loaded.path):
        findings.append(Finding(
            Severity.WARNING, "index_tracked",
            f"{file}: the index is tracked by git; Sage keeps .sage/ in .gitignore so that"
            " ticket state never dirties the work tree or conflicts with a landing"
            " (git rm --cached the file and ignore .sage/)",
            file=file,
        ))
    return findings


def ticket_findings(
    columns: Columns, tickets_dir: Path, context: GitContext | None, file: str
) -> list[Finding]:
    """The findings about single tickets (everything but the dependency graph), in Sage's order."""
    odd_ids = OddIds.of(columns)
    findings: list[Finding] = []
    findings += required_field_findings(columns, file)
    findings += id_findings(columns, odd_ids, file)
    findings += prose_findings(columns, odd_ids, tickets_dir, file)
    findings += priority_findings(columns, file)
    findings += type_findings(columns, file)
    findings += subtask_findings(columns, file)
    findings += checkpoint_findings(columns, context, file)
    findings += path_findings(columns, file)
    if any(columns.files):
        findings += unmatched_glob_findings(columns.tickets, context, file)
    findings += estimate_findings(columns, file)
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
#
# Each check is one pass over the tickets: a comprehension picks the few tickets it has
# something to say about (100,000 tickets: a few milliseconds), then only those are
# looked at closely.


def required_field_findings(columns: Columns, file: str) -> Iterator[Finding]:
    """id, state and title always (the models enforce presence); priority, type and
    validation_type unless the ticket is COMPLETED or a legacy record."""
    # str.strip gives back the very string when there is nothing to strip: one pass in C
    # finds an empty or blank title
    if (all(map(str.strip, columns.titles)) and None not in set(columns.priorities)
            and None not in set(columns.types) and None not in set(columns.validation_types)):
        return
    completed = State.COMPLETED
    suspects = [
        Row(position, ticket) for position, ticket in enumerate(columns.tickets, start=1)
        if not ticket.title or ticket.title.isspace()
        or (ticket.state is not completed and ticket.type != "legacy"
            and (ticket.priority is None or ticket.type is None or ticket.validation_type is None))
    ]
    for row in suspects:
        if not row.ticket.title.strip():
            yield _finding(Severity.ERROR, "missing_field", file, row, "title",
                           "is empty; a ticket needs a one-line title",
                           expected="a one-line title", found='""')
        if row.ticket.state is State.COMPLETED or row.ticket.type == "legacy":
            continue
        for field, expected in REQUIRED_UNLESS_COMPLETED:
            if getattr(row.ticket, field) is None:  # absent or null: the models keep None
                yield _finding(Severity.ERROR, "missing_field", file, row, field,
                               f"required field is missing (on a ticket that is not COMPLETED):"
                               f" expected {expected}", expected=expected, found="nothing")


def id_findings(columns: Columns, odd_ids: OddIds, file: str) -> Iterator[Finding]:
    """Unsafe ids are errors (ids name files, logs and branches); ids outside Sage's
    `^[A-Z0-9]+-[0-9]+$` format are warnings."""
    for position, safe in odd_ids.safe.items():
        row = Row(position, columns.tickets[position - 1])
        ticket_id = row.ticket.id
        if not safe:
            yield _finding(
                Severity.ERROR, "unsafe_id", file, row, "id",
                f"{_shown(ticket_id)} cannot be used: ids name files, logs and git branches, so"
                " they must be 1-128 letters, digits, '-', '_' or '.', start with a letter or digit,"
                " and not contain '..' or end with '.' or '.lock'",
                expected="a safe id such as AUTH-001", found=_shown(ticket_id),
            )
        elif not SAGE_ID.fullmatch(ticket_id):
            yield _finding(
                Severity.WARNING, "id_format", file, row, "id",
                f"{_shown(ticket_id)} is not in Sage's id format ^[A-Z0-9]+-[0-9]+$ (e.g. AUTH-001)",
                expected="^[A-Z0-9]+-[0-9]+$", found=_shown(ticket_id),
            )


def prose_findings(columns: Columns, odd_ids: OddIds, tickets_dir: Path, file: str) -> list[Finding]:
    """A suggestion, as in Sage: `<ID>.md` beside the index gives the agent the ticket's
    Description, Acceptance Criteria and Context. COMPLETED tickets need none any more.

    One warning per ticket without one when the index uses prose files; when no ticket
    has one, a single warning says so instead of one identical line per ticket.
    """
    with_prose = {name[:-3] for name in _file_names(tickets_dir) if name.endswith(".md")}
    ids, tickets = columns.ids, columns.tickets
    unsafe = {position for position, safe in odd_ids.safe.items() if not safe}
    missing = [
        position for position in columns.unfinished()
        if position not in unsafe and ids[position - 1] not in with_prose
    ] if with_prose or unsafe else list(columns.unfinished())
    # a ticket whose `description` says what to do inline needs no <ID>.md
    described = list(map(_has_description, columns.descriptions))
    missing = [position for position in missing if not described[position - 1]]
    if not missing:
        return []
    if len(missing) > 1 and (not with_prose or with_prose.isdisjoint(ids)):
        # no ticket has prose: every unfinished ticket is missing one; say it once
        shown = ", ".join(Row(position, tickets[position - 1]).label for position in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        return [Finding(
            Severity.WARNING, "missing_prose",
            f"{file}: no ticket has an <ID>.md beside the index ({shown}{more}); optional,"
            " Sage suggests one per ticket: Description, Acceptance Criteria, Context",
            file=file, expected="<ID>.md per ticket", found=f"none for {len(missing)} tickets",
        )]
    rows = [Row(position, tickets[position - 1]) for position in missing]
    return [
        _finding(Severity.WARNING, "missing_prose", file, row, None,
                 f"no {row.ticket.id}.md beside the index (optional; Sage suggests one per ticket:"
                 " Description, Acceptance Criteria, Context)",
                 expected=f"{row.ticket.id}.md", found="nothing")
        for row in rows
    ]


def _has_description(description: str | None) -> bool:
    return bool(description) and not description.isspace()


def _file_names(directory: Path) -> frozenset[str]:
    """One directory listing instead of a stat per ticket."""
    try:
        with os.scandir(directory) as entries:
            return frozenset(entry.name for entry in entries if entry.is_file())
    except OSError:
        return frozenset()


def priority_findings(columns: Columns, file: str) -> Iterator[Finding]:
    if set(columns.priorities) <= _VALID_PRIORITIES:
        return
    for position, ticket in enumerate(columns.tickets, start=1):
        if ticket.priority not in _VALID_PRIORITIES:
            priority = ticket.priority
            yield _finding(Severity.WARNING, "priority", file, Row(position, ticket), "priority",
                           f"{_shown(priority)} is not P0..P4; it sorts after P4",
                           expected="P0..P4", found=_shown(priority))


def type_findings(columns: Columns, file: str) -> Iterator[Finding]:
    if set(columns.types) <= _VALID_TYPES and set(columns.validation_types) <= _VALID_VALIDATION_TYPES:
        return
    for position, ticket in enumerate(columns.tickets, start=1):
        row = Row(position, ticket)
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


def subtask_findings(columns: Columns, file: str) -> Iterator[Finding]:
    """Each sub-task needs an id and a description; an empty validation_script is a warning."""
    if not any(columns.tasks):
        return
    with_tasks = [Row(position, ticket) for position, ticket in _where(columns.tickets, columns.tasks)]
    for row in with_tasks:
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


def checkpoint_findings(columns: Columns, context: GitContext | None, file: str) -> list[Finding]:
    """`checkpoint_id` (on the ticket, or on each of its `components`) must name a commit."""
    if not any(columns.extras):
        return []
    with_extras = [Row(position, ticket) for position, ticket in _where(columns.tickets, columns.extras)]
    wanted: list[tuple[Row, str, str]] = []
    findings: list[Finding] = []
    for row in with_extras:
        for field, value in _checkpoints(row.ticket.model_extra):
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


def _checkpoints(extras: Mapping[str, Any] | None) -> Iterator[tuple[str, Any]]:
    """`checkpoint_id` of the ticket and of its `components`: keys the models do not type,
    so they are in the ticket's extras, as written."""
    if not extras:
        return
    if "checkpoint_id" in extras:
        yield "checkpoint_id", extras["checkpoint_id"]
    components = extras.get("components")
    if isinstance(components, list):
        for position, component in enumerate(components):
            if isinstance(component, dict) and "checkpoint_id" in component:
                yield f"components[{position}].checkpoint_id", component["checkpoint_id"]


# ---------------------------------------------------------------- our checks


def path_findings(columns: Columns, file: str) -> Iterator[Finding]:
    """`docs` paths and `files` globs are repository-relative and must stay inside it."""
    if not any(columns.files) and not any(map(is_not, columns.docs, repeat(None))):
        return
    with_paths = [
        Row(position, ticket) for position, ticket in enumerate(columns.tickets, start=1)
        if ticket.docs is not None or ticket.files
    ]
    for row in with_paths:
        docs = row.ticket.docs
        if docs is not None:
            for key, value in _docs_paths(docs):
                if isinstance(value, str) and escapes_repository(value):
                    yield _unsafe_path(file, row, f"docs.{key}", value, "path")
        for position, pattern in enumerate(row.ticket.files):
            if escapes_repository(pattern):
                yield _unsafe_path(file, row, f"files[{position}]", pattern, "glob")


def _docs_paths(docs: Docs) -> Iterator[tuple[str, Any]]:
    """Every key of `docs`: spec, plan, tasks, breakdown, then unknown keys as written."""
    yield from docs.__dict__.items()
    if docs.model_extra:
        yield from docs.model_extra.items()


def _where(tickets: Sequence[Ticket], column: Sequence[Any]) -> Iterator[tuple[int, Ticket]]:
    """(position, ticket) of the tickets whose value in `column` is truthy."""
    return compress(enumerate(tickets, start=1), column)


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


def estimate_findings(columns: Columns, file: str) -> Iterator[Finding]:
    """The models take any estimate > 0; 1e400 parses as infinity and would break planning."""
    isfinite = math.isfinite
    if all(map(isfinite, columns.estimates)):
        return
    for position, ticket in enumerate(columns.tickets, start=1):
        estimate = ticket.estimate
        if not isfinite(estimate):
            yield _finding(Severity.ERROR, "estimate_not_finite", file, Row(position, ticket), "estimate",
                           f"expected a finite number of minutes, found {estimate!r}",
                           expected="a finite number > 0", found=str(estimate))
