"""What `sage stream` does so that a big index does not delay its first agent: what lives
the whole run (the index, the plan) is left out of the collector's passes while it runs."""

from __future__ import annotations

import gc

import pytest

from sage_stream.cli import run
from sage_stream.engine import stream as engine_stream


def test_what_the_run_holds_is_frozen_while_it_runs_and_given_back_after(
        git_repo, make_index, make_ticket, monkeypatch, capsys):
    index = make_index(git_repo, [make_ticket("ID-1", command=["true"], allow_empty=True)])
    frozen_during: list[int] = []
    real_execute = engine_stream.StreamRun.execute

    def execute(self, plan, *args, **kwargs):
        frozen_during.append(gc.get_freeze_count())
        return real_execute(self, plan, *args, **kwargs)

    monkeypatch.setattr(engine_stream.StreamRun, "execute", execute)
    before = gc.get_freeze_count()
    assert run(["stream", "--auto", "--plain", "--agent", "exec", "--sandbox", "none", "--index", str(index)]) == 0
    assert frozen_during and frozen_during[0] > before  # the loaded index is among them
    assert gc.get_freeze_count() == before


@pytest.fixture
def graphs_built(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every DependencyGraph built, in order."""
    from sage_stream.graph import dependency_graph

    built: list[int] = []
    real_init = dependency_graph.DependencyGraph.__init__

    def counting_init(self, tickets, **kwargs):
        built.append(len(tickets))
        real_init(self, tickets, **kwargs)

    monkeypatch.setattr(dependency_graph.DependencyGraph, "__init__", counting_init)
    return built


def test_the_graph_validation_builds_is_the_one_the_plan_is_made_from(
        git_repo, make_index, make_ticket, graphs_built, capsys):
    index = make_index(git_repo, [make_ticket("ID-1", command=["true"], allow_empty=True),
                                  make_ticket("ID-2", command=["true"], allow_empty=True, dependencies=["ID-1"])])
    assert run(["stream", "--auto", "--plain", "--agent", "exec", "--sandbox", "none", "--index", str(index)]) == 0
    assert graphs_built == [2]  # once, by validation; the plan reuses it (100,000 tickets: 0.6 s)
    assert "landed" in capsys.readouterr().out


def test_the_plan_the_run_announces_is_what_it_can_reach_and_auto_workers_reuse_the_graph(
        git_repo, make_index, make_ticket, graphs_built, capsys):
    import json

    parked = make_ticket("GATE", state="DEFERRED", defer_reason={"category": "blocked", "message": "by hand",
                                                                  "retryable": False})
    index = make_index(git_repo, [make_ticket("ID-1", command=["true"], allow_empty=True), parked,
                                  make_ticket("ID-2", command=["true"], allow_empty=True, dependencies=["GATE"]),
                                  make_ticket("ID-3", command=["true"], allow_empty=True, dependencies=["ID-1"])])
    assert run(["stream", "--auto", "--parallel=auto", "--json", "--agent", "exec", "--sandbox", "none",
                "--index", str(index)]) == 0
    assert graphs_built == [4]  # --parallel=auto's analysis too uses the graph validation built
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    started = next(event for event in events if event["event"] == "run_started")
    assert list(started["tickets"]) == ["ID-1", "ID-3"]  # not GATE, nor ID-2 behind it
    assert started["tickets"]["ID-3"]["deps"] == ["ID-1"]
    assert sorted(event["ticket"] for event in events if event["event"] == "ticket_landed") == ["ID-1", "ID-3"]
