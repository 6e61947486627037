"""Load: N no-op tickets drained by one `sage stream`, with the scheduler's memory and open
file descriptors sampled all along.

    python bench/bench_load.py [--tickets 2000] [--workers 2] [--json]

Each ticket's agent is `true` (the exec agent, argv ["true"], `allow_empty`), so what is
measured is sage itself: dispatch, worktree switch, landing, index and run-record writes.
The tickets form independent chains of 10 (so the ready set is small and dependents
unblock as tickets land). The scheduler process (not its agents or git) is sampled every
0.1 s with psutil: RSS and `num_fds()`. "Bounded" is judged by comparing the peaks of
the first and the last third of the run: a leak grows with the number of tickets drained.

Prints a table (or one JSON object with --json); tests/reliability/test_load.py runs it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

PY = sys.executable
CHAIN = 10
PACE_WINDOW = 200  # landings


@dataclass
class LoadResult:
    tickets: int
    workers: int
    exit_code: int
    seconds: float
    completed: int
    landed_commits: int
    peak_rss_mb: float
    peak_fds: int
    early_rss_mb: float  # peak RSS in the first third of the run
    late_rss_mb: float  # ... in the last third
    early_fds: int
    late_fds: int
    samples: int
    first_landings_s_per_ticket: float  # mean gap between the first PACE_WINDOW landings
    last_landings_s_per_ticket: float  # ... and between the last PACE_WINDOW
    stderr_tail: str = ""
    series: list[tuple[float, float, int]] = field(default_factory=list)  # (s, rss MB, fds)


def make_repo(root: Path, tickets: int) -> Path:
    repo = root / "repo"
    repo.mkdir(parents=True)

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    git("config", "user.name", "Load Bench")
    git("config", "user.email", "load@example.invalid")
    (repo / "README.md").write_text("load\n")
    (repo / ".gitignore").write_text(".sage/\n")
    git("add", "-A")
    git("commit", "-q", "-m", "initial")
    index = repo / ".sage" / "tickets" / "index.json"
    index.parent.mkdir(parents=True)
    items = []
    for number in range(tickets):
        deps = [f"LOAD-{number - 1}"] if number % CHAIN else []
        items.append({"id": f"LOAD-{number}", "title": f"No-op {number}", "state": "UNPROCESSED", "priority": "P2",
                      "type": "implementation", "validation_type": "generic", "dependencies": deps,
                      "command": ["true"], "allow_empty": True})
    index.write_text(json.dumps({"version": "1.0", "tickets": items}, indent=2) + "\n")
    return repo


def run_load(tickets: int = 2000, workers: int = 2, root: Path | None = None) -> LoadResult:
    with tempfile.TemporaryDirectory(prefix="sage-load-", dir=root) as temp:
        repo = make_repo(Path(temp), tickets)
        argv = [PY, "-m", "sage_stream", "stream", "--auto", f"--parallel={workers}", "--plain",
                "--index", str(repo / ".sage" / "tickets" / "index.json")]
        began = time.monotonic()
        process = subprocess.Popen(argv, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        series = _sample(process, began)
        stderr = process.stderr.read() if process.stderr else ""
        process.wait()
        seconds = time.monotonic() - began
        data = json.loads((repo / ".sage" / "tickets" / "index.json").read_text())
        completed = sum(1 for item in data["tickets"] if item["state"] == "COMPLETED")
        commits = int(subprocess.run(["git", "rev-list", "--count", "main"], cwd=repo, capture_output=True,
                                     text=True, check=True).stdout) - 1
        first_pace, last_pace = _pace(repo)
    third = max(1, len(series) // 3)
    first, last = series[:third], series[-third:]
    return LoadResult(
        tickets=tickets, workers=workers, exit_code=process.returncode, seconds=round(seconds, 1),
        completed=completed, landed_commits=commits,
        peak_rss_mb=round(max((s[1] for s in series), default=0.0), 1),
        peak_fds=max((s[2] for s in series), default=0),
        early_rss_mb=round(max((s[1] for s in first), default=0.0), 1),
        late_rss_mb=round(max((s[1] for s in last), default=0.0), 1),
        # the typical count, not the peak: git pipes and logs in flight come and go, a leak stays
        early_fds=int(statistics.median(s[2] for s in first)) if first else 0,
        late_fds=int(statistics.median(s[2] for s in last)) if last else 0,
        samples=len(series), first_landings_s_per_ticket=first_pace, last_landings_s_per_ticket=last_pace,
        stderr_tail=stderr[-2000:], series=series,
    )


def _pace(repo: Path) -> tuple[float, float]:
    """Seconds per landing over the first and the last PACE_WINDOW landings (commit times)."""
    out = subprocess.run(["git", "log", "--reverse", "--format=%ct", "main"], cwd=repo, capture_output=True,
                         text=True, check=True).stdout.split()
    times = [int(value) for value in out[1:]]  # without the initial commit
    window = min(PACE_WINDOW, len(times) - 1)
    if window < 1:
        return 0.0, 0.0
    return (round((times[window] - times[0]) / window, 3), round((times[-1] - times[-1 - window]) / window, 3))


def _sample(process: subprocess.Popen, began: float) -> list[tuple[float, float, int]]:
    """RSS (MB) and open descriptors of the scheduler every 0.1 s until it exits."""
    series: list[tuple[float, float, int]] = []
    watched = psutil.Process(process.pid)
    done = threading.Event()

    def loop() -> None:
        while not done.is_set():
            try:
                with watched.oneshot():
                    series.append((round(time.monotonic() - began, 2), watched.memory_info().rss / 2**20,
                                   watched.num_fds()))
            except psutil.Error:
                return
            time.sleep(0.1)

    sampler = threading.Thread(target=loop, daemon=True)
    sampler.start()
    process.wait()
    done.set()
    sampler.join()
    return series


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run_load(args.tickets, args.workers)
    if args.json:
        data = asdict(result)
        data.pop("series")
        print(json.dumps(data, indent=2))
        return 0 if result.exit_code == 0 else 1
    print(f"{result.tickets} no-op tickets, {result.workers} workers: exit {result.exit_code}, "
          f"{result.completed} COMPLETED, {result.landed_commits} commits, {result.seconds} s "
          f"({result.tickets / max(result.seconds, 0.001):.1f} tickets/s)")
    print("| measure | peak | peak in the first third of the run | in the last third |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| RSS (MB) | {result.peak_rss_mb} | {result.early_rss_mb} | {result.late_rss_mb} |")
    print(f"| open descriptors | {result.peak_fds} | {result.early_fds} | {result.late_fds} |")
    print(f"| seconds per ticket | | {result.first_landings_s_per_ticket} (first {PACE_WINDOW} landings) | "
          f"{result.last_landings_s_per_ticket} (last {PACE_WINDOW}) |")
    print(f"({result.samples} samples)")
    return 0 if result.exit_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
