"""Reading history: the first-parent line of a branch and the trailers git parses on its
commits (`Sage-Ticket`: which tickets a branch carries)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_TRAILER_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")


@dataclass(frozen=True)
class HistoryEntry:
    commit: str
    tree: str
    has_trailer: bool  # the commit carries the trailer asked for (e.g. Sage-Ticket)



class HistoryCommands:
    """`Git`'s part that reads commits and their trailers (always through git's own parser)."""

    def first_parent_history(self, ref: str, *, limit: int, trailer: str) -> list[HistoryEntry]:
        """The newest `limit` commits along the first parents of `ref`, newest first."""
        if not _TRAILER_KEY.match(trailer):
            raise ValueError(f"not a trailer key: {trailer!r}")
        out = self.run("log", "-z", "--first-parent", f"-n{limit}", "--no-show-signature",
                       f"--format=%H%x1f%T%x1f%(trailers:key={trailer},valueonly,separator=%x1e)",
                       "--end-of-options", ref, "--").stdout
        history = []
        for record in out.split("\0"):
            parts = record.strip("\n").split("\x1f")
            if len(parts) == 3 and parts[0]:
                history.append(HistoryEntry(commit=parts[0], tree=parts[1], has_trailer=bool(parts[2].strip())))
        return history

    def trailer_owners(self, ref: str, key: str) -> dict[str, str]:
        """Every value of the trailer `key` on commits reachable from `ref`, with the
        newest commit carrying it: one git process, whatever the number of tickets. Read
        by git's own trailer parser (a prefix search only narrows the commits read)."""
        if not _TRAILER_KEY.match(key):
            raise ValueError(f"not a trailer key: {key!r}")
        out = self.run("log", "-z", "--no-show-signature", "--fixed-strings", f"--grep={key}: ",
                       f"--format=%H%x1f%(trailers:key={key},valueonly,separator=%x1f)", "--end-of-options", ref,
                       "--").stdout
        owners: dict[str, str] = {}
        for record in out.split("\0"):
            sha, *values = record.strip("\n").split("\x1f")
            for value in values:
                if sha and value.strip():
                    owners.setdefault(value.strip(), sha)
        return owners

    def trailer_values(self, commit: str, key: str) -> list[str]:
        """The values of the trailer `key` on one commit, as git's own trailer parser
        reads its message (the way every landed check reads it)."""
        if not _TRAILER_KEY.match(key):
            raise ValueError(f"not a trailer key: {key!r}")
        out = self.run("log", "-1", "--no-show-signature",
                       f"--format=%(trailers:key={key},valueonly,separator=%x1f)", "--end-of-options", commit,
                       "--").stdout
        return [value.strip() for value in out.strip("\n").split("\x1f") if value.strip()]

    def commits_with_trailer(self, ref: str, key: str, value: str, *, limit: int | None = None) -> list[str]:
        """Commits reachable from `ref` (or in a range `a..b`) with the trailer `key: value`."""
        if not _TRAILER_KEY.match(key):
            raise ValueError(f"not a trailer key: {key!r}")
        args = [
            "log",
            "-z",
            "--no-show-signature",
            "--fixed-strings",
            f"--grep={key}: {value}",  # a cheap pre-filter; the trailer is checked below
            f"--format=%H%x1f%(trailers:key={key},valueonly,separator=%x1f)",
        ]
        found: list[str] = []
        for record in self.run(*args, "--end-of-options", ref, "--").stdout.split("\0"):
            sha, *values = record.strip("\n").split("\x1f")
            if sha and value in (v.strip() for v in values):
                found.append(sha)
                if limit is not None and len(found) >= limit:
                    break
        return found
