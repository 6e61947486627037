"""The timeline (one lane per worker) and the dependency graph, as inline SVG.

Every piece of ticket text goes through `esc` (ids, titles, summaries, messages, paths):
it is data, never markup. Hover shows an element's `<title>`; the page's script shows the
same text in its details box on a click.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from html import escape

from sage_stream.report.layout import layered_layout
from sage_stream.report.model import Bar, Mark, ReportModel

COLOURS = {
    "landed": "#2e9d5b", "deferred": "#d64541", "requeued": "#f0a030", "interrupted": "#8e6fbf",
    "running": "#3b82f6", "queued": "#13a3b5", "not started": "#c9ced6", "in_progress": "#3b82f6",
    "completed": "#2e9d5b", "unprocessed": "#c9ced6", "blocked": "#9aa3ad",
}
PHASE_OPACITY = {"prepare": 0.35, "agent": 1.0, "checks": 0.7, "queue": 0.18, "landing": 0.5}
MARK_COLOURS = {"pause": "#f5d76e", "conflict": "#f0a030", "rerun": "#f0a030", "halt": "#b00020"}
Scale = Callable[[float], float]  # seconds since the start -> x in pixels
LANE_H, BAR_H, LABEL_W, AXIS_H = 26, 18, 56, 28
NODE_W, NODE_H, COLUMN_GAP, ROW_GAP = 118, 20, 44, 6
TITLED_NODES, TITLED_NODE_W = 80, 230  # a graph this small has room for titles in its nodes


def esc(text: object) -> str:
    return escape(str(text), quote=True)


def colour(state: str) -> str:
    return COLOURS.get(state.lower(), "#9aa3ad")


def seconds_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def bar_tip(bar: Bar) -> str:
    phases = ", ".join(f"{p.phase} {seconds_text(p.end - p.start)}" for p in bar.phases)
    lines = [f"{bar.ticket} attempt {bar.attempt}: {bar.outcome}{' (still open)' if bar.open else ''}",
             bar.title, f"worker {bar.row}, {seconds_text(bar.start)} to {seconds_text(bar.end)} "
             f"({seconds_text(bar.end - bar.start)})", phases]
    if bar.cost_usd is not None or bar.tokens is not None:
        lines.append(f"cost ${bar.cost_usd or 0:.4f}, tokens {int(bar.tokens or 0)}")
    if bar.exit is not None:
        lines.append(f"agent: {bar.exit}, exit {bar.returncode}")
    if bar.category or bar.message:
        lines.append(f"{bar.category or ''}: {bar.message or ''}")
    if bar.log:
        lines.append(f"log: {bar.log}")
    return "\n".join(line for line in lines if line)


def _ticks(span: float) -> float:
    """A round tick interval giving about 10 ticks over `span` seconds."""
    raw = max(span / 10, 1.0)
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400):
        if step >= raw:
            return step
    return 3600 * math.ceil(raw / 3600)


OFF_SCALE = 2.0  # a bound or prediction beyond this many makespans is named, not drawn to scale


def timeline_span(model: ReportModel) -> float:
    """Seconds the timeline's width stands for: what ran, stretched to the lower bound and
    the prediction only when they are near it (estimates in minutes for agents that took
    seconds would squeeze every bar into a sliver)."""
    ran = max(model.totals.makespan_s, 1.0)
    near = [seconds for seconds in (model.totals.lower_bound_s, model.totals.predicted_s)
            if seconds and seconds <= OFF_SCALE * ran]
    return max([ran, *near])


def timeline_svg(model: ReportModel) -> str:
    span = timeline_span(model)
    per_lane = max((sum(1 for bar in model.bars if bar.row == lane) for lane in model.lanes), default=1)
    plot_w = min(max(1240, per_lane * 10), 16000)
    width = LABEL_W + plot_w + 12
    lanes_end = AXIS_H + LANE_H * len(model.lanes)
    height = lanes_end + 30  # a footer: the bounds' labels, one row each
    x = (lambda seconds: LABEL_W + seconds / span * plot_w)
    out = [f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">']
    step = _ticks(span)
    for tick in range(0, int(span // step) + 1):
        tx = x(tick * step)
        label = seconds_text(tick * step) if tx < width - 50 else ""
        out.append(f'<line x1="{tx:.1f}" y1="{AXIS_H - 6}" x2="{tx:.1f}" y2="{lanes_end}" stroke="#e3e6ea"/>'
                   f'<text x="{tx + 2:.1f}" y="{AXIS_H - 10}" fill="#555">{label}</text>')
    for index, lane in enumerate(model.lanes):
        y = AXIS_H + index * LANE_H
        out.append(f'<g class="lane" data-worker="{lane}"><rect x="0" y="{y}" width="{width}" height="{LANE_H}" '
                   f'fill="{"#f7f8fa" if index % 2 else "#ffffff"}"/><text x="6" y="{y + 17}" fill="#333">'
                   f'worker {lane}</text></g>')
    out.extend(_mark_svg(mark, x, lanes_end) for mark in model.marks)
    row_y = {lane: AXIS_H + index * LANE_H for index, lane in enumerate(model.lanes)}
    out.extend(_bar_svg(bar, x, row_y[bar.row]) for bar in sorted(model.bars, key=lambda bar: (bar.start, bar.row)))
    for number, (name, seconds, dash) in enumerate((("lower bound", model.totals.lower_bound_s, "6 3"),
                                                    ("predicted", model.totals.predicted_s, "2 3"))):
        if seconds:
            low = lanes_end + 12 + 13 * number
            if seconds > span:  # off the scale: named at the right edge
                name = f"{name} {seconds_text(seconds)}, off the scale \u2192"
                out.append(f'<g class="bound off-scale"><title>{esc(name)}</title><text x="{width - 4}" y="{low}" '
                           f'text-anchor="end" fill="#222">{esc(name)}</text></g>')
                continue
            lx = x(seconds)
            name = f"{name} {seconds_text(seconds)}"
            at_end = lx > width - 160  # the label goes left of its line, inside the picture
            out.append(f'<g class="bound"><title>{esc(name)}</title><line x1="{lx:.1f}" y1="{AXIS_H - 4}" '
                       f'x2="{lx:.1f}" y2="{low + 2}" stroke="#222" stroke-width="1.5" stroke-dasharray="{dash}"/>'
                       f'<text x="{lx - 3 if at_end else lx + 3:.1f}" y="{low}" '
                       f'text-anchor="{"end" if at_end else "start"}" fill="#222">{esc(name)}</text></g>')
    out.append("</svg>")
    return "".join(out)


def state_class(state: str) -> str:
    """`o-landed`, `o-not-started`: a CSS class from a state (anything else: `o-other`)."""
    name = state.lower().replace(" ", "-").replace("_", "-")
    return f"o-{name}" if name.replace("-", "").isalpha() and name.isascii() else "o-other"


def svg_style() -> str:
    """The CSS the SVG elements use (the page inlines it once rather than per element)."""
    states = "".join(f".{state_class(state)}{{fill:{paint}}}.dot.{state_class(state)}{{background:{paint}}}"
                     for state, paint in COLOURS.items())
    phases = "".join(f".{phase}{{fill-opacity:{opacity}}}" for phase, opacity in PHASE_OPACITY.items())
    return (f"{states}.o-other{{fill:#9aa3ad}}{phases}.bar .whole{{fill-opacity:.15}}"
            ".bar .edge{fill:none;stroke:#fff;stroke-width:.6}.bar.crit .edge{stroke:#111;stroke-width:2}"
            ".bar.open .edge{stroke-dasharray:3 2}.node rect{stroke:#555;stroke-width:.6}"
            ".node.crit rect{stroke:#d00000;stroke-width:2.5}.edge-line{fill:none;stroke:#9aa3ad;stroke-opacity:.8}"
            ".edge-line.crit{stroke:#d00000;stroke-width:2.2}.node text,.bar text{fill:#111}")


def _bar_svg(bar: Bar, x: Scale, y: float) -> str:
    left, right = x(bar.start), x(max(bar.end, bar.start))
    top = y + (LANE_H - BAR_H) / 2
    flags = (" crit" if bar.critical else "") + (" open" if bar.open else "")
    box = f'y="{top:.0f}" height="{BAR_H}"'
    parts = [f'<g class="bar {state_class(bar.outcome)}{flags}" data-ticket="{esc(bar.ticket)}" '
             f'data-worker="{bar.row}" data-start="{bar.start:.2f}" data-outcome="{esc(bar.outcome)}">'
             f'<title>{esc(bar_tip(bar))}</title>']
    if not bar.phases:  # a record from before phases were recorded: the attempt as one piece
        parts.append(f'<rect class="whole" x="{left:.1f}" {box} width="{max(right - left, 1.5):.1f}"/>')
    for phase in bar.phases:
        pl, pr = x(phase.start), x(max(phase.end, phase.start))
        name = phase.phase if phase.phase in PHASE_OPACITY else "other"
        parts.append(f'<rect class="{name}" x="{pl:.1f}" {box} width="{max(pr - pl, 0.8):.1f}"/>')
    parts.append(f'<rect class="edge" x="{left:.1f}" {box} width="{max(right - left, 1.5):.1f}"/>')
    if right - left > 7 * len(bar.ticket) + 6:
        parts.append(f'<text x="{left + 3:.1f}" y="{top + 13:.0f}">{esc(bar.ticket)}</text>')
    parts.append("</g>")
    return "".join(parts)


def _mark_svg(mark: Mark, x: Scale, height: float) -> str:
    left = x(mark.start)
    tip = f"<title>{esc(mark.kind)}{' ' + esc(mark.ticket) if mark.ticket else ''}: {esc(mark.text)}</title>"
    paint = MARK_COLOURS.get(mark.kind, "#888")
    if mark.kind == "pause" and mark.end is not None:
        width = max(x(mark.end) - left, 2)
        return (f'<g class="mark pause">{tip}<rect x="{left:.1f}" y="{AXIS_H}" width="{width:.1f}" '
                f'height="{height - AXIS_H}" fill="{paint}" fill-opacity="0.35"/></g>')
    weight = 'stroke-width="1.5"' if mark.kind == "halt" else 'stroke-width="1" stroke-opacity="0.45"'
    return (f'<g class="mark {esc(mark.kind)}">{tip}<line x1="{left:.1f}" y1="{AXIS_H - 4}" x2="{left:.1f}" '
            f'y2="{height}" stroke="{paint}" {weight}/><path d="M{left - 5:.1f},{AXIS_H - 9} '
            f'L{left + 5:.1f},{AXIS_H - 9} L{left:.1f},{AXIS_H - 1} Z" fill="{paint}"/></g>')


def graph_svg(nodes: Sequence[tuple[str, str, str]], deps: Mapping[str, Sequence[str]],
              critical: Sequence[str], *, standalone: bool = False) -> str:
    """`nodes`: (id, title, state) in index order; `deps`: id -> its dependencies.
    `standalone`: an .svg file of its own, carrying its style (a page has it once)."""
    placed = layered_layout([node for node, _, _ in nodes], deps)
    on_path = set(critical)
    path_edges = set(zip(critical, critical[1:]))
    columns = max((spot.column for spot in placed.values()), default=0) + 1
    rows = max((spot.row for spot in placed.values()), default=0) + 1
    node_w = TITLED_NODE_W if len(nodes) <= TITLED_NODES else NODE_W
    width, height = columns * (node_w + COLUMN_GAP) + 10, rows * (NODE_H + ROW_GAP) + 10
    at = {node: (5 + spot.column * (node_w + COLUMN_GAP), 5 + spot.row * (NODE_H + ROW_GAP))
          for node, spot in placed.items()}
    out = [f'<svg id="graph" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="10">']
    if standalone:
        out.append(f"<style>{svg_style()}</style>")
    edges = [(dep, node) for node, _, _ in nodes for dep in deps.get(node, ()) if dep in at]
    for dep, node in sorted(edges, key=lambda edge: edge in path_edges):
        (x1, y1), (x2, y2) = at[dep], at[node]
        x1, y1, y2 = x1 + node_w, y1 + NODE_H / 2, y2 + NODE_H / 2
        bend = max((x2 - x1) / 2, 12)
        crit = " crit" if (dep, node) in path_edges else ""
        out.append(f'<path class="edge-line{crit}" d="M{x1:.0f},{y1:.0f} C{x1 + bend:.0f},{y1:.0f} '
                   f'{x2 - bend:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"/>')
    for node, title, state in nodes:
        nx, ny = at[node]
        crit = " crit" if node in on_path else ""
        label = f"{node} {title}" if node_w == TITLED_NODE_W and title else node
        room = node_w // 6 - 2  # characters at font-size 10
        label = label if len(label) <= room else label[:room - 1] + "…"
        out.append(f'<g class="node {state_class(state)}{crit}" data-ticket="{esc(node)}" data-state="{esc(state)}">'
                   f'<title>{esc(node)} ({esc(state)}): {esc(title)}</title><rect x="{nx}" y="{ny}" '
                   f'width="{node_w}" height="{NODE_H}" rx="4"/><text x="{nx + 5}" y="{ny + 14}">{esc(label)}</text>'
                   "</g>")
    out.append("</svg>")
    return "".join(out)
