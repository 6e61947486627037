"""Every path under `.sage/`, named once.

    .sage/
      tickets/index.json      the ticket index (tickets/store.py is its one writer)
      config.toml             defaults for `sage stream` and the agent
      worktrees/              one git worktree per worker slot
      commit-queue/           finished work waiting to land, one file per ticket
      runs/<run_id>.json      the record of each run
      workers/<run_id>/       the agents' and checks' logs of a run
      commit.lock             held while a ticket lands on the target
      worktree.lock           held around `git worktree` commands
      stream.lock             held by the one running `sage stream`
      stream.owner.json       who holds stream.lock
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SAGE_DIR = ".sage"


@dataclass(frozen=True)
class SagePaths:
    root: Path  # the .sage directory

    @classmethod
    def of_repo(cls, repo: Path) -> SagePaths:
        return cls(Path(repo) / SAGE_DIR)

    @property
    def tickets(self) -> Path:
        return self.root / "tickets"

    @property
    def index(self) -> Path:
        return self.tickets / "index.json"

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def worktrees(self) -> Path:
        return self.root / "worktrees"

    @property
    def commit_queue(self) -> Path:
        return self.root / "commit-queue"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def run_record(self, run_id: str) -> Path:
        return self.runs / f"{run_id}.json"

    @property
    def workers(self) -> Path:
        return self.root / "workers"

    def run_logs(self, run_id: str) -> Path:
        return self.workers / run_id

    @property
    def commit_lock(self) -> Path:
        return self.root / "commit.lock"

    @property
    def worktree_lock(self) -> Path:
        return self.root / "worktree.lock"

    @property
    def run_lock(self) -> Path:
        return self.root / "stream.lock"

    @property
    def run_owner(self) -> Path:
        return self.root / "stream.owner.json"


# The same paths relative to the repository root: what `sage` looks for and shows.
REPO_RELATIVE = SagePaths(Path(SAGE_DIR))
INDEX_RELATIVE = REPO_RELATIVE.index
