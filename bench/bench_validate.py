"""`sage validate` at scale, side by side with a plain `json.load` of the same file.

For each size (default 1k, 10k, 100k tickets, see gen_index.py) it generates an index
under bench/out/validate/ (inside this repository's work tree, so the git
prerequisites are real), then takes the median of RUNS runs of, alternately:

  python -c 'import json, sys; json.load(open(sys.argv[1]))' F     (subprocess)
  python -m sage_stream validate --json --index F                  (subprocess)

and the same two in this process (json.load vs the validate command's own function,
garbage collector paused as the command does). Peak RSS is each child's own high-water
mark (VmHWM, read by the child at exit, from an atexit function: `sage validate` ends
with os._exit, after running the atexit functions): `wait4`'s ru_maxrss would report
the parent's size for a small child, since Linux carries the high-water mark over fork
and exec.
CPU is user + system seconds of the child (and its git children), less sensitive than
wall time to other jobs on the machine; the load average is printed with each size.

    python bench/bench_validate.py                 # 1000 10000 100000
    python bench/bench_validate.py 100000 --breakdown
    python bench/bench_validate.py 100000 --shuffled   # tickets in random order: the sort runs
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from gen_index import write_index  # noqa: E402

OUT = HERE / "out" / "validate"
RUNS = 5

# Run in each child before its work: at exit, write the child's peak RSS (kB) to a file.
PEAK_RSS_HOOK = (
    "import atexit, os\n"
    "def _peak():\n"
    "    with open('/proc/self/status') as status:\n"
    "        kb = next(line.split()[1] for line in status if line.startswith('VmHWM:'))\n"
    "    with open(os.environ['BENCH_PEAK_FILE'], 'w') as out:\n"
    "        out.write(kb)\n"
    "atexit.register(_peak)\n"
)
JSON_LOAD = PEAK_RSS_HOOK + "import json, sys; json.load(open(sys.argv[1], encoding='utf-8'))\n"
SAGE_VALIDATE = (
    PEAK_RSS_HOOK
    + "import runpy, sys\n"
    + "sys.argv = ['sage', *sys.argv[1:]]\n"
    + "runpy.run_module('sage_stream', run_name='__main__', alter_sys=True)\n"
)


def index_path(count: int, *, shuffled: bool = False) -> Path:
    name = f"{count}-shuffled" if shuffled else str(count)
    return OUT / name / ".sage" / "tickets" / "index.json"


class ChildRun(NamedTuple):
    wall: float  # seconds
    cpu: float  # user + system seconds of the child and its children (git)
    peak_mb: int
    exit_code: int


def run_child(argv: list[str]) -> ChildRun:
    with tempfile.NamedTemporaryFile("r", suffix=".peak") as peak, tempfile.TemporaryFile() as stderr:
        env = {**os.environ, "BENCH_PEAK_FILE": peak.name}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        child = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=stderr, env=env, check=False)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        stderr.seek(0)
        if errors := stderr.read().decode().strip():
            raise SystemExit(f"{argv} wrote to stderr:\n{errors}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return ChildRun(wall, cpu, int(Path(peak.name).read_text()) // 1024, child.returncode)


def in_process_json(path: Path) -> float:
    start = time.perf_counter()
    with path.open(encoding="utf-8") as handle:
        json.load(handle)
    return time.perf_counter() - start


def in_process_validate(path: Path) -> float:
    """What `sage validate --json` runs, minus python's start and imports."""
    from sage_stream.commands.validate import command

    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        command.callback(strict=False, as_json=True, index_path=str(path))
    return time.perf_counter() - start


def measure(path: Path, count: int) -> dict[str, Any]:
    python = sys.executable
    json_runs: list[ChildRun] = []
    validate_runs: list[ChildRun] = []
    load = os.getloadavg()[0]
    for _ in range(RUNS):
        json_runs.append(run_child([python, "-c", JSON_LOAD, str(path)]))
        validate = [python, "-c", SAGE_VALIDATE, "validate", "--json", "--index", str(path)]
        validate_runs.append(run_child(validate))
    codes = {run.exit_code for run in validate_runs}
    if codes - {0, 2}:
        raise SystemExit(f"sage validate failed on the generated index {path}: exit {codes}")
    json_inproc, validate_inproc = [], []
    for _ in range(RUNS):
        json_inproc.append(in_process_json(path))
        validate_inproc.append(in_process_validate(path))
    return {
        "tickets": count,
        "mb": path.stat().st_size / 1e6,
        "load": (load + os.getloadavg()[0]) / 2,
        "json_s": statistics.median(run.wall for run in json_runs),
        "validate_s": statistics.median(run.wall for run in validate_runs),
        "json_cpu": statistics.median(run.cpu for run in json_runs),
        "validate_cpu": statistics.median(run.cpu for run in validate_runs),
        "json_rss": max(run.peak_mb for run in json_runs),
        "validate_rss": max(run.peak_mb for run in validate_runs),
        "json_inproc": statistics.median(json_inproc),
        "validate_inproc": statistics.median(validate_inproc),
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| tickets | file | load avg | json.load (process) | sage validate --json (process) | ratio"
        " | CPU json.load / validate | CPU ratio | peak RSS json.load / validate"
        " | json.load (in-process) | validate (in-process) | ratio |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['tickets']:,} | {row['mb']:.1f} MB | {row['load']:.1f} | {row['json_s']:.2f} s"
            f" | {row['validate_s']:.2f} s | {row['validate_s'] / row['json_s']:.1f}x"
            f" | {row['json_cpu']:.2f} / {row['validate_cpu']:.2f} s"
            f" | {row['validate_cpu'] / row['json_cpu']:.1f}x"
            f" | {row['json_rss']} / {row['validate_rss']} MB"
            f" | {row['json_inproc']:.3f} s | {row['validate_inproc']:.2f} s"
            f" | {row['validate_inproc'] / row['json_inproc']:.1f}x |"
        )
    return "\n".join(lines)


def breakdown(path: Path, count: int) -> str:
    """In-process seconds and RSS after each phase of `sage validate`, garbage collector
    paused as the command does. Run first, in a fresh process, so that RSS means something."""
    import psutil

    from sage_stream.graph.analysis import analyze
    from sage_stream.graph.columns import Columns
    from sage_stream.graph.dependency_graph import DependencyGraph, graph_findings
    from sage_stream.tickets.store import gc_paused, read_index
    from sage_stream.validation import checks
    from sage_stream.validation.prerequisites import check_prerequisites
    from sage_stream.validation.report import ValidationReport, render_json

    phases: list[tuple[str, float, int]] = []
    process = psutil.Process()

    def timed(name: str, action: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = action()
        phases.append((name, time.perf_counter() - start, process.memory_info().rss // 2**20))
        return result

    file = str(path)
    made: dict[str, Any] = {}  # everything validate builds, freed in the last phase
    with gc_paused():
        context, _ = timed("prerequisites (git)", lambda: check_prerequisites(path))
        made["loaded"] = timed("read_index (bytes -> models, pydantic-core)", lambda: read_index(path))
        tickets = made["loaded"].tickets
        made["columns"] = timed("Columns (graph/columns.py: every field the checks and graph read)",
                                lambda: Columns.of(tickets))
        made["graph"] = timed("DependencyGraph (edges, topological order)",
                              lambda: DependencyGraph(tickets, columns=made["columns"]))
        made["ticket findings"] = timed(
            "checks: per-ticket checks (validation/checks.py)",
            lambda: checks.ticket_findings(made["columns"], made["loaded"].tickets_dir, context, file))
        made["findings"] = timed("graph_findings (graph/dependency_graph.py)",
                                 lambda: graph_findings(tickets, file=file, graph=made["graph"]))
        made["analysis"] = timed("analyze (graph/analysis.py)",
                                 lambda: analyze(tickets, graph=made["graph"]))
        made["report"] = ValidationReport(index=file, tickets=len(tickets), findings=made["findings"],
                                          analysis=made["analysis"],
                                          states=checks._count_states(made["columns"].states))
        timed("render_json", lambda: render_json(made["report"]))
        tickets = []
        timed("freeing it all (`sage validate` skips this: os._exit)", made.clear)
    lines = [f"| phase ({count:,} tickets, in-process) | seconds | RSS after |", "| --- | ---: | ---: |"]
    lines += [f"| {name} | {seconds:.2f} | {rss} MB |" for name, seconds, rss in phases]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[1000, 10_000, 100_000])
    parser.add_argument("--breakdown", action="store_true", help="time each phase at the largest size")
    parser.add_argument("--shuffled", action="store_true",
                        help="tickets in random order (dependencies after their dependents)")
    args = parser.parse_args()
    for count in args.sizes:
        path = index_path(count, shuffled=args.shuffled)
        if not path.exists():
            write_index(path, count, shuffled=args.shuffled)
    largest = max(args.sizes)
    # the breakdown first, while this process is fresh: its RSS column means something
    phases = breakdown(index_path(largest, shuffled=args.shuffled), largest) if args.breakdown else ""
    rows = []
    for count in args.sizes:
        rows.append(measure(index_path(count, shuffled=args.shuffled), count))
        print(f"measured {count} tickets", file=sys.stderr)
    print(table(rows))
    if phases:
        print()
        print(phases)


if __name__ == "__main__":
    main()
