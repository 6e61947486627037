"""What a run says and does about branches and identity: landed attempts pruned, no claim of work kept on a
branch that does not exist, the git identity it commits as."""

from __future__ import annotations

from sage_stream.cli import run


def commit_on(repo, run_git, branch: str, start: str, path: str, text: str) -> str:
    run_git(repo, "checkout", "-q", "-B", branch, start)
    (repo / path).write_text(text)
    run_git(repo, "add", path)
    run_git(repo, "commit", "-q", "-m", f"{branch}: {path}")
    return run_git(repo, "rev-parse", "HEAD").strip()


def test_a_run_deletes_landed_tickets_attempts_that_hold_nothing_new_and_keeps_the_rest(
        git_repo, make_index, make_ticket, run_git, capsys):
    base = run_git(git_repo, "rev-parse", "main").strip()
    commit_on(git_repo, run_git, "sage/T-1-attempt-1", base, "a.txt", "landed words\n")  # what landed, again
    commit_on(git_repo, run_git, "sage/T-1-attempt-2", base, "b.txt", "words never landed\n")
    commit_on(git_repo, run_git, "sage/T-2-attempt-1", base, "a.txt", "landed words\n")  # T-2 did not land
    run_git(git_repo, "checkout", "-q", "main")
    (git_repo / "a.txt").write_text("landed words\n")
    run_git(git_repo, "add", "a.txt")
    run_git(git_repo, "commit", "-q", "-m", "T-1 landed\n\nSage-Ticket: T-1")
    index = make_index(git_repo, [make_ticket("T-1", state="COMPLETED"),
                                  make_ticket("T-2", state="DEFERRED",
                                              defer_reason={"category": "scope_violation", "message": "m"})])
    capsys.readouterr()
    assert run(["stream", "--auto", "--plain", "--agent", "exec", "--sandbox", "none", "--index", str(index)]) == 0
    err = capsys.readouterr().err
    assert "deleted 1 earlier attempt branch of landed tickets" in err and "sage/T-1-attempt-1" in err
    branches = run_git(git_repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/sage/").split()
    assert branches == ["sage/T-1-attempt-2", "sage/T-2-attempt-1"]


def test_a_run_without_a_git_identity_says_which_one_it_uses(git_repo, make_index, make_ticket, run_git,
                                                             capsys, monkeypatch, tmp_path):
    run_git(git_repo, "config", "--unset", "user.name")
    run_git(git_repo, "config", "--unset", "user.email")
    run_git(git_repo, "config", "user.useConfigOnly", "true")  # no guessing from the host name
    empty = tmp_path / "empty-gitconfig"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("EMAIL", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.delenv(name, raising=False)
    index = make_index(git_repo, [make_ticket("ID-1", command=["true"], allow_empty=True)])
    capsys.readouterr()
    assert run(["stream", "--auto", "--plain", "--agent", "exec", "--sandbox", "none", "--index", str(index)]) == 0
    out = capsys.readouterr().out
    assert "no git identity (user.name / user.email) is set" in out
    assert "landed commits are made as sage-stream <sage@localhost>" in out
    assert run_git(git_repo, "log", "-1", "--format=%an <%ae>", "main").strip() == "sage-stream <sage@localhost>"


def test_recovery_does_not_claim_work_was_kept_on_a_branch_that_does_not_exist(git_repo, make_index, make_ticket,
                                                                                capsys):
    dead = {"run_id": "dead-run", "pid": 2**22 + 12345, "pid_create_time": 1.0, "started": "2026-12-02T09:00:00Z"}
    index = make_index(git_repo, [make_ticket("R-1", state="IN_PROGRESS", sage_run=dead, command=["true"],
                                              allow_empty=True)])
    capsys.readouterr()
    run(["stream", "--auto", "--plain", "--agent", "exec", "--sandbox", "none", "--index", str(index)])
    out = capsys.readouterr().out
    assert "R-1 was IN_PROGRESS in dead run dead-run: back to UNPROCESSED" in out
    assert "it had no branch yet (sage/R-1 does not exist): no work to keep" in out
    assert "kept on sage/R-1" not in out
