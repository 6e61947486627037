"""Four `sage stream` started at once on one repository (cron firing while a run is
still going, a user starting one by hand): exactly one does the work, no ticket runs
twice, and the others exit 0 at once instead of waiting for it.

Default: one round. `-m slow`: twenty rounds.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from .support import (
    clean_env,
    make_repo,
    py,
    read_index,
    report,
    run_records,
    stream_argv,
    ticket,
    trailer_counts,
    write_config,
    write_index,
)

PROCESSES = 4
TICKETS = 4
ROUND_TIMEOUT_S = 180


def overlap_round(root: Path) -> dict[str, object]:
    """One round: a fresh repository, four runs started together; checks and returns figures."""
    repo = make_repo(root / "repo")
    write_config(repo, "")  # the agents log their runs beside the repository
    executions = root / "executions.log"
    tickets = []
    for number in range(1, TICKETS + 1):
        tid = f"OVL-{number}"
        # each agent appends its ticket id to a log outside the repository, then works
        # long enough that the first run is still busy when the others start
        code = (f"import os, pathlib, time; fd = os.open({str(executions)!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT); "
                f"os.write(fd, b'{tid}\\n'); os.close(fd); time.sleep(0.8); "
                f"pathlib.Path('ovl-{number}.txt').write_text('{number}')")
        tickets.append(ticket(tid, py(code)))
    write_index(repo, tickets)
    began = time.monotonic()
    processes = [subprocess.Popen(stream_argv(repo), cwd=repo, env=clean_env(), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(PROCESSES)]
    ended: dict[int, float] = {}
    while len(ended) < PROCESSES:
        assert time.monotonic() - began < ROUND_TIMEOUT_S, "a run did not finish"
        for number, process in enumerate(processes):
            if number not in ended and process.poll() is not None:
                ended[number] = time.monotonic() - began
        time.sleep(0.02)
    outputs = [process.communicate() for process in processes]

    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == 0, out + err
        assert "Traceback" not in err, err
    ran = Counter(executions.read_text().split())
    assert ran == {f"OVL-{n}": 1 for n in range(1, TICKETS + 1)}, ran  # no agent ran twice
    assert dict(trailer_counts(repo)) == {f"OVL-{n}": 1 for n in range(1, TICKETS + 1)}
    assert {item["state"] for item in read_index(repo).values()} == {"COMPLETED"}
    starts = Counter(tid for record in run_records(repo) for tid, entry in record["tickets"].items() if entry["start"])
    assert set(starts.values()) == {1}, starts  # each ticket started by exactly one run

    workers = [n for n, (out, _) in enumerate(outputs) if "already running" not in out]
    refused = [n for n, (out, _) in enumerate(outputs) if "already running" in out]
    holder_end = max(ended[n] for n in workers)
    for number in refused:
        # it did not wait for the lock: it was done while the holder was still working
        assert ended[number] < holder_end, (ended, refused)
    return {"refused": len(refused), "late_noop_runs": len(workers) - 1,
            "refused_exit_s": [round(ended[n], 2) for n in refused], "holder_s": round(holder_end, 2)}


def test_four_runs_at_once_run_every_ticket_once(tmp_path: Path) -> None:
    figures = overlap_round(tmp_path)
    assert figures["refused"] + figures["late_noop_runs"] == PROCESSES - 1
    assert figures["refused"] >= 1  # the runs overlapped: at least one found the lock taken
    report("overlap", round=0, **figures)


@pytest.mark.slow
@pytest.mark.parametrize("round_number", range(1, 21))
def test_four_runs_at_once_twenty_rounds(tmp_path: Path, round_number: int) -> None:
    figures = overlap_round(tmp_path)
    assert figures["refused"] + figures["late_noop_runs"] == PROCESSES - 1
    report("overlap", round=round_number, **figures)
