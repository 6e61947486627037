"""Benchmarks of `sage stream`: makespan against the lower bound, per-ticket overhead, memory.

    python bench/bench_stream.py makespan [--runs 3] [--workers 4] [--scale 0.4] [--policies greedy,...]
    python bench/bench_stream.py overhead [--tickets 500] [--runs 3] [--sandbox auto|bwrap|none] [--no-baseline]
    python bench/bench_stream.py sandbox  [--tickets 200] [--runs 3] [--check]
    python bench/bench_stream.py memory   [--tickets 200] [--workers 8]

makespan: reference workloads (wide, long chains, diamonds, random layered; 50-200 tickets)
  run with an exec "sleep agent" whose duration is `estimate * scale` seconds; greedy, batch
  and sequential (1 worker) wall-clock times against the lower bound
  max(critical path, total work / workers), computed on the same durations. Each run is a
  new repository, so it makes its worktree slots; greedy-warm runs where an earlier run
  made them (the usual case under cron). Greedy also reports the run's own makespan
  (run_started to run_finished: without python's start, imports and recovery).
overhead: N no-op tickets (each writes one file) with isolation and landing on a repository
  of 300 files, against the fair floor: bench_git_baseline.py's plain script doing only the
  git work each ticket needs in one reused worktree (as sage reuses its slots), side by side
  in each run, which goes first alternating; seconds per ticket, ratios, landings per second.
  `--fresh` adds the script with a new worktree per ticket (what the old "0.22x" compared to).
  `--sandbox` is passed to `sage stream` (default: its own default, auto).
sandbox: the same no-op tickets with `--sandbox bwrap` and `--sandbox none`, interleaved (a fresh
  repository each run, the order alternating per round); seconds per ticket, and what the
  sandbox adds per ticket. `--check`: each ticket also has one check, which runs sandboxed too.
memory: peak RSS of the scheduler process (not its agents) with 8 workers.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.bench_git_baseline import baseline_seconds_per_ticket, make_bench_repo  # noqa: E402

PY = sys.executable


# ------------------------------------------------------------------ workloads


def wide(n: int, rng: random.Random) -> dict[str, tuple[float, list[str]]]:
    return {f"W-{i}": (rng.randint(1, 4), []) for i in range(n)}


def chains(n: int, rng: random.Random, *, count: int = 4) -> dict[str, tuple[float, list[str]]]:
    jobs: dict[str, tuple[float, list[str]]] = {}
    per = n // count
    for c in range(count):
        for i in range(per):
            deps = [f"C-{c}-{i - 1}"] if i else []
            jobs[f"C-{c}-{i}"] = (rng.randint(1, 4), deps)
    return jobs


def diamonds(n: int, rng: random.Random) -> dict[str, tuple[float, list[str]]]:
    jobs: dict[str, tuple[float, list[str]]] = {}
    previous: list[str] = []
    layer = 0
    while len(jobs) < n:
        top = f"D-{layer}-top"
        jobs[top] = (rng.randint(1, 3), previous)
        sides = [f"D-{layer}-{k}" for k in range(4)]
        for side in sides:
            jobs[side] = (rng.randint(1, 4), [top])
        bottom = f"D-{layer}-bottom"
        jobs[bottom] = (rng.randint(1, 3), sides)
        previous = [bottom]
        layer += 1
    return jobs


def layered(n: int, rng: random.Random, *, layers: int = 6) -> dict[str, tuple[float, list[str]]]:
    jobs: dict[str, tuple[float, list[str]]] = {}
    levels: list[list[str]] = [[] for _ in range(layers)]
    for i in range(n):
        level = min(layers - 1, i * layers // n)
        name = f"R-{i}"
        below = [job for lv in levels[:level] for job in lv]
        deps = rng.sample(below, k=min(len(below), rng.randint(0, 2))) if below else []
        jobs[name] = (rng.randint(1, 4), deps)
        levels[level].append(name)
    return jobs


WORKLOADS = {"wide": (wide, 60), "chains": (chains, 60), "diamonds": (diamonds, 60), "random-layered": (layered, 80)}


def lower_bound(jobs: dict[str, tuple[float, list[str]]], workers: int) -> float:
    finish: dict[str, float] = {}

    def longest(job: str) -> float:
        if job not in finish:
            duration, deps = jobs[job]
            finish[job] = duration + max((longest(d) for d in deps), default=0.0)
        return finish[job]

    critical = max(longest(job) for job in jobs)
    return max(critical, sum(d for d, _ in jobs.values()) / workers)


# ------------------------------------------------------------------ repositories


def make_repo(path: Path, tickets: list[dict]) -> Path:
    make_bench_repo(path, files=300)
    (path / ".sage" / "tickets").mkdir(parents=True, exist_ok=True)
    index = path / ".sage" / "tickets" / "index.json"
    index.write_text(json.dumps({"version": "1.0", "tickets": tickets}))
    return index


def ticket(tid: str, command: list[str], deps: list[str], estimate: float, **extra) -> dict:
    return {"id": tid, "title": f"bench {tid}", "state": "UNPROCESSED", "priority": "P2",
            "type": "implementation", "validation_type": "generic", "dependencies": deps,
            "estimate": estimate, "command": command, **extra}


def run_sage(index: Path, *args: str, peak: list[int] | None = None) -> float:
    """Wall-clock seconds of one `sage stream` process, start to exit."""
    return run_sage_timed(index, *args, peak=peak)[0]


def run_sage_timed(index: Path, *args: str, peak: list[int] | None = None) -> tuple[float, float]:
    """(seconds from starting the process to its exit, seconds from its `run_started`
    event to its `run_finished` event): the second leaves out python's start, imports,
    reading the index, recovery and the final exit."""
    argv = [PY, "-m", "sage_stream", "stream", "--auto", "--json", "--index", str(index), *args]
    began = time.perf_counter()
    process = subprocess.Popen(argv, cwd=index.parent.parent.parent, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    if peak is not None:
        watcher = threading.Thread(target=_watch_rss, args=(process.pid, peak), daemon=True)
        watcher.start()
    out, err = process.communicate()
    took = time.perf_counter() - began
    if process.returncode not in (0,):
        raise RuntimeError(f"sage stream exited {process.returncode}: {err[-2000:]}")
    stamps = {}
    for line in out.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") in ("run_started", "run_finished"):
                stamps[event["event"]] = _epoch(event["time"])
    return took, stamps["run_finished"] - stamps["run_started"]


def _epoch(stamp: str) -> float:
    from datetime import datetime, timezone
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def _watch_rss(pid: int, peak: list[int]) -> None:
    try:
        process = psutil.Process(pid)
        while process.is_running():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.02)
    except psutil.Error:
        pass


# ------------------------------------------------------------------ benchmarks


def bench_makespan(runs: int, workers: int, scale: float, seed: int,
                   policies: tuple[str, ...] = ("greedy", "batch", "sequential")) -> None:
    print("Process: from starting `sage stream` to its exit. Run: from its run_started event to its run_finished "
          "event (without python's start, imports, reading the index and recovery).\n")
    print("| workload | tickets | bound (s) | greedy process (s) | / bound | greedy run (s) | / bound "
          "| greedy, slots exist: process (s) | / bound | batch process (s) | / bound | sequential process (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, (make, size) in WORKLOADS.items():
        jobs = make(size, random.Random(seed))
        scaled = {job: (duration * scale, deps) for job, (duration, deps) in jobs.items()}
        bound = lower_bound(scaled, workers)
        times: dict[str, list[tuple[float, float]]] = {policy: [] for policy in policies}
        for _ in range(runs):
            for policy in times:
                with tempfile.TemporaryDirectory(prefix=f"sage-bench-{name}-") as tmp:
                    tickets = [ticket(job, ["sleep", f"{d:.3f}"], deps, d / scale, allow_empty=True)
                               for job, (d, deps) in scaled.items()]
                    index = make_repo(Path(tmp) / "repo", tickets)
                    if policy == "sequential":
                        args = ["--parallel=1"]
                    else:
                        args = [f"--parallel={workers}", "--schedule", policy.removesuffix("-warm")]
                    if policy.endswith("-warm"):
                        warm_up(index, tickets, *args)
                    times[policy].append(run_sage_timed(index, *args))

        def median(policy: str, which: int) -> float | None:
            values = [pair[which] for pair in times.get(policy, [])]
            return statistics.median(values) if values else None

        cells = [_seconds(median("greedy", 0)), _ratio(median("greedy", 0), bound), _seconds(median("greedy", 1)),
                 _ratio(median("greedy", 1), bound), _seconds(median("greedy-warm", 0)),
                 _ratio(median("greedy-warm", 0), bound), _seconds(median("batch", 0)),
                 _ratio(median("batch", 0), bound), _seconds(median("sequential", 0))]
        print(f"| {name} | {len(jobs)} | {bound:.1f} | {' | '.join(cells)} |", flush=True)
        for policy in ("greedy", "greedy-warm"):
            if runs > 1 and policy in times:
                shown = ", ".join(f"{p:.2f}/{r:.2f}" for p, r in times[policy])
                print(f"  ({policy} runs, process/run s: {shown})", flush=True)


def warm_up(index: Path, tickets: list[dict], *args: str) -> None:
    """Run the backlog once, then put the repository back as it was except for the
    worktree slots the run made: what a later run (cron) finds."""
    repo = index.parent.parent.parent
    initial = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                             check=True).stdout.strip()
    run_sage_timed(index, *args)
    subprocess.run(["git", "reset", "-q", "--hard", initial], cwd=repo, check=True)
    index.write_text(json.dumps({"version": "1.0", "tickets": tickets}))


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _ratio(value: float | None, bound: float) -> str:
    return "-" if value is None else f"{value / bound:.3f}"


def noop_tickets(n: int, *, check: bool = False) -> list[dict]:
    """Tickets that each write one file (and, with `check`, have one check that passes: `true`)."""
    extra = {"validation_config": {"verification_scripts": [{"command": "true"}]}} if check else {}
    return [ticket(f"N-{i}", ["touch", f"noop-{i}.txt"], [], 1, **extra) for i in range(n)]


def bench_overhead(n: int, runs: int, sandbox: str | None = None, *, baseline: bool = True,
                   fresh: bool = False) -> None:
    """Sage against the fair floor (the plain script in one reused worktree, as sage reuses its
    slots), alternating which goes first each run; `fresh`: also the script with a new
    worktree per ticket (slow, and not what sage does: kept for comparison with old figures)."""
    sage_times, plain_fresh, plain_reuse = [], [], []
    flags = ("--sandbox", sandbox) if sandbox else ()
    for run in range(runs):
        with tempfile.TemporaryDirectory(prefix="sage-bench-overhead-") as tmp:
            base = Path(tmp) / "plain"
            if baseline and run % 2 == 1:
                make_bench_repo(base, files=300)
                plain_reuse.append(baseline_seconds_per_ticket(base, n, runs=1, reuse_worktree=True))
            index = make_repo(Path(tmp) / "sage", noop_tickets(n))
            sage_times.append(run_sage(index, "--parallel=1", *flags) / n)
            if not baseline:
                continue
            if run % 2 == 0:
                make_bench_repo(base, files=300)
                plain_reuse.append(baseline_seconds_per_ticket(base, n, runs=1, reuse_worktree=True))
            if fresh:
                make_bench_repo(base, files=300)
                plain_fresh.append(baseline_seconds_per_ticket(base, n, runs=1))
    if not baseline:  # sage alone: for comparing two versions of sage (bench/ab.sh)
        sage = statistics.median(sage_times)
        print(f"| {n} tickets | sage {sage:.3f} s/ticket | {1 / sage:.1f} landings/s | runs "
              f"{', '.join('%.3f' % x for x in sage_times)} |")
        return
    sage, reuse = statistics.median(sage_times), statistics.median(plain_reuse)
    ratios = [s / r for s, r in zip(sage_times, plain_reuse)]
    print("| tickets | sage s/ticket | floor: plain script s/ticket (one reused worktree) | ratio of medians "
          "| median of per-run ratios | sage landings/s |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| {n} | {sage:.3f} | {reuse:.3f} | {sage / reuse:.2f} | {statistics.median(ratios):.2f} "
          f"| {1 / sage:.1f} |")
    if plain_fresh:
        fresh_median = statistics.median(plain_fresh)
        print(f"plain script with a fresh worktree per ticket: {fresh_median:.3f} s/ticket "
              f"(sage {sage / fresh_median:.2f}x)")
    print(f"runs: sage {['%.3f' % x for x in sage_times]}, reused {['%.3f' % x for x in plain_reuse]}, "
          f"fresh {['%.3f' % x for x in plain_fresh]}")


def bench_sandbox(n: int, runs: int, check: bool) -> None:
    times: dict[str, list[float]] = {"bwrap": [], "none": []}
    for round_number in range(runs):
        for mode in ("bwrap", "none") if round_number % 2 == 0 else ("none", "bwrap"):
            with tempfile.TemporaryDirectory(prefix="sage-bench-sandbox-") as tmp:
                index = make_repo(Path(tmp) / "sage", noop_tickets(n, check=check))
                times[mode].append(run_sage(index, "--parallel=1", "--sandbox", mode) / n)
    with_it, without = statistics.median(times["bwrap"]), statistics.median(times["none"])
    print(f"| tickets | s/ticket, --sandbox none | s/ticket, --sandbox bwrap | added per ticket | ratio |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| {n} | {without:.3f} | {with_it:.3f} | {1000 * (with_it - without):+.1f} ms | {with_it / without:.2f} |")
    print(f"runs (s/ticket, in the order run): bwrap {['%.3f' % x for x in times['bwrap']]}, "
          f"none {['%.3f' % x for x in times['none']]}")


def bench_memory(n: int, workers: int, runs: int) -> None:
    peaks = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="sage-bench-memory-") as tmp:
            tickets = [ticket(f"M-{i}", ["sleep", "0.2"], [], 1, allow_empty=True) for i in range(n)]
            index = make_repo(Path(tmp) / "repo", tickets)
            peak = [0]
            run_sage(index, f"--parallel={workers}", peak=peak)
            peaks.append(peak[0] / 2**20)
    print(f"| tickets | workers | scheduler peak RSS (MB), median of {runs} | runs |")
    print("| --- | --- | --- | --- |")
    print(f"| {n} | {workers} | {statistics.median(peaks):.1f} | {', '.join('%.1f' % p for p in peaks)} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    makespan = sub.add_parser("makespan")
    makespan.add_argument("--runs", type=int, default=3)
    makespan.add_argument("--workers", type=int, default=4)
    makespan.add_argument("--scale", type=float, default=0.4, help="seconds per estimate minute")
    makespan.add_argument("--seed", type=int, default=7)
    makespan.add_argument("--policies", default="greedy,greedy-warm,batch,sequential",
                          help="comma-separated subset of greedy,greedy-warm,batch,sequential (greedy-warm: in a "
                               "repository where an earlier run made the worktree slots)")
    overhead = sub.add_parser("overhead")
    overhead.add_argument("--tickets", type=int, default=500)
    overhead.add_argument("--runs", type=int, default=3)
    overhead.add_argument("--sandbox", choices=("auto", "bwrap", "none"), default=None)
    overhead.add_argument("--no-baseline", action="store_true", help="sage alone, without the plain git scripts")
    overhead.add_argument("--fresh", action="store_true",
                          help="also the plain script with a new worktree per ticket (not what sage does)")
    sandbox = sub.add_parser("sandbox")
    sandbox.add_argument("--tickets", type=int, default=200)
    sandbox.add_argument("--runs", type=int, default=3)
    sandbox.add_argument("--check", action="store_true", help="each ticket has one check (`true`), sandboxed too")
    memory = sub.add_parser("memory")
    memory.add_argument("--tickets", type=int, default=200)
    memory.add_argument("--workers", type=int, default=8)
    memory.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    if args.what == "makespan":
        bench_makespan(args.runs, args.workers, args.scale, args.seed, tuple(args.policies.split(",")))
    elif args.what == "overhead":
        bench_overhead(args.tickets, args.runs, args.sandbox, baseline=not args.no_baseline, fresh=args.fresh)
    elif args.what == "sandbox":
        bench_sandbox(args.tickets, args.runs, args.check)
    else:
        bench_memory(args.tickets, args.workers, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
