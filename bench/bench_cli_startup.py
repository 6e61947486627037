"""`sage validate` on a 10-ticket index against `python -c pass`: the CLI's start-up cost.

Each round runs, one after the other, `python -c pass` and `python -m sage_stream validate`
for every source tree given (the current one, and with `--old SRC` an older checkout, put
first on PYTHONPATH so that it wins over the editable install), so every variant sees the
same load; the median of RUNS rounds is reported with the load average. The index lives in
a throwaway git repository under bench/out/cli-startup/ (validate's git checks are real).
Bytecode is compiled first and children may write it: PYTHONDONTWRITEBYTECODE would
otherwise make every run compile sage_stream from source (20-40 ms), which no installed
copy does.

    python bench/bench_cli_startup.py --runs 21
    git archive b6af79d sage_stream | tar -x -C /tmp/old && \\
        python bench/bench_cli_startup.py --old /tmp/old --runs 21
    python -X importtime -m sage_stream validate 2> imports.txt   # where the rest goes

Two rows are floors, not commands: `import click` with pydantic's BaseModel, and with the
ticket models built and the store that validates with them (what `sage validate` cannot
start without, whatever the index).
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from gen_index import write_index  # noqa: E402

OUT = HERE / "out" / "cli-startup"
NEW_SOURCE = HERE.parent


FLOORS = {
    "imports only: click, pydantic": "import click; from pydantic import BaseModel",
    "imports only: click, the ticket models and store": "import click, sage_stream.tickets.store",
}


def prepare_repository(count: int) -> Path:
    repo = OUT / f"repo-{count}"
    index = repo / ".sage" / "tickets" / "index.json"
    if not index.exists():
        repo.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
        write_index(index, count)
    return repo


def child_environment(source: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(source)
    return env


def wall_seconds(argv: list[str], *, cwd: Path, env: dict[str, str], ok_codes: frozenset[int]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode not in ok_codes:
        raise SystemExit(f"{argv} exited {done.returncode}:\n{done.stderr.decode()}")
    return elapsed


def interleaved_medians(variants: dict[str, tuple[list[str], dict[str, str], frozenset[int]]], *, cwd: Path,
                        runs: int) -> dict[str, float]:
    """Median wall seconds of each variant over `runs` rounds, each round running all of them."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(runs):
        for name, (argv, env, ok_codes) in variants.items():
            samples[name].append(wall_seconds(argv, cwd=cwd, env=env, ok_codes=ok_codes))
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--tickets", type=int, default=10)
    parser.add_argument("--old", type=Path, default=None, help="an older source tree (holding sage_stream/)")
    options = parser.parse_args()
    repo = prepare_repository(options.tickets)
    sources = {"new": NEW_SOURCE} | ({"old": options.old.resolve()} if options.old else {})
    python = sys.executable
    variants = {"python -c pass": ([python, "-c", "pass"], child_environment(NEW_SOURCE), frozenset({0}))}
    # The floor under any command that reads tickets: its CLI framework and pydantic, then
    # the ticket models built and the store that validates with them, nothing run.
    for label, code in FLOORS.items():
        variants[label] = ([python, "-c", code], child_environment(NEW_SOURCE), frozenset({0}))
    for label, source in sources.items():
        compileall.compile_dir(source / "sage_stream", quiet=1)
        variants[f"sage validate ({label}: {source})"] = (
            [python, "-m", "sage_stream", "validate"], child_environment(source), frozenset({0, 2}))
    load_before = os.getloadavg()[0]
    medians = interleaved_medians(variants, cwd=repo, runs=options.runs)
    load_after = os.getloadavg()[0]
    floor = medians["python -c pass"]
    print(f"{options.tickets} tickets, median of {options.runs} interleaved runs, "
          f"load average {load_before:.2f} -> {load_after:.2f}")
    print("| command | median wall | x python -c pass |")
    print("| --- | ---: | ---: |")
    for name, seconds in medians.items():
        print(f"| {name} | {seconds * 1000:.0f} ms | {seconds / floor:.2f}x |")


if __name__ == "__main__":
    main()
