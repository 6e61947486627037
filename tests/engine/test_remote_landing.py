"""Landing onto a remote, part by part, against real bare repositories: pushes are plain
fast-forwards (rejected, refused and unreachable told apart), fetches are shared by the
tickets dispatched together, an unreachable remote is retried with backoff, the user's
ways to authenticate reach git, and the local branch follows only when it safely can."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sage_stream.engine.remote_landing import UNREACHABLE_BACKOFF_S, RemoteStopped, RemoteTarget
from sage_stream.errors import EXIT_REMOTE_REFUSED, EXIT_REMOTE_UNREACHABLE
from sage_stream.git import PUSHED, REFUSED, REJECTED, UNREACHABLE, Git


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def commit_file(repo: Path, name: str, text: str) -> str:
    (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"add {name}")
    return git(repo, "rev-parse", "HEAD").strip()


@pytest.fixture
def remote(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(origin.git, a clone of it sage works in, a teammate's clone)."""
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    clones = []
    for name in ("server", "teammate"):
        subprocess.run(["git", "clone", "-q", str(origin), str(tmp_path / name)], check=True, capture_output=True)
        git(tmp_path / name, "config", "user.name", name)
        git(tmp_path / name, "config", "user.email", f"{name}@example.invalid")
        clones.append(tmp_path / name)
    commit_file(clones[0], "README.md", "hello\n")
    git(clones[0], "push", "-q", "origin", "main")
    git(clones[1], "pull", "-q", "origin", "main")
    return origin, clones[0], clones[1]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_push_is_pushed_rejected_after_a_teammates_push_refused_by_a_hook_or_unreachable(remote, tmp_path):
    origin, server, teammate = remote
    repo = Git(server)
    assert repo.push_commit("origin", commit_file(server, "a.txt", "a"), "main").outcome == PUSHED
    commit_file(teammate, "t.txt", "t")  # the teammate's clone is behind: its push is not a fast-forward
    assert Git(teammate).push_commit("origin", git(teammate, "rev-parse", "HEAD").strip(), "main").outcome == REJECTED
    hook = origin / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'protected branch' >&2\nexit 1\n")
    hook.chmod(0o755)
    refused = repo.push_commit("origin", commit_file(server, "b.txt", "b"), "main")
    assert refused.outcome == REFUSED and "protected branch" in refused.detail
    git(server, "remote", "set-url", "origin", str(tmp_path / "gone.git"))
    assert repo.push_commit("origin", git(server, "rev-parse", "HEAD").strip(), "main").outcome == UNREACHABLE


def test_a_refused_push_stops_landing_with_exit_6(remote):
    origin, server, _ = remote
    hook = origin / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\nexit 1\n")
    hook.chmod(0o755)
    target = RemoteTarget(Git(server), name="origin", branch="main", sleep=lambda s: None)
    with pytest.raises(RemoteStopped) as stopped:
        target._push(commit_file(server, "c.txt", "c"))
    assert stopped.value.exit_code == EXIT_REMOTE_REFUSED


def test_an_unreachable_remote_is_retried_with_backoff_then_stops_with_exit_7(remote, tmp_path):
    _, server, _ = remote
    waits: list[float] = []
    target = RemoteTarget(Git(server), name="origin", branch="main", sleep=waits.append)
    fetched = target.fetch()
    git(server, "remote", "set-url", "origin", str(tmp_path / "gone.git"))
    with pytest.raises(RemoteStopped) as stopped:
        target.fetch()
    assert stopped.value.exit_code == EXIT_REMOTE_UNREACHABLE and "did not answer" in stopped.value.message
    assert waits == list(UNREACHABLE_BACKOFF_S)
    waits.clear()
    with pytest.raises(RemoteStopped) as stopped:
        target._push(commit_file(server, "d.txt", "d"))
    assert stopped.value.exit_code == EXIT_REMOTE_UNREACHABLE and waits == list(UNREACHABLE_BACKOFF_S)
    # a ticket dispatched meanwhile starts from the last tip fetched: landing merges anyway
    assert target.tip_for_dispatch() == fetched


def test_tickets_dispatched_together_share_one_fetch(remote):
    _, server, teammate = remote
    clock = Clock()
    target = RemoteTarget(Git(server), name="origin", branch="main", clock=clock)
    first = target.tip_for_dispatch()
    pushed = commit_file(teammate, "t.txt", "t")
    git(teammate, "push", "-q", "origin", "main")
    clock.now += 0.5
    assert target.tip_for_dispatch() == first  # the same moment: no second fetch
    clock.now += 5
    assert target.tip_for_dispatch() == pushed  # later: fetched again
    assert git(server, "rev-parse", "main").strip() == first  # the user's own refs are not touched by a fetch


def test_fetch_and_push_keep_the_users_ssh_agent_and_ssh_command(remote, tmp_path, monkeypatch):
    _, server, _ = remote
    seen = tmp_path / "ssh-saw.txt"
    fake_ssh = tmp_path / "fake-ssh"
    fake_ssh.write_text(f"#!/bin/sh\necho \"$SSH_AUTH_SOCK\" > '{seen}'\nexit 1\n")
    fake_ssh.chmod(0o755)
    monkeypatch.setenv("SSH_AUTH_SOCK", "/run/user/agent.sock")
    monkeypatch.setenv("GIT_SSH_COMMAND", str(fake_ssh))
    git(server, "remote", "set-url", "origin", "ssh://git.example.invalid/team/repo.git")
    target = RemoteTarget(Git(server), name="origin", branch="main", sleep=lambda s: None)
    with pytest.raises(RemoteStopped):
        target.fetch()
    assert seen.read_text() == "/run/user/agent.sock\n"


def test_the_local_branch_follows_a_push_only_when_it_can_fast_forward_a_clean_checkout(remote):
    origin, server, teammate = remote
    target = RemoteTarget(Git(server), name="origin", branch="main")
    old = git(server, "rev-parse", "main").strip()
    new = commit_file(teammate, "t.txt", "t")
    git(teammate, "push", "-q", "origin", "main")
    target.fetch()
    (server / "README.md").write_text("my edit\n")  # the checkout of main is dirty: main stays
    note = target.follow_local(new)
    assert note is not None and "uncommitted changes" in note
    assert git(server, "rev-parse", "main").strip() == old
    (server / "README.md").write_text("hello\n")
    assert target.follow_local(new) is None  # clean: main moves and its files come along
    assert git(server, "rev-parse", "main").strip() == new and (server / "t.txt").read_text() == "t"
    own = commit_file(server, "mine.txt", "mine")  # a local commit not on the remote: main stays
    assert "not on origin/main" in (target.follow_local(new) or "")
    assert git(server, "rev-parse", "main").strip() == own
