"""Tickets parked until a time or until `sage retry`: counted, dated, and the command named."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from sage_stream.cli import run
from sage_stream.graph.parked import describe_parked, parked_tickets
from sage_stream.tickets.models import Ticket

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)


def deferred(tid: str, *, retryable: bool, not_before: str | None = None, **fields) -> dict:
    return {"id": tid, "title": f"Ticket {tid}", "state": "DEFERRED", "priority": "P1", "type": "implementation",
            "validation_type": "generic", "dependencies": [],
            "defer_reason": {"category": "timeout" if retryable else "scope_violation", "message": "m",
                             "retryable": retryable},
            **({"not_before": not_before} if not_before else {}), **fields}


def test_waiting_for_a_time_and_for_retry_are_counted_with_dates_and_commands() -> None:
    tickets = [Ticket.model_validate(raw) for raw in (
        deferred("T-2", retryable=True, not_before="2026-12-02T15:00:00Z"),
        deferred("T-1", retryable=True, not_before="2026-12-02T13:00:00Z"),
        deferred("T-3", retryable=True, not_before="2026-12-02T11:00:00Z"),  # its time has come: not parked
        deferred("S-1", retryable=False),
    )]
    parked = parked_tickets(tickets, NOW)
    assert [t.id for t in parked.waiting_for_time] == ["T-1", "T-2"]
    assert [t.id for t in parked.waiting_for_retry] == ["S-1"]
    timed, retry = describe_parked(parked)
    assert timed.startswith("2 tickets wait for their `not_before` (T-1, T-2) until 2026-12-02T13:00:00Z")
    assert "the last until 2026-12-02T15:00:00Z" in timed and "`sage retry T-1 T-2`" in timed
    assert retry.startswith("1 ticket is DEFERRED until you retry it (S-1)") and "`sage retry S-1`" in retry


def test_nothing_parked_says_nothing() -> None:
    ready = Ticket.model_validate({**deferred("U-1", retryable=False), "state": "UNPROCESSED"})
    assert not parked_tickets([ready], NOW)
    assert describe_parked(parked_tickets([ready], NOW)) == []


def test_a_run_with_nothing_ready_says_what_is_parked_and_how_to_start_it(git_repo, make_index, capsys) -> None:
    make_index(git_repo, [deferred("S-1", retryable=False),
                          deferred("T-1", retryable=True, not_before="2999-01-01T00:00:00Z")])
    code = run(["stream", "--auto", "--plain", "--agent", "exec", "--sandbox", "none",
                "--index", str(git_repo / ".sage/tickets/index.json")])
    out = capsys.readouterr().out
    assert code == 0
    assert "nothing is ready: 1 ticket waits for its `not_before` (T-1) until 2999-01-01T00:00:00Z" in out
    assert "nothing is ready: 1 ticket is DEFERRED until you retry it (S-1)" in out and "sage retry S-1" in out


def test_predictions_leave_out_parked_tickets_and_what_waits_on_them(git_repo, make_index, capsys) -> None:
    from sage_stream.graph.ordering import reachable_tickets

    ready = {"id": "V-1", "title": "v", "state": "UNPROCESSED", "priority": "P1", "type": "implementation",
             "validation_type": "generic", "dependencies": [], "estimate": 4}
    raw = [deferred("S-1", retryable=False), deferred("T-1", retryable=True, not_before="2999-01-01T00:00:00Z"),
           {**ready, "id": "U-1", "dependencies": ["S-1"]}, {**ready, "id": "W-1", "dependencies": ["V-1"]}, ready]
    tickets = {t["id"]: Ticket.model_validate(t) for t in raw}
    assert sorted(reachable_tickets(tickets, NOW)) == ["V-1", "W-1"]  # W-1 once V-1 lands in the run
    index = make_index(git_repo, raw)
    capsys.readouterr()
    run(["stream", "--dry-run", "--json", "--agent", "exec", "--sandbox", "none", "--index", str(index)])
    dry = json.loads(capsys.readouterr().out)
    assert dry["order"] == ["V-1", "W-1"] and dry["predicted_makespan_minutes"] == 8.0


def test_a_run_with_work_to_do_says_what_it_leaves_for_a_later_run(git_repo, make_index, capsys) -> None:
    ready = {"id": "V-1", "title": "v", "state": "UNPROCESSED", "priority": "P1", "type": "implementation",
             "validation_type": "generic", "dependencies": [], "command": ["true"], "allow_empty": True}
    index = make_index(git_repo, [deferred("S-1", retryable=False), {**ready, "id": "U-1", "dependencies": ["S-1"]},
                                  {**ready, "id": "U-2", "dependencies": ["U-1"]}, ready])
    code = run(["stream", "--auto", "--plain", "--agent", "exec", "--sandbox", "none", "--index", str(index)])
    out = capsys.readouterr().out
    assert code == 0 and "landed V-1" in out
    assert ("3 of the 4 unfinished tickets are left for a later run: they are, or wait on, tickets this run"
            " cannot start; `sage ready` says which and why") in out
    assert "1 ticket is DEFERRED until you retry it (S-1)" in out and "`sage retry S-1`" in out
    assert "nothing is ready" not in out


def test_a_run_that_can_reach_everything_says_nothing_of_later_runs(git_repo, make_index, capsys) -> None:
    ready = {"id": "V-1", "title": "v", "state": "UNPROCESSED", "priority": "P1", "type": "implementation",
             "validation_type": "generic", "dependencies": [], "command": ["true"], "allow_empty": True}
    index = make_index(git_repo, [ready, {**ready, "id": "V-2", "dependencies": ["V-1"]}])
    assert run(["stream", "--auto", "--plain", "--agent", "exec", "--sandbox", "none", "--index", str(index)]) == 0
    assert "later run" not in capsys.readouterr().out


def test_a_dry_run_of_exec_asks_a_command_only_of_the_tickets_the_run_can_start(
    git_repo, make_index, capsys
) -> None:
    # S-1 waits for `sage retry` and U-1 behind it: the run never starts them, so it does not
    # halt for their missing `command` (it lands V-1), and the dry run says the same
    ready = {"id": "V-1", "title": "v", "state": "UNPROCESSED", "priority": "P1", "type": "implementation",
             "validation_type": "generic", "dependencies": [], "command": ["true"], "allow_empty": True}
    unready = {key: value for key, value in ready.items() if key != "command"}
    index = make_index(git_repo, [deferred("S-1", retryable=False), {**unready, "id": "U-1", "dependencies": ["S-1"]},
                                  ready])
    argv = ["stream", "--auto", "--agent", "exec", "--sandbox", "none", "--index", str(index)]
    assert run([*argv, "--dry-run"]) == 0
    assert "ok    exec: every ticket to run has a `command`" in capsys.readouterr().out
    assert run([*argv, "--plain"]) == 0 and "landed V-1" in capsys.readouterr().out
    index_data = json.loads(index.read_text())
    assert [t["state"] for t in index_data["tickets"]] == ["DEFERRED", "UNPROCESSED", "COMPLETED"]
