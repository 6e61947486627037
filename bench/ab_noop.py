"""Two installs of sage-stream on the same no-op tickets, alternating: wall and CPU per ticket.

    python bench/ab_noop.py PYTHON_A,PYTHON_B ROUNDS TICKETS [sage stream args...]

Each round makes a fresh repository of TICKETS no-op tickets (bench_stream.py's) for each
python, in turn (the order alternates per round), runs `python -m sage_stream stream --auto
--json --parallel=1` and reports per ticket: the process's wall time and the CPU time of the
whole process tree (RUSAGE_CHILDREN: sage and every git and agent process it waited for).
CPU is less sensitive than wall to other jobs on a shared machine.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.bench_stream import make_repo, noop_tickets  # noqa: E402


def main() -> int:
    pythons = [os.path.abspath(python) for python in sys.argv[1].split(",")]  # not realpath: a venv python is a link
    rounds, count, extra = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    results: dict[str, tuple[list[float], list[float]]] = {python: ([], []) for python in pythons}
    for round_number in range(rounds):
        for python in pythons if round_number % 2 == 0 else pythons[::-1]:
            with tempfile.TemporaryDirectory(prefix="sage-ab-noop-") as tmp:
                index = make_repo(Path(tmp) / "sage", noop_tickets(count))
                before, began = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
                process = subprocess.Popen([python, "-m", "sage_stream", "stream", "--auto", "--json", "--parallel=1",
                                            *extra], cwd=index.parent.parent.parent, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.PIPE)
                _, error = process.communicate()
                wall = time.perf_counter() - began
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                if process.returncode != 0:
                    raise SystemExit(f"{python}: sage stream exited {process.returncode}: {error.decode()[-2000:]}")
                cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
                results[python][0].append(1000 * wall / count)
                results[python][1].append(1000 * cpu / count)
    for python, (walls, cpus) in results.items():
        print(f"{python}: wall {statistics.median(walls):.1f} ms/ticket ({' '.join(f'{x:.1f}' for x in walls)}); "
              f"cpu {statistics.median(cpus):.1f} ms/ticket ({' '.join(f'{x:.1f}' for x in cpus)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
