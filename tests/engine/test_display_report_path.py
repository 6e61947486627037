"""The displays say where the run's page is: at the start (a browser tab on it is a live
dashboard), in the live view's header, and on the end-of-run line."""

from __future__ import annotations

from sage_stream.engine import events as ev
from sage_stream.engine.display import LiveDisplay, RunView, describe

PAGE = ".sage/runs/20261202T000000Z-abcdef.html"


def test_the_first_and_the_last_plain_line_name_the_page():
    started = describe(ev.Event(kind=ev.RUN_STARTED, data=dict(run_id="r", workers=2, report_path=PAGE)))
    finished = describe(ev.Event(kind=ev.RUN_FINISHED, data=dict(completed=1, exit_code=0, duration_s=3,
                                                                  report_path=PAGE)))
    assert started.endswith(f"; live report {PAGE}")
    assert finished.endswith(f"; report {PAGE}")


def test_the_live_header_names_the_page():
    view = RunView()
    view.apply(ev.Event(kind=ev.RUN_STARTED, data=dict(run_id="r", workers=2, report_path=PAGE)))
    assert LiveDisplay._header(view).endswith(f" · report {PAGE}")
