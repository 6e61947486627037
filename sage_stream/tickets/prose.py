"""Per-ticket prose files: `.sage/tickets/<ID>.md` beside the index."""

from __future__ import annotations

import re
from pathlib import Path

SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
SAGE_ID = re.compile(r"[A-Z0-9]+-[0-9]+")  # used with fullmatch: `$` would accept a newline


def is_safe_id(ticket_id: str) -> bool:
    """An id that can name a file, a log and a git branch without escaping its directory."""
    return (
        bool(SAFE_ID.fullmatch(ticket_id))
        and ".." not in ticket_id
        and not ticket_id.endswith((".", ".lock"))
    )


def prose_path(tickets_dir: Path, ticket_id: str) -> Path | None:
    """The `<ID>.md` path for a safe id, else None (an unsafe id never names a file)."""
    if not is_safe_id(ticket_id):
        return None
    return tickets_dir / f"{ticket_id}.md"


def read_prose(tickets_dir: Path, ticket_id: str, *, limit: int = 200_000) -> str | None:
    path = prose_path(tickets_dir, ticket_id)
    if path is None or not path.is_file():
        return None
    try:
        return path.read_bytes()[:limit].decode("utf-8", errors="replace")
    except OSError:
        return None
