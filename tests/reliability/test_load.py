"""Load: no-op tickets drain with bounded memory and open file descriptors.

The run and its sampling live in bench/bench_load.py (the figures in RELIABILITY.md come
from it). Default: 30 tickets. `-m slow`: 2,000 tickets. Bounded means the scheduler
does not hold more as it drains: in the last third of the run the median count of open
descriptors may not exceed the first third's by more than a few (a leak of one per ticket
would be hundreds at 2,000 tickets, tens at 30), nor may memory grow much.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.bench_load import run_load

from .support import report

FD_SLACK = 5  # medians of samples: pipes and logs in flight (peaks of 5-20 measured) barely move them
RSS_GROWTH_MB = 40.0  # the index and run record grow with what landed; a leak per ticket would not stop


def check_bounded(result) -> None:
    assert result.exit_code == 0, result.stderr_tail
    assert result.completed == result.tickets and result.landed_commits == result.tickets
    assert result.late_fds <= result.early_fds + FD_SLACK, (result.early_fds, result.late_fds)
    assert result.late_rss_mb <= result.early_rss_mb + RSS_GROWTH_MB, (result.early_rss_mb, result.late_rss_mb)


def test_thirty_no_op_tickets_drain_with_bounded_descriptors(tmp_path: Path) -> None:
    result = run_load(30, workers=2, root=tmp_path)
    check_bounded(result)


@pytest.mark.slow
def test_two_thousand_no_op_tickets_drain_with_bounded_memory_and_descriptors(tmp_path: Path) -> None:
    result = run_load(2000, workers=2, root=tmp_path)
    check_bounded(result)
    report("load", tickets=result.tickets, seconds=result.seconds, peak_rss_mb=result.peak_rss_mb,
           peak_fds=result.peak_fds, early_rss_mb=result.early_rss_mb, late_rss_mb=result.late_rss_mb,
           early_fds=result.early_fds, late_fds=result.late_fds,
           first_landings_s_per_ticket=result.first_landings_s_per_ticket,
           last_landings_s_per_ticket=result.last_landings_s_per_ticket)
