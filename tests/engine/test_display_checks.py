"""The lines and table states for checks before landing, and why a run stopped starting tickets."""

from __future__ import annotations

from sage_stream.engine.display import CHECKING, RUNNING, RunView, describe
from sage_stream.engine.events import Event


def test_checking_and_checked_lines() -> None:
    checking = Event("ticket_checking", "CHK-1", {"checks": ["unit tests", "lint"], "turn": 1})
    assert describe(checking) == "checking CHK-1 after fix turn 1: 2 checks (unit tests, lint)"
    failed = Event("ticket_checked", "CHK-1", {"passed": False, "failed": ["unit tests"], "fix_turn_next": True})
    assert describe(failed) == "checks failed for CHK-1 (unit tests): the agent gets another turn"
    assert describe(Event("ticket_checked", "CHK-1", {"passed": True})) == "checks passed for CHK-1"


def test_a_ticket_row_shows_checking_then_running_again_for_its_fix_turn() -> None:
    view = RunView()
    view.apply(Event("ticket_started", "CHK-1", {"title": "t", "slot": 0}))
    view.apply(Event("ticket_checking", "CHK-1", {"checks": ["c"], "turn": 0}))
    assert view.active["CHK-1"].stage == CHECKING
    view.apply(Event("ticket_checked", "CHK-1", {"passed": False, "failed": ["c"], "fix_turn_next": True}))
    assert view.active["CHK-1"].stage == RUNNING


def test_the_final_line_says_what_was_spent_and_why_dispatch_stopped() -> None:
    line = describe(Event("run_finished", None, {
        "completed": 2, "deferred": 0, "interrupted": False, "remaining": 1, "exit_code": 0, "duration_s": 12,
        "total_cost_usd": 1.2, "stopped": "stopped starting tickets: cost $1.20 reached --max-cost $1.00"}))
    assert "$1.20 spent" in line and "stopped starting tickets: cost $1.20 reached --max-cost $1.00" in line
