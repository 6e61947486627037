"""Outside a git repository, `sage stream` (and `sage retry --land`) say what `sage validate` says."""

from __future__ import annotations

import pytest

from sage_stream.cli import run


@pytest.mark.parametrize("args", [["stream", "--auto"], ["stream", "--dry-run"], ["retry", "X-1", "--land"]])
def test_outside_a_git_repository_stream_explains_itself_as_validate_does(tmp_path, make_index, make_ticket,
                                                                          capsys, args):
    index = make_index(tmp_path / "plain", [make_ticket("X-1", state="DEFERRED")])
    capsys.readouterr()
    assert run(["validate", "--index", str(index)]) == 1
    said = capsys.readouterr().out
    assert run([*args, "--index", str(index)]) == 1
    err = capsys.readouterr().err
    assert "is not inside a git work tree" in err and "run `git init` there" in err and "fatal:" not in err
    assert err.split("error: ", 1)[1].strip() in said  # the very words of `sage validate`
