"""A seeded harness that kills `sage stream` with SIGKILL and proves that nothing is lost.

The backlog (7 tickets, run with `--parallel=2`): a diamond DIA-1 -> DIA-2, DIA-3 -> DIA-4;
FAIL-1, whose agent writes a file and then fails; and CON-1 / CON-2, which both write
`shared.txt` (so the second to land conflicts and reruns on the new tip).

Kill points are the named crash points of `sage_stream/faults.py`
(`SAGE_TEST_CRASH_AT=<point>#<n>` kills the scheduler the n-th time it reaches the
point). `calibrate` records the points a clean run reaches, in order
(`SAGE_TEST_CRASH_TRACE`); `kills_for_seed(seed, trace)` picks 1-3 kills from that trace,
spread over the parts of a run (`CATEGORIES`), sometimes one inside the recovery of the
previous kill. `run_kill_sequence` runs `sage stream` once per kill, checks
`check_after_kill` after each, then reruns to the end and checks `check_final`.
`run_random_kills` does the same with kills at seeded random times instead of named points.
"""

from __future__ import annotations

import random
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .support import (
    INDEX,
    branch_holding,
    check_index_sound,
    clean_env,
    conflict_markers,
    git,
    held_locks,
    landed_commits,
    leftover_processes,
    make_repo,
    py,
    queued_entries,
    run_records,
    run_stream,
    stream_argv,
    ticket,
    trailer_counts,
    write_file_cmd,
    write_index,
)

CATEGORIES: dict[str, tuple[str, ...]] = {
    "dispatch": ("before_start_edit", "worktree_prepared", "after_start_edit", "before_replace:file"),
    "agent": ("agent_started", "agent_running", "after_agent_exit"),
    "queue": ("after_snapshot", "before_replace:queue", "after_replace:queue", "after_queue_put"),
    "landing": ("landing_locked", "after_commit_tree", "after_update_ref", "after_land", "after_hold_edit", "after_complete_edit",
                "worktree_released"),
    "index": ("before_replace:index", "after_replace:index", "before_replace:run", "after_replace:run",
              "after_defer_edit"),
    "recovery": ("recovery_landed", "recovery_released"),
}
CATEGORY_OF = {point: category for category, points in CATEGORIES.items() for point in points}

COMPLETES = ("DIA-1", "DIA-2", "DIA-3", "DIA-4", "CON-1", "CON-2")
DEFERS = {"FAIL-1": "agent_failed"}
FILES = {"dia-1.txt": "d1\n", "dia-2.txt": "d2\n", "dia-3.txt": "d3\n", "dia-4.txt": "d4\n"}
SHARED = {"CON-1": "from CON-1\n", "CON-2": "from CON-2\n"}
FAIL_WORK = ("fail-1.txt", "half done\n")


def backlog(*, slowness: float = 1.0) -> list[dict]:
    """The tickets; `slowness` scales how long each agent works (kills at random times
    want agents that are still running when the kill comes)."""
    def wait(seconds: float) -> float:
        return round(seconds * slowness, 3)

    fail = py(f"import pathlib, sys, time; time.sleep({wait(0.1)}); "
              f"pathlib.Path({FAIL_WORK[0]!r}).write_text({FAIL_WORK[1]!r}); "
              "print('tests failed: 2 errors'); sys.exit(1)")
    return [
        ticket("DIA-1", write_file_cmd("dia-1.txt", "d1\n", sleep=wait(0.1)), priority="P0"),
        ticket("DIA-2", write_file_cmd("dia-2.txt", "d2\n", sleep=wait(0.2)), deps=["DIA-1"]),
        ticket("DIA-3", write_file_cmd("dia-3.txt", "d3\n", sleep=wait(0.05)), deps=["DIA-1"]),
        ticket("DIA-4", write_file_cmd("dia-4.txt", "d4\n", sleep=wait(0.05)), deps=["DIA-2", "DIA-3"]),
        ticket("FAIL-1", fail),
        ticket("CON-1", write_file_cmd("shared.txt", SHARED["CON-1"], sleep=wait(0.1))),
        ticket("CON-2", write_file_cmd("shared.txt", SHARED["CON-2"], sleep=wait(0.3))),
    ]


def new_backlog_repo(root: Path, *, slowness: float = 1.0) -> Path:
    repo = make_repo(root, files={"shared.txt": "base\n"})
    write_index(repo, backlog(slowness=slowness))
    return repo


# ---------------------------------------------------------------- choosing kills


@dataclass(frozen=True)
class Kill:
    point: str
    nth: int

    @property
    def spec(self) -> str:
        return f"{self.point}#{self.nth}"


def calibrate(root: Path) -> list[str]:
    """The crash points a clean run of the backlog reaches, in order."""
    repo = new_backlog_repo(root / "repo")
    trace = root / "trace.txt"
    result = run_stream(repo, env=clean_env(SAGE_TEST_CRASH_TRACE=str(trace)))
    assert result.returncode == 3, result.stdout + result.stderr
    check_final(repo)
    return trace.read_text().split()


def occurrences(trace: list[str]) -> list[Kill]:
    """Every point of the trace as the kill that would stop the run right there."""
    seen: dict[str, int] = {}
    kills = []
    for point in trace:
        seen[point] = seen.get(point, 0) + 1
        kills.append(Kill(point, seen[point]))
    return kills


def kills_for_seed(seed: int, trace: list[str]) -> list[Kill]:
    """1-3 kills: a category first (so every part of a run gets its share), then one of
    the points the calibration run reached in it; a later kill may hit the recovery of
    the one before."""
    rng = random.Random(seed)
    by_category: dict[str, list[Kill]] = {}
    for kill in occurrences(trace):
        by_category.setdefault(CATEGORY_OF.get(kill.point, "other"), []).append(kill)
    categories = sorted(category for category in by_category if category not in ("recovery", "other"))
    kills: list[Kill] = []
    for step in range(rng.choice((1, 1, 2, 3))):
        if step > 0 and rng.random() < 0.35:
            kills.append(Kill(rng.choice(CATEGORIES["recovery"]), 1))
            continue
        kills.append(rng.choice(by_category[rng.choice(categories)]))
    return kills


# ---------------------------------------------------------------- running


@dataclass
class Outcome:
    kills_done: list[str] = field(default_factory=list)  # the kills that happened
    kills_missed: list[str] = field(default_factory=list)  # runs that ended before reaching the point
    runs: int = 0


def run_kill_sequence(repo: Path, kills: list[Kill]) -> Outcome:
    outcome = Outcome()
    for kill in kills:
        result = run_stream(repo, env=clean_env(SAGE_TEST_CRASH_AT=kill.spec))
        outcome.runs += 1
        if result.returncode == -signal.SIGKILL:
            outcome.kills_done.append(kill.spec)
            check_after_kill(repo, f"after kill at {kill.spec}")
        else:
            assert result.returncode in (0, 3), f"{kill.spec}: exit {result.returncode}\n{result.stderr}"
            assert "Traceback" not in result.stderr, result.stderr
            outcome.kills_missed.append(kill.spec)
    finish(repo, outcome)
    return outcome


def run_random_kills(repo: Path, seed: int, *, kills: int = 2, window_s: float = 3.0) -> Outcome:
    """Kill the scheduler at seeded random times (not at named points), then finish.
    Meant for a backlog made with `slowness` > 1, so that kills find agents running."""
    rng = random.Random(seed)
    outcome = Outcome()
    for number in range(kills):
        process = subprocess.Popen(stream_argv(repo), cwd=repo, env=clean_env(), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        delay = rng.uniform(0.2, window_s)
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
        _, err = process.communicate(timeout=60)
        outcome.runs += 1
        if process.returncode == -signal.SIGKILL:
            outcome.kills_done.append(f"t+{delay:.2f}s")
            check_after_kill(repo, f"after kill {number + 1} at t+{delay:.2f}s")
        else:
            assert process.returncode in (0, 3) and "Traceback" not in err, err
            outcome.kills_missed.append(f"t+{delay:.2f}s")
    finish(repo, outcome)
    return outcome


def finish(repo: Path, outcome: Outcome) -> None:
    result = run_stream(repo)
    outcome.runs += 1
    assert result.returncode in (0, 3), f"final run: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    check_final(repo)


# ---------------------------------------------------------------- invariants


def check_after_kill(repo: Path, when: str) -> None:
    """What must hold the moment after any kill."""
    tickets = check_index_sound(repo)
    counts = trailer_counts(repo)
    assert all(count == 1 for count in counts.values()), f"{when}: landed twice: {counts}"
    assert not conflict_markers(repo), f"{when}: conflict markers on main"
    assert not held_locks(repo), f"{when}: locks still held: {held_locks(repo)}"
    for tid, item in tickets.items():
        if item["state"] == "COMPLETED":
            assert counts[tid] == 1, f"{when}: {tid} is COMPLETED but not on main"
    run_records(repo)


def check_final(repo: Path) -> None:
    """What must hold after the rerun to the end."""
    check_after_kill(repo, "after the final run")
    tickets = check_index_sound(repo)
    assert not [tid for tid, item in tickets.items() if item["state"] == "IN_PROGRESS"]
    for tid in COMPLETES:
        assert tickets[tid]["state"] == "COMPLETED", (tid, tickets[tid].get("defer_reason"), tickets[tid]["state"])
    for tid, category in DEFERS.items():
        item = tickets[tid]
        assert item["state"] == "DEFERRED" and item["defer_reason"]["category"] == category, item
    assert dict(trailer_counts(repo)) == {tid: 1 for tid in COMPLETES}
    landed = landed_commits(repo)
    for tid in COMPLETES:
        assert tickets[tid]["git"]["last_commit"]["sha"] == landed[tid][0], tid
    for path, text in FILES.items():
        assert git(repo, "show", f"main:{path}") == text
    order = git(repo, "log", "main", "--format=%H").split()
    last_con = min(("CON-1", "CON-2"), key=lambda tid: order.index(landed[tid][0]))
    assert git(repo, "show", "main:shared.txt") == SHARED[last_con]
    assert branch_holding(repo, *FAIL_WORK), "FAIL-1's unlanded work is not on any sage/ branch"
    assert not queued_entries(repo)
    assert not git(repo, "status", "--porcelain"), "the checked-out main was not brought along"
    assert not leftover_processes(repo), leftover_processes(repo)
    assert (repo / INDEX).is_file()

