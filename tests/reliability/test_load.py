"""Load: no-op tickets drain with bounded memory and open file descriptors.

Default: runs of 5 and 30 tickets in this process; after each, the process holds exactly
the descriptors, threads and child processes it held before (a leak of one per ticket would
show as 30). Sampling a separate process is too coarse for a run of two seconds: pipes in
flight swing the count by 10 between samples.

`-m slow`: 2,000 tickets in a separate `sage` process sampled all along (bench/bench_load.py;
the figures in RELIABILITY.md come from it). Bounded means the scheduler does not hold more
as it drains: in the last third of the run the median count of open descriptors may not
exceed the first third's by more than a few (a leak of one per ticket would be hundreds),
nor may memory grow much.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.bench_load import make_repo, run_load
from sage_stream.cli import run

from .support import report

FD_SLACK = 5  # medians of samples: pipes and logs in flight (peaks of 5-20 measured) barely move them
RSS_GROWTH_MB = 40.0  # the index and run record grow with what landed; a leak per ticket would not stop


def check_bounded(result) -> None:
    assert result.exit_code == 0, result.stderr_tail
    assert result.completed == result.tickets and result.landed_commits == result.tickets
    assert result.late_fds <= result.early_fds + FD_SLACK, (result.early_fds, result.late_fds)
    assert result.late_rss_mb <= result.early_rss_mb + RSS_GROWTH_MB, (result.early_rss_mb, result.late_rss_mb)


def _held() -> tuple[int, int, int]:
    return (len(os.listdir("/proc/self/fd")), threading.active_count(), len(psutil.Process().children()))


def test_runs_of_five_and_thirty_tickets_give_back_every_descriptor_thread_and_process(tmp_path: Path) -> None:
    before = _held()
    for tickets in (5, 30):
        repo = make_repo(tmp_path / str(tickets), tickets)
        index = repo / ".sage" / "tickets" / "index.json"
        assert run(["stream", "--auto", "--parallel=2", "--plain", "--index", str(index)]) == 0
        states = [item["state"] for item in json.loads(index.read_text())["tickets"]]
        assert states == ["COMPLETED"] * tickets
        assert _held() == before, (tickets, before, _held())


@pytest.mark.slow
def test_two_thousand_no_op_tickets_drain_with_bounded_memory_and_descriptors(tmp_path: Path) -> None:
    result = run_load(2000, workers=2, root=tmp_path)
    check_bounded(result)
    report("load", tickets=result.tickets, seconds=result.seconds, peak_rss_mb=result.peak_rss_mb,
           peak_fds=result.peak_fds, early_rss_mb=result.early_rss_mb, late_rss_mb=result.late_rss_mb,
           early_fds=result.early_fds, late_fds=result.late_fds,
           first_landings_s_per_ticket=result.first_landings_s_per_ticket,
           last_landings_s_per_ticket=result.last_landings_s_per_ticket)
