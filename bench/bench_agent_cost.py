"""What one agent CLI process costs the machine: CPU seconds and memory of one real
Claude Code run against the fake model server (tests/fakes/model_server.py).

    python bench/bench_agent_cost.py [--runs 3] [--model-delay 2.0] [--json]

Each run is one ticket-sized conversation: the model (the fake server) waits
`--model-delay` seconds before each answer, as a real model does, then asks the CLI to write
a file, then ends. The CLI's process tree is sampled every 0.05 s with psutil (the sum of
RSS over the tree: the peak is what N agents at once need N times); its CPU time is the
children's rusage after it exits (user + system, every descendant it waited for). The CPU
share is CPU seconds / wall seconds: how much of one core an agent keeps busy while it
mostly waits on the network. Needs the pinned CLI (`python tests/e2e/cli_cache.py claude`).
The figures feed `sage_stream/process/cpus.py` AGENT_CPU_SHARE and AGENT_MEMORY_MB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e import cli_cache  # noqa: E402
from tests.fakes.model_server import Conversation, FakeModelServer, FinalText, Script, WriteFile  # noqa: E402


def sample_tree(pid: int, peak: list[int], stop: threading.Event) -> None:
    try:
        root = psutil.Process(pid)
    except psutil.Error:
        return
    while not stop.is_set():
        total = 0
        try:
            for process in [root, *root.children(recursive=True)]:
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    pass
        except psutil.Error:
            break
        peak[0] = max(peak[0], total)
        time.sleep(0.05)


def one_run(executable: Path, delay: float, number: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="agent-cost-") as scratch:
        repo, home = Path(scratch) / "repo", Path(scratch) / "home"
        repo.mkdir()
        home.mkdir()
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
        match = f"Ticket: COST-{number}"
        script = Script([Conversation(match, [WriteFile("notes.txt", "cost\n", delay_s=delay),
                                              FinalText("wrote notes.txt", summary="wrote it", delay_s=delay)])])
        with FakeModelServer(script) as server:
            env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(home),
                   "ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": "sk-fake",
                   "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "CLAUDE_CODE_MAX_RETRIES": "0"}
            argv = [str(executable), "-p", "--output-format", "json", "--permission-mode", "acceptEdits",
                    "--", f"{match}\nWrite notes.txt."]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            began = time.monotonic()
            process = subprocess.Popen(argv, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
            peak, stop = [0], threading.Event()
            sampler = threading.Thread(target=sample_tree, args=(process.pid, peak, stop), daemon=True)
            sampler.start()
            output, _ = process.communicate(timeout=300)
            wall = time.monotonic() - began
            stop.set()
            sampler.join()
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if process.returncode != 0 or not (repo / "notes.txt").exists():
            raise SystemExit(f"claude failed (exit {process.returncode}): {output.decode(errors='replace')[-2000:]}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "cpu_share": round(cpu / wall, 3),
                "peak_rss_mb": round(peak[0] / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--model-delay", type=float, default=2.0, help="seconds the fake model waits per answer")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    executable = cli_cache.installed_cli("claude")
    runs = [one_run(Path(executable), args.model_delay, number) for number in range(1, args.runs + 1)]
    summary = {key: round(statistics.median(run[key] for run in runs), 3) for key in runs[0]}
    summary["max_peak_rss_mb"] = max(run["peak_rss_mb"] for run in runs)
    if args.json:
        print(json.dumps({"runs": runs, "median": summary}, indent=2))
        return
    for run in runs:
        print(run)
    print(f"median: {summary}")


if __name__ == "__main__":
    main()
