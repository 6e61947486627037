"""When two tickets may not run at the same time: their `files` globs could name one path.

One rule, used by the real scheduler (engine/scheduler.py) and by every prediction of it
(graph/simulate.py: `sage plan`, `sage stream --dry-run`, the run's predicted makespan).
"""

from __future__ import annotations

from collections.abc import Sequence


def glob_prefix(pattern: str) -> tuple[str, ...]:
    """The literal directory segments a glob is confined to (`src/api/*.py` -> src, api)."""
    segments = [part for part in pattern.strip("/").split("/") if part not in ("", ".")]
    literal: list[str] = []
    for index, part in enumerate(segments):
        if any(char in part for char in "*?[") or index == len(segments) - 1:
            if not any(char in part for char in "*?[") and index == len(segments) - 1:
                literal.append(part)  # a plain path names itself (file or directory)
            break
        literal.append(part)
    return tuple(literal)


def globs_overlap(left: Sequence[str], right: Sequence[str]) -> bool:
    """Could some path match a glob of each side? Conservative: when unsure, yes.

    Two globs are disjoint only when their literal prefixes part ways
    (`calc/add.py` and `docs/**`); `calc/**` and `calc/add.py` overlap, and so does a
    glob with no literal prefix (`*.md`) with anything. A ticket without `files`
    declares no scope and so constrains nothing.
    """
    for a in left:
        prefix_a = glob_prefix(a)
        for b in right:
            prefix_b = glob_prefix(b)
            shorter = min(len(prefix_a), len(prefix_b))
            if prefix_a[:shorter] == prefix_b[:shorter]:
                return True
    return False

