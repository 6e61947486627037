"""Landing a ticket: one commit on the target by compare-and-swap, or nothing at all."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from sage_stream.engine.landing import (
    ALREADY_LANDED,
    CONFLICT,
    LANDED,
    NO_CHANGES,
    SCOPE_VIOLATION,
    TARGET_DIRTY,
    LandingResult,
    commit_message,
    land_ticket,
    with_summary,
)
from sage_stream.git import Git
from sage_stream.tickets.models import Ticket


def sh(repo: Path, *args: str, input: str | None = None) -> str:
    result = subprocess.run(["git", *args], cwd=repo, input=input, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"git {args}: {result.stderr}"
    return result.stdout


def make_ticket(ticket_id: str = "TKT-001", **fields: Any) -> Ticket:
    data = {"id": ticket_id, "title": f"Add {ticket_id}", "state": "IN_PROGRESS", "type": "implementation"}
    return Ticket.model_validate({**data, **fields})


@pytest.fixture
def git(git_repo: Path) -> Git:
    return Git(git_repo, worktree_lock=git_repo / ".sage" / "worktree.lock")


def branch_work(git: Git, ticket_id: str, files: dict[str, str | None], *, start: str = "main") -> tuple[str, str]:
    """A ticket branch from `start` with `files` written (None deletes); (base, tip)."""
    base = git.rev_parse(start) or ""
    path = git.repo / ".sage" / "worktrees" / ticket_id
    git.worktree_add(path, f"sage/{ticket_id}", base)
    for name, text in files.items():
        target = path / name
        if text is None:
            target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
    tip = git.snapshot(path, f"work on {ticket_id}")
    return base, tip


def land(git: Git, ticket: Ticket, base: str, tip: str, **options: Any) -> LandingResult:
    arguments: dict[str, Any] = {
        "target_branch": "main",
        "ticket_tip": tip,
        "base": base,
        "ticket": ticket,
        "message": commit_message(ticket),
        "allowed_globs": [],
        "allow_empty": False,
        "landing_lock": git.repo / ".sage" / "commit.lock",
    }
    arguments.update(options)
    return land_ticket(git, **arguments)


def commits_since(git: Git, base: str) -> list[str]:
    return sh(git.repo, "rev-list", f"{base}..main").split()


def trailers(git: Git, commit: str) -> list[str]:
    message = sh(git.repo, "log", "-1", "--format=%B", commit)
    return sh(git.repo, "interpret-trailers", "--parse", input=message).splitlines()


def test_a_clean_landing_is_exactly_one_commit_with_the_trailer(git: Git) -> None:
    ticket = make_ticket()
    base, _ = branch_work(git, "TKT-001", {"a.txt": "a\n"})
    worktree = git.repo / ".sage" / "worktrees" / "TKT-001"
    (worktree / "b.txt").write_text("b\n")
    tip = git.snapshot(worktree, "second commit of the ticket")
    result = land(git, ticket, base, tip)
    assert result.outcome == LANDED
    assert commits_since(git, base) == [result.commit]  # the ticket's two commits, squashed
    assert sh(git.repo, "rev-parse", f"{result.commit}^").strip() == base
    assert sorted(result.paths) == ["a.txt", "b.txt"]
    assert "Sage-Ticket: TKT-001" in trailers(git, result.commit or "")
    assert "Closes: #TKT-001" in trailers(git, result.commit or "")


def test_two_tickets_from_the_same_base_land_one_after_the_other(git: Git) -> None:
    base, tip1 = branch_work(git, "TKT-001", {"one.txt": "1\n"})
    _, tip2 = branch_work(git, "TKT-002", {"two.txt": "2\n"}, start=base)
    first = land(git, make_ticket("TKT-001"), base, tip1)
    second = land(git, make_ticket("TKT-002"), base, tip2)
    assert (first.outcome, second.outcome) == (LANDED, LANDED)
    assert commits_since(git, base) == [second.commit, first.commit]
    assert sh(git.repo, "ls-tree", "--name-only", "main").split() == [".gitignore", "README.md", "one.txt", "two.txt"]


def test_a_conflict_leaves_the_target_untouched_and_names_the_paths(git: Git) -> None:
    base, tip1 = branch_work(git, "TKT-001", {"README.md": "from one\n"})
    _, tip2 = branch_work(git, "TKT-002", {"README.md": "from two\n", "other.txt": "x\n"}, start=base)
    land(git, make_ticket("TKT-001"), base, tip1)
    before = git.rev_parse("main")
    result = land(git, make_ticket("TKT-002"), base, tip2)
    assert result.outcome == CONFLICT
    assert result.paths == ["README.md"]
    assert result.commit is None
    assert git.rev_parse("main") == before
    assert (git.repo / "README.md").read_text() == "from one\n"  # brought along by the first
    assert git.is_clean(git.repo)
    grep = subprocess.run(["git", "grep", "-l", "<<<<<<<", "main"], cwd=git.repo, capture_output=True)
    assert grep.returncode == 1  # no conflict markers committed


def test_no_changes(git: Git) -> None:
    base, tip = branch_work(git, "TKT-001", {})
    result = land(git, make_ticket(), base, tip)
    assert result.outcome == NO_CHANGES
    assert commits_since(git, base) == []


def test_allow_empty_lands_an_empty_commit(git: Git) -> None:
    base, tip = branch_work(git, "TKT-001", {})
    result = land(git, make_ticket(), base, tip, allow_empty=True)
    assert result.outcome == LANDED
    assert commits_since(git, base) == [result.commit]
    assert git.tree_of(result.commit or "") == git.tree_of(base)


def test_changes_already_on_the_target_are_no_changes(git: Git) -> None:
    base, tip1 = branch_work(git, "TKT-001", {"same.txt": "same\n"})
    _, tip2 = branch_work(git, "TKT-002", {"same.txt": "same\n"}, start=base)
    land(git, make_ticket("TKT-001"), base, tip1)
    assert land(git, make_ticket("TKT-002"), base, tip2).outcome == NO_CHANGES


def test_a_scope_violation_lists_the_stray_paths_and_lands_nothing(git: Git) -> None:
    base, tip = branch_work(git, "TKT-001", {"src/ok.py": "ok\n", "README.md": "stray\n", "setup cfg": "s\n"})
    result = land(git, make_ticket(), base, tip, allowed_globs=["src/**"])
    assert result.outcome == SCOPE_VIOLATION
    assert sorted(result.paths) == ["README.md", "setup cfg"]
    assert commits_since(git, base) == []
    assert land(git, make_ticket(), base, tip, allowed_globs=["src/**", "*"]).outcome == LANDED


def test_the_target_merged_into_the_ticket_branch_is_not_counted_as_its_change(git: Git) -> None:
    base, tip1 = branch_work(git, "TKT-001", {"one/a.txt": "1\n"})
    _, _ = branch_work(git, "TKT-002", {"two/b.txt": "2\n"}, start=base)
    land(git, make_ticket("TKT-001"), base, tip1)
    worktree = git.repo / ".sage" / "worktrees" / "TKT-002"
    sh(worktree, "merge", "-q", "--no-edit", "main")  # the agent catches up with main
    tip2 = git.snapshot(worktree, "nothing new")
    result = land(git, make_ticket("TKT-002"), base, tip2, allowed_globs=["two/**"])
    assert result.outcome == LANDED
    assert result.paths == ["two/b.txt"]


class MovingTarget(Git):
    """A user commits on main just before our compare-and-swap, `times` times."""

    def __init__(self, repo: Path, times: int) -> None:
        super().__init__(repo)
        self.times = times

    def update_ref(self, ref: str, new: str, old: str) -> bool:
        if self.times > 0:
            self.times -= 1
            user_file = self.repo / f"user-{self.times}.txt"
            user_file.write_text("user\n")
            sh(self.repo, "add", user_file.name)
            sh(self.repo, "commit", "-q", "-m", "user commit meanwhile")
        return super().update_ref(ref, new, old)


def test_a_target_that_moved_meanwhile_is_merged_again_on_its_new_tip(git: Git) -> None:
    base, tip = branch_work(git, "TKT-001", {"ticket.txt": "t\n"})
    moving = MovingTarget(git.repo, times=1)
    result = land(moving, make_ticket(), base, tip)
    assert result.outcome == LANDED
    user_commit = sh(git.repo, "rev-parse", f"{result.commit}^").strip()
    assert sh(git.repo, "log", "-1", "--format=%s", user_commit).strip() == "user commit meanwhile"
    assert commits_since(git, base) == [result.commit, user_commit]
    assert {"ticket.txt", "user-0.txt"} <= set(sh(git.repo, "ls-tree", "--name-only", "main").split())


def test_a_target_that_never_stops_moving_gives_up_without_landing(git: Git) -> None:
    base, tip = branch_work(git, "TKT-001", {"ticket.txt": "t\n"})
    result = land(MovingTarget(git.repo, times=100), make_ticket(), base, tip)
    assert result.outcome == CONFLICT
    assert "moved" in result.message
    assert git.commits_with_trailer("main", "Sage-Ticket", "TKT-001") == []


def test_landing_twice_is_already_landed(git: Git) -> None:
    base, tip = branch_work(git, "TKT-001", {"a.txt": "a\n"})
    first = land(git, make_ticket(), base, tip)
    again = land(git, make_ticket(), base, tip)
    assert again.outcome == ALREADY_LANDED
    assert again.commit == first.commit
    assert commits_since(git, base) == [first.commit]


def test_concurrent_landings_all_land_one_commit_each(git: Git) -> None:
    base = git.rev_parse("main") or ""
    tips = {f"T-{i}": branch_work(git, f"T-{i}", {f"f{i}.txt": f"{i}\n"}, start=base)[1] for i in range(4)}
    results: dict[str, LandingResult] = {}
    together = threading.Barrier(len(tips))

    def run(ticket_id: str) -> None:
        together.wait()
        results[ticket_id] = land(git, make_ticket(ticket_id), base, tips[ticket_id])

    threads = [threading.Thread(target=run, args=(ticket_id,)) for ticket_id in tips]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {result.outcome for result in results.values()} == {LANDED}
    assert sorted(commits_since(git, base)) == sorted(result.commit or "" for result in results.values())


def test_the_users_clean_checkout_of_the_target_is_brought_along(git: Git) -> None:
    base, tip = branch_work(git, "TKT-001", {"a.txt": "a\n", "README.md": None})
    result = land(git, make_ticket(), base, tip)
    assert result.brought_along is True
    assert (git.repo / "a.txt").read_text() == "a\n"
    assert not (git.repo / "README.md").exists()
    assert git.is_clean(git.repo)


def test_on_landed_runs_once_the_target_moved_and_before_the_checkout_is_brought_along(git: Git) -> None:
    base, tip = branch_work(git, "TKT-001", {"a.txt": "a\n"})
    seen: list[tuple[str | None, bool]] = []

    def on_landed(result: LandingResult) -> None:
        seen.append((git.rev_parse("main"), (git.repo / "a.txt").exists()))
        assert result.outcome == LANDED

    result = land(git, make_ticket(), base, tip, on_landed=on_landed)
    assert seen == [(result.commit, False)]  # the ref had moved, the files not yet
    assert result.brought_along is True and (git.repo / "a.txt").read_text() == "a\n"


def test_when_on_landed_fails_the_checkout_is_not_touched_and_the_error_propagates(git: Git) -> None:
    base, tip = branch_work(git, "TKT-001", {"a.txt": "a\n"})
    before = git.rev_parse("main")

    def on_landed(result: LandingResult) -> None:
        raise OSError("no space left on device")

    with pytest.raises(OSError, match="no space left"):
        land(git, make_ticket(), base, tip, on_landed=on_landed)
    assert git.rev_parse("main") != before  # it landed: recovery catches the checkout up
    assert not (git.repo / "a.txt").exists()


def test_on_landed_is_not_called_when_nothing_lands(git: Git) -> None:
    base, tip = branch_work(git, "TKT-001", {})
    calls: list[LandingResult] = []
    assert land(git, make_ticket(), base, tip, on_landed=calls.append).outcome == NO_CHANGES
    assert calls == []


def test_a_dirty_checkout_of_the_target_is_never_moved_under_the_user(git: Git) -> None:
    """git's rule for pushing to a checked-out branch: nothing lands, nothing is touched."""
    base, tip = branch_work(git, "TKT-001", {"a.txt": "a\n"})
    dirty = b"user's edit\r\n\x00\xff not saved\n"
    (git.repo / "README.md").write_bytes(dirty)
    calls: list[LandingResult] = []
    result = land(git, make_ticket(), base, tip, on_landed=calls.append)
    assert result.outcome == TARGET_DIRTY and calls == []
    assert git.rev_parse("main") == base
    assert (git.repo / "README.md").read_bytes() == dirty
    assert f"`git -C {git.repo} stash`" in result.message and "resume by themselves" in result.message


def test_a_checkout_switched_to_another_branch_while_landing_never_gets_the_targets_changes(git: Git) -> None:
    base, tip = branch_work(git, "TKT-001", {"a.txt": "a\n"})
    sh(git.repo, "branch", "other", base)

    def switch_away(result: LandingResult) -> None:  # the user checks out `other` at this very moment
        sh(git.repo, "symbolic-ref", "HEAD", "refs/heads/other")

    result = land(git, make_ticket(), base, tip, on_landed=switch_away)
    assert result.outcome == LANDED
    assert not (git.repo / "a.txt").exists()
    assert sh(git.repo, "status", "--porcelain") == ""  # nothing of main's staged into `other`
    assert sh(git.repo, "rev-parse", "other").strip() == base


def test_no_checkout_of_the_target_means_nothing_to_bring_along(git: Git) -> None:
    sh(git.repo, "checkout", "-q", "-b", "elsewhere")
    base, tip = branch_work(git, "TKT-001", {"a.txt": "a\n"}, start="main")
    result = land(git, make_ticket(), base, tip)
    assert result.outcome == LANDED
    assert result.brought_along is None


def test_commit_message_format_and_trailers() -> None:
    ticket = make_ticket(
        "AUTH-001",
        title="Add Login Form",
        type="bugfix",
        docs={"spec": "docs/spec.md", "plan": "docs/plan.md"},
    )
    message = commit_message(ticket, summary="Adds the form.\nValidates input.")
    assert message == (
        "fix: #AUTH-001 add Login Form\n"
        "\n"
        "    Adds the form.\n    Validates input.\n"
        "\n"
        "Docs:\n- docs/spec.md\n- docs/plan.md\n"
        "\n"
        "Closes: #AUTH-001\nSage-Ticket: AUTH-001\n"
    )


@pytest.mark.parametrize(
    ("ticket_type", "prefix"),
    [
        ("implementation", "feat"),
        ("enhancement", "feat"),
        ("bugfix", "fix"),
        ("refactor", "refactor"),
        ("Epic", "chore"),
        (None, "chore"),
    ],
)
def test_commit_types(ticket_type: str | None, prefix: str) -> None:
    assert commit_message(make_ticket(type=ticket_type)).startswith(f"{prefix}: #TKT-001 ")


def test_commit_scope_comes_from_the_component_key() -> None:
    ticket = make_ticket(component="Web UI\n(x)")
    assert commit_message(ticket).startswith("feat(web-ui-x): #TKT-001 ")
    assert commit_message(make_ticket("lowercase_id")).startswith("feat: #lowercase_id ")


def test_with_summary_goes_before_the_trailers() -> None:
    message = with_summary(commit_message(make_ticket()), "did it\n---\nmore")
    assert message.endswith("    did it\n    ---\n    more\n\nCloses: #TKT-001\nSage-Ticket: TKT-001\n")


def test_hostile_title_and_summary_land_literally(git: Git, tmp_path: Path) -> None:
    witness = tmp_path / "pwned"
    title = f"Evil\nSage-Ticket: OTHER-9\n\nCloses: #1 $(touch {witness}) `touch {witness}`; rm -rf /"
    ticket = make_ticket(title=title)
    base, tip = branch_work(git, "TKT-001", {"a.txt": "a\n"})
    summary = f"done\n\nSage-Ticket: OTHER-8\n---\n$(touch {witness})"
    result = land(git, ticket, base, tip, summary=summary)
    assert result.outcome == LANDED
    assert not witness.exists()
    subject = sh(git.repo, "log", "-1", "--format=%s", "main").strip()
    expected = f"evil Sage-Ticket: OTHER-9 Closes: #1 $(touch {witness}) `touch {witness}`; rm -rf /"
    assert subject == f"feat: #TKT-001 {expected}"
    assert trailers(git, result.commit or "") == ["Closes: #TKT-001", "Sage-Ticket: TKT-001"]
    assert git.commits_with_trailer("main", "Sage-Ticket", "OTHER-8") == []
    assert git.commits_with_trailer("main", "Sage-Ticket", "OTHER-9") == []


def test_a_message_without_the_ticket_trailer_gets_one(git: Git) -> None:
    base, tip = branch_work(git, "TKT-001", {"a.txt": "a\n"})
    result = land(git, make_ticket(), base, tip, message="hand-written subject\n")
    assert "Sage-Ticket: TKT-001" in trailers(git, result.commit or "")
    assert land(git, make_ticket(), base, tip).outcome == ALREADY_LANDED


def test_a_vanished_worktree_on_the_target_is_ignored(git: Git) -> None:
    base, tip = branch_work(git, "TKT-001", {"a.txt": "a\n"})
    sh(git.repo, "checkout", "-q", "--detach")
    gone = git.repo / ".sage" / "worktrees" / "gone"
    sh(git.repo, "worktree", "add", "-q", str(gone), "main")
    sh(git.repo, "worktree", "lock", str(gone))  # not pruned behind our back
    subprocess.run(["rm", "-rf", str(gone)], check=True)
    result = land(git, make_ticket(), base, tip)
    assert result.outcome == LANDED
    assert result.brought_along is None


SCISSORS = "# ------------------------ >8 ------------------------"


def test_a_forged_trailer_and_scissors_in_a_summary_never_name_another_ticket(git: Git) -> None:
    ticket = make_ticket("A-1")
    base, tip = branch_work(git, "A-1", {"a.txt": "a\n"})
    summary = f"did A\n\nSage-Ticket: B-1\n{SCISSORS}\nhidden"
    result = land(git, ticket, base, tip, message=commit_message(ticket, summary=summary))
    assert result.outcome == LANDED
    assert git.trailer_values(result.commit or "", "Sage-Ticket") == ["A-1"]
    assert git.commits_with_trailer("main", "Sage-Ticket", "B-1") == []
    assert git.commits_with_trailer("main", "Sage-Ticket", "A-1") == [result.commit]
    body = sh(git.repo, "log", "-1", "--format=%B", "main")
    assert body.count("did A") == 1 and "hidden" in body
    other = make_ticket("B-1", allow_empty=True)
    assert land(git, other, base, base, allow_empty=True).outcome == LANDED  # B-1 had not landed


def test_an_allow_empty_ticket_whose_summary_hides_its_trailer_never_lands_twice(git: Git) -> None:
    ticket = make_ticket("E-1", allow_empty=True)
    base = git.rev_parse("main") or ""
    message = commit_message(ticket, summary=f"nothing to change\n{SCISSORS}\n")
    assert land(git, ticket, base, base, message=message, allow_empty=True).outcome == LANDED
    again = land(git, ticket, base, base, message=message, allow_empty=True)
    assert again.outcome == ALREADY_LANDED
    assert len(commits_since(git, base)) == 1


@pytest.mark.parametrize(("title", "expected"), [
    ("Document every_nth() in the API reference", "document every_nth() in the API reference"),
    ("API: add a limit", "API: add a limit"),
    ("README gets a section", "README gets a section"),
    ("getUser returns None", "getUser returns None"),
    ("Fix: Keep Capitals", "fix: Keep Capitals"),
])
def test_commit_titles_keep_the_words_as_written(title: str, expected: str) -> None:
    assert commit_message(make_ticket(title=title)).splitlines()[0] == f"feat: #TKT-001 {expected}"


def test_commit_scope_is_declared_never_guessed_from_the_id() -> None:
    assert commit_message(make_ticket("OUT-001")).startswith("feat: #OUT-001 ")
    assert commit_message(make_ticket("OUT-001", files=["src/api/*.py"])).startswith("feat(api): #OUT-001 ")
    assert commit_message(make_ticket("OUT-001", files=["**/*.py", "docs/x.md"])).startswith("feat(docs): ")
    assert commit_message(make_ticket("OUT-001", files=["setup.py"])).startswith("feat: #OUT-001 ")


def add_links(git: Git, ticket_id: str, links: dict[str, str]) -> tuple[str, str]:
    base = git.rev_parse("main") or ""
    path = git.repo / ".sage" / "worktrees" / ticket_id
    git.worktree_add(path, f"sage/{ticket_id}", base)
    for name, target in links.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).symlink_to(target)
    return base, git.snapshot(path, f"links of {ticket_id}")


@pytest.mark.parametrize("links", [
    {"here": ".", "secret": "here/../OUTSIDE"},
    {"d/up": "..", "d/leak": "up/../etc/passwd"},
    {"loop-a": "loop-b", "loop-b": "loop-a"},
    {"self": "self/x"},
    {"g": "G", "G": ".GIT/config"},
])
def test_symlinks_are_judged_by_where_their_chain_resolves(git: Git, links: dict[str, str]) -> None:
    base, tip = add_links(git, "TKT-001", links)
    result = land(git, make_ticket(), base, tip)
    assert result.outcome == SCOPE_VIOLATION, result.message
    assert commits_since(git, base) == []


def test_a_chain_of_links_that_stays_inside_lands(git: Git) -> None:
    base, tip = add_links(git, "TKT-001", {"here": ".", "readme": "here/README.md", "d/top": "..",
                                           "d/again": "top/d/top/README.md"})
    assert land(git, make_ticket(), base, tip).outcome == LANDED


def test_removing_a_link_that_another_links_chain_passes_through_is_judged_too(git: Git) -> None:
    """`secret -> here/../../x` stays inside while `here -> sub/deeper`; without `here` it
    reads `../x`, outside: the ticket that removes `here` is refused."""
    base, tip = add_links(git, "TKT-001", {"here": "sub/deeper", "secret": "here/../../README.md"})
    assert land(git, make_ticket(), base, tip).outcome == LANDED
    base, tip = branch_work(git, "TKT-002", {"here": None})
    result = land(git, make_ticket("TKT-002"), base, tip)
    assert result.outcome == SCOPE_VIOLATION and "secret" in result.message, result.message
    assert commits_since(git, base) == []


def test_removing_a_link_nothing_else_passes_through_lands(git: Git) -> None:
    base, tip = add_links(git, "TKT-001", {"here": "sub/deeper", "other": "README.md"})
    assert land(git, make_ticket(), base, tip).outcome == LANDED
    base, tip = branch_work(git, "TKT-002", {"here": None})
    assert land(git, make_ticket("TKT-002"), base, tip).outcome == LANDED


def test_sages_own_index_tracked_in_git_does_not_make_the_checkout_dirty(git: Git) -> None:
    """An index kept in git changes with every ticket sage starts: landings must not wait on it."""
    index = git.repo / ".sage" / "tickets" / "index.json"
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_text('{"tickets": []}\n')
    sh(git.repo, "add", "-f", str(index))
    sh(git.repo, "commit", "-qm", "track the index")
    base, tip = branch_work(git, "TKT-001", {"a.txt": "a\n"})
    index.write_text('{"tickets": ["changed by sage"]}\n')
    result = land(git, make_ticket(), base, tip)
    assert result.outcome == LANDED and result.brought_along is True
    assert (git.repo / "a.txt").read_text() == "a\n"
    assert index.read_text() == '{"tickets": ["changed by sage"]}\n'
