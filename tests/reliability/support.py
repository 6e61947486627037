"""What the reliability tests share: throwaway repositories, tickets whose agents are small
python programs (the exec agent), running `sage` as a real process, and the invariants
every scenario checks (landed exactly once, index valid, no lock held, nothing left
running)."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

from sage_stream.tickets.store import load_index
from sage_stream.validation.checks import validate_index

PY = sys.executable
INDEX = Path(".sage") / "tickets" / "index.json"
LOCKS = (".sage/stream.lock", ".sage/commit.lock", ".sage/worktree.lock", ".sage/tickets/index.json.lock")
TEST_ENV_PREFIX = "SAGE_TEST_"
RUN_TIMEOUT_S = 240  # a hung run fails the test instead of hanging the suite


# ---------------------------------------------------------------- repositories and tickets


def git(repo: Path, *args: str, check: bool = True) -> str:
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed in {repo}: {result.stderr}")
    return result.stdout


def make_repo(root: Path, *, files: dict[str, str] | None = None) -> Path:
    """A repository on `main` with one commit (README.md, .gitignore ignoring .sage/, `files`)."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Reliability Test")
    git(root, "config", "user.email", "reliability@example.invalid")
    git(root, "config", "commit.gpgsign", "false")
    (root / "README.md").write_text("hello\n")
    (root / ".gitignore").write_text(".sage/\n")
    for name, text in (files or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    (root / ".sage" / "tickets").mkdir(parents=True, exist_ok=True)
    return root


def ticket(tid: str, command: list[str], *, deps: tuple[str, ...] | list[str] = (), files=(), priority: str = "P1",
           **extra: Any) -> dict[str, Any]:
    return {"id": tid, "title": f"Do {tid}", "state": "UNPROCESSED", "priority": priority,
            "type": "implementation", "validation_type": "generic", "dependencies": list(deps),
            "files": list(files), "command": command, **extra}


def py(code: str) -> list[str]:
    """An exec-agent argv running `code` with this interpreter (never through a shell)."""
    return [PY, "-c", code]


def write_file_cmd(path: str, text: str, *, sleep: float = 0.0) -> list[str]:
    return py(f"import pathlib, time; time.sleep({sleep}); p = pathlib.Path({path!r}); "
              f"p.parent.mkdir(parents=True, exist_ok=True); p.write_text({text!r}); print('wrote', {path!r})")


def write_index(repo: Path, tickets: list[dict[str, Any]], **top_level: Any) -> Path:
    path = repo / INDEX
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": "1.0", **top_level, "tickets": tickets}, indent=2) + "\n")
    return path


def read_index(repo: Path) -> dict[str, dict[str, Any]]:
    data = json.loads((repo / INDEX).read_text())
    return {item["id"]: item for item in data["tickets"]}


def with_side_channels(repo: Path, text: str) -> str:
    """`text` with `[agent] writable` naming the repository's parent directory: test agents
    report what they saw in files beside the repository, which the sandbox (on by default
    where bwrap works) would refuse; the repository itself stays read-only to them."""
    line = f"writable = [{json.dumps(str(repo.parent))}]\n"
    if "[agent]\n" in text:
        return text.replace("[agent]\n", "[agent]\n" + line, 1)
    return f"{text}\n[agent]\n{line}"


def write_config(repo: Path, text: str) -> None:
    (repo / ".sage" / "config.toml").write_text(with_side_channels(repo, text))


# ---------------------------------------------------------------- running sage


def clean_env(**extra: str) -> dict[str, str]:
    """Our environment without leftover test switches, plus `extra`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(TEST_ENV_PREFIX)}
    env.update(extra)
    return env


def stream_argv(repo: Path, *extra: str, parallel: int = 2) -> list[str]:
    return [PY, "-m", "sage_stream", "stream", "--auto", f"--parallel={parallel}", "--plain",
            "--index", str(repo / INDEX), *extra]


def run_stream(repo: Path, *extra: str, parallel: int = 2, env: dict[str, str] | None = None,
               timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(stream_argv(repo, *extra, parallel=parallel), cwd=repo, env=env or clean_env(),
                          capture_output=True, text=True, timeout=timeout)


def sage(repo: Path, *args: str, env: dict[str, str] | None = None,
         timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "sage_stream", *args], cwd=repo, env=env or clean_env(),
                          capture_output=True, text=True, timeout=timeout)


def report(scenario: str, **data: Any) -> None:
    """Figures for RELIABILITY.md: appended as JSON lines to $SAGE_RELIABILITY_LOG if set."""
    path = os.environ.get("SAGE_RELIABILITY_LOG")
    if path:
        with open(path, "a") as log:
            log.write(json.dumps({"scenario": scenario, **data}) + "\n")


# ---------------------------------------------------------------- invariants


def trailer_counts(repo: Path, ref: str = "main") -> Counter[str]:
    out = git(repo, "log", ref, "--format=%(trailers:key=Sage-Ticket,valueonly)%x00")
    return Counter(value for chunk in out.split("\x00") for value in chunk.split())


def landed_commits(repo: Path, ref: str = "main") -> dict[str, list[str]]:
    """ticket id -> the commits on `ref` carrying its Sage-Ticket trailer, newest first."""
    out = git(repo, "log", ref, "--format=%H%x1f%(trailers:key=Sage-Ticket,valueonly,separator=%x1f)%x00")
    found: dict[str, list[str]] = {}
    for record in out.split("\x00"):
        sha, *values = record.strip("\n").split("\x1f")
        for value in values:
            if value.strip():
                found.setdefault(value.strip(), []).append(sha)
    return found


def conflict_markers(repo: Path, ref: str = "main") -> str:
    """Lines with conflict markers in the tree of `ref` ('' when there are none)."""
    result = subprocess.run(["git", "grep", "-n", "-E", "^(<<<<<<<|>>>>>>>)( |$)", ref, "--"], cwd=repo,
                            capture_output=True, text=True)
    assert result.returncode in (0, 1), result.stderr
    return result.stdout


def held_locks(repo: Path) -> list[str]:
    """The lock files of sage that some process still holds (sage's locks are flock()s;
    opened read-only, so that this works on a read-only file system too)."""
    held = []
    for name in LOCKS:
        try:
            fd = os.open(repo / name, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held.append(name)
        finally:
            os.close(fd)
    return held


def leftover_processes(repo: Path) -> list[psutil.Process]:
    """Processes still running for `repo`: working in it, or started as its agents."""
    root = str(repo.resolve())
    found = []
    for process in psutil.process_iter(["pid", "cwd", "status"]):
        try:
            if process.pid == os.getpid() or process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            cwd = process.info["cwd"] or ""
            worktree = process.environ().get("SAGE_WORKTREE", "") if cwd.startswith("/") else ""
        except (psutil.Error, OSError):
            continue
        if cwd == root or cwd.startswith(root + os.sep) or worktree.startswith(root + os.sep):
            found.append(process)
    return found


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def validation_errors(repo: Path) -> list[str]:
    """`sage validate` errors of the index (exit 1); [] when it would exit 0 or 2."""
    report = validate_index(str(repo / INDEX))
    return [finding.message for finding in report.errors]


def check_index_sound(repo: Path) -> dict[str, dict[str, Any]]:
    """The index parses, type-checks and validates; returns the raw tickets by id."""
    load_index(repo / INDEX)
    errors = validation_errors(repo)
    assert not errors, errors
    return read_index(repo)


def queued_entries(repo: Path) -> list[Path]:
    return sorted((repo / ".sage" / "commit-queue").glob("*.json"))


def sage_branches(repo: Path) -> list[str]:
    return git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/sage/").split()


def branch_holding(repo: Path, path: str, text: str) -> str | None:
    """A `sage/...` branch whose tree has `path` with content `text`."""
    for branch in sage_branches(repo):
        shown = subprocess.run(["git", "show", f"{branch}:{path}"], cwd=repo, capture_output=True, text=True)
        if shown.returncode == 0 and shown.stdout == text:
            return branch
    return None


def run_records(repo: Path) -> list[dict[str, Any]]:
    """Every `.sage/runs/*.json`; each must be a whole JSON object (atomic writes)."""
    records = []
    for path in sorted((repo / ".sage" / "runs").glob("*.json")):
        data = json.loads(path.read_text())
        assert isinstance(data, dict) and data.get("run_id"), path
        records.append(data)
    return records
