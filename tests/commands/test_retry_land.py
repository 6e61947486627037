"""`sage retry ID --land`: a deferred ticket's kept work lands without its agent running again."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sage_stream.cli import run
from sage_stream.engine.run_lock import RunLock, RunOwner, process_identity

PY = sys.executable


def write_cmd(path: str, text: str) -> list[str]:
    code = (f"import pathlib; p = pathlib.Path({path!r}); p.parent.mkdir(parents=True, exist_ok=True); "
            f"p.write_text({text!r})")
    return [PY, "-c", code]


def index_of(repo: Path) -> Path:
    return repo / ".sage" / "tickets" / "index.json"


def tickets_of(repo: Path) -> dict[str, dict]:
    return {t["id"]: t for t in json.loads(index_of(repo).read_text())["tickets"]}


def set_field(repo: Path, ticket_id: str, **fields) -> None:
    data = json.loads(index_of(repo).read_text())
    for item in data["tickets"]:
        if item["id"] == ticket_id:
            item.update(fields)
    index_of(repo).write_text(json.dumps(data, indent=2))


@pytest.fixture
def deferred_for_scope(git_repo, make_index, make_ticket, capsys) -> Path:
    """SCOPE-1 wrote docs/x.txt while its `files` allowed only src/**: DEFERRED, work kept."""
    make_index(git_repo, [make_ticket("SCOPE-1", command=write_cmd("docs/x.txt", "kept words\n"),
                                      files=["src/**"])])
    code = run(["stream", "--auto", "--plain", "--agent", "exec", "--sandbox", "none",
                "--index", str(index_of(git_repo))])
    capsys.readouterr()
    assert code == 3
    assert tickets_of(git_repo)["SCOPE-1"]["defer_reason"]["category"] == "scope_violation"
    return git_repo


def land(repo: Path, *ticket_ids: str) -> int:
    return run(["retry", *ticket_ids, "--land", "--index", str(index_of(repo))])


def test_kept_work_lands_once_files_allow_it_without_the_agent(deferred_for_scope, run_git, capsys):
    repo = deferred_for_scope
    # the agent's command would now write something else: landing must not run it again
    set_field(repo, "SCOPE-1", files=["docs/**"], command=write_cmd("docs/x.txt", "agent ran again\n"))
    assert land(repo, "SCOPE-1") == 0
    out = capsys.readouterr().out
    assert "landed sage/SCOPE-1 on main" in out
    assert "sage retry --land: checks are " in out  # the sandbox decision, said as a run says it
    ticket = tickets_of(repo)["SCOPE-1"]
    assert ticket["state"] == "COMPLETED"
    assert run_git(repo, "show", "main:docs/x.txt") == "kept words\n"
    assert "Sage-Ticket: SCOPE-1" in run_git(repo, "log", "-1", "--format=%B", "main")
    assert ticket["git"]["last_commit"]["sha"] == run_git(repo, "rev-parse", "main").strip()
    # what landed is on main now: its branch goes, as after a run's own landing
    assert "deleted sage/SCOPE-1" in out
    assert run_git(repo, "for-each-ref", "refs/heads/sage/SCOPE-1") == ""


def test_kept_work_still_out_of_scope_is_refused_and_nothing_changes(deferred_for_scope, run_git, capsys):
    repo = deferred_for_scope
    before_index, before_tip = index_of(repo).read_text(), run_git(repo, "rev-parse", "main")
    assert land(repo, "SCOPE-1") == 1
    err = capsys.readouterr().err
    assert "scope_violation" in err and "docs/x.txt" in err
    assert run_git(repo, "rev-parse", "main") == before_tip
    assert index_of(repo).read_text() == before_index
    assert run_git(repo, "rev-parse", "--verify", "refs/heads/sage/SCOPE-1")  # the work is still kept


def test_failing_checks_on_the_kept_work_land_nothing(deferred_for_scope, run_git, capsys):
    repo = deferred_for_scope
    failing = {"verification_scripts": [{"name": "needs-src", "command": f"{PY} -c 'import sys; sys.exit(4)'"}]}
    set_field(repo, "SCOPE-1", files=["docs/**"], validation_config=failing)
    before_tip = run_git(repo, "rev-parse", "main")
    assert land(repo, "SCOPE-1") == 1
    err = capsys.readouterr().err
    assert "the checks fail on sage/SCOPE-1" in err and "needs-src" in err
    assert run_git(repo, "rev-parse", "main") == before_tip
    assert tickets_of(repo)["SCOPE-1"]["state"] == "DEFERRED"
    assert "retry-SCOPE-1" not in run_git(repo, "worktree", "list")  # the scratch work tree is gone


def test_a_check_that_cannot_run_is_a_message_and_nothing_lands(deferred_for_scope, run_git, capsys):
    repo = deferred_for_scope
    broken = {"verification_scripts": [{"name": "unclosed", "command": "pytest 'unclosed"}]}
    set_field(repo, "SCOPE-1", files=["docs/**"], validation_config=broken)
    assert land(repo, "SCOPE-1") == 1
    assert "a check cannot run, nothing landed" in capsys.readouterr().err
    assert tickets_of(repo)["SCOPE-1"]["state"] == "DEFERRED"


def test_the_newest_attempt_branch_lands_when_the_ticket_branch_holds_nothing_new(
        deferred_for_scope, run_git, capsys):
    repo = deferred_for_scope
    kept = run_git(repo, "rev-parse", "sage/SCOPE-1").strip()
    run_git(repo, "update-ref", "refs/heads/sage/SCOPE-1-attempt-2", kept)
    run_git(repo, "update-ref", "refs/heads/sage/SCOPE-1", run_git(repo, "rev-parse", "main").strip())
    set_field(repo, "SCOPE-1", files=["docs/**"])
    assert land(repo, "SCOPE-1") == 0
    assert "landed sage/SCOPE-1-attempt-2 on main" in capsys.readouterr().out


def test_nothing_kept_is_a_clear_message(git_repo, make_index, make_ticket, capsys):
    make_index(git_repo, [make_ticket("NONE-1", state="DEFERRED")])
    assert land(git_repo, "NONE-1") == 1
    err = capsys.readouterr().err
    assert "nothing to land for NONE-1" in err and "sage retry NONE-1" in err
    assert tickets_of(git_repo)["NONE-1"]["state"] == "DEFERRED"


def test_a_completed_ticket_or_an_unknown_one_is_refused(git_repo, make_index, make_ticket, capsys):
    make_index(git_repo, [make_ticket("DONE-1", state="COMPLETED")])
    assert land(git_repo, "DONE-1") == 1
    assert "DONE-1 is COMPLETED" in capsys.readouterr().err
    assert land(git_repo, "NOPE-9") == 1
    assert "no ticket NOPE-9" in capsys.readouterr().err


def test_landing_kept_work_is_refused_while_a_run_holds_the_lock(deferred_for_scope):
    repo = deferred_for_scope
    set_field(repo, "SCOPE-1", files=["docs/**"])
    lock = RunLock(repo / ".sage")
    assert lock.acquire(wait=False)
    pid, created = process_identity()
    lock.write_owner(RunOwner(pid=pid, pid_create_time=created, run_id="other-run", started="2026-12-02T09:00:00Z"))
    try:  # another process: flock is per open file, and this process already holds it
        other = subprocess.run([PY, "-m", "sage_stream", "retry", "SCOPE-1", "--land", "--index",
                                str(index_of(repo))], capture_output=True, text=True, timeout=120)
    finally:
        lock.release()
    assert other.returncode == 1
    assert f"already running (pid {pid}" in other.stderr
    assert tickets_of(repo)["SCOPE-1"]["state"] == "DEFERRED"

