"""Per-ticket cost of `sage stream` against the size of the index it works in.

    python bench/bench_scale.py [--sizes 200,10000,100000] [--drain 50] [--rounds 3] [--python PY ...]
    python bench/bench_scale.py --startup 100000 [--rounds 3] [--python PY ...]

Each index holds `size` tickets of bench/gen_index.py's layered DAG (30% COMPLETED, the
rest UNPROCESSED, all waiting on one DEFERRED ticket, so that none can start but every
one is still in the plan), written as Sage writes it (indent 2), plus `--drain` no-op
tickets (each `touch`es one file) that are the only ones ready. One `sage stream
--parallel=1` drains those; measured are the run (its run_started to run_finished event:
without python's start, imports, reading the index and recovery) divided by the tickets
drained, and the process from start to the first ticket_started event (the start-up).
`--sandbox none`: the sandbox's fixed cost per ticket would only dilute the ratios.

Sizes and pythons are interleaved within each round (size by size, each python in turn),
so that every figure of a round saw the same machine; the table gives the medians over
rounds and the ratio of each size's per-ticket cost to the smallest size's, taken within
each round first. `--python` (repeatable) runs `python -m sage_stream` of other installs
(e.g. main's venv) through the same harness: the default is this one's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.bench_git_baseline import make_bench_repo  # noqa: E402
from bench.gen_index import generate_tickets  # noqa: E402

GATE = "GATE-0"


def index_tickets(size: int, drain: int) -> list[dict]:
    tickets = generate_tickets(size)
    for item in tickets:
        if item["state"] != "COMPLETED":
            item["dependencies"] = [*item["dependencies"], GATE]
    gate = {"id": GATE, "title": "held back", "state": "DEFERRED", "priority": "P4", "type": "implementation",
            "validation_type": "generic", "dependencies": [], "estimate": 1,
            "defer_reason": {"category": "blocked", "message": "keeps the backlog waiting", "retryable": False}}
    noop = [{"id": f"NOOP-{n:03d}", "title": f"no-op {n}", "state": "UNPROCESSED", "priority": "P0",
             "type": "implementation", "validation_type": "generic", "dependencies": [], "estimate": 1,
             "command": ["touch", f"noop-{n}.txt"]} for n in range(drain)]
    return [gate, *tickets, *noop]


def make_repo(path: Path, tickets: list[dict]) -> Path:
    make_bench_repo(path, files=300)
    index = path / ".sage" / "tickets" / "index.json"
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_text(json.dumps({"version": "1.0", "tickets": tickets}, indent=2, ensure_ascii=False) + "\n",
                     encoding="utf-8")
    return index


def run_once(python: str, index: Path, drain: int) -> tuple[float, float]:
    """(seconds per drained ticket in the run, seconds from the process start to its first agent)."""
    argv = [python, "-m", "sage_stream", "stream", "--auto", "--json", "--parallel=1", "--sandbox", "none",
            "--index", str(index)]
    began = time.time()
    done = subprocess.run(argv, cwd=index.parent.parent.parent, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"sage stream exited {done.returncode}: {done.stderr[-2000:]}")
    stamps: dict[str, float] = {}
    landed = 0
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            kind = event.get("event")
            if kind in ("run_started", "run_finished") or (kind == "ticket_started" and kind not in stamps):
                stamps.setdefault(kind, _epoch(event["time"]))
            landed += kind == "ticket_landed"
    if landed != drain:
        raise RuntimeError(f"{landed} of {drain} tickets landed: {done.stderr[-2000:]}")
    return (stamps["run_finished"] - stamps["run_started"]) / drain, stamps["ticket_started"] - began


def startup_once(python: str, index: Path) -> tuple[float, float, float, float]:
    """(seconds of `sage validate`, its peak RSS in MB, seconds from starting `sage stream` to
    its first agent, the stream's peak RSS in MB until it exits after that one ticket)."""
    import psutil

    def peak_of(argv: list[str]) -> tuple[float, float, str]:
        with tempfile.TemporaryFile("w+") as out:  # not a pipe: nobody reads it while it runs
            began = time.time()
            process = psutil.Popen(argv, cwd=index.parent.parent.parent, stdout=out, stderr=subprocess.DEVNULL)
            peak = 0
            while process.poll() is None:
                try:
                    peak = max(peak, process.memory_info().rss)
                except psutil.Error:
                    pass
                time.sleep(0.01)
            took = time.time() - began
            out.seek(0)
            return took, peak / 2**20, out.read()

    validate_s, validate_mb, _ = peak_of([python, "-m", "sage_stream", "validate", "--index", str(index)])
    began = time.time()
    _, stream_mb, out = peak_of([python, "-m", "sage_stream", "stream", "--auto", "--json", "--parallel=1",
                                  "--sandbox", "none", "--max-tickets", "1", "--index", str(index)])
    first = next(_epoch(json.loads(line)["time"]) for line in out.splitlines()
                 if line.startswith("{") and json.loads(line).get("event") == "ticket_started")
    return validate_s, validate_mb, first - began, stream_mb


def bench_startup(pythons: list[str], size: int, rounds: int) -> None:
    rows: dict[str, list[tuple[float, float, float, float]]] = {python: [] for python in pythons}
    with tempfile.TemporaryDirectory(prefix="sage-bench-startup-") as tmp:
        tickets = index_tickets(size, 1)
        for round_number in range(rounds):
            for python in pythons if round_number % 2 == 0 else reversed(pythons):
                index = make_repo(Path(tmp) / "repo", tickets)
                rows[python].append(startup_once(python, index))
                v, vm, s, sm = rows[python][-1]
                print(f"round {round_number + 1} {python}: validate {v:.2f} s {vm:.0f} MB, first agent {s:.2f} s, "
                      f"stream peak {sm:.0f} MB, load {load()}", flush=True)
    print("\n| python | tickets | sage validate (s) | validate peak (MB) | stream: first agent (s) "
          "| / validate (median of rounds) | stream peak (MB) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for python, values in rows.items():
        columns = list(zip(*values))
        ratio = statistics.median(s / v for v, _, s, _ in values)
        print(f"| {python} | {size:,} | {statistics.median(columns[0]):.2f} | {statistics.median(columns[1]):.0f} "
              f"| {statistics.median(columns[2]):.2f} | {ratio:.2f} | {statistics.median(columns[3]):.0f} |")


def compile_install(python: str) -> None:
    """Compile the bytecode of the sage_stream that `python` imports."""
    where = subprocess.run([python, "-c", "import os, sage_stream; print(os.path.dirname(sage_stream.__file__))"],
                           capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run([python, "-m", "compileall", "-q", where], check=True)


def _epoch(stamp: str) -> float:
    from datetime import datetime, timezone
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="200,10000,100000")
    parser.add_argument("--drain", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--python", action="append", help="another install's python (repeatable)")
    parser.add_argument("--startup", type=int, metavar="SIZE",
                        help="only the start-up on a SIZE-ticket index: `sage validate` against `sage stream` "
                             "up to its first agent, time and peak RSS, interleaved")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    pythons = [os.path.abspath(python) for python in args.python or [sys.executable]]  # not resolve(): a venv python is a link
    # Each install as a user has it: bytecode compiled. Without this, PYTHONDONTWRITEBYTECODE
    # (set in some shells) made every run compile sage_stream from source, 0.7 s of each
    # "first agent after" figure and of `--startup`'s stream figure (more than of validate's).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    for python in pythons:
        compile_install(python)
    if args.startup:
        bench_startup(pythons, args.startup, args.rounds)
        return 0
    per_ticket: dict[tuple[str, int], list[float]] = {}
    start_up: dict[tuple[str, int], list[float]] = {}
    ratios: dict[tuple[str, int], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="sage-bench-scale-") as tmp:
        for round_number in range(args.rounds):
            for python in pythons:
                first = None
                for size in sizes:
                    index = make_repo(Path(tmp) / f"repo-{size}", index_tickets(size, args.drain))
                    cost, started = run_once(python, index, args.drain)
                    print(f"round {round_number + 1} {python} size {size}: {1000 * cost:.1f} ms/ticket, "
                          f"first agent after {started:.2f} s, load {load()}", flush=True)
                    per_ticket.setdefault((python, size), []).append(cost)
                    start_up.setdefault((python, size), []).append(started)
                    first = cost if first is None else first
                    ratios.setdefault((python, size), []).append(cost / first)
    print(f"\n| python | index tickets | ms per drained ticket (median of {args.rounds}) | / smallest (median of "
          f"per-round ratios) | first agent after (s) |")
    print("| --- | --- | --- | --- | --- |")
    for python in pythons:
        for size in sizes:
            print(f"| {python} | {size:,} | {1000 * statistics.median(per_ticket[python, size]):.1f} "
                  f"| {statistics.median(ratios[python, size]):.2f} | {statistics.median(start_up[python, size]):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
