"""`sage report`: a run seen as one page (timeline, dependency graph, tickets, totals).

Built only from a run record's JSON (`.sage/runs/<run-id>.json`, folded from the run's
events by engine/run_record.py), so it sits below the engine: the engine writes the live
page with it, `sage report` and `sage graph --format svg|html` render with it.

    model.py    the record -> what the page shows (lanes, bars, critical path, totals)
    layout.py   the dependency graph laid out in layers, by sage itself
    svg.py      the timeline and the graph as inline SVG
    html.py     one self-contained page (inline CSS/SVG, a little inline script)
    text.py     the terminal summary
"""
