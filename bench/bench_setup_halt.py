"""What a broken agent setup costs: the real Claude Code CLI with no credentials on 8 tickets.

Makes a repository with an 8-ticket backlog and `[agent] preset = "claude"`, then runs

    python -m sage_stream stream --auto --parallel 2 --json

with an empty HOME, no ANTHROPIC_* variable and PATH = Claude's bin + /usr/bin:/bin, and prints
the exit code, the wall time, how many agents started, the tickets' states and the attempts
counted. `--checkout` runs another copy of sage-stream (e.g. `git archive main` unpacked) to
compare. The CLI comes from tests/e2e/cli_cache.py (installed from npm on first use).

    python bench/bench_setup_halt.py --runs 3 [--checkout DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
TICKETS = 8


def one_run(checkout: Path, claude_bin: Path) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        repo, home = Path(tmp) / "repo", Path(tmp) / "home"
        repo.mkdir()
        home.mkdir()
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
        subprocess.run(["git", "-c", "user.name=b", "-c", "user.email=b@x", "commit", "-q", "--allow-empty", "-m",
                        "init"], cwd=repo, check=True)
        (repo / ".sage" / "tickets").mkdir(parents=True)
        (repo / ".sage" / "config.toml").write_text('[agent]\npreset = "claude"\n')
        tickets = [{"id": f"T-{n}", "title": f"t{n}", "state": "UNPROCESSED", "description": "x", "priority": "P2",
                    "type": "implementation", "validation_type": "generic"} for n in range(TICKETS)]
        index = repo / ".sage" / "tickets" / "index.json"
        index.write_text(json.dumps({"tickets": tickets}))
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "sage_stream", "stream", "--auto", "--parallel", "2", "--json"], cwd=repo,
            env={"HOME": str(home), "PYTHONPATH": str(checkout), "PATH": f"{claude_bin}:/usr/bin:/bin"},
            capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL, check=False)
        wall = time.monotonic() - started
        events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        written = json.loads(index.read_text())["tickets"]
        states: dict[str, int] = {}
        for ticket in written:
            states[ticket["state"]] = states.get(ticket["state"], 0) + 1
        return (f"exit {done.returncode}; wall {wall:.1f}s; agents started "
                f"{sum(e['event'] == 'ticket_started' for e in events)}; states {states}; attempts "
                f"{sum(t.get('attempts') or 0 for t in written)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--checkout", type=Path, default=HERE, help="the sage-stream checkout to run")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from tests.e2e.cli_cache import installed_cli

    claude_bin = installed_cli("claude").parent
    for _ in range(args.runs):
        print(one_run(args.checkout.resolve(), claude_bin), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
