"""What engine/target_watch.py costs: per agent turn (branch tips before and after) and per
landing (is the target still holding what sage landed), on a repository with 1, 100 and
1,000 branches.

    .venv/bin/python bench/bench_target_watch.py
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from sage_stream.engine.target_watch import TargetWatch
from sage_stream.git import Git

REPEAT = 50


def git(repo: Path, *args: str, input: str | None = None) -> str:
    return subprocess.run(["git", *args], cwd=repo, input=input, check=True, capture_output=True, text=True).stdout


def measure(branches: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        git(repo, "init", "-q", "-b", "main")
        git(repo, "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", "commit", "-q",
            "--allow-empty", "-m", "initial")
        head = git(repo, "rev-parse", "HEAD").strip()
        git(repo, "update-ref", "--stdin", input="".join(f"create refs/heads/user-{n} {head}\n"
                                                         for n in range(branches - 1)))
        watch = TargetWatch(Git(repo), "main")
        started = time.perf_counter()
        for _ in range(REPEAT):
            watch.after_turn(watch.before_turn(), repo)
        per_turn = (time.perf_counter() - started) / REPEAT
        started = time.perf_counter()
        for _ in range(REPEAT):
            watch.before_landing(head)
        return per_turn, (time.perf_counter() - started) / REPEAT


if __name__ == "__main__":
    for count in (1, 100, 1000):
        turn, landing = measure(count)
        print(f"{count:5d} branches: per agent turn {turn * 1000:.1f} ms, per landing {landing * 1000:.1f} ms")
