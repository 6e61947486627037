"""Faults a test injects into a running `sage stream`, as a command it runs at a named
point (`SAGE_TEST_FAULT_AT=<point>#<n>`, `SAGE_TEST_FAULT_CMD=<JSON argv>`):

    python fault_tools.py readonly DIR      make DIR read-only (a read-only bind mount as
                                            root, for whom permission bits do not count;
                                            chmod otherwise)
    python fault_tools.py fill FILE         write FILE until its file system is full
    python fault_tools.py commit REPO PATH TEXT   a person commits PATH on the checked-out branch

and the helpers that set those up and undo them.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve()
FILL_CHUNK = b"\0" * (64 * 1024)


def command(*args: str) -> list[str]:
    """The argv that runs one of this file's actions."""
    return [sys.executable, str(HERE), *args]


def make_readonly(directory: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["mount", "--bind", str(directory), str(directory)], check=True)
        subprocess.run(["mount", "-o", "remount,ro,bind", str(directory)], check=True)
        return
    for path in [directory, *directory.iterdir()]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def undo_readonly(directory: Path) -> None:
    if os.geteuid() == 0:
        while is_mount_point(directory):
            subprocess.run(["umount", str(directory)], check=True)
        return
    for path in [directory, *directory.iterdir()]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


def is_mount_point(directory: Path) -> bool:
    wanted = str(directory.resolve())
    with open("/proc/self/mountinfo") as mounts:
        return any(line.split()[4] == wanted for line in mounts)


def fill(path: Path) -> None:
    """Write zeros to `path` until the file system says it is full."""
    with open(path, "ab", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            handle.write(FILL_CHUNK)
    with contextlib.suppress(OSError), open(path, "ab", buffering=0) as handle:  # the last few blocks
        while True:
            handle.write(b"\0" * 512)


def mount_tmpfs(directory: Path, size: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)], check=True)


def unmount(directory: Path) -> None:
    while is_mount_point(directory):
        result = subprocess.run(["umount", str(directory)], capture_output=True, text=True)
        if result.returncode != 0:
            subprocess.run(["umount", "-l", str(directory)], check=True)


@functools.cache
def can_mount() -> bool:
    """Whether this process may mount (root with CAP_SYS_ADMIN): tried once, on a 1 MB tmpfs."""
    if os.geteuid() != 0 or not Path("/proc/self/mountinfo").exists():
        return False
    with tempfile.TemporaryDirectory(prefix="sage-mount-probe-") as probe:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", probe], capture_output=True)
        if mounted.returncode != 0:
            return False
        subprocess.run(["umount", probe], check=True)
    return True


def can_make_readonly() -> bool:
    """A read-only bind mount needs `can_mount`; without root, file modes are enough."""
    return os.geteuid() != 0 or can_mount()


def person_commits(repo: Path, path: str, text: str) -> None:
    (repo / path).write_text(text)
    subprocess.run(["git", "add", path], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=A Person", "-c", "user.email=person@example.invalid", "commit", "-q",
                    "-m", f"a person edits {path}"], cwd=repo, check=True)


def main(argv: list[str]) -> int:
    action, *rest = argv
    if action == "readonly":
        make_readonly(Path(rest[0]))
    elif action == "fill":
        fill(Path(rest[0]))
    elif action == "commit":
        person_commits(Path(rest[0]), rest[1], rest[2])
    else:
        print(f"unknown action {action!r}", file=sys.stderr)
        return errno.EINVAL
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
