"""Landing a finished ticket: exactly one commit on the target branch, or nothing.

The target branch only ever moves by compare-and-swap (`update-ref REF NEW OLD`), from
a merge computed without any index or work tree (`merge-tree --write-tree`). So a
conflict leaves no markers anywhere, a user's uncommitted work is never touched, and a
commit made on the target meanwhile (by the user, in the main work tree) is never
overwritten: the ticket is merged again on the new tip.

Landings are serialized by a file lock (the commit queue), which also makes the
"already landed?" check safe: a crash between moving the ref and recording it in the
index is recovered by finding the ticket's `Sage-Ticket:` trailer on the target.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout

from sage_stream.engine.checkout_wait import checkout_is_clean, has_own_changes, waiting_message
from sage_stream.engine.scope import outside
from sage_stream.errors import SageError
from sage_stream.faults import crash_point
from sage_stream.git import Git, WorktreeInfo
from sage_stream.text import one_line
from sage_stream.tickets.models import Ticket
from sage_stream.tickets.naming import TRAILER
from sage_stream.tickets.prose import is_safe_id

LANDED = "landed"
CONFLICT = "conflict"
NO_CHANGES = "no_changes"
SCOPE_VIOLATION = "scope_violation"
ALREADY_LANDED = "already_landed"
TARGET_DIRTY = "target_dirty"  # a checkout of the target has uncommitted changes: nothing moved, try later

LANDING_LOCK_TIMEOUT_S = 300.0  # a landing takes milliseconds; this is a stuck process
CAS_ATTEMPTS = 5  # merges on a target that keeps moving under us before giving up
SYMLINK_MODE = "120000"  # git's mode of a symbolic link

# Conventional Commits type for each Sage ticket type; anything else is a chore.
COMMIT_TYPES = {
    "implementation": "feat",
    "enhancement": "feat",
    "bugfix": "fix",
    "refactor": "refactor",
}
_TRAILER_LINE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*: ")
_PLAIN_WORD = re.compile(r"[A-Z][a-z]+")  # `Add`, not `API`, `README`, `iOS`, `getUser`
_GLOB_CHARS = re.compile(r"[*?\[\]{}]")
SUMMARY_INDENT = "    "
MAX_LINK_HOPS = 40  # links followed resolving one path, as Linux does (ELOOP)


@dataclass
class LandingResult:
    outcome: str  # landed | conflict | no_changes | scope_violation | already_landed
    commit: str | None = None  # the landed commit (or the earlier one, when already landed)
    paths: list[str] = field(default_factory=list)  # changed, conflicted, or out-of-scope paths
    message: str = ""  # for the user: what happened and what to do
    brought_along: bool | None = None  # None: no work tree has the target checked out


# -- the commit message -------------------------------------------------------------


def commit_message(ticket: Ticket, *, docs_paths: Sequence[str] | None = None, summary: str | None = None) -> str:
    """`<type>(<scope>): #<ID> <title>` (or `<type>: ...` without a scope), a body, then
    git trailers.

    The title is kept as written, but for its first letter, lowercased when the first
    word reads as a plain word (`Add` -> `add`; `API`, `README`, `getUser` stay). scope:
    the ticket's `component` key, else the first directory its `files` globs name (never
    a guess: no scope when they name none). docs_paths default to the ticket's `docs`.
    Ticket text cannot add lines: title and scope are collapsed to one line. Agent text
    (the summary) is an indented block, so git's trailer parser never reads a trailer,
    a comment or a scissors line in it: sage's trailers are always the last paragraph,
    and the only one git parses.
    """
    if not is_safe_id(ticket.id):
        raise SageError(f"ticket id {ticket.id!r} cannot be written into a commit message")
    kind = COMMIT_TYPES.get(ticket.type or "", "chore")
    scope = commit_scope(ticket)
    head = f"{kind}({scope})" if scope else kind
    subject = f"{head}: #{ticket.id} {commit_title(ticket.title)}".rstrip()
    paragraphs = [subject]
    if summary and summary.strip():
        paragraphs.append(_paragraph(summary))
    docs = list(docs_paths) if docs_paths is not None else [path for path in ticket.doc_paths() if path.strip()]
    if docs:
        paragraphs.append("\n".join(["Docs:", *(f"- {one_line(path)}" for path in docs)]))
    paragraphs.append(f"Closes: #{ticket.id}\n{TRAILER}: {ticket.id}")
    return "\n\n".join(paragraphs) + "\n"


def commit_title(title: str) -> str:
    """The title on one line, as written; only a plain first word (`Add`, `Document`)
    loses its capital, never an acronym, an identifier or code."""
    text = one_line(title)
    first, _, rest = text.partition(" ")
    if _PLAIN_WORD.fullmatch(first.rstrip(",.:;!?")):
        return f"{first[0].lower()}{first[1:]}" + (f" {rest}" if rest else "")
    return text


def commit_scope(ticket: Ticket) -> str | None:
    """The `component` key, else the first directory named literally by the ticket's
    `files` globs (`src/api/*.py` -> `api`), else None: never guessed from the id."""
    component = getattr(ticket, "component", None)
    if isinstance(component, str) and component.strip():
        scope = re.sub(r"[^A-Za-z0-9._/-]+", "-", one_line(component)).strip("-")
        if scope:
            return scope.lower()
    for pattern in ticket.files:
        directories = pattern.strip().lstrip("/").split("/")[:-1]
        literal = list(itertools.takewhile(lambda part: part and not _GLOB_CHARS.search(part), directories))
        literal = [part for part in literal if part not in (".", "..")]
        if literal:
            scope = re.sub(r"[^A-Za-z0-9._-]+", "-", literal[-1]).strip("-")
            if scope:
                return scope
    return None


def with_summary(message: str, summary: str | None) -> str:
    """`message` with a summary paragraph inserted before its trailer paragraph."""
    if not summary or not summary.strip():
        return message
    head, trailers = _split_trailers(message)
    parts = [head, _paragraph(summary), *([trailers] if trailers else [])]
    return "\n\n".join(parts) + "\n"


def _ensure_ticket_trailer(message: str, ticket_id: str) -> str:
    """The idempotency check looks for this trailer: make sure the landed commit has it."""
    trailer = f"{TRAILER}: {ticket_id}"
    head, trailers = _split_trailers(message)
    if trailers and trailer in trailers.splitlines():
        return message
    return "\n\n".join([head, "\n".join(filter(None, [trailers, trailer]))]) + "\n"


def _split_trailers(message: str) -> tuple[str, str]:
    """(everything before the trailer paragraph, the trailer paragraph or "")."""
    text = message.strip("\n")
    head, sep, last = text.rpartition("\n\n")
    if sep and all(_TRAILER_LINE.match(line) for line in last.splitlines()):
        return head, last
    return text, ""


def _paragraph(text: str) -> str:
    """Agent text as an indented block: git's trailer parser, its comment and scissors
    lines (`# --- >8 ---`) and its patch divider (`---`) all need a line's first
    column, so nothing in it can pass for any of them."""
    lines = [line.rstrip() for line in text.replace("\0", "").strip("\n").splitlines()]
    return "\n".join(f"{SUMMARY_INDENT}{line}" if line else "" for line in lines).strip("\n")


# -- landing ------------------------------------------------------------------------


def land_ticket(
    git: Git,
    *,
    target_branch: str,
    ticket_tip: str,
    base: str,
    ticket: Ticket,
    message: str,
    allowed_globs: Sequence[str],
    allow_empty: bool,
    landing_lock: Path,
    summary: str | None = None,
    on_landed: Callable[[LandingResult], None] | None = None,
    check_earlier: bool = True,
    target_ref: str | None = None,
    check_target: Callable[[str], str] | None = None,
    on_commit: Callable[[str], None] | None = None,
) -> LandingResult:
    """Land `base..ticket_tip` on `target_branch` as one commit (see module docstring).

    `message` is the full commit message (`commit_message`); `summary`, when given, is
    added as a paragraph before its trailers. `on_landed` is called the moment the
    target has moved, before the checked-out work trees are brought along (with the
    lock still held): a caller records the landing and starts what it unblocked while
    files are written. When it raises, no work tree is touched and the error propagates.
    `check_earlier=False` skips looking for an earlier landing of the ticket: for an
    attempt the caller started itself (it owns the ticket: nobody else can have landed
    it since); recovery, landing what a dead run queued, always looks. `check_target`, under
    the lock, gets the target's tip and returns the one to land on (engine/target_watch.py
    restores a target whose landed work was rewound). `on_commit` gets the landing commit just
    before the target is moved to it (the watch: an agent turn ending meanwhile sees the
    target where sage is putting it, with no git to find out whose move it was).
    `target_ref` (remote landing, engine/remote_landing.py): land on this private ref
    instead of `refs/heads/<target_branch>`; no work tree has it checked out.
    """
    text = _ensure_ticket_trailer(with_summary(message, summary), ticket.id)
    Path(landing_lock).parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(landing_lock), timeout=LANDING_LOCK_TIMEOUT_S):
            return _land_locked(git, target_branch, ticket_tip, base, ticket.id, text, allowed_globs, allow_empty,
                                on_landed, check_earlier, target_ref, check_target, on_commit)
    except Timeout:
        raise SageError(
            f"could not land {ticket.id}: the commit queue lock {landing_lock} has been held for "
            f"{LANDING_LOCK_TIMEOUT_S:.0f} s; is another sage-stream run stuck?"
        )


def _land_locked(
    git: Git,
    target: str,
    tip: str,
    base: str,
    ticket_id: str,
    message: str,
    globs: Sequence[str],
    allow_empty: bool,
    on_landed: Callable[[LandingResult], None] | None = None,
    check_earlier: bool = True,
    target_ref: str | None = None,
    check_target: Callable[[str], str] | None = None,
    on_commit: Callable[[str], None] | None = None,
) -> LandingResult:
    crash_point("landing_locked")
    ref = target_ref or f"refs/heads/{target}"
    current = git.commit_and_tree(ref)
    if current is not None and check_target is not None and check_target(current[0]) != current[0]:
        current = git.commit_and_tree(ref)  # the target was restored: land on what it is now
    if current is None:
        raise SageError(f"cannot land {ticket_id}: the target branch {target!r} does not exist")
    # Only a commit made since the ticket's base can be its earlier landing (nothing was
    # made when the target is still at the base: the common case, no git log needed).
    if check_earlier and current[0] != base:
        earlier = git.commits_with_trailer(f"{base}..{current[0]}", TRAILER, ticket_id, limit=1)
        if earlier:
            return LandingResult(ALREADY_LANDED, earlier[0], [],
                                 f"{ticket_id} is already on {target} as {earlier[0][:12]}")

    for attempt in range(CAS_ATTEMPTS):
        found = current if attempt == 0 else git.commit_and_tree(ref)
        assert found is not None
        old, old_tree = found
        with ThreadPoolExecutor(max_workers=1) as pool:
            # which checkouts may be brought along, found while the merge is computed
            inspected = pool.submit(_checkouts_of, git, target if target_ref is None else None)
            result = _merge_and_swap(git, target, ref, tip, ticket_id, message, globs, allow_empty, on_landed,
                                     old, old_tree, inspected, on_commit)
        if result is not None:
            return result
    return LandingResult(
        CONFLICT, None, [], f"{target} moved {CAS_ATTEMPTS} times while {ticket_id} was landing; try again"
    )


def _checkouts_of(git: Git, target: str | None) -> tuple[list[WorktreeInfo], dict[Path, bool]]:
    """The work trees that have the target checked out, and whether each is clean."""
    if target is None:  # a private ref (remote landing): nothing has it checked out
        return [], {}
    checkouts = [info for info in git.worktrees() if info.branch == target and info.path.is_dir()]
    return checkouts, {info.path: checkout_is_clean(git, info.path) for info in checkouts}


def _merge_and_swap(
    git: Git,
    target: str,
    ref: str,
    tip: str,
    ticket_id: str,
    message: str,
    globs: Sequence[str],
    allow_empty: bool,
    on_landed: Callable[[LandingResult], None] | None,
    old: str,
    old_tree: str,
    inspected: Future[tuple[list[WorktreeInfo], dict[Path, bool]]],
    on_commit: Callable[[str], None] | None = None,
) -> LandingResult | None:
    """One try at landing on `old`: a result, or None when the target moved meanwhile."""
    # The ticket's own changes, measured from where it left the target (the agent may
    # have merged the target into its branch: `base` alone would count those too).
    modes = git.changed_since_fork(old, tip)
    if modes is None:
        return LandingResult(CONFLICT, None, [], f"{ticket_id} shares no history with {target}")
    changed = list(modes)
    if not changed and not allow_empty:
        return LandingResult(NO_CHANGES, None, [], f"{ticket_id} changed no file")
    stray = outside(changed, globs)
    if stray:
        return LandingResult(
            SCOPE_VIOLATION, None, stray, f"{ticket_id} changed files outside its `files` globs: {', '.join(stray)}"
        )
    leaving = _links_leaving(git, modes, old, tip)
    if leaving:
        shown = ", ".join(f"{path} -> {target}" for path, target in leaving.items())
        return LandingResult(
            SCOPE_VIOLATION, None, list(leaving), f"{ticket_id} adds symbolic links that point outside the "
            f"repository (or into .git): {shown}"
        )
    merged = git.merge_tree(old, tip)
    if not merged.clean:
        paths = merged.conflicts
        return LandingResult(CONFLICT, None, paths, f"{ticket_id} conflicts with {target} in: {', '.join(paths)}")
    assert merged.tree is not None
    if merged.tree == old_tree and not allow_empty:
        return LandingResult(NO_CHANGES, None, [], f"{ticket_id}'s changes are already on {target}")
    # Which checked-out trees may be brought along is decided before the ref moves:
    # afterwards every one of them looks dirty.
    checkouts, clean = inspected.result()
    dirty = [str(info.path) for info in checkouts if not clean[info.path] and has_own_changes(git, info.path, target)]
    if dirty:  # git's own rule for a checked-out branch (receive.denyCurrentBranch): never under the user
        return LandingResult(TARGET_DIRTY, None, dirty, waiting_message(target, dirty))
    commit = git.commit_tree(merged.tree, [old], message)
    crash_point("after_commit_tree")
    found = git.trailer_values(commit, TRAILER)
    if found != [ticket_id]:  # what every landed check will read: it must name this ticket alone
        raise SageError(f"refusing to land {ticket_id}: git reads the Sage-Ticket trailer of its commit "
                        f"{commit[:12]} as {found or 'missing'}; nothing was landed")
    if on_commit is not None:
        on_commit(commit)
    if not git.update_ref(ref, commit, old):
        return None
    crash_point("after_update_ref")
    result = LandingResult(LANDED, commit, changed, f"{ticket_id} landed on {target} as {commit[:12]}")
    if on_landed is not None:
        on_landed(result)
    _bring_along(git, result, checkouts, clean, target, old, commit)
    return result


def _links_leaving(git: Git, modes: dict[str, tuple[str, str]], old: str, tip: str) -> dict[str, str]:
    """The links of `tip` that leave the repository because of this ticket: a link it adds
    or changes (or one whose chain passes through such a link), and an earlier link whose
    chain passed through a link it removes (`here -> sub/deeper`, `secret -> here/../../x`:
    without `here`, `secret` reads `../x`). A ticket that touches no link needs no tree
    listing at all."""
    removed = {path for path, (before, after) in modes.items() if before == SYMLINK_MODE and after != SYMLINK_MODE}
    if not removed and not any(after == SYMLINK_MODE for _, after in modes.values()):
        return {}
    links = git.symlinks(tip)
    judged = set(modes)
    if removed:
        earlier = git.symlinks(old)
        judged |= {path for path in earlier if path in links and _resolve_link(path, earlier)[1] & removed}
    return escaping_links(links, judged)


def escaping_links(links: dict[str, str], changed: Collection[str] | None = None) -> dict[str, str]:
    """The links that resolve outside the repository, into `.git`, or nowhere (a loop):
    landed, they would hand whatever reads the repository a file from elsewhere.

    `links` are every link of the tree being landed (path -> stored target): a link is
    judged by where it resolves, following the chain through the tree's other links
    (`here -> .`, `secret -> here/../OUTSIDE` leaves, though its text alone does not).
    Judged: the links in `changed` (all when None), and any link whose chain passes
    through one of them."""
    judged = set(links) if changed is None else set(changed)
    leaving = {}
    for path, stored in links.items():
        resolved, used = _resolve_link(path, links)
        if resolved is None and (path in judged or judged & used):
            leaving[path] = stored
    return leaving


def _resolve_link(path: str, links: dict[str, str]) -> tuple[str | None, set[str]]:
    """(where `path` resolves inside the tree, the links followed); None when it
    leaves the tree, enters `.git`, or loops (more than MAX_LINK_HOPS links)."""
    used = {path}
    current = [part for part in path.split("/")[:-1] if part]
    pending = list(reversed(links[path].split("/")))
    if links[path].startswith("/") or "\0" in links[path]:
        return None, used
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if not current:
                return None, used
            current.pop()
            continue
        candidate = "/".join([*current, part])
        if candidate in links:
            used.add(candidate)
            if len(used) > MAX_LINK_HOPS or candidate == path:
                return None, used
            stored = links[candidate]
            if stored.startswith("/") or "\0" in stored:
                return None, used
            pending.extend(reversed(stored.split("/")))
            continue
        current.append(part)
        if current[0].lower() == ".git":
            return None, used
    return "/".join(current), used


def _bring_along(
    git: Git,
    result: LandingResult,
    checkouts: list[WorktreeInfo],
    clean: dict[Path, bool],
    target: str,
    old: str,
    new: str,
) -> None:
    """Update the files of each clean work tree that has the target checked out; leave a
    dirty one exactly as it is and tell the user how to catch up. Whether it still has the
    target checked out, its index at the old commit, is asked again just before: a checkout
    switched to another branch meanwhile must never get the target's changes staged into it."""
    if not checkouts:
        return
    notes: list[str] = []
    for info in checkouts:
        if git.symbolic_head(info.path) != f"refs/heads/{target}":
            continue  # switched to another branch since it was inspected: not ours to touch
        if clean[info.path] and git.index_matches(info.path, old) and git.bring_along(info.path, old, new):
            continue
        why = "has uncommitted changes" if not clean[info.path] else "could not be updated"
        notes.append(
            f"your work tree {info.path} {why}, so it was left untouched; {target} moved from "
            f"{old[:12]} to {new[:12]} under it, so `git status` there shows the landed changes as "
            f"reverted: do not commit there before catching up with "
            f"`git -C {info.path} read-tree -m -u {old[:12]} {new[:12]}` (keeps your changes; if it "
            f"refuses because you edited the same files: `git diff --binary {old[:12]} > mine.patch`, "
            f"`git reset --hard`, `git apply -3 mine.patch`)"
        )
    result.brought_along = not notes
    if notes:
        result.message = "; ".join([result.message, *notes])
