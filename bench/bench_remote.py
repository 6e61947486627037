"""Landings per second onto a local bare remote (`sage stream --remote origin`) against
landing on the local branch only, interleaved.

    python bench/bench_remote.py [--tickets 100] [--runs 5] [--workers 1]

Each run is a fresh 300-file repository (bench_git_baseline.make_bench_repo) with N no-op
tickets (`touch noop-N.txt`, no dependencies, unsandboxed). Local: sage lands on main.
Remote: the same repository is cloned from a bare `origin.git` on the same disk and sage
lands on origin's main (fetch, merge-tree, commit, plain push per ticket). The two kinds
alternate, the first kind alternating per round. Landings per second = tickets / the run's
own time (run_started to run_finished events); medians over the runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.bench_git_baseline import make_bench_repo  # noqa: E402
from bench.bench_stream import noop_tickets, run_sage_timed  # noqa: E402


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def prepare(root: Path, tickets: int, *, remote: bool) -> Path:
    """A repository with the tickets' index; with `remote`, a clone of a bare origin."""
    seed = root / "seed"
    make_bench_repo(seed)
    repo = seed
    if remote:
        git(root, "clone", "-q", "--bare", str(seed), str(root / "origin.git"))
        git(root, "clone", "-q", str(root / "origin.git"), str(root / "server"))
        repo = root / "server"
        git(repo, "config", "user.name", "Bench")
        git(repo, "config", "user.email", "bench@example.com")
    (repo / ".sage" / "tickets").mkdir(parents=True)
    (repo / ".sage" / "config.toml").write_text("[agent]\nsandbox = \"none\"\n")
    index = repo / ".sage" / "tickets" / "index.json"
    index.write_text(json.dumps({"version": "1.0", "tickets": noop_tickets(tickets)}))
    return index


def one_run(tickets: int, workers: int, *, remote: bool) -> float:
    """Landings per second of one run."""
    root = Path(tempfile.mkdtemp(prefix="sage-bench-remote-"))
    try:
        index = prepare(root, tickets, remote=remote)
        args = [f"--parallel={workers}", *(["--remote", "origin"] if remote else [])]
        _, run_s = run_sage_timed(index, *args)
        return tickets / run_s
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=1)
    options = parser.parse_args()
    rates: dict[str, list[float]] = {"local": [], "remote": []}
    for round_number in range(options.runs):
        order = ("local", "remote") if round_number % 2 == 0 else ("remote", "local")
        for kind in order:
            rates[kind].append(one_run(options.tickets, options.workers, remote=kind == "remote"))
            print(f"round {round_number + 1} {kind}: {rates[kind][-1]:.2f} landings/s", flush=True)
    local, remote = statistics.median(rates["local"]), statistics.median(rates["remote"])
    print(f"\n{options.tickets} tickets, {options.workers} worker(s), median of {options.runs} interleaved runs")
    print("| landing on | landings/s (median) | runs | s per landing |")
    print("| --- | --- | --- | --- |")
    for kind, median in (("local branch", local), ("local bare remote", remote)):
        runs = " / ".join(f"{rate:.1f}" for rate in rates["local" if kind == "local branch" else "remote"])
        print(f"| {kind} | {median:.2f} | {runs} | {1 / median:.3f} |")
    print(f"remote / local: {remote / local:.2f}")


if __name__ == "__main__":
    main()
