"""What `sage stream` does so that a big index does not delay its first agent: what lives
the whole run (the index, the plan) is left out of the collector's passes while it runs."""

from __future__ import annotations

import gc

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
