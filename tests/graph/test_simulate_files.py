"""Predictions keep apart tickets whose `files` overlap, by the very rule the scheduler uses."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from sage_stream.cli import run
from sage_stream.engine.scheduler import DispatchPlan
from sage_stream.graph.simulate import plan_workers, simulate
from sage_stream.tickets.models import Ticket

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)


def ticket(tid: str, priority: str, files: list[str], estimate: float = 10.0) -> Ticket:
    return Ticket.model_validate({"id": tid, "title": tid, "state": "UNPROCESSED", "priority": priority,
                                  "type": "implementation", "validation_type": "generic", "dependencies": [],
                                  "estimate": estimate, "files": files})


@pytest.mark.parametrize("policy", ["greedy", "batch"])
def test_two_tickets_on_one_file_are_predicted_one_after_the_other(policy):
    durations = {"A": 10.0, "B": 10.0}
    files = {"A": ["src/calc.py"], "B": ["src/calc.py"]}
    together = simulate(durations, {}, 2, policy=policy)
    apart = simulate(durations, {}, 2, policy=policy, files=files)
    assert together.makespan == 10.0
    assert apart.makespan == 20.0
    assert sorted(start for start, _, _ in apart.starts.values()) == [0.0, 10.0]


def test_the_prediction_starts_what_the_scheduler_starts():
    tickets = [ticket("A", "P0", ["src/**"]), ticket("B", "P1", ["src/calc.py"]), ticket("C", "P2", ["docs/**"])]
    plan = DispatchPlan(tickets={t.id: t for t in tickets}, bottom_levels={t.id: t.estimate for t in tickets}, now=NOW)
    first = plan.next_to_start(2)
    schedule = simulate({t.id: t.estimate for t in tickets}, {}, 2,
                        priority_rank={t.id: t.priority_rank for t in tickets},
                        files={t.id: t.files for t in tickets})
    at_zero = sorted(tid for tid, (start, _, _) in schedule.starts.items() if start == 0.0)
    assert first == ["A", "C"] and at_zero == ["A", "C"]  # B overlaps A: it waits in both
    assert schedule.starts["B"][0] == 10.0


def test_plan_workers_sees_no_gain_in_a_second_worker_for_one_file():
    plans = plan_workers({"A": 10.0, "B": 10.0}, {}, max_workers=3, files={"A": ["x.py"], "B": ["x.py"]})
    assert [plan.makespan for plan in plans] == [20.0, 20.0, 20.0]


def test_sage_plan_and_the_dry_run_serialize_tickets_on_one_file(git_repo, make_index, make_ticket, capsys):
    index = make_index(git_repo, [make_ticket("F-1", estimate=10, files=["src/calc.py"]),
                                  make_ticket("F-2", estimate=10, files=["src/calc.py"])])
    capsys.readouterr()
    run(["plan", "--json", "--index", str(index)])
    planned = {row["workers"]: row["makespan_minutes"] for row in json.loads(capsys.readouterr().out)["plans"]}
    assert planned[2] == 20.0
    run(["stream", "--dry-run", "--parallel=2", "--auto", "--json", "--index", str(index)])
    dry = json.loads(capsys.readouterr().out)
    assert dry["predicted_makespan_minutes"] == 20.0
    assert sorted(entry["start"] for entry in dry["starts"].values()) == [0.0, 10.0]


def test_validate_recommends_no_second_worker_for_tickets_on_one_file(git_repo, make_index, make_ticket, capsys):
    index = make_index(git_repo, [make_ticket(f"F-{n}", estimate=10, files=["src/calc.py"]) for n in (1, 2, 3)])
    capsys.readouterr()
    run(["validate", "--json", "--index", str(index)])
    report = json.loads(capsys.readouterr().out)
    assert report["summary"]["recommended_workers"] == 1  # they would only queue behind each other
    run(["plan", "--json", "--index", str(index)])
    assert json.loads(capsys.readouterr().out)["recommended_workers"] == 1
