"""`sage stream` with the real Claude Code and OpenCode CLIs against a scripted fake model server.

Marked `real_cli` and run by default: with the CLIs cached, the ten tests took 75-100 s on two
busy cores, most of it OpenCode starting (about 4 s a run; Claude Code takes under 1 s). The
first run installs the CLIs from npm (about 20 s). The CLIs are installed once into the cache of
tests/e2e/cli_cache.py (`$SAGE_CLI_CACHE` or `~/.cache/sage-stream/clis/<name>-<version>`);
a CLI that cannot be installed skips its tests, or fails them when `SAGE_REQUIRE_REAL_CLIS`
names it (CI sets `SAGE_REQUIRE_REAL_CLIS=claude,opencode`). All five real-CLI suites:

    python -m pytest -m real_cli tests/e2e

Each test makes a git repository with a backlog, starts tests/fakes/model_server.py on
127.0.0.1 and runs `python -m sage_stream stream --auto --json ...` with the agent chosen in
`.sage/config.toml`. How the fake is reached is the user-facing mechanism: the variables are in
sage's environment and `[agent] env` lists the names an agent may see -

    claude:   ANTHROPIC_BASE_URL, ANTHROPIC_API_KEY, CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC,
              CLAUDE_CODE_MAX_RETRIES (0: a persistent 429 fails at once instead of after minutes)
    opencode: OPENCODE_CONFIG_CONTENT (a provider "fake" speaking the OpenAI chat API, priced at
              $3 / $15 per million tokens so that steps have a cost), OPENCODE_DISABLE_MODELS_FETCH

The fake answers each ticket's prompt (found by "Ticket: <ID>") with a call to the CLI's own
file-writing tool, then a final message ending with a SAGE-RESULT block; HOME is a temporary
directory shared by the tests of one CLI (OpenCode fetches its plugin package on a cold HOME).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import cli_cache
from tests.fakes.model_server import Conversation, FakeModelServer, FinalText, RateLimited, Script, WriteFile

pytestmark = pytest.mark.real_cli

CHECKOUT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 300
OPENCODE_PRICES = {"input": 3, "output": 15}  # USD per million tokens
OPENCODE_STEP_COST = (1000 * OPENCODE_PRICES["input"] + 100 * OPENCODE_PRICES["output"]) / 1e6  # per fake answer


# ---------------------------------------------------------------- how each CLI reaches the fake


def claude_environment(server: FakeModelServer) -> dict[str, str]:
    return {"ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": "sk-fake",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "CLAUDE_CODE_MAX_RETRIES": "0"}


def opencode_environment(server: FakeModelServer) -> dict[str, str]:
    provider = {"npm": "@ai-sdk/openai-compatible", "options": {"baseURL": f"{server.url}/v1", "apiKey": "sk-fake"},
                "models": {"m": {"cost": OPENCODE_PRICES}}}
    config = {"provider": {"fake": provider}, "model": "fake/m"}
    return {"OPENCODE_CONFIG_CONTENT": json.dumps(config), "OPENCODE_DISABLE_MODELS_FETCH": "1"}


ENVIRONMENTS: dict[str, Callable[[FakeModelServer], dict[str, str]]] = {
    "claude": claude_environment,
    "opencode": opencode_environment,
}
CLIS = sorted(ENVIRONMENTS)


@pytest.fixture(scope="session")
def cli_homes(tmp_path_factory) -> Callable[[str], Path]:
    """HOME per CLI for the session. OpenCode's is prepared the way its README says to begin: two
    first starts at once on a fresh HOME race to create its database and one fails (recorded
    in tests/agents/recorded/opencode_database_race.log)."""
    homes: dict[str, Path] = {}

    def home(name: str) -> Path:
        if name not in homes:
            homes[name] = tmp_path_factory.mktemp(f"home-{name}")
            if name == "opencode":
                executable = cli_cache.require_cli(name)
                subprocess.run([str(executable), "session", "list"], cwd=homes[name], env={
                    "PATH": os.environ.get("PATH", os.defpath), "HOME": str(homes[name])},
                    stdin=subprocess.DEVNULL, capture_output=True, timeout=120, check=True)
        return homes[name]

    return home


# ---------------------------------------------------------------- running sage stream


@dataclass
class Run:
    code: int
    events: list[dict[str, Any]]
    stderr: str
    repo: Path
    server: FakeModelServer
    logs: dict[str, str] = field(default_factory=dict)

    def of(self, kind: str, ticket: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == kind and (ticket is None or e.get("ticket") == ticket)]

    def index(self) -> dict[str, dict[str, Any]]:
        data = json.loads((self.repo / ".sage" / "tickets" / "index.json").read_text())
        return {t["id"]: t for t in data["tickets"]}

    def summary(self) -> dict[str, Any]:
        return json.loads(Path(self.of("run_finished")[0]["summary_path"]).read_text())

    def on_main(self, path: str) -> str | None:
        done = subprocess.run(["git", "show", f"main:{path}"], cwd=self.repo, capture_output=True, text=True,
                              check=False)
        return done.stdout if done.returncode == 0 else None

    def log_of(self, ticket: str, stem: str | None = None) -> str:
        run_dir = self.repo / ".sage" / "workers" / self.of("run_started")[0]["run_id"]
        return (run_dir / f"{stem or ticket}.log").read_text()

    def explain(self) -> str:
        """What a failing assertion shows: the exit code, stderr, events and the agents' logs."""
        workers = self.repo / ".sage" / "workers"
        logs = {path.name: path.read_text(errors="replace")[-3000:] for path in sorted(workers.rglob("*.log"))}
        requests = [(r.conversation, r.turn, r.answer) for r in self.server.requests]
        return (f"exit {self.code}\nstderr: {self.stderr[-3000:]}\nevents: {json.dumps(self.events)[-6000:]}\n"
                f"requests: {requests}\nlogs: {json.dumps(logs, indent=1)}")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def ticket(tid: str, *deps: str, files: tuple[str, ...], **extra: Any) -> dict[str, Any]:
    return {"id": tid, "title": f"Ticket {tid}", "state": "UNPROCESSED", "priority": "P1", "type": "implementation",
            "validation_type": "generic", "dependencies": list(deps), "files": list(files), **extra}


def make_repo(root: Path, tickets: list[dict[str, Any]], files: dict[str, str]) -> Path:
    repo = root / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "Sage Test")
    git(repo, "config", "user.email", "sage-test@example.invalid")
    git(repo, "config", "commit.gpgsign", "false")
    for name, text in {"README.md": "test repository\n", ".gitignore": ".sage/\n", **files}.items():
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial commit")
    index = repo / ".sage" / "tickets" / "index.json"
    index.parent.mkdir(parents=True)
    index.write_text(json.dumps({"version": "1.0", "tickets": tickets}, indent=2) + "\n")
    return repo


def run_stream(name: str, script: Script, tickets: list[dict[str, Any]], tmp_path: Path, home: Path, *flags: str,
               files: dict[str, str] | None = None, stream_config: str = "") -> Run:
    executable = cli_cache.require_cli(name)
    repo = make_repo(tmp_path, tickets, files or {})
    with FakeModelServer(script, lifetime_s=RUN_TIMEOUT_S) as server:
        agent_env = ENVIRONMENTS[name](server)
        (repo / ".sage" / "config.toml").write_text(
            f'[agent]\npreset = "{name}"\nenv = {json.dumps(sorted(agent_env))}\n\n[stream]\n{stream_config}')
        env = {key: os.environ[key] for key in ("LANG", "LC_ALL", "TZ", "TMPDIR") if key in os.environ}
        env.update(agent_env, HOME=str(home), PYTHONPATH=str(CHECKOUT),
                   PATH=os.pathsep.join([str(executable.parent), os.environ.get("PATH", os.defpath)]))
        done = subprocess.run(
            [sys.executable, "-m", "sage_stream", "stream", "--auto", "--json",
             "--index", str(repo / ".sage" / "tickets" / "index.json"), *flags],
            cwd=repo, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, stdin=subprocess.DEVNULL,
            check=False)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return Run(done.returncode, events, done.stderr, repo, server)


def result_json_cost(log: str) -> float:
    """The total_cost_usd Claude printed (its result JSON, the last one in the log)."""
    for line in reversed(log.splitlines()):
        if line.startswith('{"') and '"type":"result"' in line:
            return float(json.loads(line)["total_cost_usd"])
    raise AssertionError(f"no result JSON in the log:\n{log[-2000:]}")


def expected_cost(name: str, run: Run, ticket_id: str, stem: str | None = None) -> float:
    """What one agent run of `ticket_id` cost: Claude's own figure, or OpenCode's two priced steps."""
    if name == "claude":
        return result_json_cost(run.log_of(ticket_id, stem))
    return 2 * OPENCODE_STEP_COST


def answer(tid: str, file: str, text: str) -> Conversation:
    return Conversation(f"Ticket: {tid}", [WriteFile(file, text, text=f"I will write {file}."),
                                           FinalText(f"I wrote {file}.", summary=f"added {file}")])


# ---------------------------------------------------------------- the tests


@pytest.mark.parametrize("name", CLIS)
def test_a_backlog_with_a_dependency_lands_with_summaries_costs_and_sessions(name, tmp_path, cli_homes):
    script = Script([answer("TKT-A", "a.txt", "A\n"), answer("TKT-B", "b.txt", "B\n"), answer("TKT-C", "c.txt", "C\n")])
    tickets = [ticket("TKT-A", files=("a.txt",)), ticket("TKT-B", "TKT-A", files=("b.txt",)),
               ticket("TKT-C", files=("c.txt",))]
    run = run_stream(name, script, tickets, tmp_path, cli_homes(name), "--parallel=2")
    assert run.code == 0, run.explain()

    # each ticket landed: its file on main, one commit with its trailer, COMPLETED
    assert [run.on_main(f"{x}.txt") for x in "abc"] == ["A\n", "B\n", "C\n"], run.explain()
    trailers = git(run.repo, "log", "main", "--format=%(trailers:key=Sage-Ticket,valueonly)").split()
    assert sorted(trailers) == ["TKT-A", "TKT-B", "TKT-C"]
    landed = git(run.repo, "log", "main", "--name-only", "--format=").split()
    assert sorted(landed) == [".gitignore", "README.md", "a.txt", "b.txt", "c.txt"]
    index = run.index()
    assert {tid: t["state"] for tid, t in index.items()} == dict.fromkeys(("TKT-A", "TKT-B", "TKT-C"), "COMPLETED")
    order = [(e["event"], e["ticket"]) for e in run.events if e["event"] in ("ticket_started", "ticket_landed")]
    assert order.index(("ticket_landed", "TKT-A")) < order.index(("ticket_started", "TKT-B"))

    # the agent's result was parsed into the index and the run summary
    summary = run.summary()
    sessions = set()
    for tid, file in (("TKT-A", "a.txt"), ("TKT-B", "b.txt"), ("TKT-C", "c.txt")):
        result = index[tid]["agent_result"]
        assert result["summary"] == f"added {file}", run.explain()
        assert result["cost_usd"] == pytest.approx(expected_cost(name, run, tid)) and result["cost_usd"] > 0
        assert result["session_id"] and result["tokens"] >= 2200 and result["turns"] >= 2
        sessions.add(result["session_id"])
        recorded = summary["tickets"][tid]
        assert (recorded["summary"], recorded["session_id"]) == (result["summary"], result["session_id"])
        assert recorded["cost_usd"] == pytest.approx(result["cost_usd"])
    assert len(sessions) == 3  # without --reuse-sessions every ticket starts its own session
    total = sum(index[tid]["agent_result"]["cost_usd"] for tid in index)
    assert summary["total_cost_usd"] == pytest.approx(total)
    assert run.of("run_finished")[0]["total_cost_usd"] == pytest.approx(total)

    # every ticket's conversation was a write, then the final answer
    for tid in ("TKT-A", "TKT-B", "TKT-C"):
        assert [r.answer for r in run.server.requests_for(f"Ticket: {tid}")] == ["write_file", "final_text"]


@pytest.mark.parametrize("name", CLIS)
def test_a_persistent_429_is_a_rate_limit_that_pauses_dispatch_instead_of_burning_the_backlog(name, tmp_path,
                                                                                                cli_homes):
    script = Script([Conversation("Ticket: TKT-R", [RateLimited(0)]), answer("TKT-S", "s.txt", "S\n")])
    tickets = [ticket("TKT-R", files=("r.txt",), priority="P0"), ticket("TKT-S", "TKT-R", files=("s.txt",))]
    run = run_stream(name, script, tickets, tmp_path, cli_homes(name), "--parallel=2",
                     stream_config="rate_limit_backoff_seconds = 0.1\nrate_limit_stop_after = 1\n")
    assert run.code == 3, run.explain()
    finished = run.of("agent_finished", "TKT-R")
    assert finished and finished[0]["success"] is False and finished[0]["error_kind"] == "rate_limit", run.explain()
    # a rate limit is about the account, not the ticket: it goes back to the queue, dispatch stops
    assert run.of("ticket_requeued", "TKT-R")[0]["category"] == "rate_limit"
    assert not run.of("ticket_deferred")
    index = run.index()
    assert index["TKT-R"]["state"] == "UNPROCESSED" and index["TKT-S"]["state"] == "UNPROCESSED"
    assert "rate limit" in run.of("run_finished")[0]["stopped"]
    assert {r.answer for r in run.server.requests_for("Ticket: TKT-R")} == {"rate_limited"}
    assert not run.server.requests_for("Ticket: TKT-S")


@pytest.mark.parametrize("name", CLIS)
def test_with_reuse_sessions_a_dependent_ticket_continues_its_dependencys_session(name, tmp_path, cli_homes):
    script = Script([answer("TKT-A", "a.txt", "A\n"), answer("TKT-B", "b.txt", "B\n")])
    tickets = [ticket("TKT-A", files=("a.txt",)), ticket("TKT-B", "TKT-A", files=("b.txt",))]
    run = run_stream(name, script, tickets, tmp_path, cli_homes(name), "--parallel=2", "--reuse-sessions")
    assert run.code == 0, run.explain()
    assert run.on_main("b.txt") == "B\n" and run.on_main("a.txt") == "A\n"
    assert run.of("ticket_started", "TKT-B")[0]["continues"] == "TKT-A"

    # TKT-B's first request carried TKT-A's conversation: the same session, continued
    first_of_b = run.server.requests_for("Ticket: TKT-B")[0]
    assert any("Ticket: TKT-A" in text for text in first_of_b.user_texts), first_of_b.user_texts
    assert first_of_b.assistant_messages >= 2 and first_of_b.turn == 0
    index = run.index()
    session = index["TKT-A"]["agent_result"]["session_id"]
    assert index["TKT-B"]["agent_result"]["session_id"] == session
    # TKT-B's cost is its own run's, not the session's running total (Claude reports the total)
    assert index["TKT-B"]["agent_result"]["cost_usd"] == pytest.approx(index["TKT-A"]["agent_result"]["cost_usd"])
    assert index["TKT-B"]["agent_result"]["summary"] == "added b.txt"


CHECK_PY = """\
import pathlib, sys
if pathlib.Path("fix.txt").is_file():
    print("OK")
else:
    print("FAIL: fix.txt is missing")
    sys.exit(1)
"""


@pytest.mark.parametrize("name", CLIS)
def test_a_failing_check_gives_the_agent_a_fix_turn_in_its_session_and_then_it_lands(name, tmp_path, cli_homes):
    script = Script([Conversation("Ticket: TKT-V", [
        WriteFile("v.txt", "v\n"), FinalText("I wrote v.txt.", summary="wrote v.txt"),
        WriteFile("fix.txt", "fixed\n"), FinalText("I added fix.txt.", summary="added fix.txt")])])
    checks = {"verification_scripts": [{"command": "python3 check.py", "success_pattern": "OK"}]}
    tickets = [ticket("TKT-V", files=("v.txt", "fix.txt"), validation_config=checks)]
    run = run_stream(name, script, tickets, tmp_path, cli_homes(name), files={"check.py": CHECK_PY})
    assert run.code == 0, run.explain()
    assert run.on_main("v.txt") == "v\n" and run.on_main("fix.txt") == "fixed\n"
    checked = run.of("ticket_checked", "TKT-V")
    assert [(e["passed"], e["fix_turn_next"]) for e in checked] == [(False, True), (True, False)], run.explain()

    # the fix turn: a prompt with the failing output, in the session of the first turn
    fix = [r for r in run.server.requests_for("Ticket: TKT-V") if r.turn == 2]
    assert fix and "FAIL: fix.txt is missing" in fix[0].last_user_text, run.explain()
    assert fix[0].assistant_messages >= 2
    result = run.index()["TKT-V"]["agent_result"]
    assert result["summary"] == "added fix.txt"
    # cost and tokens of both turns (each turn its own cost, not the session's running total)
    first = expected_cost(name, run, "TKT-V")
    assert result["cost_usd"] == pytest.approx(2 * first)


@pytest.mark.parametrize("name", CLIS)
def test_a_session_continued_in_another_worktree_slot(name, tmp_path, cli_homes):
    """Claude continues a session from any directory; OpenCode runs a session only in its own
    directory (its tools would act in the other slot, and `opencode run` would not exit), so
    there the ticket starts a new session and says why."""
    # TKT-A (slot 0) lands after TKT-F (slot 1): its last answer waits for TKT-F's, and a
    # little more for TKT-F to land; then TKT-E (P0) takes slot 0 and TKT-B, continuing
    # TKT-A's session, gets slot 1
    slow_a = Conversation("Ticket: TKT-A", [WriteFile("a.txt", "A\n"), FinalText(
        "I wrote a.txt.", summary="added a.txt", after="Ticket: TKT-F", delay_s=1.5)])
    script = Script([slow_a, answer("TKT-F", "f.txt", "F\n"), answer("TKT-E", "e.txt", "E\n"),
                     answer("TKT-B", "b.txt", "B\n")])
    tickets = [ticket("TKT-A", files=("a.txt",)), ticket("TKT-F", files=("f.txt",)),
               ticket("TKT-E", "TKT-A", "TKT-F", files=("e.txt",), priority="P0"),
               ticket("TKT-B", "TKT-A", files=("b.txt",), priority="P2")]
    run = run_stream(name, script, tickets, tmp_path, cli_homes(name), "--parallel=2", "--reuse-sessions")
    assert run.code == 0, run.explain()
    slot_a, slot_b = (run.of("ticket_started", tid)[0]["slot"] for tid in ("TKT-A", "TKT-B"))
    assert slot_a != slot_b, f"the engine ran TKT-B in TKT-A's slot: this test needs another one\n{run.explain()}"
    assert run.of("ticket_started", "TKT-B")[0]["continues"] == "TKT-A"
    assert [run.on_main(f"{x}.txt") for x in "afeb"] == ["A\n", "F\n", "E\n", "B\n"], run.explain()

    index = run.index()
    first_of_b = run.server.requests_for("Ticket: TKT-B")[0]
    session_a, session_b = (index[tid]["agent_result"]["session_id"] for tid in ("TKT-A", "TKT-B"))
    if name == "claude":
        assert session_b == session_a
        assert any("Ticket: TKT-A" in text for text in first_of_b.user_texts)
    else:
        assert session_b != session_a
        assert not any("Ticket: TKT-A" in text for text in first_of_b.user_texts)
        assert f"not continuing session {session_a}: it ran in " in run.log_of("TKT-B")


@pytest.mark.parametrize("name", CLIS)
def test_the_cli_drains_a_backlog_inside_the_sandbox_and_keeps_its_own_state(name, tmp_path, cli_homes):
    """`--sandbox bwrap`: the run refuses to start unsandboxed. The CLI writes its own state under
    HOME (Claude's ~/.claude.json is saved by rename, through a private copy of HOME's top level,
    copied back), and nothing but its state and the repository's own paths."""
    from sage_stream.process.sandbox import probe

    problem = probe().problem
    if problem is not None:
        pytest.skip(f"no sandbox here: {problem}")
    home = cli_homes(name)
    script = Script([answer("TKT-A", "a.txt", "A\n"), answer("TKT-B", "b.txt", "B\n")])
    tickets = [ticket("TKT-A", files=("a.txt",)), ticket("TKT-B", "TKT-A", files=("b.txt",))]
    run = run_stream(name, script, tickets, tmp_path, home, "--parallel=2", "--sandbox", "bwrap")
    assert run.code == 0, run.explain()
    said = [e["text"] for e in run.of("message") if "sandbox" in e["text"]]
    assert len(said) == 1 and said[0].startswith("agents are sandboxed with "), run.explain()
    assert [run.on_main("a.txt"), run.on_main("b.txt")] == ["A\n", "B\n"], run.explain()
    for tid in ("TKT-A", "TKT-B"):
        assert "Read-only file system" not in run.log_of(tid), run.explain()
    if name == "claude":
        assert json.loads((home / ".claude.json").read_text()), "Claude's state file was not copied back"
        assert list((home / ".claude" / "projects").iterdir())  # its sessions
    else:
        assert (home / ".local" / "share" / "opencode" / "opencode.db").is_file()
    run_dir = run.repo / ".sage" / "workers" / run.of("run_started")[0]["run_id"]
    assert not list(run_dir.glob("*.home"))  # the private copies of HOME's top level are gone
