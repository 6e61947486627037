"""The report page in a real browser (headless Chromium, offline): every ticket is there,
one lane per worker, bars in the order the events say, a screenshot that is not blank, and
ticket text that never becomes markup."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from bench.synthetic_run import synthetic_run, ticket_ids
from browser import DomElements, dump_dom, png_colours, screenshot
from sage_stream.engine import events as ev
from sage_stream.report.html import graph_html, report_html
from sage_stream.report.model import build_report


def write_page(tmp_path: Path, record_json: dict, name: str = "run.html") -> Path:
    page = tmp_path / name
    page.write_text(report_html(build_report(record_json)), encoding="utf-8")
    return page


@pytest.mark.parametrize("tickets, workers", [(12, 3), (300, 6)])
def test_every_ticket_one_lane_per_worker_and_bars_in_event_order(tmp_path, tickets, workers):
    run = synthetic_run(tickets, workers)
    page = write_page(tmp_path, run.record.to_json())
    dom = DomElements(dump_dom(page))

    assert [lane.attrs["data-worker"] for lane in dom.having("g", "lane")] == [str(n) for n in range(workers)]
    table_rows = {row.attrs["data-ticket"] for row in dom.having("tr") if "data-ticket" in row.attrs}
    graph_nodes = {node.attrs["data-ticket"] for node in dom.having("g", "node")}
    assert table_rows == graph_nodes == set(ticket_ids(tickets))
    # per worker, the bars' left-to-right order is the order the events started them in
    started = defaultdict(list)
    for event in run.events:
        if event.kind == ev.TICKET_STARTED:
            started[str(event.data["row"])].append(event.ticket)
    bars = dom.having("g", "bar")
    assert {bar.attrs["data-ticket"] for bar in bars} == set(ticket_ids(tickets))
    for worker, tickets in started.items():
        on_lane = sorted((float(bar.attrs["data-start"]), bar.attrs["data-ticket"]) for bar in bars
                         if bar.attrs["data-worker"] == worker)
        assert [ticket for _, ticket in on_lane] == tickets
    rerun = [bar for bar in bars if bar.attrs["data-outcome"] == "requeued"]
    assert rerun and all(bar.attrs["data-ticket"] in {b.attrs["data-ticket"] for b in bars if
                                                      b.attrs["data-outcome"] == "landed"} for bar in rerun)
    assert dom.having("g", "pause") and dom.having("g", "conflict") and dom.having("g", "halt")


def test_the_page_is_self_contained_and_the_screenshot_is_not_blank(tmp_path):
    page = write_page(tmp_path, synthetic_run(12, 3).record.to_json())
    markup = page.read_text(encoding="utf-8")
    assert "http://" not in markup.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in markup and "<link" not in markup and " src=" not in markup
    colours = png_colours(screenshot(page, tmp_path / "shot.png"))
    assert colours > 20, f"the screenshot shows {colours} colours: blank?"


HOSTILE = {
    "T-0001": '<script>document.title="pwned"</script>',
    "T-0002": '"><img src=x onerror="document.title=\'pwned\'">',
    "T-0003": "it's <b>bold</b> & \"quoted\" — ünïcødé ✓ 日本語 \u202e",
}


def test_hostile_ids_titles_and_summaries_stay_text(tmp_path):
    ids = ['<script>alert(1)</script>', 'x" onmouseover="alert(1)', "T-ü✓"]
    titles = dict(HOSTILE)
    titles.update({ids[0]: HOSTILE["T-0001"], ids[1]: HOSTILE["T-0002"], ids[2]: HOSTILE["T-0003"]})
    run = synthetic_run(3, 2, ids=ids, titles=titles, summaries={tid: HOSTILE["T-0002"] for tid in ids})
    page = write_page(tmp_path, run.record.to_json())
    dom_text = dump_dom(page)
    dom = DomElements(dom_text)

    assert len(dom.having("script")) == 1  # the page's own, nothing injected
    assert not dom.having("img") and not [b for b in dom.having("b") if "bold" in b.text]
    assert not [e for e in dom.elements if any(name.startswith("on") for name in e.attrs)]
    assert "<title>sage run" in dom_text  # the page's title was not rewritten by a script
    assert {row.attrs["data-ticket"] for row in dom.having("tr") if "data-ticket" in row.attrs} == set(ids)
    cells = "".join(text for element in dom.having("td") for text in element.text)
    assert HOSTILE["T-0001"] in cells and "ünïcødé ✓ 日本語" in cells


def test_the_backlog_graph_page_renders_every_ticket_by_state(tmp_path):
    nodes = [("A-1", "first", "completed"), ("A-2", '<script>x</script>', "in_progress"),
             ("A-3", "third", "unprocessed")]
    page = tmp_path / "graph.html"
    page.write_text(graph_html(nodes, {"A-2": ["A-1"], "A-3": ["A-2"]}, ["A-1", "A-2", "A-3"], title="g"),
                    encoding="utf-8")
    dom = DomElements(dump_dom(page))
    drawn = {node.attrs["data-ticket"]: node.attrs["data-state"] for node in dom.having("g", "node")}
    assert drawn == {"A-1": "completed", "A-2": "in_progress", "A-3": "unprocessed"}
    assert len(dom.having("path", "crit")) == 2
    assert len(dom.having("script")) == 1


def test_a_click_on_a_column_sorts_the_tickets_and_a_click_on_a_bar_shows_its_details(tmp_path):
    run = synthetic_run(12, 3)
    model = build_report(run.record.to_json())
    clicks = ("<script>document.querySelectorAll('#tickets th')[4].click();"
              "document.querySelector('.bar[data-ticket=\"T-0005\"] rect').dispatchEvent("
              "new MouseEvent('click', {bubbles: true}));</script>")
    page = tmp_path / "clicked.html"
    page.write_text(report_html(model).replace("</body>", clicks + "</body>"), encoding="utf-8")
    dom = DomElements(dump_dom(page))
    shown = [row.attrs["data-ticket"] for row in dom.having("tr") if "data-ticket" in row.attrs]
    by_wall = [row.id for row in sorted(model.tickets, key=lambda row: row.wall_s)]
    assert shown == by_wall  # shortest first
    [details] = [e for e in dom.elements if e.attrs.get("id") == "details"]
    assert "".join(details.text).startswith("T-0005 attempt 1: landed")
