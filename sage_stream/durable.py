"""Atomic, durable file writes: temp file in the same directory, fsync, rename, fsync dir."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from sage_stream.faults import write_point

TEMP_PREFIX = ".tmp-"


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a reader sees either the old or the new file.

    A crash at any point leaves at most a stray `.tmp-*` file beside the target,
    which loaders ignore.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX + path.name + ".")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        with contextlib.suppress(OSError):
            # keep the target's permission bits when replacing it
            os.chmod(tmp_name, path.stat().st_mode & 0o7777)
        write_point("before_replace", path)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    write_point("after_replace", path)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_json_atomic(path: Path, value: Any, *, indent: int | None = 2,
                      separators: tuple[str, str] | None = None) -> None:
    text = json.dumps(value, indent=indent, separators=separators, ensure_ascii=False)
    write_atomic(path, (text + "\n").encode("utf-8"))
