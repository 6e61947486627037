"""A finding: one line of `sage validate` output, and the unit every check reports in."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass


class Severity(str, enum.Enum):
    ERROR = "error"
    WARNING = "warning"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Finding:
    severity: Severity
    code: str  # stable machine name, e.g. "cycle", "unknown_dependency"
    message: str  # one human line, naming the ticket and field
    file: str | None = None
    ticket: str | None = None  # the ticket id, or "#N" (1-based position) when it has none
    field: str | None = None
    expected: str | None = None
    found: str | None = None

    def as_json(self) -> dict:
        data = asdict(self)
        data["severity"] = self.severity.value
        return data
