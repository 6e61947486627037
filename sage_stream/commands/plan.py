"""`sage plan`: how long the remaining work takes with 1..8 workers, and how many to use.

The prediction replays the greedy scheduler on the tickets' `estimate`s (minutes):
every unfinished ticket is counted, DEFERRED ones too (they are still work to do),
and `not_before` waits are not modelled.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import compress
from operator import not_
from typing import Any

import click

from sage_stream.errors import EXIT_OK
from sage_stream.graph.analysis import Analysis, analyze, priority_rank
from sage_stream.graph.dependency_graph import DependencyGraph, gc_paused, read_sound_index
from sage_stream.graph.ordering import startable_count
from sage_stream.graph.simulate import WITHIN_BEST, WorkerPlan, plan_workers, recommend_workers, simulate
from sage_stream.process.cpus import MAX_AUTO_WORKERS, WorkerDecision, decide_workers
from sage_stream.tickets.models import Ticket
from sage_stream.tickets.store import IndexView, resolve_index_path

PLANNED_WORKERS = 8
_CLOSE = 1e-9


@dataclass
class PlanRow:
    workers: int
    makespan: float
    lower_bound: float


@dataclass
class Prediction:
    tickets: int
    total_minutes: float
    critical_path: list[str]
    critical_path_minutes: float
    rows: list[PlanRow]  # the counts planned: 1..8, plus an explicit --workers N above 8
    recommended_workers: int
    reason: str
    useful_workers: int = 1  # the graph's recommendation (graph/analysis.py), as a run's auto rule takes it
    auto_workers: WorkerDecision | None = None  # what --parallel=auto runs on this machine


@click.command("plan")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Show only this worker count (the recommendation compares 1..8 and N).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option("--index", "index_path", type=click.Path(dir_okay=False), default=None,
              help="The ticket index (default: .sage/tickets/index.json here or above).")
def command(workers: int | None, as_json: bool, index_path: str | None) -> int:
    """Predict the makespan for 1..8 workers and recommend a worker count."""
    with gc_paused():  # short-lived and allocation-heavy on a big index: see gc_paused
        loaded, graph = read_sound_index(resolve_index_path(index_path))
        prediction = predict(loaded.tickets, extra_workers=workers, graph=graph)
        prediction.auto_workers = decide_workers(
            None, startable_count(loaded.tickets, datetime.now(timezone.utc), at_most=MAX_AUTO_WORKERS),
            useful=prediction.useful_workers)
    shown = [row for row in prediction.rows if workers is None or row.workers == workers]
    if as_json:
        click.echo(json.dumps(plan_json(loaded, prediction, shown), indent=2))
    else:
        click.echo(plan_text(prediction, shown))
    return EXIT_OK



def predict(
    tickets: Sequence[Ticket], *, extra_workers: int | None = None, graph: DependencyGraph | None = None
) -> Prediction:
    """Greedy makespans for 1..8 workers (and `extra_workers`), the bound, the advice.
    `graph`, when given, is `DependencyGraph(tickets)`, built once by the caller."""
    if graph is None:
        graph = DependencyGraph(tickets)
    analysis = analyze(tickets, graph=graph)
    # every unfinished ticket (the first of each id), from the graph's columns
    nodes, unfinished = graph.nodes, list(map(not_, graph.completed))
    ids = list(compress(nodes.ids, unfinished))
    estimates = dict(zip(ids, compress(nodes.estimates, unfinished)))
    dependencies = dict(zip(ids, compress(nodes.dependencies, unfinished)))
    ranks = dict(zip(ids, map(priority_rank, compress(nodes.priorities, unfinished))))
    files = dict(zip(ids, compress(nodes.files, unfinished)))  # overlapping ones never run at once
    plans = plan_workers(estimates, dependencies, max_workers=PLANNED_WORKERS, priority_rank=ranks, files=files)
    if extra_workers is not None and extra_workers > PLANNED_WORKERS:
        schedule = simulate(estimates, dependencies, extra_workers, priority_rank=ranks, files=files)
        plans.append(WorkerPlan(extra_workers, schedule.makespan))
    recommended = recommend_workers(plans)
    rows = [PlanRow(plan.workers, plan.makespan, _lower_bound(analysis, plan.workers)) for plan in plans]
    return Prediction(
        tickets=len(estimates),
        total_minutes=analysis.total_minutes,
        critical_path=analysis.critical_path,
        critical_path_minutes=analysis.critical_path_minutes,
        rows=rows,
        recommended_workers=recommended,
        reason=recommendation_reason(plans, recommended, analysis.critical_path_minutes),
        useful_workers=analysis.recommended_workers,
    )


def recommendation_reason(plans: Sequence[WorkerPlan], recommended: int, critical_path: float) -> str:
    if not plans or max(plan.makespan for plan in plans) <= _CLOSE:
        return "nothing left to do"
    by_count = {plan.workers: plan.makespan for plan in plans}
    chosen = by_count[recommended]
    best = min(plans, key=lambda plan: (plan.makespan, plan.workers))
    if chosen <= critical_path + _CLOSE:
        reach = "reaches" if recommended == 1 else "reach"
        return (f"{_workers(recommended)} already {reach} the critical path ({critical_path:.1f} min):"
                " more workers cannot finish sooner")
    if recommended == best.workers:
        return f"{_workers(recommended)}, the best prediction of the counts planned ({chosen:.1f} min)"
    slack = round((WITHIN_BEST - 1) * 100)
    finish = "finishes" if recommended == 1 else "finish"
    return (f"{_workers(recommended)} {finish} in {chosen:.1f} min, within {slack}% of the best"
            f" prediction ({best.makespan:.1f} min with {best.workers}); more workers save less than that")


def _workers(count: int) -> str:
    return f"{count} worker{'s' if count != 1 else ''}"


def _lower_bound(analysis: Analysis, workers: int) -> float:
    return max(analysis.critical_path_minutes, analysis.total_minutes / workers)


# ---------------------------------------------------------------- output


def plan_text(prediction: Prediction, rows: Sequence[PlanRow]) -> str:
    if prediction.tickets == 0:
        return "Nothing left to do: every ticket is COMPLETED."
    path = " -> ".join(prediction.critical_path)
    lines = [
        f"Remaining work: {prediction.tickets} ticket{'s' if prediction.tickets != 1 else ''},"
        f" {prediction.total_minutes:.1f} min of agent time.",
        f"Critical path, {prediction.critical_path_minutes:.1f} min: {path}",
        "",
        "workers  predicted  lower bound",
    ]
    for row in rows:
        mark = "  <- recommended" if row.workers == prediction.recommended_workers else ""
        lines.append(f"{row.workers:>7}  {row.makespan:>5.1f} min  {row.lower_bound:>7.1f} min{mark}")
    lines += [
        "",
        f"Recommended: {prediction.reason}.",
        "(lower bound = max(critical path, total work / workers): no schedule beats it)",
    ]
    if prediction.auto_workers is not None:
        lines.append(f"--parallel=auto on this machine: {prediction.auto_workers.workers} "
                     f"({prediction.auto_workers.reason})")
    return "\n".join(lines)


def plan_json(loaded: IndexView, prediction: Prediction, rows: Sequence[PlanRow]) -> dict[str, Any]:
    return {
        "index": str(loaded.path),
        "tickets": prediction.tickets,
        "total_minutes": prediction.total_minutes,
        "critical_path": prediction.critical_path,
        "critical_path_minutes": prediction.critical_path_minutes,
        "plans": [
            {"workers": row.workers, "makespan_minutes": row.makespan, "lower_bound_minutes": row.lower_bound}
            for row in rows
        ],
        "recommended_workers": prediction.recommended_workers,
        "reason": prediction.reason,
        "auto_workers": prediction.auto_workers.workers if prediction.auto_workers else None,
        "auto_workers_rule": prediction.auto_workers.reason if prediction.auto_workers else None,
    }
