"""`sage ready`, `sage ready --json`, `sage plan` and `sage graph --format json` on a big
index, against a plain `json.load` of the same file (issue 11's target: <= 3x at 100k).

Each round runs, one after the other, `python -c 'json.load(...)'` and every command for
every source tree given (this one, and with `--old SRC` an older checkout put first on
PYTHONPATH), output to /dev/null; the table has the median wall time over the rounds, the
ratio to json.load's median, the median CPU time (user and system, from wait4: steadier
than the wall time on a shared machine) and its ratio, and the largest peak RSS (the
child's own ru_maxrss). "models only" is the floor under every command: the imports and
`read_index` (the file parsed and validated into its pydantic models), nothing computed.
The index is bench/gen_index.py's layered DAG in a git repository under
bench/out/readonly/ (30% COMPLETED: `ready` lists every blocked ticket with its root causes).

    python bench/bench_readonly.py --tickets 100000 --runs 5
    git archive b6af79d sage_stream | tar -x -C /tmp/old && \\
        python bench/bench_readonly.py --old /tmp/old --runs 5
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

from bench_cli_startup import NEW_SOURCE, child_environment  # noqa: E402
from gen_index import write_index  # noqa: E402

OUT = HERE / "out" / "readonly"
READ_INDEX_ONLY = ("import gc, os, sys; gc.disable(); from pathlib import Path; "
                   "import sage_stream.cli, sage_stream.graph.analysis; "
                   "from sage_stream.tickets.store import read_index; read_index(Path(sys.argv[1])); os._exit(0)")
COMMANDS = (("ready",), ("ready", "--json"), ("plan",), ("graph", "--format", "json"))


def prepare_repository(count: int) -> Path:
    repo = OUT / f"repo-{count}"
    index = repo / ".sage" / "tickets" / "index.json"
    if not index.exists():
        repo.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
        write_index(index, count)
    return index


def run_child(argv: list[str], *, cwd: Path, env: dict[str, str]) -> tuple[float, float, float]:
    """(wall seconds, the child's peak RSS in MB, its CPU seconds: user and system)."""
    with open(os.devnull, "wb") as sink:
        start = time.perf_counter()
        child = subprocess.Popen(argv, cwd=cwd, env=env, stdout=sink, stderr=subprocess.PIPE)
        assert child.stderr is not None
        errors = child.stderr.read()
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{argv} exited {child.returncode}:\n{errors.decode()[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--old", type=Path, default=None, help="an older source tree (holding sage_stream/)")
    options = parser.parse_args()
    index = prepare_repository(options.tickets)
    repo = index.parent.parent.parent
    python = sys.executable
    sources = {"new": NEW_SOURCE} | ({"old": options.old.resolve()} if options.old else {})
    variants: dict[str, tuple[list[str], dict[str, str]]] = {
        "json.load": ([python, "-c", "import json, sys; json.load(open(sys.argv[1], encoding='utf-8'))", str(index)],
                      child_environment(NEW_SOURCE)),
    }
    for label, source in sources.items():
        compileall.compile_dir(source / "sage_stream", quiet=1)
        # what every command pays before it computes anything: the imports, and the index
        # read and validated into its models (the garbage collector off, no freeing at the
        # end, as the commands run)
        variants[f"models only: read_index ({label})"] = ([python, "-c", READ_INDEX_ONLY, str(index)],
                                                          child_environment(source))
        for command in COMMANDS:
            variants[f"sage {' '.join(command)} ({label})"] = (
                [python, "-m", "sage_stream", *command], child_environment(source))
    samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in variants}
    load_before = os.getloadavg()[0]
    for _ in range(options.runs):
        for name, (argv, env) in variants.items():
            samples[name].append(run_child(argv, cwd=repo, env=env))
    load_after = os.getloadavg()[0]
    floor = statistics.median(wall for wall, _, _ in samples["json.load"])
    cpu_floor = statistics.median(cpu for _, _, cpu in samples["json.load"])
    print(f"{options.tickets:,} tickets ({index.stat().st_size / 1e6:.1f} MB), median of {options.runs} "
          f"interleaved runs, load average {load_before:.2f} -> {load_after:.2f}")
    print("| command | median wall | x json.load | median CPU | x json.load's | peak RSS |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, values in samples.items():
        wall = statistics.median(value for value, _, _ in values)
        cpu = statistics.median(value for _, _, value in values)
        peak = max(value for _, value, _ in values)
        print(f"| {name} | {wall:.2f} s | {wall / floor:.1f}x | {cpu:.2f} s | {cpu / cpu_floor:.1f}x | {peak:.0f} MB |")


if __name__ == "__main__":
    main()
