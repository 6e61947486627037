"""Which paths a ticket may change: its `files` globs.

A pattern is matched against a repository-relative path (`/`-separated, as git prints
it) the way a `.gitignore` line that starts with `/` would be: anchored at the
repository root, and a pattern that matches a directory covers everything inside it.

    *.py          a.py in the root only (not src/a.py: write **/*.py for that)
    src, src/     everything under src/
    src/*         everything under src/ (src/a.py matches src/*, and so does src/d/b.py
                  because its directory src/d does)
    src/**        everything under src/
    **/*.py       any .py file at any depth
    docs/**/*.md  docs/a.md, docs/a/b/c.md
    **/tests      every tests/ directory at any depth, and what it holds
    ?, [a-z], [!a]  one character (never `/`), as in git; `\\` escapes the next one

Two additions to git's rules: a pattern also matches when it is literally the path or
one of its leading directories (so `app/[id]/page.tsx` names that file even though `[id]`
is a character class), and a leading `/` or `./` is ignored. Negation (`!pattern`) is not
supported; an empty pattern or `.` matches everything.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache


def matches_any(path: str, globs: Iterable[str]) -> bool:
    """True when `path` is covered by at least one of `globs`."""
    return any(matches(path, glob) for glob in globs)


def matches(path: str, glob: str) -> bool:
    pattern = _normalize(glob)
    if pattern == "":
        return True
    if path == pattern or path.startswith(pattern + "/"):
        return True
    return _compile(pattern).fullmatch(path) is not None


def outside(paths: Iterable[str], globs: Iterable[str]) -> list[str]:
    """The paths no glob covers (all of them are allowed when there are no globs)."""
    patterns = list(globs)
    if not patterns:
        return []
    return [path for path in paths if not matches_any(path, patterns)]


def _normalize(glob: str) -> str:
    pattern = glob
    while pattern.startswith(("./", "/")):
        pattern = pattern[2:] if pattern.startswith("./") else pattern[1:]
    pattern = pattern.rstrip("/")
    return "" if pattern in ("", ".", "**") else pattern


@lru_cache(maxsize=1024)
def _compile(pattern: str) -> re.Pattern[str]:
    # A path matches when the pattern matches it or one of its leading directories.
    return re.compile(_translate(pattern) + "(?:/.*)?", re.DOTALL)


def _translate(pattern: str) -> str:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if pattern.startswith("**", i) and _whole_component(pattern, i):
            if i + 2 == n:  # "dir/**": everything below
                out.append(".*")
                i += 2
            else:  # "**/": zero or more directories
                out.append("(?:.*/)?")
                i += 3
        elif char == "*":
            while i < n and pattern[i] == "*":  # "a**b" is "a*b", as in git
                i += 1
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
            i += 1
        elif char == "[":
            regex, i = _bracket(pattern, i)
            out.append(regex)
        elif char == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
        else:
            out.append(re.escape(char))
            i += 1
    return "".join(out)


def _whole_component(pattern: str, i: int) -> bool:
    """`**` that is a whole path component: only then does it cross directories."""
    before_ok = i == 0 or pattern[i - 1] == "/"
    after = i + 2
    return before_ok and (after == len(pattern) or pattern[after] == "/")


def _bracket(pattern: str, start: int) -> tuple[str, int]:
    """A `[...]` class as a regex that never matches `/`; an unclosed `[` is literal."""
    i = start + 1
    negate = i < len(pattern) and pattern[i] in "!^"
    if negate:
        i += 1
    members: list[str] = []
    first = True
    while i < len(pattern) and (pattern[i] != "]" or first):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            members.append(re.escape(pattern[i + 1]))
            i += 2
        elif char == "-" and members and i + 1 < len(pattern) and pattern[i + 1] != "]":
            members.append("-")
            i += 1
        else:
            members.append(re.escape(char) if char != "-" else r"\-")
            i += 1
        first = False
    if i >= len(pattern):
        return re.escape("["), start + 1
    body = "".join(members)
    regex = f"[^/{body}]" if negate else f"(?!/)[{body}]"
    return regex, i + 1
