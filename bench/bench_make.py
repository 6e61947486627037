"""`sage stream` as a DAG task runner (the exec agent) against GNU make -j4 on the same DAG.

    python bench/bench_make.py [--rounds 3] [--workers 4] [--seed 11]

40 tasks in 5 layers of 8, each task depending on 1-2 tasks of the layer before, each
sleeping 0.2-2 s and then writing one file (`out/<task>.txt`). make runs a Makefile of the
same rules with -j4; sage runs one ticket per task (`command`: the same `sh -c` line, the
ticket's estimate its duration) with --parallel=4, greedy, landing each as a commit. Both
run in each round, which goes first alternating. Reported: the medians of the wall-clock
makespans, the ratio (median of the per-round ratios), the time per task over make, and
whether the outputs were identical (every file, on make's side in out/, on sage's in the
target branch).
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
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.bench_git_baseline import make_bench_repo  # noqa: E402

LAYERS, WIDTH = 5, 8


def dag(seed: int) -> dict[str, tuple[float, list[str]]]:
    rng = random.Random(seed)
    tasks: dict[str, tuple[float, list[str]]] = {}
    previous: list[str] = []
    for layer in range(LAYERS):
        current = [f"T{layer}{slot}" for slot in range(WIDTH)]
        for name in current:
            deps = sorted(rng.sample(previous, k=rng.randint(1, 2))) if previous else []
            tasks[name] = (round(rng.uniform(0.2, 2.0), 2), deps)
        previous = current
    return tasks


def shell_line(name: str, seconds: float) -> str:
    return f"sleep {seconds} && mkdir -p out && echo {name} > out/{name}.txt"


def run_make(tasks: dict[str, tuple[float, list[str]]], workers: int, where: Path) -> tuple[float, dict[str, str]]:
    where.mkdir(parents=True)
    rules = [f"all: {' '.join(f'out/{name}.txt' for name in tasks)}\n"]
    for name, (seconds, deps) in tasks.items():
        rules.append(f"out/{name}.txt: {' '.join(f'out/{dep}.txt' for dep in deps)}\n\t{shell_line(name, seconds)}\n")
    (where / "Makefile").write_text("\n".join(rules))
    began = time.perf_counter()
    subprocess.run(["make", "-s", f"-j{workers}"], cwd=where, check=True)
    took = time.perf_counter() - began
    return took, {path.name: path.read_text() for path in sorted((where / "out").iterdir())}


def run_sage(tasks: dict[str, tuple[float, list[str]]], workers: int, where: Path) -> tuple[float, dict[str, str]]:
    make_bench_repo(where, files=20)
    index = where / ".sage" / "tickets" / "index.json"
    index.parent.mkdir(parents=True, exist_ok=True)
    tickets = [{"id": name, "title": f"task {name}", "state": "UNPROCESSED", "priority": "P2",
                "type": "implementation", "validation_type": "generic", "dependencies": deps,
                "estimate": seconds, "files": [f"out/{name}.txt"], "command": ["sh", "-c", shell_line(name, seconds)]}
               for name, (seconds, deps) in tasks.items()]
    index.write_text(json.dumps({"version": "1.0", "tickets": tickets}, indent=2) + "\n")
    argv = [sys.executable, "-m", "sage_stream", "stream", "--auto", "--json", f"--parallel={workers}",
            "--schedule", "greedy", "--sandbox", "none", "--index", str(index)]
    began = time.perf_counter()
    done = subprocess.run(argv, cwd=where, capture_output=True, text=True)
    took = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"sage stream exited {done.returncode}: {done.stderr[-2000:]}")
    listing = subprocess.run(["git", "ls-tree", "--name-only", "main", "out/"], cwd=where, capture_output=True,
                             text=True, check=True).stdout.split()
    outputs = {}
    for path in sorted(listing):
        outputs[Path(path).name] = subprocess.run(["git", "show", f"main:{path}"], cwd=where, capture_output=True,
                                                  text=True, check=True).stdout
    return took, outputs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    tasks = dag(args.seed)
    times: dict[str, list[float]] = {"make": [], "sage": []}
    identical = True
    with tempfile.TemporaryDirectory(prefix="sage-bench-make-") as tmp:
        for round_number in range(args.rounds):
            order = ("make", "sage") if round_number % 2 == 0 else ("sage", "make")
            outputs = {}
            for runner in order:
                run = run_make if runner == "make" else run_sage
                took, outputs[runner] = run(tasks, args.workers, Path(tmp) / f"{runner}-{round_number}")
                times[runner].append(took)
            identical = identical and outputs["make"] == outputs["sage"] and len(outputs["make"]) == len(tasks)
            load = Path("/proc/loadavg").read_text().split()[0]
            print(f"round {round_number + 1}: make {times['make'][-1]:.2f} s, sage {times['sage'][-1]:.2f} s, "
                  f"load {load}", flush=True)
    make, sage = statistics.median(times["make"]), statistics.median(times["sage"])
    ratio = statistics.median(s / m for s, m in zip(times["sage"], times["make"]))
    print(f"\n| tasks | workers | make -j{args.workers} (s) | sage greedy (s) | sage / make (median of rounds) "
          f"| per task over make (ms) | outputs identical |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {len(tasks)} | {args.workers} | {make:.2f} | {sage:.2f} | {ratio:.3f} | "
          f"{1000 * (sage - make) / len(tasks):.0f} | {'yes' if identical else 'NO'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
