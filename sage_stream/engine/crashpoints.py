"""Named points where tests can kill the scheduler with SIGKILL, to prove nothing is lost.

Set `SAGE_TEST_CRASH_AT=<point>` (first time the point is reached) or `<point>#<n>`
(the n-th time). Unset, a crash point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "SAGE_TEST_CRASH_AT"
POINTS = (
    "before_start_edit",  # a ticket was chosen, nothing written yet
    "after_start_edit",  # IN_PROGRESS written, agent not started
    "after_agent_exit",  # the agent finished, nothing recorded
    "after_snapshot",  # work committed on the ticket branch, not queued
    "after_queue_put",  # queued, not landed
    "after_land",  # the target ref moved, the index not yet COMPLETED
    "after_complete_edit",  # COMPLETED written, queue entry not yet removed
    "after_defer_edit",  # DEFERRED written
)
_hits: dict[str, int] = {}


def crash_point(name: str) -> None:
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    point, _, nth = wanted.partition("#")
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= (int(nth) if nth.isdigit() else 1):
        os.kill(os.getpid(), signal.SIGKILL)
