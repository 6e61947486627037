"""Makespan of a DAG of sleep agents on Dask workers (`--executor dask://`) against
`--executor local` with the same total slots, and the overhead per remote attempt.

    python bench/bench_dask.py [--tickets 40] [--sleep 1.0] [--runs 3] [--overhead-tickets 10]

The DAG: `tickets` exec-agent tickets in 4 layers; each ticket after the first layer
depends on one ticket of the layer before (critical path 4 x sleep; total work
tickets x sleep). Each agent sleeps, then writes one file. Dask: a `dask scheduler`
(reruns off) and 1, 2 or 4 `dask worker` processes on 127.0.0.1, each with
`--resources agent=2 --nworkers 1 --nthreads 2`, and `--parallel` = 2 x workers; local:
`--parallel` = the same total. Makespan = run_started -> run_finished of sage's own
events (cluster start-up left out). Overhead per remote attempt: N independent no-op
tickets one at a time (`--parallel=1`) on one worker, minus the same locally, over N.
The kinds alternate within each round; medians over the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.bench_git_baseline import make_bench_repo  # noqa: E402
from bench.bench_stream import run_sage_timed, ticket  # noqa: E402

PY = sys.executable
DASK = str(Path(PY).parent / "dask")


def sleep_dag(n: int, sleep: float) -> list[dict]:
    layer = max(1, n // 4)
    code = "import sys, time, pathlib; time.sleep(float(sys.argv[1])); pathlib.Path(sys.argv[2]).write_text('x')"
    return [ticket(f"S-{i}", [PY, "-c", code, str(sleep), f"s-{i}.txt"], [f"S-{i - layer}"] if i >= layer else [], 1)
            for i in range(n)]


def prepare(root: Path, tickets: list[dict]) -> Path:
    repo = root / "repo"
    make_bench_repo(repo)
    (repo / ".sage" / "tickets").mkdir(parents=True)
    (repo / ".sage" / "config.toml").write_text("[agent]\nsandbox = \"none\"\n")
    index = repo / ".sage" / "tickets" / "index.json"
    index.write_text(json.dumps({"version": "1.0", "tickets": tickets}))
    return index


class Cluster:
    """A scheduler with Dask's reruns off and `workers` worker processes of agent=2."""

    def __init__(self, workers: int, scratch: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.address = f"127.0.0.1:{port}"
        env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0", "SAGE_WORKER_DIR": str(scratch)}
        quiet = dict(env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.processes = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                            "--no-dashboard"], **quiet)]
        for i in range(workers):
            self.processes.append(subprocess.Popen(
                [DASK, "worker", f"tcp://{self.address}", "--name", f"w{i}", "--nworkers", "1", "--nthreads", "2",
                 "--resources", "agent=2", "--host", "127.0.0.1", "--no-dashboard"], **quiet))
        from distributed import Client

        client = Client(f"tcp://{self.address}", timeout=60)
        client.wait_for_workers(workers, timeout=120)
        client.close()

    def close(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            process.wait(timeout=30)


def one_run(tickets: list[dict], parallel: int, *, cluster: Cluster | None) -> float:
    root = Path(tempfile.mkdtemp(prefix="sage-bench-dask-"))
    try:
        index = prepare(root, tickets)
        executor = ["--executor", f"dask://{cluster.address}"] if cluster else []
        _, run_s = run_sage_timed(index, f"--parallel={parallel}", *executor)
        return run_s
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickets", type=int, default=40)
    parser.add_argument("--sleep", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--overhead-tickets", type=int, default=10)
    args = parser.parse_args()
    dag = sleep_dag(args.tickets, args.sleep)
    noop = sleep_dag(args.overhead_tickets * 4, 0.0)[: args.overhead_tickets]  # the first layer: independent
    makespans: dict[str, list[float]] = {}
    overhead: list[float] = []
    scratch = Path(tempfile.mkdtemp(prefix="sage-bench-dask-workers-"))
    try:
        for round_ in range(args.runs):
            for workers in (1, 2, 4):
                slots = 2 * workers
                cluster = Cluster(workers, scratch / f"r{round_}-w{workers}")
                try:
                    kinds = [("dask", cluster), ("local", None)]
                    for kind, used in kinds if round_ % 2 == 0 else reversed(kinds):
                        label = f"{kind}, {workers} worker(s) x agent=2" if used else f"local, --parallel={slots}"
                        makespans.setdefault(label, []).append(one_run(dag, slots, cluster=used))
                    if workers == 1:
                        remote = one_run(noop, 1, cluster=cluster)
                        local = one_run(noop, 1, cluster=None)
                        overhead.append((remote - local) / len(noop))
                finally:
                    cluster.close()
            print(f"round {round_ + 1}: " + ", ".join(f"{k}: {v[-1]:.2f}s" for k, v in makespans.items()),
                  file=sys.stderr)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"{args.tickets}-ticket DAG, {args.sleep}s sleep agents, medians of {args.runs} runs "
          f"(total work {args.tickets * args.sleep:.0f}s, critical path {4 * args.sleep:.0f}s)")
    print("| setup | total slots | makespan (s) | lower bound (s) |")
    print("| --- | --- | --- | --- |")
    for label, values in makespans.items():
        slots = int(label.split("=")[-1]) if label.startswith("local") else 2 * int(label.split(",")[1].split()[0])
        print(f"| {label} | {slots} | {statistics.median(values):.2f} | "
              f"{max(4 * args.sleep, args.tickets * args.sleep / slots):.1f} |")
    print(f"overhead per remote attempt (one at a time, {len(noop)} no-op tickets, dask - local): "
          f"median {statistics.median(overhead) * 1000:.0f} ms ({', '.join(f'{v * 1000:.0f}' for v in overhead)})")


if __name__ == "__main__":
    main()
