"""Helpers for the tests of the CLI agents: a finished run as the engine reports it, a fake program."""

from __future__ import annotations

import stat
from pathlib import Path

from sage_stream.process.supervise import EXITED, AgentExit, clean_line


def exited(returncode: int, log: Path) -> AgentExit:
    """The run that wrote `log` exited with `returncode`; its last line as the engine shows it."""
    lines = [clean_line(line.encode()) for line in log.read_text().splitlines()] if log.exists() else []
    lines = [line for line in lines if line]
    return AgentExit(EXITED, returncode, 1.0, lines[-1] if lines else "", None, 4242)


def fake_program(path: Path, script: str) -> Path:
    """An executable shell script at `path` running `script` (e.g. "echo 1.2.3")."""
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path
