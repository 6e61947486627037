"""`--parallel=auto`: `sage validate`, `sage plan`, `--dry-run` and the run apply one rule and agree."""

from __future__ import annotations

import json

import pytest

from sage_stream.cli import run
from sage_stream.process import cpus


@pytest.fixture
def two_cpus_plenty_of_memory(monkeypatch):
    monkeypatch.setattr(cpus, "cpu_budget", lambda **kwargs: cpus.CpuBudget(affinity=2, quota=None))
    monkeypatch.setattr(cpus, "available_memory_mb", lambda: 16_000.0)


def test_validate_plan_dry_run_and_the_run_agree_on_auto(git_repo, make_index, make_ticket, capsys,
                                                         two_cpus_plenty_of_memory):
    index = make_index(git_repo, [make_ticket(f"W-{n}", estimate=10, allow_empty=True, command=["true"])
                                  for n in range(1, 8)])
    capsys.readouterr()
    run(["validate", "--json", "--index", str(index)])
    validated = json.loads(capsys.readouterr().out)["summary"]
    run(["plan", "--json", "--index", str(index)])
    planned = json.loads(capsys.readouterr().out)
    run(["stream", "--dry-run", "--parallel=auto", "--auto", "--json", "--index", str(index)])
    dry = json.loads(capsys.readouterr().out)
    assert run(["stream", "--parallel=auto", "--auto", "--json", "--agent", "exec", "--sandbox", "none",
                "--index", str(index)]) == 0
    started = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"run_started"' in line][0]
    # 2 CPUs at 0.4 CPU per agent carry 5 agents (the old rule, CPUs // 2, gave 1)
    assert validated["auto_workers"] == planned["auto_workers"] == dry["workers"] == started["workers"] == 5
    assert validated["auto_workers_rule"] == planned["auto_workers_rule"] == dry["workers_reason"] \
        == started["workers_reason"]
    assert "2 usable CPUs" in dry["workers_reason"] and "0.4 per agent" in dry["workers_reason"]
