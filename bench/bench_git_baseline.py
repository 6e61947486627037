"""The plain-script baseline of the overhead benchmark: only the git work a ticket needs.

For each of N no-op tickets on a small repository, a plain script runs:

    worktree add -> write one file -> add + commit -> merge-tree -> commit-tree
    -> update-ref (compare-and-swap on main) -> worktree remove (+ branch delete)

and nothing else (no scheduler, no index writes, no locks, no agent). sage-stream's own
cost per ticket minus this is its overhead. `reuse_worktree=True` replaces add/remove by
switching one reused worktree (`checkout -B` + `clean -ffdx`), which is what sage-stream's
slots do (engine/worktrees.py): compare like with like.

    python bench/bench_git_baseline.py -n 500 --files 300 --runs 3 [--reuse-worktree]

Import from the lead's overhead bench:

    from bench.bench_git_baseline import baseline_seconds_per_ticket, make_bench_repo
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_ENV = {**os.environ, "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"}
for _var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
    _ENV.pop(_var, None)


def git(cwd: Path, *args: str, input: str | None = None) -> str:
    result = subprocess.run(
        ["git", "-c", "core.hooksPath=/dev/null", "-c", "commit.gpgSign=false", *args],
        cwd=cwd,
        input=input,
        capture_output=True,
        text=True,
        env=_ENV,
    )
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}: {result.stderr.strip()}")
    return result.stdout


def make_bench_repo(path: Path, files: int = 300) -> None:
    """A repository on branch main with `files` small source files in 20 directories."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Bench")
    git(path, "config", "user.email", "bench@example.com")
    (path / ".gitignore").write_text(".sage/\n", encoding="utf-8")
    for i in range(files):
        directory = path / f"pkg{i % 20}"
        directory.mkdir(exist_ok=True)
        (directory / f"module_{i}.py").write_text(f'"""Module {i}."""\n\nVALUE = {i}\n' * 10, encoding="utf-8")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")


def one_ticket(repo: Path, ticket: str, *, reuse: Path | None) -> None:
    """The git work of one no-op ticket, landed as one commit on main."""
    base = git(repo, "rev-parse", "main").strip()
    branch = f"bench/{ticket}"
    if reuse is None:
        worktree = repo / ".sage" / "worktrees" / ticket
        git(repo, "worktree", "add", "--quiet", "-b", branch, str(worktree), base)
    else:
        worktree = reuse
        git(worktree, "checkout", "--quiet", "--force", "-B", branch, base)
        git(worktree, "clean", "-q", "-ffdx")
    (worktree / f"{ticket}.txt").write_text(f"{ticket}\n", encoding="utf-8")
    git(worktree, "add", "-A")
    git(worktree, "commit", "-q", "-m", f"work on {ticket}")
    tip = git(worktree, "rev-parse", "HEAD").strip()
    old = git(repo, "rev-parse", "main").strip()
    tree = git(repo, "merge-tree", "--write-tree", old, tip).split("\n", 1)[0].strip()
    message = f"chore(bench): #{ticket} no-op\n\nSage-Ticket: {ticket}\n"
    commit = git(repo, "commit-tree", tree, "-p", old, "-F", "-", input=message).strip()
    git(repo, "update-ref", "refs/heads/main", commit, old)
    if reuse is None:
        git(repo, "worktree", "remove", "--force", str(worktree))
    else:
        git(worktree, "checkout", "--quiet", "--detach")
    git(repo, "branch", "-D", "-q", branch)


def seconds_per_ticket_once(repo: Path, n: int, *, reuse_worktree: bool = False, label: str = "r") -> float:
    reuse = None
    if reuse_worktree:
        reuse = repo / ".sage" / "worktrees" / f"slot-{label}"
        git(repo, "worktree", "add", "--quiet", "--detach", str(reuse), "main")
    # The main work tree does not have main checked out: nothing to bring along, as in
    # sage-stream runs where the user's tree is on the target and clean this would add
    # one read-tree per ticket.
    started = time.perf_counter()
    for i in range(n):
        one_ticket(repo, f"{label}-T{i:05d}", reuse=reuse)
    elapsed = time.perf_counter() - started
    if reuse is not None:
        git(repo, "worktree", "remove", "--force", str(reuse))
    return elapsed / n


def baseline_seconds_per_ticket(repo: Path, n: int, *, runs: int = 3, reuse_worktree: bool = False) -> float:
    """Median over `runs` runs of the seconds per no-op ticket on `repo` (see the module
    docstring). `repo` should come from `make_bench_repo`; it gains n commits per run."""
    git(repo, "checkout", "--quiet", "--detach")  # main moves by update-ref only
    times = [seconds_per_ticket_once(repo, n, reuse_worktree=reuse_worktree, label=f"r{run}") for run in range(runs)]
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--tickets", type=int, default=500)
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--reuse-worktree", action="store_true", help="switch one worktree instead of add/remove")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sage-bench-") as tmp:
        repo = Path(tmp) / "repo"
        make_bench_repo(repo, args.files)
        per_ticket = baseline_seconds_per_ticket(repo, args.tickets, runs=args.runs, reuse_worktree=args.reuse_worktree)
    mode = "reused worktree" if args.reuse_worktree else "worktree add/remove"
    print(
        f"git baseline ({mode}): {per_ticket * 1000:.1f} ms per ticket "
        f"(median of {args.runs} runs x {args.tickets} tickets, {args.files} files, git "
        f"{git(Path.cwd(), 'version').split()[-1]}, Python {sys.version.split()[0]})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
