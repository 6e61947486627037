"""An agent CLI turned away for a moment's local reason is started again, not deferred.

OpenCode keeps its state in one SQLite database under HOME; two OpenCode processes starting
at once can find it locked ("database is locked", seen in CI with the real CLI) and exit at
once having done nothing. The run starts such an agent again after a second or two (up to
START_AGAIN_TRIES times) instead of deferring the ticket for ten minutes. A fake `opencode`
on PATH stands in for the real one here: locked the first times it is run, then printing
what the real CLI printed for a successful run (tests/agents/recorded/opencode_success.jsonl).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from sage_stream.engine.local_runner import START_AGAIN_TRIES
from tests.e2e.test_stream_setup_errors import make_repo, run_stream

RECORDED = Path(__file__).resolve().parents[1] / "agents" / "recorded"
LOCKED = 'printf "\\033[91mError: \\033[0mUnexpected error\\n\\ndatabase is locked\\n"; exit 1'


def fake_opencode(bin_dir: Path, runs: Path, *, locked_runs: int) -> None:
    """`opencode`: `--version` answers; a run is counted in `runs`, and the first `locked_runs`
    find the database locked."""
    bin_dir.mkdir()
    script = bin_dir / "opencode"
    script.write_text(f"""#!/bin/sh
if [ "$1" = "--version" ]; then echo "1.14.0"; exit 0; fi
echo run >> '{runs}'
count=$(wc -l < '{runs}')
if [ "$count" -le {locked_runs} ]; then {LOCKED}; fi
cat '{RECORDED / "opencode_success.jsonl"}'
""")
    script.chmod(0o755)
    (bin_dir / "git").symlink_to(shutil.which("git"))


def one_ticket() -> list[dict]:
    return [{"id": "T-1", "title": "Ticket 1", "state": "UNPROCESSED", "priority": "P1", "type": "implementation",
             "validation_type": "generic", "description": "write a file", "allow_empty": True}]


def stream_with_fake_opencode(tmp_path: Path, *, locked_runs: int) -> tuple[subprocess.CompletedProcess, list, Path]:
    """`sage stream` of one ticket with the fake `opencode`: the run, its events, the count of agent runs."""
    repo = make_repo(tmp_path, one_ticket(), '[agent]\npreset = "opencode"\n')
    runs = tmp_path / "runs.txt"
    fake_opencode(tmp_path / "bin", runs, locked_runs=locked_runs)
    done, events = run_stream(repo, tmp_path / "home", f"{tmp_path / 'bin'}{os.pathsep}/usr/bin:/bin",
                              "--sandbox", "none")
    return done, events, runs


def test_a_locked_database_at_start_is_started_again_and_the_ticket_lands(tmp_path: Path) -> None:
    done, events, runs = stream_with_fake_opencode(tmp_path, locked_runs=2)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert runs.read_text().count("run") == 3  # locked twice, then it ran
    assert [e["ticket"] for e in events if e["event"] == "ticket_landed"] == ["T-1"]
    assert [e for e in events if e["event"] == "ticket_deferred"] == []
    log = next(e["log"] for e in events if e["event"] == "ticket_started")
    text = Path(log).read_text()
    assert text.count("starting it again") == 2 and "database is locked" in text


def test_a_database_locked_every_time_defers_the_ticket_after_the_tries(tmp_path: Path) -> None:
    done, events, runs = stream_with_fake_opencode(tmp_path, locked_runs=99)
    assert runs.read_text().count("run") == 1 + START_AGAIN_TRIES
    deferred = [e for e in events if e["event"] == "ticket_deferred"]
    assert len(deferred) == 1 and deferred[0]["retryable"] is True
    assert "could not open its database" in deferred[0]["message"]
    assert done.returncode == 3, done.stdout[-3000:]
