"""sage_stream/git/: the one package that runs git."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sage_stream.errors import SageError
from sage_stream.git import FALLBACK_EMAIL, FALLBACK_NAME, Git, GitError


def sh(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"git {args}: {result.stderr}"
    return result.stdout


def commit_file(repo: Path, name: str, text: str, message: str = "change") -> str:
    path = repo / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    sh(repo, "add", "--", name)
    sh(repo, "commit", "-q", "-m", message)
    return sh(repo, "rev-parse", "HEAD").strip()


@pytest.fixture
def repo(git_repo: Path) -> Git:
    return Git(git_repo, worktree_lock=git_repo / ".sage" / "worktree.lock")


def test_reading_the_repository(repo: Git) -> None:
    assert repo.toplevel() == repo.repo.resolve()
    assert repo.version() >= (2, 38, 0)
    assert repo.current_branch() == "main"
    head = repo.rev_parse("main")
    assert head is not None and len(head) == 40
    assert repo.rev_parse("no-such-branch") is None
    assert repo.rev_parse("--help") is None  # never taken for an option
    assert repo.common_dir() == (repo.repo / ".git").resolve()


def test_current_branch_is_none_when_detached(repo: Git) -> None:
    sh(repo.repo, "checkout", "-q", "--detach")
    assert repo.current_branch() is None


def test_a_failing_command_names_itself_and_gits_message(repo: Git) -> None:
    with pytest.raises(GitError) as caught:
        repo.run("rev-parse", "--verify", "does-not-exist")
    assert isinstance(caught.value, SageError)
    assert "git rev-parse --verify does-not-exist" in caught.value.message
    assert "fatal" in caught.value.message


def test_is_clean_tracks_tracked_files_and_optionally_untracked(repo: Git) -> None:
    assert repo.is_clean(repo.repo)
    (repo.repo / "untracked.txt").write_text("x")
    assert repo.is_clean(repo.repo)
    assert not repo.is_clean(repo.repo, include_untracked=True)
    (repo.repo / "README.md").write_text("changed\n")
    assert not repo.is_clean(repo.repo)


def test_looking_at_a_users_checkout_never_writes_its_index(repo: Git) -> None:
    """The user may run `git commit` in the checkout sage polls while landings wait: sage
    must never hold its index.lock. A plain `git status` would write the index back after
    refreshing a touched file's stat data; the checks sage makes there only read."""
    import os
    import time

    index = repo.repo / ".git" / "index"
    readme = repo.repo / "README.md"
    later = time.time() + 5
    os.utime(readme, (later, later))  # same content, new stat data: a refresh would rewrite the index
    before = index.stat()
    assert repo.is_clean(repo.repo)
    assert not repo.has_unstaged_changes(repo.repo)
    after = index.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    (repo.repo / ".git" / "index.lock").write_text("")  # the user's commit in progress
    readme.write_text("edited\n")
    assert not repo.is_clean(repo.repo)
    assert repo.has_unstaged_changes(repo.repo)
    assert not repo.has_unstaged_changes(repo.repo, excluding=("README.md",))


def test_staged_changes_are_not_unstaged_ones(repo: Git) -> None:
    (repo.repo / "README.md").write_text("staged\n")
    sh(repo.repo, "add", "README.md")
    assert not repo.is_clean(repo.repo)
    assert not repo.has_unstaged_changes(repo.repo)
    (repo.repo / "README.md").write_text("staged, then edited again\n")
    assert repo.has_unstaged_changes(repo.repo)


def test_repository_hooks_never_run(repo: Git, tmp_path: Path) -> None:
    """An agent can write hooks into the repository; none of our git calls may run them."""
    witness = tmp_path / "hook-ran"
    hooks = repo.repo / ".git" / "hooks"
    for name in ("post-checkout", "pre-commit", "commit-msg", "post-commit", "reference-transaction"):
        hook = hooks / name
        hook.write_text(f"#!/bin/sh\necho {name} >> '{witness}'\n")
        hook.chmod(0o755)
    worktree = repo.repo / ".sage" / "worktrees" / "T-1"
    repo.worktree_add(worktree, "sage/T-1", "main")
    (worktree / "new.txt").write_text("new\n")
    tip = repo.snapshot(worktree, "snapshot")
    assert repo.update_ref("refs/heads/main", tip, repo.rev_parse("main") or "")
    assert not witness.exists()


def test_worktrees_are_listed_with_their_branches(repo: Git) -> None:
    path = repo.repo / ".sage" / "worktrees" / "with space"
    repo.worktree_add(path, "sage/T-1", "main")
    by_path = {info.path: info for info in repo.worktrees()}
    assert by_path[repo.repo.resolve()].branch == "main"
    assert by_path[path.resolve()].branch == "sage/T-1"
    assert by_path[path.resolve()].head == repo.rev_parse("main")
    repo.worktree_remove(path)
    assert path.resolve() not in {info.path for info in repo.worktrees()}
    assert not path.exists()


def test_concurrent_worktree_adds_all_succeed(repo: Git) -> None:
    """Unserialized, parallel `worktree add` loses some of them (engine-facts.md)."""
    root = repo.repo / ".sage" / "worktrees"
    errors: list[BaseException] = []
    start_together = threading.Barrier(16)

    def add(i: int) -> None:
        start_together.wait()
        try:
            repo.worktree_add(root / f"T-{i}", f"sage/T-{i}", "main")
        except BaseException as error:  # collected: a thread's exception would be lost
            errors.append(error)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    branches = {info.branch for info in repo.worktrees()}
    assert {f"sage/T-{i}" for i in range(16)} <= branches
    for i in range(16):
        assert (root / f"T-{i}" / "README.md").is_file()


def test_worktree_remove_of_a_vanished_directory_prunes_it(repo: Git) -> None:
    path = repo.repo / ".sage" / "worktrees" / "gone"
    repo.worktree_add(path, "sage/gone", "main")
    subprocess.run(["rm", "-rf", str(path)], check=True)
    repo.worktree_remove(path)
    assert path.resolve() not in {info.path for info in repo.worktrees()}


def test_snapshot_captures_new_modified_deleted_and_spaced_files(repo: Git) -> None:
    commit_file(repo.repo, "keep.txt", "keep\n")
    commit_file(repo.repo, "delete me.txt", "bye\n")
    worktree = repo.repo / ".sage" / "worktrees" / "T-1"
    repo.worktree_add(worktree, "sage/T-1", "main")
    old = repo.rev_parse("sage/T-1")
    (worktree / "README.md").write_text("modified\n")
    (worktree / "delete me.txt").unlink()
    (worktree / "new dir").mkdir()
    (worktree / "new dir" / "a file.txt").write_text("new\n")
    (worktree / "line\nbreak.txt").write_text("odd name\n")
    tip = repo.snapshot(worktree, "sage: T-1 work")
    assert tip != old
    assert repo.rev_parse("sage/T-1") == tip  # on the worktree's branch
    assert sorted(repo.changed_paths(old or "", tip)) == sorted(
        ["README.md", "delete me.txt", "new dir/a file.txt", "line\nbreak.txt"]
    )
    assert sh(repo.repo, "show", f"{tip}:README.md") == "modified\n"
    assert repo.is_clean(worktree, include_untracked=True)


def test_snapshot_of_a_clean_worktree_keeps_the_tip_and_includes_agent_commits(repo: Git) -> None:
    worktree = repo.repo / ".sage" / "worktrees" / "T-1"
    repo.worktree_add(worktree, "sage/T-1", "main")
    start = repo.rev_parse("HEAD")
    committed = commit_file(worktree, "by-agent.txt", "agent\n")
    assert repo.snapshot(worktree, "nothing new") == committed
    (worktree / "later.txt").write_text("later\n")
    tip = repo.snapshot(worktree, "more")
    assert sorted(repo.changed_paths(start or "", tip)) == ["by-agent.txt", "later.txt"]


def test_snapshot_refuses_an_unresolved_merge(repo: Git) -> None:
    worktree = repo.repo / ".sage" / "worktrees" / "T-1"
    repo.worktree_add(worktree, "sage/T-1", "main")
    commit_file(worktree, "README.md", "ours\n")
    commit_file(repo.repo, "README.md", "theirs\n")
    subprocess.run(["git", "merge", "-q", "main"], cwd=worktree, capture_output=True)
    with pytest.raises(GitError, match="unresolved merge conflict in: README.md"):
        repo.snapshot(worktree, "markers")
    kept = repo.snapshot(worktree, "backup", allow_unmerged=True)
    assert "<<<<<<<" in sh(repo.repo, "show", f"{kept}:README.md")


def test_changed_paths_lists_both_sides_of_a_rename(repo: Git) -> None:
    old = commit_file(repo.repo, "old name.txt", "same content that is long enough\n")
    sh(repo.repo, "mv", "old name.txt", "new name.txt")
    sh(repo.repo, "commit", "-q", "-m", "rename")
    assert sorted(repo.changed_paths(old, "HEAD")) == ["new name.txt", "old name.txt"]


def test_merge_tree_clean_and_conflicting(repo: Git) -> None:
    base = commit_file(repo.repo, "f.txt", "a\nb\nc\n")
    sh(repo.repo, "checkout", "-q", "-b", "side")
    side = commit_file(repo.repo, "f.txt", "a\nSIDE\nc\n")
    other = commit_file(repo.repo, "g h.txt", "g\n")
    sh(repo.repo, "checkout", "-q", "main")
    main = commit_file(repo.repo, "f.txt", "a\nMAIN\nc\n")
    conflict = repo.merge_tree(main, side)
    assert not conflict.clean and conflict.tree is None
    assert conflict.conflicts == ["f.txt"]
    clean = repo.merge_tree(side, other)
    assert clean.clean and clean.conflicts == []
    assert clean.tree == repo.tree_of(other)
    assert repo.merge_base(main, side) == base
    assert sh(repo.repo, "status", "--porcelain") == ""  # nothing touched


def test_merge_tree_of_unrelated_histories_is_an_error(repo: Git) -> None:
    tree = repo.tree_of("main")
    orphan = repo.commit_tree(tree, [], "unrelated root")
    assert repo.merge_base("main", orphan) is None
    with pytest.raises(GitError):
        repo.merge_tree("main", orphan)


def test_update_ref_is_a_compare_and_swap(repo: Git) -> None:
    first = repo.rev_parse("main") or ""
    second = repo.commit_tree(repo.tree_of(first), [first], "second")
    third = repo.commit_tree(repo.tree_of(first), [first], "third")
    assert repo.update_ref("refs/heads/main", second, first)
    assert not repo.update_ref("refs/heads/main", third, first)  # moved: no raise
    assert repo.rev_parse("main") == second


def test_commit_tree_takes_the_message_verbatim(repo: Git) -> None:
    message = "subject $(touch pwned) `id`\n\n# not a comment\n-n\n"
    commit = repo.commit_tree(repo.tree_of("main"), [repo.rev_parse("main") or ""], message)
    assert sh(repo.repo, "cat-file", "commit", commit).split("\n\n", 1)[1] == message
    assert not (repo.repo / "pwned").exists()


def test_commits_with_trailer_matches_the_trailer_exactly(repo: Git) -> None:
    parent = repo.rev_parse("main") or ""
    tree = repo.tree_of(parent)
    body = "feat: x\n\nmentions Sage-Ticket: T-1 in prose\n"
    prose = repo.commit_tree(tree, [parent], body)
    similar = repo.commit_tree(tree, [prose], "feat: y\n\nSage-Ticket: T-10\n")
    exact = repo.commit_tree(tree, [similar], "feat: z\n\nCloses: #T-1\nSage-Ticket: T-1\n")
    repo.update_ref("refs/heads/main", exact, parent)
    assert repo.commits_with_trailer("main", "Sage-Ticket", "T-1") == [exact]
    assert repo.commits_with_trailer(f"{exact}..main", "Sage-Ticket", "T-1") == []
    assert repo.commits_with_trailer("main", "Sage-Ticket", "T-10", limit=1) == [similar]


def test_bring_along_updates_a_clean_checkout_and_refuses_when_blocked(repo: Git) -> None:
    old = repo.rev_parse("main") or ""
    worktree = repo.repo / ".sage" / "worktrees" / "T-1"
    repo.worktree_add(worktree, "sage/T-1", "main")
    new = commit_file(worktree, "added.txt", "added\n")
    assert repo.update_ref("refs/heads/main", new, old)
    (repo.repo / "added.txt").write_text("untracked in the way\n")
    assert not repo.bring_along(repo.repo, old, new)
    assert (repo.repo / "added.txt").read_text() == "untracked in the way\n"
    (repo.repo / "added.txt").unlink()
    assert repo.bring_along(repo.repo, old, new)
    assert (repo.repo / "added.txt").read_text() == "added\n"
    assert repo.is_clean(repo.repo, include_untracked=True)


def test_branch_delete(repo: Git) -> None:
    sh(repo.repo, "branch", "sage/T-1")
    repo.branch_delete("sage/T-1")
    assert repo.rev_parse("refs/heads/sage/T-1") is None


def test_no_identity_configured_uses_the_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-global-config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("EMAIL", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.delenv(var, raising=False)
    repo_dir = tmp_path / "bare-identity"
    repo_dir.mkdir()
    git = Git(repo_dir)
    git.run("init", "-q", "-b", "main")
    if git.run("var", "GIT_COMMITTER_IDENT", check=False).returncode == 0:
        pytest.skip("this machine gives git an identity without any configuration")
    tree = git.run("mktree", input="").stdout.strip()
    commit = git.commit_tree(tree, [], "root")
    assert git.run("log", "-1", "--format=%an <%ae>|%cn <%ce>", commit).stdout.strip() == (
        f"{FALLBACK_NAME} <{FALLBACK_EMAIL}>|{FALLBACK_NAME} <{FALLBACK_EMAIL}>"
    )


def test_a_configured_identity_is_never_overridden(repo: Git) -> None:
    commit = repo.commit_tree(repo.tree_of("main"), [repo.rev_parse("main") or ""], "x")
    assert repo.run("log", "-1", "--format=%an <%ae>", commit).stdout.strip() == "Sage Test <sage-test@example.com>"
    assert repo.fallback_identity() is None  # nothing to warn about at the start of a run


def test_variables_pointing_at_another_repository_are_ignored(
    repo: Git, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("GIT_INDEX_FILE", str(tmp_path / "other-index"))
    git = Git(repo.repo)
    assert git.rev_parse("main") == repo.rev_parse("main")


def test_status_is_read_with_renames_spaces_and_unmerged_entries() -> None:
    from sage_stream.git import _read_status

    oid = "a" * 40
    h = "0" * 40
    status = "\0".join([
        "# branch.oid " + oid, "# branch.head sage/T-1",
        f"u UU N... 100644 100644 100644 100644 {h} {h} {h} both edited.txt",
        f"2 R. N... 100644 100644 100644 {h} {h} R100 new name.txt", "u UU but a path.txt",
        f"u AA N... 000000 100644 100644 100644 {h} {h} {h} added twice.txt",
        f"1 .M N... 100644 100644 100644 {h} {h} plain.txt", "? untracked file.txt", "",
    ])
    # the rename's source ("u UU but a path.txt") is a path, not a status record
    assert _read_status(status) == (oid, True, ["added twice.txt", "both edited.txt"], False)
    assert _read_status("# branch.oid " + oid + "\0# branch.head x\0") == (oid, False, [], False)
    assert _read_status("# branch.oid (initial)\0# branch.head main\0") == (None, False, [], False)


def test_status_tells_when_adding_everything_surely_changes_the_tree() -> None:
    from sage_stream.git import _read_status

    h, head = "0" * 40, "# branch.oid " + "a" * 40
    untracked, edited = "? new file.txt", f"1 .M N... 100644 100644 100644 {h} {h} edited.txt"
    assert _read_status("\0".join([head, untracked, edited, ""])).tree_changes
    # staged and then undone in the work tree; a submodule's own edits; a rename: trees are compared
    for unsure in (f"1 MM N... 100644 100644 100644 {h} {h} undone.txt",
                   f"1 .M SC.. 160000 160000 160000 {h} {h} submodule",
                   f"2 R. N... 100644 100644 100644 {h} {h} R100 new\0old"):
        assert not _read_status("\0".join([head, untracked, unsure, ""])).tree_changes


def test_snapshot_of_a_staged_change_undone_in_the_work_tree_commits_nothing(repo: Git) -> None:
    worktree = repo.repo / ".sage" / "worktrees" / "T-1"
    repo.worktree_add(worktree, "sage/T-1", "main")
    start = repo.rev_parse("HEAD")
    original = (worktree / "README.md").read_text()
    (worktree / "README.md").write_text("staged\n")
    subprocess.run(["git", "add", "README.md"], cwd=worktree, check=True)
    (worktree / "README.md").write_text(original)  # the work tree is the head's again; the index is not
    assert repo.snapshot(worktree, "nothing really") == start


def test_snapshot_of_an_untouched_worktree_returns_its_tip_and_commits_nothing(repo: Git) -> None:
    worktree = repo.repo / ".sage" / "worktrees" / "T-1"
    repo.worktree_add(worktree, "sage/T-1", "main")
    start = repo.rev_parse("HEAD")
    assert repo.snapshot(worktree, "nothing") == start
    assert repo.rev_parse("refs/heads/sage/T-1") == start
    (worktree / "dir with space").mkdir()
    (worktree / "dir with space" / "new.txt").write_text("new\n")  # untracked in a new directory
    tip = repo.snapshot(worktree, "new file")
    assert tip != start and repo.changed_paths(start or "", tip) == ["dir with space/new.txt"]


def test_the_worktree_lock_excludes_threads_and_processes_and_is_reentrant(repo: Git, tmp_path: Path) -> None:
    import threading

    inside, most = [0], [0]
    guard = threading.Lock()

    def work() -> None:
        for _ in range(20):
            with repo.worktree_lock():
                with repo.worktree_lock():  # reentrant in one thread
                    with guard:
                        inside[0] += 1
                        most[0] = max(most[0], inside[0])
                    with guard:
                        inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 1
    # another process cannot take it while a thread here holds it
    probe = ("import sys; from filelock import FileLock, Timeout\n"
             "try:\n    FileLock(sys.argv[1]).acquire(timeout=0.2); print('taken')\n"
             "except Timeout:\n    print('held')\n")
    lock_path = str(repo.repo / ".sage" / "worktree.lock")
    with repo.worktree_lock():
        held = subprocess.run([sys.executable, "-c", probe, lock_path], capture_output=True, text=True).stdout
    free = subprocess.run([sys.executable, "-c", probe, lock_path], capture_output=True, text=True).stdout
    assert (held.strip(), free.strip()) == ("held", "taken")


def user_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gitconfig: str) -> Path:
    """A HOME of its own with `gitconfig` as the user's global git configuration."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(gitconfig, encoding="utf-8")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    for var in ("GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM", "GIT_CONFIG_NOSYSTEM", "GIT_AUTHOR_NAME",
                "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.delenv(var, raising=False)
    return home


def test_a_filter_in_the_users_global_config_never_runs_in_sages_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       make_git_repo) -> None:
    repo = make_git_repo(tmp_path / "repo")  # before the user's config has the filter
    witness = tmp_path / "filter-ran"
    home = user_home(tmp_path, monkeypatch, f"[filter \"evil\"]\n\tclean = touch {witness}; cat\n"
                                            f"[core]\n\tattributesFile = {tmp_path / 'attributes'}\n")
    (tmp_path / "attributes").write_text("* filter=evil\n", encoding="utf-8")
    git = Git(repo)
    head = git.rev_parse("HEAD")
    (git.repo / "new.txt").write_text("new\n", encoding="utf-8")
    assert git.snapshot(git.repo, "work") != head
    assert not witness.exists()
    assert (home / ".gitconfig").exists()


def test_the_identity_is_the_users_as_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_git_repo) -> None:
    home = user_home(tmp_path, monkeypatch, "[user]\n\tname = Global Person\n\temail = global@example.com\n")
    repo = make_git_repo(tmp_path / "repo")
    subprocess.run(["git", "config", "--unset", "user.name"], cwd=repo, check=True)
    subprocess.run(["git", "config", "--unset", "user.email"], cwd=repo, check=True)
    git = Git(repo)
    first = git.commit_tree(git.tree_of("main"), [], "one")
    (home / ".gitconfig").write_text("[user]\n\tname = Agent\n\temail = agent@example.com\n", encoding="utf-8")
    second = git.commit_tree(git.tree_of("main"), [], "two")
    for commit in (first, second):
        assert git.run("log", "-1", "--format=%an <%ae>|%cn", commit).stdout.strip() == (
            "Global Person <global@example.com>|Global Person")


def test_cleanliness_tells_untracked_from_ignored_files(repo: Git) -> None:
    worktree = repo.repo / ".sage" / "worktrees" / "T-1"
    repo.worktree_add(worktree, "sage/T-1", "main")
    assert repo.cleanliness(worktree) == (True, True)
    (worktree / ".gitignore").write_text("build/\n")  # untracked: not clean
    assert repo.cleanliness(worktree) == (False, False)
    commit_file(worktree, ".gitignore", "build/\n")
    (worktree / "build").mkdir()
    (worktree / "build" / "out.o").write_text("object\n")  # ignored: clean, but `git clean -ffdx` has work
    assert repo.cleanliness(worktree) == (True, False)
    (worktree / "README.md").write_text("edited\n")
    assert repo.cleanliness(worktree) == (False, False)
