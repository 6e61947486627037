"""`sage report --format text`: the tickets table and the run's totals, for a terminal."""

from __future__ import annotations

from sage_stream.report.model import ReportModel
from sage_stream.report.svg import seconds_text
from sage_stream.text import one_line


def report_text(model: ReportModel) -> str:
    totals = model.totals
    lines = [f"run {model.run_id}: {model.status}, {model.workers} workers, onto {model.target or '?'}"]
    header = f"{'ticket':<16} {'outcome':<12} {'att':>3} {'wall':>8} {'agent':>8} {'checks':>8} {'cost $':>8}  title"
    lines += ["", header, "-" * len(header)]
    for row in model.tickets:
        cost = f"{row.cost_usd:.4f}" if row.cost_usd is not None else "-"
        star = "*" if row.critical else " "
        lines.append(f"{one_line(row.id, 15):<15}{star} {one_line(row.outcome, 12):<12} {row.attempts:>3} "
                     f"{seconds_text(row.wall_s):>8} {seconds_text(row.seconds.get('agent')):>8} "
                     f"{seconds_text(row.seconds.get('checks')):>8} {cost:>8}  {one_line(row.title, 60)}")
    bound = f", {totals.makespan_s / totals.lower_bound_s:.2f}x" if totals.lower_bound_s else ""
    lines += [
        "",
        f"makespan {seconds_text(totals.makespan_s)} (lower bound {seconds_text(totals.lower_bound_s)}{bound}; "
        f"predicted {seconds_text(totals.predicted_s)}; bound of what ran {seconds_text(totals.ran_lower_bound_s)})",
        f"utilisation {f'{totals.utilisation:.0%}' if totals.utilisation is not None else '-'}, "
        f"landed {totals.landed} ({totals.landings_per_minute or 0:g}/min), attempts {totals.attempts}, "
        f"retries {totals.retries}, reruns {totals.reruns}",
        f"cost {f'${totals.cost_usd:.2f}' if totals.cost_usd is not None else '-'}, "
        f"tokens {int(totals.tokens) if totals.tokens is not None else '-'}, deferred "
        + (", ".join(f"{one_line(k, 40)} {v}" for k, v in sorted(totals.deferrals.items())) or "0"),
        "* on the critical path of what ran",
    ]
    return "\n".join(lines)
