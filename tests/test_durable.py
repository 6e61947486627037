"""durable.write_atomic: what a reader sees, and what the writer keeps open."""

from __future__ import annotations

import os
from pathlib import Path

from sage_stream import durable


def _descriptors_on(path: Path) -> list[str]:
    """This process's descriptors open on a file that was at `path` (deleted or not)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.removesuffix(" (deleted)") == str(path):
            found.append(target)
    return found


def test_a_small_file_is_replaced_and_nothing_stays_open(tmp_path: Path) -> None:
    path = tmp_path / "index.json"
    path.write_bytes(b"old")
    durable.write_atomic(path, b"new")
    assert path.read_bytes() == b"new"
    assert _descriptors_on(path) == []
    assert [entry.name for entry in tmp_path.iterdir()] == ["index.json"]  # no temp file left


def test_a_big_replaced_file_is_freed_off_the_writer_and_never_leaks(tmp_path: Path) -> None:
    path = tmp_path / "index.json"
    path.write_bytes(b"a" * durable.FREE_LATER_BYTES)
    path.chmod(0o600)
    for round_ in range(5):
        durable.write_atomic(path, bytes([ord("b") + round_]) * (durable.FREE_LATER_BYTES + round_))
        assert path.read_bytes() == bytes([ord("b") + round_]) * (durable.FREE_LATER_BYTES + round_)
        assert path.stat().st_mode & 0o777 == 0o600  # the permission bits are kept
    durable.wait_until_freed()
    assert _descriptors_on(path) == []  # every replaced file was closed, so the file system frees it
    assert [entry.name for entry in tmp_path.iterdir()] == ["index.json"]


def test_a_failed_replace_leaves_the_old_file_and_closes_what_it_held(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "index.json"
    path.write_bytes(b"a" * durable.FREE_LATER_BYTES)

    def refuse(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(durable.os, "replace", refuse)
    try:
        durable.write_atomic(path, b"new")
    except OSError as error:
        assert error.errno == 28
    else:
        raise AssertionError("the failed replace was not raised")
    durable.wait_until_freed()
    assert path.read_bytes() == b"a" * durable.FREE_LATER_BYTES
    assert _descriptors_on(path) == []
    assert [entry.name for entry in tmp_path.iterdir()] == ["index.json"]


def test_what_is_handed_over_to_be_freed_is_closed_by_one_thread_that_then_ends(tmp_path: Path) -> None:
    import threading
    import time

    path = tmp_path / "index.json"
    path.write_bytes(b"a" * durable.FREE_LATER_BYTES)
    for round_ in range(3):
        durable.write_atomic(path, b"b" * (durable.FREE_LATER_BYTES + round_))
    freers = [thread for thread in threading.enumerate() if thread.name == "sage-free-replaced"]
    assert len(freers) <= 1
    durable.wait_until_freed()
    assert _descriptors_on(path) == []
    deadline = time.monotonic() + durable._Freer.IDLE_S + 5
    while any(thread.name == "sage-free-replaced" for thread in threading.enumerate()):
        assert time.monotonic() < deadline, "the freeing thread did not end once idle"
        time.sleep(0.05)
