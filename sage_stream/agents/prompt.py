"""The prompt an agent gets for one ticket: markdown, the same for every agent.

It holds what the ticket says (title, description or its `<ID>.md` prose, acceptance
criteria, sub-tasks), the contents of its docs (repo-relative paths, each truncated to a
limit and all together capped; a path outside the repository is never read), the files it
may change, what its dependencies did, what "done" means, and the `SAGE-RESULT` block to
end with (parsed by `base.find_result_block`).

The text depends only on its inputs (no absolute paths, no times), so it is tested
against golden files.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from sage_stream.agents.base import RESULT_BLOCK_TAG
from sage_stream.durable import write_atomic
from sage_stream.text import one_line
from sage_stream.tickets.models import Ticket
from sage_stream.tickets.prose import read_prose

DOC_KEYS = ("spec", "plan", "tasks", "breakdown")
DOCS_LIMIT_BYTES = 20_000
DOCS_TOTAL_BYTES = 60_000
DESCRIPTION_CHARS = 20_000  # the description and the <ID>.md prose, each
SUMMARY_CHARS = 500
OUTSIDE = "skipped: outside the repository"


def build_prompt(
    ticket: Ticket,
    *,
    tickets_dir: Path,
    repo_root: Path,
    dependency_summaries: Mapping[str, str],
    docs_limit_bytes: int = DOCS_LIMIT_BYTES,
    docs_total_bytes: int = DOCS_TOTAL_BYTES,
    dependency_titles: Mapping[str, str] | None = None,
) -> str:
    """The prompt for `ticket`; docs are read from `repo_root` (the ticket's worktree)."""
    sections = [
        _heading(ticket),
        *_description(ticket, tickets_dir),
        _acceptance_criteria(ticket),
        _sub_tasks(ticket),
        _documents(ticket, repo_root, docs_limit_bytes, docs_total_bytes),
        _allowed_files(ticket),
        _dependencies(ticket, dependency_summaries, dependency_titles or {}),
        _definition_of_done(),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def write_prompt_file(path: Path, text: str) -> None:
    """Write the prompt where the agent will read it (atomically: never half a prompt)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text.encode("utf-8"))


def _heading(ticket: Ticket) -> str:
    facts = [f"- Ticket: {ticket.id}"]
    if ticket.priority:
        facts.append(f"- Priority: {ticket.priority}")
    if ticket.type:
        facts.append(f"- Type: {ticket.type}")
    return "\n".join(
        [
            f"# {ticket.id}: {one_line(ticket.title)}",
            "",
            "You are working on one ticket of this repository's backlog, in a git worktree made for it.",
            "",
            *facts,
        ]
    )


def _description(ticket: Ticket, tickets_dir: Path) -> list[str]:
    prose = read_prose(tickets_dir, ticket.id, limit=DESCRIPTION_CHARS * 4 + 4)
    prose = _demote_headings(_bounded(prose.strip(), f"{ticket.id}.md")) if prose else None
    description = _bounded((ticket.description or "").strip(), "the description") or None
    if description and prose:
        return [f"## Description\n\n{description}", f"## Notes from {ticket.id}.md\n\n{prose}"]
    if description or prose:
        return [f"## Description\n\n{description or prose}"]
    return ["## Description\n\nNo description was given: the title says what to do."]


def _bounded(text: str, source: str) -> str:
    if len(text) <= DESCRIPTION_CHARS:
        return text
    return text[:DESCRIPTION_CHARS] + f"\n\n(truncated: the first {DESCRIPTION_CHARS} characters of {source})"


def _demote_headings(markdown: str) -> str:
    """`# X` -> `### X` outside code fences, so the prose's headings nest under ours."""
    lines, fence = [], ""
    for line in markdown.splitlines():
        stripped = line.lstrip()
        marker = stripped[:3]
        if marker in ("```", "~~~"):
            if not fence:
                fence = marker
            elif marker == fence:
                fence = ""
        elif not fence and stripped.startswith("#"):
            level = len(stripped) - len(stripped.lstrip("#"))
            if level <= 6 and stripped[level : level + 1] in (" ", ""):
                line = "#" * min(6, level + 2) + stripped[level:]
        lines.append(line)
    return "\n".join(lines)


def _acceptance_criteria(ticket: Ticket) -> str:
    if not ticket.acceptanceCriteria:
        return ""
    items = "\n".join(f"- {one_line(item)}" for item in ticket.acceptanceCriteria)
    return f"## Acceptance criteria\n\n{items}"


def _sub_tasks(ticket: Ticket) -> str:
    items = [
        f"- {task.id + ': ' if task.id else ''}{one_line(task.description)}"
        for task in ticket.tasks
        if task.description
    ]
    return "## Sub-tasks\n\n" + "\n".join(items) if items else ""


@dataclass(frozen=True)
class _Doc:
    key: str
    path: str
    text: str | None = None  # the contents shown, or None when skipped
    note: str | None = None  # why it was skipped, or how it was truncated


def _documents(ticket: Ticket, repo_root: Path, limit: int, total: int) -> str:
    docs = list(_read_docs(_doc_paths(ticket), repo_root, limit, total))
    if not docs:
        return ""
    parts = ["## Documents", "", "The ticket's documents (paths relative to the repository root):"]
    for doc in docs:
        parts += ["", f"### {doc.key}: {doc.path}", ""]
        if doc.text is not None:
            fence = _fence_for(doc.text)
            parts += [fence, doc.text.rstrip("\n"), fence]
            if doc.note:
                parts += ["", doc.note]
        else:
            parts.append(doc.note or "")
    return "\n".join(parts)


def _doc_paths(ticket: Ticket) -> list[tuple[str, str]]:
    if ticket.docs is None:
        return []
    paths = [(key, getattr(ticket.docs, key)) for key in DOC_KEYS]
    paths += list((ticket.docs.model_extra or {}).items())  # unknown keys that name paths too
    return [(key, value) for key, value in paths if isinstance(value, str) and value.strip()]


def _read_docs(paths: list[tuple[str, str]], repo_root: Path, limit: int, total: int) -> Iterator[_Doc]:
    root = Path(repo_root).resolve()
    seen: dict[Path, str] = {}
    remaining = total
    for key, relative in paths:
        located = _locate(root, relative)
        if isinstance(located, str):
            yield _Doc(key, relative, note=located)
        elif located in seen:
            yield _Doc(key, relative, note=f"The same file as {seen[located]}, above.")
        elif remaining <= 0:
            yield _Doc(key, relative, note=f"skipped: the documents already fill their limit of {total} bytes")
        else:
            seen[located] = key
            doc = _read_doc(key, relative, located, min(limit, remaining))
            remaining -= len(doc.text.encode("utf-8")) if doc.text else 0
            yield doc


def _locate(root: Path, relative: str) -> Path | str:
    """The file a repo-relative path names, or why it is not read."""
    if Path(relative).is_absolute() or relative.startswith("~"):
        return OUTSIDE
    try:
        candidate = (root / relative).resolve()  # follows symlinks: a link out of the repo is outside
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte
        return "skipped: not a usable path"
    if not candidate.is_relative_to(root):
        return OUTSIDE
    if not candidate.exists():
        return "skipped: not found"
    if not candidate.is_file():
        return "skipped: not a file"
    return candidate


def _read_doc(key: str, relative: str, path: Path, limit: int) -> _Doc:
    try:
        size = path.stat().st_size
        with open(path, "rb") as file:
            data = file.read(limit)
    except OSError as error:
        return _Doc(key, relative, note=f"skipped: cannot be read ({error.strerror or error})")
    if size <= len(data):
        return _Doc(key, relative, text=data.decode("utf-8", errors="replace"))
    data = _cut_at_character(data)
    note = f"(truncated: the first {len(data)} of {size} bytes; read the file for the rest)"
    return _Doc(key, relative, text=data.decode("utf-8", errors="replace"), note=note)


def _cut_at_character(data: bytes) -> bytes:
    """Drop a UTF-8 character cut in half by the limit."""
    lead = len(data) - 1
    while lead >= 0 and len(data) - lead < 4 and (data[lead] & 0xC0) == 0x80:
        lead -= 1  # back over continuation bytes to the character's first byte
    if lead < 0 or data[lead] < 0xC0:
        return data
    length = 2 if data[lead] < 0xE0 else 3 if data[lead] < 0xF0 else 4
    return data if len(data) - lead >= length else data[:lead]


def _fence_for(text: str) -> str:
    """A backtick fence longer than any run of backticks in the text."""
    longest = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    return "`" * max(3, longest + 1)


def _allowed_files(ticket: Ticket) -> str:
    if not ticket.files:
        return "## Files you may change\n\nThe ticket lists no files: change only what it needs."
    items = "\n".join(f"- `{pattern}`" for pattern in ticket.files)
    return (
        "## Files you may change\n\n"
        "Change only these files (glob patterns, relative to the repository root):\n\n" + items
    )


def _dependencies(ticket: Ticket, summaries: Mapping[str, str], titles: Mapping[str, str]) -> str:
    if not ticket.dependencies:
        return ""
    lines = []
    for dependency in ticket.dependencies:
        title = f" ({one_line(titles[dependency])})" if titles.get(dependency) else ""
        summary = one_line(summaries.get(dependency) or "") or "no summary recorded"
        if len(summary) > SUMMARY_CHARS:
            summary = summary[: SUMMARY_CHARS - 1] + "…"
        lines.append(f"- {dependency}{title}: {summary}")
    return (
        "## What its dependencies did\n\n"
        "These tickets were finished before this one; their work is already in this worktree.\n\n"
        + "\n".join(lines)
    )


def _definition_of_done() -> str:
    return f"""## When you are done

- Make the changes in this worktree (the current directory).
- Do not push, and do not create or switch branches.
- Do not change anything under `.sage/` or `.git/`.
- Leave your changes in the work tree. Committing them is optional: sage-stream lands this ticket as one commit.
- End your reply with this block, filled in:

```{RESULT_BLOCK_TAG}
status: done
summary: <one line: what you changed, or why you are blocked>
```

Use `status: blocked` if you could not finish, and say why in the summary."""
