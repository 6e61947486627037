"""One self-contained page: inline CSS, inline SVG, a little inline script; no network.

It opens offline and from a CI artifact. A live page (the run is going on) reloads itself
every few seconds with a `<meta http-equiv="refresh">`: a browser tab is a dashboard with
no server. The script holds no data (the page's text is in the markup, escaped): it only
sorts the table and shows a clicked element's details.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sage_stream.report.model import OUTCOMES, PHASES, ReportModel, TicketRow, Totals
from sage_stream.report.svg import (PHASE_OPACITY, colour, esc, graph_svg, seconds_text, state_class, svg_style,
                                    timeline_svg)

LIVE_RELOAD_S = 3

STYLE = """
body{font:13px/1.4 system-ui,sans-serif;margin:16px 20px;color:#1b1f24;background:#fff}
h1{font-size:20px;margin:0 0 4px} h2{font-size:15px;margin:22px 0 6px}
.sub{color:#555;margin-bottom:10px}
.totals{display:flex;flex-wrap:wrap;gap:8px}
.totals div{border:1px solid #dde1e6;border-radius:6px;padding:6px 10px;min-width:110px}
.totals b{display:block;font-size:16px}
.scroll{overflow:auto;border:1px solid #dde1e6;border-radius:6px;max-height:640px}
.below{content-visibility:auto;contain-intrinsic-size:auto 640px}
.dot{display:inline-block;width:9px;height:9px;border-radius:50%;margin-right:5px}
.legend span{display:inline-block;margin-right:12px}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-2px;border-radius:2px}
#details{white-space:pre-wrap;font:12px/1.4 ui-monospace,monospace;background:#f3f5f7;border-radius:6px;
  padding:8px;min-height:2.8em;margin:8px 0}
table{border-collapse:collapse;width:100%;font-size:12px}
th,td{border-bottom:1px solid #e6e8eb;padding:3px 6px;text-align:left;vertical-align:top}
th{cursor:pointer;background:#f3f5f7;position:sticky;top:0}
td[data-v]{text-align:right;font-variant-numeric:tabular-nums}

.bar,.node,.mark{cursor:pointer}
"""

SCRIPT = """
document.addEventListener('click',function(e){
  var t=e.target.closest&&e.target.closest('.bar,.node,.mark');
  if(t){var title=t.querySelector('title');document.getElementById('details').textContent=title?title.textContent:'';}
  var th=e.target.closest&&e.target.closest('th');
  if(th){var table=th.closest('table'),body=table.tBodies[0],i=th.cellIndex,
    up=th.dataset.dir!=='up';th.dataset.dir=up?'up':'down';
    var rows=Array.prototype.slice.call(body.rows);
    var key=function(row){var cell=row.cells[i];return cell.dataset.v||cell.textContent;};
    rows.sort(function(a,b){var x=key(a),y=key(b);
      var nx=parseFloat(x),ny=parseFloat(y);var c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:String(x).localeCompare(String(y));
      return up?c:-c;});
    rows.forEach(function(r){body.appendChild(r);});}
});
"""


def _page(title: str, body: str, *, reload_s: int | None = None) -> str:
    refresh = f'<meta http-equiv="refresh" content="{reload_s}">' if reload_s else ""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">{refresh}'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{esc(title)}</title>'
            f"<style>{STYLE}{svg_style()}</style></head><body>{body}<script>{SCRIPT}</script></body></html>\n")


def report_html(model: ReportModel) -> str:
    """The run's page; it reloads itself while the run is live."""
    totals = model.totals
    state = "live: this page reloads itself" if model.live else model.status
    body = [f"<h1>sage run {esc(model.run_id)}</h1>",
            f'<div class="sub">{esc(state)} · {model.workers} workers · onto {esc(model.target or "?")} · '
            f'agent {esc(model.agent or "?")}</div>', _totals_html(totals),
            "<h2>Timeline</h2>", _legend(), f'<div class="scroll" id="timeline-box">{timeline_svg(model)}</div>',
            '<div id="details">click a bar, a ticket or a mark for its details</div>',
            "<h2>Dependency graph</h2>", _graph_legend(),
            f'<div class="scroll below">{run_graph_svg(model)}</div>',
            "<h2>Tickets</h2>", f'<div class="scroll below">{_ticket_table(model.tickets)}</div>']
    return _page(f"sage run {model.run_id}", "".join(body), reload_s=LIVE_RELOAD_S if model.live else None)


def run_graph_svg(model: ReportModel) -> str:
    nodes = [(row.id, row.title, row.outcome) for row in model.tickets]
    return graph_svg(nodes, {row.id: row.deps for row in model.tickets}, model.critical_path)


def graph_html(nodes: Sequence[tuple[str, str, str]], deps: Mapping[str, Sequence[str]],
               critical: Sequence[str], *, title: str) -> str:
    """`sage graph --format html`: the whole backlog, coloured by state."""
    states = sorted({state for _, _, state in nodes})
    legend = "".join(f'<span><i style="background:{colour(state)}"></i>{esc(state)}</span>' for state in states)
    body = (f"<h1>{esc(title)}</h1><div class=\"sub\">{len(nodes)} tickets · critical path "
            f"{len(critical)} tickets, outlined in red</div><div class=\"legend\">{legend}</div>"
            f'<div class="scroll">{graph_svg(nodes, deps, critical)}</div>'
            '<div id="details">click a ticket for its details</div>')
    return _page(title, body)


def _totals_html(totals: Totals) -> str:
    def ratio(bound: float | None) -> str:
        return f" ({totals.makespan_s / bound:.2f}×)" if bound else ""
    cells = [
        ("makespan", seconds_text(totals.makespan_s)),
        ("lower bound", seconds_text(totals.lower_bound_s) + ratio(totals.lower_bound_s)),
        ("predicted", seconds_text(totals.predicted_s) + ratio(totals.predicted_s)),
        ("bound of what ran", seconds_text(totals.ran_lower_bound_s)),
        ("utilisation", f"{totals.utilisation:.0%}" if totals.utilisation is not None else "-"),
        ("landed", str(totals.landed)),
        ("landings / min", f"{totals.landings_per_minute:g}" if totals.landings_per_minute is not None else "-"),
        ("cost", f"${totals.cost_usd:.2f}" if totals.cost_usd is not None else "-"),
        ("tokens", f"{int(totals.tokens):,}" if totals.tokens is not None else "-"),
        ("attempts", str(totals.attempts)), ("retries", str(totals.retries)), ("reruns", str(totals.reruns)),
        ("deferred", ", ".join(f"{esc(k)} {v}" for k, v in sorted(totals.deferrals.items())) or "0"),
    ]
    return '<div class="totals">' + "".join(f"<div>{name}<b>{value}</b></div>" for name, value in cells) + "</div>"


def _legend() -> str:
    outcomes = "".join(f'<span><i style="background:{colour(o)}"></i>{o}</span>' for o in OUTCOMES[:-1])
    phases = "".join(f'<span><i style="background:#333;opacity:{PHASE_OPACITY[p]}"></i>{p}</span>' for p in PHASES)
    return (f'<div class="legend">{outcomes} · phases (lighter to darker): {phases} · '
            '<span><i style="border:2px solid #111"></i>critical path</span>'
            '<span><i style="background:#f5d76e"></i>paused</span>'
            '<span><i style="background:#f0a030"></i>conflict / rerun ▼</span>'
            '<span><i style="background:#b00020"></i>halt ▼</span> · dashed lines: lower bound, predicted</div>')


def _graph_legend() -> str:
    outcomes = "".join(f'<span><i style="background:{colour(o)}"></i>{o}</span>' for o in OUTCOMES)
    return f'<div class="legend">{outcomes} · <span><i style="border:2px solid #d00000"></i>critical path</span></div>'


def _ticket_table(rows: list[TicketRow]) -> str:
    head = ("ticket", "title", "outcome", "attempts", "wall", *PHASES, "cost $", "tokens", "category / message")
    out = ['<table id="tickets"><thead><tr>', *(f"<th>{name}</th>" for name in head), "</tr></thead><tbody>"]
    for row in rows:
        cells = [
            (row.id, f'<td>{esc(row.id)}{" ★" if row.critical else ""}</td>'),
            (None, f"<td>{esc(row.title)}</td>"),
            (None, f'<td><i class="dot {state_class(row.outcome)}"></i>{esc(row.outcome)}</td>'),
            (None, _num_cell(row.attempts, str(row.attempts))),
            (None, _num_cell(row.wall_s, seconds_text(row.wall_s))),
            *((None, _num_cell(row.seconds.get(p), seconds_text(row.seconds.get(p)))) for p in PHASES),
            (None, _num_cell(row.cost_usd, f"{row.cost_usd:.4f}" if row.cost_usd is not None else "-")),
            (None, _num_cell(row.tokens, f"{int(row.tokens):,}" if row.tokens is not None else "-")),
            (None, f"<td>{esc(_note(row))}</td>"),
        ]
        out.append(f'<tr data-ticket="{esc(row.id)}">' + "".join(cell for _, cell in cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _num_cell(value: float | None, shown: str) -> str:
    return f'<td data-v="{-1 if value is None else round(value, 2):g}">{esc(shown)}</td>'


def _note(row: TicketRow) -> str:
    parts = [part for part in (row.category, row.message or row.summary) if part]
    text = ": ".join(parts)
    return text if len(text) <= 200 else text[:199] + "…"
