"""Watching the branches while agents work: the target moves only by sage's compare-and-swap.

Sage moves the target only by compare-and-swap landings (engine/landing.py); every other
branch outside `sage/*` is the user's. An agent can still reach the repository's refs
(unsandboxed: `git update-ref`, `git push . HEAD:main`), so the branch tips are read (one
`git for-each-ref`) before and after each agent turn, and the target again before each landing.

What counts as an agent's move (and is undone), and what is left alone:

- A move is the agent's when it happened during that agent's turn and either
  - the target no longer contains the tip it had when the turn started (a rewind: sage never
    rewinds, and landed work must not vanish), or
  - a branch's new tip carries a commit made in the agent's worktree (one reachable from the
    worktree's HEAD but not from where the branch or the target were when the turn started).
  It is undone by compare-and-swap, the ticket is deferred saying what moved, and the tip that
  was undone stays reachable as `refs/sage/displaced/<branch>/<time>`: no commit is lost, the
  user's included.
- Everything else is the user's and is left alone: commits on other branches, commits on the
  target (sage lands on top of them), branches created or deleted without the agent's commits
  (git deletes a branch's reflog with it: nothing tells who deleted it).
- Before each landing the target must still contain what sage last knew of it (its last
  landing, or the tip it last saw move forward). If it does not, landed work was rewound: the
  target is restored, the rewound tip kept as above, and the run says so; never accepted silently.

With several agents at work, a move is caught by the turn that ends first after it and
carries that agent's commits (for a rewind: the first turn that ends after it, or none when a
landing comes first - the landing restores the target and the run reports it).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sage_stream.git import Git
from sage_stream.tickets.models import State, Ticket
from sage_stream.tickets.naming import BRANCH_PREFIX

DISPLACED = "refs/sage/displaced"
# Every push URL rewritten to a path that cannot exist (`url.<base>.pushInsteadOf` with an empty
# prefix matches every URL): a push from an agent fails at once and says why, fetches still work.
PUSH_REFUSED = "/dev/null/sage-stream-refuses-pushes-from-agent-worktrees"


def refusing_pushes(env: dict[str, str]) -> dict[str, str]:
    """`env` for an agent's processes, with git configured to refuse every push.

    Set through git's environment config (GIT_CONFIG_COUNT, git >= 2.31) rather than the
    worktree's config: per-worktree config needs `extensions.worktreeConfig` switched on in
    the user's own `.git/config`, which sage does not rewrite. Agents get no credentials from
    sage either (agents/environment.py passes no SSH agent socket or credential helper)."""
    count = int(env.get("GIT_CONFIG_COUNT", "0") or 0)
    return {**env, "GIT_CONFIG_COUNT": str(count + 1), f"GIT_CONFIG_KEY_{count}": f"url.{PUSH_REFUSED}.pushInsteadOf",
            f"GIT_CONFIG_VALUE_{count}": ""}


@dataclass(frozen=True)
class TurnRefs:
    """The branch tips when an agent turn started, and how many landings sage had made."""

    tips: dict[str, str]
    landings: int


@dataclass(frozen=True)
class RefMove:
    """A branch moved by someone else than sage, and what sage did about it."""

    ref: str
    old: str | None
    new: str | None
    restored: bool
    kept_as: str | None = None  # where the undone tip stays reachable

    def describe(self, who: str = "the agent") -> str:
        old, new = (sha[:12] if sha else "nothing" for sha in (self.old, self.new))
        what = f"{who} moved {self.ref} from {old} to {new}"
        if not self.restored:
            return f"{what}; sage landed on top of it since, so it was not undone (check `git log {self.ref}`)"
        kept = f" ({new} kept as {self.kept_as})" if self.kept_as else ""
        return f"{what}; restored{kept}"


class TargetWatch:
    """What sage knows of the target and the user's branches during one run (thread-safe:
    ticket threads check their turns, the loop checks before each landing)."""

    def __init__(self, git: Git, target: str) -> None:
        self.git = git
        self.target_ref = f"refs/heads/{target}"
        self._lock = threading.Lock()
        self.known = git.rev_parse(self.target_ref)  # the target as sage last knew it
        self.landed: list[str] = []  # commits sage landed on the target in this run
        self.landing_commit: str | None = None  # the commit a landing is moving the target to now

    # ---------------------------------------------------------------- agent turns

    def before_turn(self) -> TurnRefs:
        with self._lock:
            return TurnRefs(self._tips(), len(self.landed))

    def after_turn(self, before: TurnRefs, worktree: Path) -> list[RefMove]:
        """The moves this agent made during its turn, each undone where that is safe."""
        with self._lock:
            after = self._tips()
            start_target = before.tips.get(self.target_ref)
            moves = []
            head: str | None = None
            for ref in sorted(set(before.tips) | set(after)):
                old, new = before.tips.get(ref), after.get(ref)
                if old == new or (ref == self.target_ref and new is not None
                                  and new in (self.known, self.landing_commit)):
                    continue  # unmoved, or the target where sage put it (a landing during the turn)
                head = head or self.git.rev_parse("HEAD", cwd=worktree)
                if ref == self.target_ref:
                    move = self._target_moved(old, new, head, before.landings)
                elif self._carries_agent_commits(new, head, old, start_target, *self.landed[-1:]):
                    move = self._undo(ref, current=new, back_to=old)
                else:
                    move = None
                if move is not None:
                    moves.append(move)
            return moves

    def _target_moved(self, old: str | None, new: str | None, head: str | None, landings: int) -> RefMove | None:
        if old is None:
            return None
        if new is None or not self.git.is_ancestor(old, new):  # a rewind (or the target deleted)
            return self._undo(self.target_ref, current=new, back_to=self._latest(old))
        if not self._carries_agent_commits(new, head, old, *self.landed[-1:]):  # (an agent may merge them)
            self.known = self._latest(new)
            return None  # the user's commits: sage lands on top of them
        if any(self.git.is_ancestor(commit, new) for commit in self.landed[landings:]):
            return RefMove(self.target_ref, old, new, restored=False)  # never drop a landing
        return self._undo(self.target_ref, current=new, back_to=old)

    def _carries_agent_commits(self, new: str | None, head: str | None, *old_tips: str | None) -> bool:
        """`new` holds a commit of the agent's worktree that none of `old_tips` holds. The
        callers pass sage's newest landing among them (landings form one line, so it holds
        every earlier one): an agent started from a landing made just before its turn began,
        or from a remote tip the local branch follows to only later (--remote), holds sage's
        commits, not its own."""
        if new is None or head is None:
            return False
        shared = self.git.merge_base(new, head)
        return shared is not None and not any(tip and self.git.is_ancestor(shared, tip) for tip in old_tips)

    # ---------------------------------------------------------------- landings

    def before_landing(self, current: str) -> tuple[str, RefMove | None]:
        """The target's tip to land on, under the commit lock: `current`, or what sage knew
        of it when `current` no longer contains that (landed work was rewound; restored)."""
        with self._lock:
            if self.known is None or self.git.is_ancestor(self.known, current):
                self.known = current
                return current, None
            move = self._undo(self.target_ref, current=current, back_to=self.known)
            return (self.known if move.restored else current), move

    def landing(self, commit: str) -> None:
        """A landing moves the target to `commit` now (its compare-and-swap may still fail):
        a turn that ends meanwhile and sees the target there knows it was sage."""
        with self._lock:
            self.landing_commit = commit

    def landed_commit(self, commit: str) -> None:
        with self._lock:
            self.landed.append(commit)
            self.known = commit

    # ---------------------------------------------------------------- helpers

    def _tips(self) -> dict[str, str]:
        return self.git.branch_tips(skip_prefix=BRANCH_PREFIX.strip("/") + "/")

    def _latest(self, tip: str) -> str:
        """The newer of `tip` and what sage knows of the target."""
        if self.known is None or self.git.is_ancestor(self.known, tip):
            return tip
        return self.known

    def _undo(self, ref: str, *, current: str | None, back_to: str | None) -> RefMove:
        kept = None
        if current is not None:
            kept = f"{DISPLACED}/{ref.removeprefix('refs/heads/')}/{time.time_ns()}"
            self.git.set_ref(kept, current, None, reason="sage-stream: kept what was undone")
        restored = self.git.set_ref(ref, back_to, current, reason="sage-stream: undo a move sage did not make")
        return RefMove(ref, back_to, current, restored, kept)


def rewound_landing(git: Git, target: str, tickets: list[Ticket]) -> str | None:
    """At the start of a run: the latest ticket that landed on `target` must still be on it
    (one `merge-base --is-ancestor`). If it is not, someone rewound landed work between
    runs: said, never silently accepted; not undone (it may have been on purpose)."""
    landed = [(ticket.completed_at or "", ticket.id, ticket.git.last_commit.sha) for ticket in tickets
              if ticket.state is State.COMPLETED and ticket.git is not None and ticket.git.target == target
              and ticket.git.last_commit is not None and ticket.git.last_commit.sha]
    if not landed:
        return None
    _, ticket_id, commit = max(landed)
    tip = git.rev_parse(f"refs/heads/{target}")
    if tip is None or git.rev_parse(f"{commit}^{{commit}}") is None or git.is_ancestor(commit, tip):
        return None
    return (f"{target} no longer contains {ticket_id}'s landed commit {commit[:12]}: it was rewound past landed work "
            f"(the index still says COMPLETED); to put it back: `git update-ref refs/heads/{target} {commit}` if "
            f"{target} only lost commits, else `git cherry-pick {commit}`")
