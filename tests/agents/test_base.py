"""Helpers every agent shares: the SAGE-RESULT block, log tails, exit descriptions."""

from __future__ import annotations

from pathlib import Path

import pytest

from sage_stream.agents.base import ResultBlock, describe_returncode, find_result_block, read_log_tail, stopped_result
from sage_stream.process.supervise import AgentExit


class TestResultBlock:
    def test_a_block(self) -> None:
        text = "work...\n```SAGE-RESULT\nstatus: done\nsummary: added calc/add.py\n```\n"
        assert find_result_block(text) == ResultBlock("done", "added calc/add.py")

    def test_the_last_block_wins(self) -> None:
        text = (
            "```SAGE-RESULT\nstatus: blocked\nsummary: first try\n```\n"
            "more work\n"
            "```SAGE-RESULT\nstatus: done\nsummary: fixed it\n```"
        )
        assert find_result_block(text) == ResultBlock("done", "fixed it")

    def test_case_spacing_and_longer_fences(self) -> None:
        text = "  ````SAGE-RESULT\n  Status:  BLOCKED \n  summary:  needs: a key  \n  ````\n"
        assert find_result_block(text) == ResultBlock("blocked", "needs: a key")

    def test_unknown_status_and_template_summary(self) -> None:
        text = "```SAGE-RESULT\nstatus: done|blocked\nsummary: <one line>\n```"
        assert find_result_block(text) == ResultBlock(None, None)

    @pytest.mark.parametrize(
        "text", ["", "status: done\nsummary: x", "```\nstatus: done\n```", "```SAGE-RESULT\nstatus: done"]
    )
    def test_no_block(self, text: str) -> None:
        assert find_result_block(text) is None


def test_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_bytes(b"a" * 100 + b"\xff end")
    assert read_log_tail(log, limit=5) == "\ufffd end"
    assert read_log_tail(tmp_path / "missing") == ""


@pytest.mark.parametrize(
    ("returncode", "text"),
    [
        (0, "exit code 0"),
        (3, "exit code 3"),
        (-9, "killed by SIGKILL (exit 137)"),
        (-15, "killed by SIGTERM (exit 143)"),
        (143, "killed by SIGTERM (exit 143)"),  # the same death passed on by a shell or bwrap reads the same
        (None, "no exit code"),
    ],
)
def test_describe_returncode(returncode: int | None, text: str) -> None:
    assert describe_returncode(returncode) == text


@pytest.mark.parametrize(
    ("outcome", "kind"),
    [("timeout", "timeout"), ("idle_timeout", "timeout"), ("cancelled", "other"), ("failed_to_start", "setup")],
)
def test_stopped_result(outcome: str, kind: str) -> None:
    result = stopped_result(AgentExit(outcome, None, 1.0, "last words", "why", 1))
    assert (result.success, result.error_kind, result.summary, result.message) == (False, kind, "last words", "why")
