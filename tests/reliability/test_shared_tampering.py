"""A change to the repository's git control files while several agents run: the agent
that made it is found by running the suspects again one at a time, and only it is
deferred.

Unsandboxed, nothing records which process wrote `.git/hooks/...`. Here the order is
forced: TAMPER-1 plants a hook while OTHER-1 runs, OTHER-1 exits first (so its turn's
check finds the hook, with TAMPER-1 still running), then TAMPER-1 exits. Before the fix
OTHER-1 was deferred for TAMPER-1's change and TAMPER-1's work landed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from .support import git, make_repo, py, read_index, run_stream, ticket, write_config, write_index


def log_span(spans: Path, name: str, what: str) -> str:
    return (f"import json, time\nwith open({str(spans)!r}, 'a') as out:\n"
            f"    out.write(json.dumps([{name!r}, {what!r}, time.time()]) + '\\n')\n")


def backlog(marks: Path) -> list[dict[str, Any]]:
    spans = marks / "spans"
    other = (log_span(spans, "OTHER-1", "start")
             + "import pathlib, time\n"
             f"deadline = time.time() + 30\nwhile not pathlib.Path({str(marks / 'planted')!r}).exists() "
             "and time.time() < deadline:\n    time.sleep(0.05)\n"
             "pathlib.Path('src/other.txt').write_text('o')\n"
             + log_span(spans, "OTHER-1", "end"))
    tamper = (log_span(spans, "TAMPER-1", "start")
              + "import pathlib, subprocess, time\n"
              "common = pathlib.Path(subprocess.run(['git', 'rev-parse', '--git-common-dir'], capture_output=True,"
              " text=True, check=True).stdout.strip()).absolute()\n"
              "(common / 'hooks').mkdir(exist_ok=True)\n"
              "planted = common / 'hooks' / 'pre-commit'\n"
              "planted.write_text('#!/bin/sh\\nexit 0\\n')\n"
              f"first = not pathlib.Path({str(marks / 'planted')!r}).exists()\n"
              f"pathlib.Path({str(marks / 'planted')!r}).write_text('yes')\n"
              "deadline = time.time() + 30\n"
              "while first and planted.exists() and time.time() < deadline:\n"
              "    time.sleep(0.05)  # until sage's check at OTHER-1's end undoes it\n"
              "pathlib.Path('src/tamper.txt').write_text('t')\n"
              + log_span(spans, "TAMPER-1", "end"))
    return [ticket("OTHER-1", py(other), files=["src/other.txt"]),
            ticket("TAMPER-1", py(tamper), files=["src/tamper.txt"])]


@pytest.fixture(scope="module")
def raced_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("shared-tampering")
    marks = root / "marks"
    marks.mkdir()
    repo = make_repo(root / "repo", files={"src/keep.txt": "keep\n"})
    write_config(repo, "[agent]\nsandbox = \"none\"\n")  # the sandbox would refuse the write to .git
    write_index(repo, backlog(marks))
    result = run_stream(repo, parallel=2)
    spans: dict[str, list[list[float]]] = {}
    for line in (marks / "spans").read_text().splitlines():
        name, what, when = json.loads(line)
        if what == "start":
            spans.setdefault(name, []).append([when, when])
        else:
            spans[name][-1][1] = when
    return {"repo": repo, "result": result, "tickets": read_index(repo), "spans": spans}


def test_the_first_round_ran_both_agents_at_once(raced_run):
    (other_start, other_end), (tamper_start, tamper_end) = raced_run["spans"]["OTHER-1"][0], \
        raced_run["spans"]["TAMPER-1"][0]
    assert tamper_start < other_end and other_start < tamper_end  # else this test proves nothing


def test_the_agent_that_changed_them_is_deferred_and_nothing_of_it_lands(raced_run):
    repo, item = raced_run["repo"], raced_run["tickets"]["TAMPER-1"]
    assert item["state"] == "DEFERRED", raced_run["result"].stdout
    why = item["defer_reason"]
    assert why["category"] == "scope_violation" and ".git/hooks/pre-commit" in why["message"], why
    assert "src/tamper.txt" not in git(repo, "ls-tree", "-r", "--name-only", "main")
    assert not (repo / ".git" / "hooks" / "pre-commit").exists()
    assert raced_run["result"].returncode == 3


def test_the_innocent_agent_lands_after_running_again_alone(raced_run):
    repo = raced_run["repo"]
    assert raced_run["tickets"]["OTHER-1"]["state"] == "COMPLETED", raced_run["result"].stdout
    assert git(repo, "show", "main:src/other.txt") == "o"
    assert "runs again with no other agent beside it" in raced_run["result"].stdout


def test_each_suspect_ran_again_with_nothing_beside_it(raced_run):
    spans = raced_run["spans"]
    assert len(spans["OTHER-1"]) == 2 and len(spans["TAMPER-1"]) == 2, spans
    for name, other in (("OTHER-1", "TAMPER-1"), ("TAMPER-1", "OTHER-1")):
        start, end = spans[name][1]
        assert all(end <= other_start or other_end <= start for other_start, other_end in spans[other]), spans


def test_a_check_that_plants_a_hook_is_its_tickets_doing(tmp_path: Path) -> None:
    """Checks run in the repository like agents: a hook one plants is undone when they end,
    and the ticket is deferred (before, nothing looked again after the checks: the ticket
    landed and the hook stayed for the user's next commit)."""
    plant = tmp_path / "plant.py"
    plant.write_text("import pathlib, subprocess\n"
                     "common = pathlib.Path(subprocess.run(['git', 'rev-parse', '--git-common-dir'], "
                     "capture_output=True, text=True, check=True).stdout.strip())\n"
                     "(common / 'hooks').mkdir(exist_ok=True)\n"
                     "(common / 'hooks' / 'pre-commit').write_text('#!/bin/sh\\nexit 0\\n')\n")
    repo = make_repo(tmp_path / "repo", files={"src/keep.txt": "keep\n"})
    write_config(repo, "[agent]\nsandbox = \"none\"\n")
    checked = ticket("CHECK-1", py("import pathlib; pathlib.Path('src/c.txt').write_text('c')"), files=["src/**"],
                     validation_config={"verification_scripts": [{"name": "plants a hook",
                                                                  "command": f"{sys.executable} {plant}"}]})
    write_index(repo, [checked])
    result = run_stream(repo, parallel=1)
    item = read_index(repo)["CHECK-1"]
    assert item["state"] == "DEFERRED", result.stdout + result.stderr
    why = item["defer_reason"]
    assert why["category"] == "scope_violation" and ".git/hooks/pre-commit" in why["message"], why
    assert "its checks" in why["message"]
    assert not (repo / ".git" / "hooks" / "pre-commit").exists()
    assert "src/c.txt" not in git(repo, "ls-tree", "-r", "--name-only", "main")
