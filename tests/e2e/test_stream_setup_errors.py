"""A broken setup halts `sage stream` at once instead of burning the backlog ticket by ticket.

Each case runs `python -m sage_stream stream --auto --parallel 2` on an 8-ticket backlog in a
fresh repository, with an environment holding no credentials and HOME an empty directory:
at most one agent starts per worker, the exit code is the setup one (4), every ticket stays
UNPROCESSED with no attempt counted, and the last line says what to fix. The real Claude Code
cases use the pinned CLI of tests/e2e/cli_cache.py: without credentials (no model server: it
never gets as far as a request), and with a key the endpoint rejects (HTTP 401 from
tests/fakes/model_server.py). The exec, "not on PATH" and dry-run cases need no npm.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sage_stream.errors import EXIT_SETUP
from tests.e2e import cli_cache
from tests.e2e.test_real_clis import make_repo as make_cli_repo

CHECKOUT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 120
WORKERS = 2
TICKETS = 8


def backlog(**extra: Any) -> list[dict[str, Any]]:
    return [{"id": f"T-{n}", "title": f"Ticket {n}", "state": "UNPROCESSED", "priority": "P1",
             "type": "implementation", "validation_type": "generic", "description": "write a file", **extra}
            for n in range(TICKETS)]


def make_repo(tmp_path: Path, tickets: list[dict[str, Any]], config: str) -> Path:
    """The real-CLI tests' repository (README, .gitignore, the index) with `config`."""
    repo = make_cli_repo(tmp_path, tickets, {})
    (repo / ".sage" / "config.toml").write_text(config)
    return repo


def run_stream(repo: Path, home: Path, path: str, *flags: str,
               extra_env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """Sage with an environment of its own: no ANTHROPIC_* (but `extra_env`), an empty HOME, `path` as PATH."""
    home.mkdir(exist_ok=True)
    env = {key: os.environ[key] for key in ("LANG", "LC_ALL", "TZ", "TMPDIR") if key in os.environ}
    env.update(HOME=str(home), PATH=path, PYTHONPATH=str(CHECKOUT), **(extra_env or {}))
    done = subprocess.run(
        [sys.executable, "-m", "sage_stream", "stream", "--auto", "--parallel", str(WORKERS), "--json",
         "--index", str(repo / ".sage" / "tickets" / "index.json"), *flags],
        cwd=repo, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, stdin=subprocess.DEVNULL,
        check=False)
    return done, [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def assert_halted_on_setup(done: subprocess.CompletedProcess, events: list[dict], repo: Path) -> str:
    """The shared verdict; returns the run's last words (where it stopped and why)."""
    assert done.returncode == EXIT_SETUP, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    started = [e["ticket"] for e in events if e["event"] == "ticket_started"]
    assert 1 <= len(started) <= WORKERS  # at most one agent per worker, then nothing new starts
    tickets = json.loads((repo / ".sage" / "tickets" / "index.json").read_text())["tickets"]
    assert {t["id"]: t["state"] for t in tickets} == {f"T-{n}": "UNPROCESSED" for n in range(TICKETS)}
    assert all(not t.get("attempts") and not t.get("defer_reason") for t in tickets)  # nothing burned
    finished = events[-1]
    assert finished["event"] == "run_finished" and finished["exit_code"] == EXIT_SETUP
    assert finished["remaining"] == TICKETS
    return finished["stopped"]


def test_exec_tickets_without_a_command_halt_the_run(tmp_path):
    repo = make_repo(tmp_path, backlog(), '[agent]\npreset = "exec"\n')
    done, events = run_stream(repo, tmp_path / "home", os.environ.get("PATH", os.defpath))
    stopped = assert_halted_on_setup(done, events, repo)
    assert "has no `command`" in stopped and "choose another agent" in stopped


def test_a_cli_that_is_not_on_path_halts_the_run(tmp_path):
    repo = make_repo(tmp_path, backlog(), '[agent]\npreset = "claude"\n')
    only_git = tmp_path / "bin"  # a PATH with git and nothing else
    only_git.mkdir()
    (only_git / "git").symlink_to(shutil.which("git"))
    done, events = run_stream(repo, tmp_path / "home", str(only_git))
    stopped = assert_halted_on_setup(done, events, repo)
    assert "cannot start 'claude': program not found on PATH" in stopped and "on PATH" in stopped.split("to fix:")[1]


@pytest.mark.real_cli
def test_the_real_claude_cli_without_credentials_halts_the_run_and_names_the_fix(tmp_path):
    executable = cli_cache.require_cli("claude")
    repo = make_repo(tmp_path, backlog(), '[agent]\npreset = "claude"\n')
    path = os.pathsep.join([str(executable.parent), os.environ.get("PATH", os.defpath)])
    done, events = run_stream(repo, tmp_path / "home", path)
    stopped = assert_halted_on_setup(done, events, repo)
    assert "Not logged in" in stopped  # Claude's own words
    assert "ANTHROPIC_API_KEY" in stopped and "/login" in stopped  # the variable and the login command
    warned = [e["text"] for e in events if e["event"] == "message" and "has no credentials" in e.get("text", "")]
    assert len(warned) == 1  # said once, at the start
    kinds = [e.get("error_kind") for e in events if e["event"] == "agent_finished"]
    assert kinds and set(kinds) == {"auth"}


def test_dry_run_checks_the_agent_that_will_run_and_exits_with_the_setup_code(tmp_path):
    repo = make_repo(tmp_path, backlog(), '[agent]\npreset = "exec"\n')
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "claude").write_text("#!/bin/sh\necho '2.1.329 (Claude Code)'\n")
    (fake / "claude").chmod(0o755)
    (fake / "git").symlink_to(shutil.which("git"))
    before = sorted(p.name for p in (repo / ".sage").rglob("*"))

    def dry_run(*flags: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "sage_stream", "stream", "--auto", "--dry-run",
             "--index", str(repo / ".sage" / "tickets" / "index.json"), *flags],
            cwd=repo, env={"HOME": str(tmp_path / "home"), "PATH": str(fake), "PYTHONPATH": str(CHECKOUT)},
            capture_output=True, text=True, timeout=RUN_TIMEOUT_S, stdin=subprocess.DEVNULL, check=False)

    plain = dry_run()
    assert plain.returncode == EXIT_SETUP  # exec, and the tickets have no `command`
    assert "FAIL  exec runs each ticket's `command`, and 8 ticket(s) have none" in plain.stdout
    chosen = dry_run("--agent", "claude")
    assert chosen.returncode == EXIT_SETUP and "Traceback" not in chosen.stderr
    assert f"ok    claude 2.1.329 (Claude Code) at {fake / 'claude'}" in chosen.stdout  # installed, its version
    assert "FAIL  claude has no credentials" in chosen.stdout and "export ANTHROPIC_API_KEY" in chosen.stdout
    as_json = json.loads(dry_run("--agent", "claude", "--json").stdout)
    assert [(c["name"], c["ok"]) for c in as_json["agent"]["checks"]] == [("agent_cli", True),
                                                                         ("agent_credentials", False)]
    assert sorted(p.name for p in (repo / ".sage").rglob("*")) == before  # a dry run changes nothing


@pytest.mark.real_cli
def test_the_real_claude_cli_with_a_rejected_key_halts_the_run(tmp_path):
    """HTTP 401 from the endpoint (a fake model server): the same halt, naming the key to fix."""
    from tests.fakes.model_server import ApiError, Conversation, FakeModelServer, Script

    executable = cli_cache.require_cli("claude")
    script = Script([Conversation("Ticket: ", [ApiError(401, "authentication_error", "invalid x-api-key")])])
    with FakeModelServer(script, lifetime_s=RUN_TIMEOUT_S) as server:
        repo = make_repo(tmp_path, backlog(), '[agent]\npreset = "claude"\nenv = ["CLAUDE_CODE_MAX_RETRIES", '
                                              '"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"]\n')
        path = os.pathsep.join([str(executable.parent), os.environ.get("PATH", os.defpath)])
        done, events = run_stream(repo, tmp_path / "home", path, extra_env={
            "ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": "sk-rejected", "CLAUDE_CODE_MAX_RETRIES": "0",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"})
        answers = {request.answer for request in server.requests_for("Ticket: ")}
    stopped = assert_halted_on_setup(done, events, repo)
    assert "401" in stopped and "ANTHROPIC_API_KEY" in stopped
    # it reached the endpoint with the key: ANTHROPIC_BASE_URL and _API_KEY pass without [agent] env
    assert answers == {"api_error"}
