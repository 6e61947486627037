"""Where a no-op ticket's time goes: `sage stream --parallel=1` on N no-op tickets with timers
around every git process and the steps of a ticket, in one process.

    python bench/trace_noop.py [--tickets 150] [--show-ms 200]

Prints the medians of `_prepare` (the slot switched to the ticket), `_agent_turns`,
`_snapshot` (its work committed), `_queue_and_land` (the loop's landing) and the cycle (one
`_queue_and_land` start to the next), then a timeline of `--show-ms` milliseconds from the
middle of the run: start (ms), duration (ms), thread, step, git subcommand.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.bench_stream import make_repo, noop_tickets  # noqa: E402
from sage_stream.engine import local_runner, stream  # noqa: E402
from sage_stream.git import repository  # noqa: E402

STEPS = ((local_runner.LocalRunner, "_prepare"), (local_runner.LocalRunner, "_agent_turns"),
         (local_runner.LocalRunner, "_snapshot"), (stream.StreamRun, "_queue_and_land"), (repository.Git, "run"))
LOG: list[tuple[str, str, str, float, float]] = []  # thread, step, git subcommand, start, end


def timed(owner: type, name: str) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        began = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            detail = args[1] if name == "run" and len(args) > 1 else ""
            LOG.append((threading.current_thread().name[:12], name, detail, began, time.perf_counter()))

    setattr(owner, name, wrapper)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=150)
    parser.add_argument("--show-ms", type=float, default=200.0)
    args = parser.parse_args()
    for owner, name in STEPS:
        timed(owner, name)
    from sage_stream.cli import run

    with tempfile.TemporaryDirectory(prefix="sage-trace-noop-") as tmp:
        index = make_repo(Path(tmp) / "sage", noop_tickets(args.tickets))
        code = run(["stream", "--auto", "--json", "--parallel=1", "--index", str(index)])
        if code != 0:
            raise SystemExit(f"sage stream exited {code}")
    for _, name in STEPS[:-1]:
        spans = [1000 * (end - began) for _, step, _, began, end in LOG if step == name]
        print(f"{name}: median {statistics.median(spans):.1f} ms over {len(spans)}", file=sys.stderr)
    landings = sorted(began for _, step, _, began, _ in LOG if step == "_queue_and_land")
    print(f"cycle: median {statistics.median(1000 * (b - a) for a, b in zip(landings, landings[1:])):.1f} ms",
          file=sys.stderr)
    ordered = sorted(LOG, key=lambda item: item[3])
    middle = ordered[len(ordered) // 2][3]
    for thread, step, detail, began, end in ordered:
        if middle <= began <= middle + args.show_ms / 1000:
            print(f"{1000 * (began - middle):7.1f} {1000 * (end - began):6.1f} {thread:12s} {step} {detail}",
                  file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
