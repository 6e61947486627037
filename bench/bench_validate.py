"""`sage validate` at scale, side by side with a plain `json.load` of the same file.

For each size (default 1k, 10k, 100k tickets, see gen_index.py) it generates an index
under bench/out/validate/ (inside this repository's work tree, so the git
prerequisites are real), then takes the median of RUNS runs of, alternately:

  python -c 'import json, sys; json.load(open(sys.argv[1]))' F     (subprocess)
  python -m sage_stream validate --json --index F                  (subprocess)

and the same two in this process (json.load vs validation.checks.validate_index +
render_json). Peak RSS is the child's own (os.wait4). Prints a markdown table, and with
--breakdown the in-process time of each phase of validate at the largest size.

    python bench/bench_validate.py                 # 1000 10000 100000
    python bench/bench_validate.py 100000 --breakdown
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from gen_index import write_index  # noqa: E402

OUT = HERE / "out" / "validate"
RUNS = 5
JSON_LOAD = "import json, sys; json.load(open(sys.argv[1], encoding='utf-8'))"


def run_child(argv: list[str]) -> tuple[float, int, int]:
    """Wall seconds, peak RSS in MB, and exit code of one child process."""
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    stderr = child.stderr.read().decode() if child.stderr else ""
    if child.stderr:
        child.stderr.close()
    if stderr.strip():
        raise SystemExit(f"{argv} wrote to stderr:\n{stderr}")
    return elapsed, usage.ru_maxrss // 1024, child.returncode


def in_process_json(path: Path) -> float:
    start = time.perf_counter()
    with path.open(encoding="utf-8") as handle:
        json.load(handle)
    return time.perf_counter() - start


def in_process_validate(path: Path) -> float:
    from sage_stream.validation.checks import validate_index
    from sage_stream.validation.report import render_json

    start = time.perf_counter()
    render_json(validate_index(path))
    return time.perf_counter() - start


def measure(count: int) -> dict[str, float]:
    path = OUT / str(count) / ".sage" / "tickets" / "index.json"
    python = sys.executable
    json_runs, validate_runs, json_rss, validate_rss = [], [], [], []
    codes = set()
    for _ in range(RUNS):
        seconds, rss, _ = run_child([python, "-c", JSON_LOAD, str(path)])
        json_runs.append(seconds)
        json_rss.append(rss)
        seconds, rss, code = run_child([python, "-m", "sage_stream", "validate", "--json", "--index", str(path)])
        validate_runs.append(seconds)
        validate_rss.append(rss)
        codes.add(code)
    if codes - {0, 2}:
        raise SystemExit(f"sage validate failed on the generated index {path}: exit {codes}")
    json_inproc = statistics.median(in_process_json(path) for _ in range(RUNS))
    validate_inproc = statistics.median(in_process_validate(path) for _ in range(RUNS))
    return {
        "tickets": count,
        "mb": path.stat().st_size / 1e6,
        "json_s": statistics.median(json_runs),
        "validate_s": statistics.median(validate_runs),
        "json_rss": max(json_rss),
        "validate_rss": max(validate_rss),
        "json_inproc": json_inproc,
        "validate_inproc": validate_inproc,
    }


def table(rows: list[dict[str, float]]) -> str:
    lines = [
        "| tickets | file | json.load (process) | sage validate --json (process) | ratio | peak RSS json.load / validate"
        " | json.load (in-process) | validate (in-process) | ratio |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['tickets']:,} | {row['mb']:.1f} MB | {row['json_s']:.2f} s | {row['validate_s']:.2f} s"
            f" | {row['validate_s'] / row['json_s']:.1f}x | {row['json_rss']} / {row['validate_rss']} MB"
            f" | {row['json_inproc']:.3f} s | {row['validate_inproc']:.2f} s"
            f" | {row['validate_inproc'] / row['json_inproc']:.1f}x |"
        )
    return "\n".join(lines)


def breakdown(count: int) -> str:
    """In-process seconds of each phase of `sage validate`, garbage collector paused as in
    validate_index."""
    import gc

    from sage_stream.graph.analysis import analyze
    from sage_stream.graph.dependency_graph import graph_findings
    from sage_stream.tickets.store import load_index, read_raw
    from sage_stream.validation import checks
    from sage_stream.validation.prerequisites import check_prerequisites
    from sage_stream.validation.report import ValidationReport, render_json

    import psutil

    path = OUT / str(count) / ".sage" / "tickets" / "index.json"
    phases: list[tuple[str, float, int]] = []
    process = psutil.Process()

    def timed(name: str, action):
        start = time.perf_counter()
        result = action()
        phases.append((name, time.perf_counter() - start, process.memory_info().rss // 2**20))
        return result

    with checks.gc_paused():
        context, prerequisites = timed("prerequisites (git)", lambda: check_prerequisites(path))
        timed("read_raw (read + json.loads), then dropped", lambda: read_raw(path) and None)
        loaded = timed("load_index (read + json.loads + models)", lambda: load_index(path))
        rows = timed("checks: rows", lambda: checks._rows(loaded))
        file = str(path)
        timed("checks: per-ticket checks", lambda: [
            *checks.required_field_findings(rows, file), *checks.id_findings(rows, file),
            *checks.prose_findings(rows, loaded.tickets_dir, file), *checks.priority_findings(rows, file),
            *checks.type_findings(rows, file), *checks.subtask_findings(rows, file),
            *checks.checkpoint_findings(rows, context, file), *checks.path_findings(rows, file),
            *checks.estimate_findings(rows, file)])
        findings = timed("graph_findings (graph/dependency_graph.py)", lambda: graph_findings(loaded.tickets, file=file))
        analysis = timed("analyze (graph/analysis.py)", lambda: analyze(loaded.tickets))
        report = ValidationReport(index=file, tickets=len(loaded.tickets), findings=findings, analysis=analysis)
        timed("render_json", lambda: render_json(report))
    gc.collect()
    lines = [f"| phase ({count:,} tickets, in-process) | seconds | RSS after |", "| --- | ---: | ---: |"]
    lines += [f"| {name} | {seconds:.2f} | {rss} MB |" for name, seconds, rss in phases]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[1000, 10_000, 100_000])
    parser.add_argument("--breakdown", action="store_true", help="time each phase at the largest size")
    args = parser.parse_args()
    for count in args.sizes:
        path = OUT / str(count) / ".sage" / "tickets" / "index.json"
        if not path.exists():
            write_index(path, count)
    # the breakdown first, while this process is fresh: its RSS column means something
    phases = breakdown(max(args.sizes)) if args.breakdown else ""
    rows = []
    for count in args.sizes:
        rows.append(measure(count))
        print(f"measured {count} tickets", file=sys.stderr)
    print(table(rows))
    if phases:
        print()
        print(phases)


if __name__ == "__main__":
    main()
