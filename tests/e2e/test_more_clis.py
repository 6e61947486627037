"""`sage stream` with the real Codex CLI, Gemini CLI and Aider against scripted fake model servers.

Opt-in: marked `real_cli` and `slow`. Each CLI is installed once into the cache of
tests/e2e/cli_cache.py (`$SAGE_CLI_CACHE` or `~/.cache/sage-stream/clis/<name>-<version>`):
codex and gemini from npm through that module, aider into a virtualenv from PyPI here. A
CLI that cannot be installed skips its tests (fails them when `SAGE_REQUIRE_REAL_CLIS` names
it). All five real-CLI suites (these and tests/e2e/test_real_clis.py for claude and opencode):

    python -m pytest -m real_cli tests/e2e

Each test makes a repository with three tickets (TKT-C depends on TKT-A), starts the fake
for the CLI's API on 127.0.0.1, and runs `python -m sage_stream stream --auto --parallel=2
--reuse-sessions --agent NAME --json` with HOME (and Gemini's home) in a fresh directory
under ~/.cache/sage-stream/e2e-homes (not under /tmp: see HOMES), removed afterwards. The fake answers each ticket with a file-writing tool call (an edit block for
Aider) and then a final message ending with a SAGE-RESULT block.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

from tests.e2e import cli_cache
from tests.e2e.cli_cache import CliPackage, CliUnavailable
from tests.fakes.aider_chat import FakeAiderServer
from tests.fakes.gemini_api import FakeGeminiServer
from tests.fakes.model_server import Conversation, FakeModelServer, FinalText, RateLimited, Script, WriteFile
from tests.fakes.responses_api import FakeResponsesServer

pytestmark = [pytest.mark.real_cli, pytest.mark.slow]

# The versions the agent modules were checked against (a new release can change flags or output).
cli_cache.PINNED.setdefault("codex", CliPackage("codex", "@openai/codex", "0.169.0"))
cli_cache.PINNED.setdefault("gemini", CliPackage("gemini", "@google/gemini-cli", "0.61.0"))
AIDER_VERSION = "0.86.2"
AIDER_INSTALL_TIMEOUT_S = 900
RUN_TIMEOUT_S = 900
HOMES = Path.home() / ".cache" / "sage-stream" / "e2e-homes"
"""Where each run's HOME is made: not under the temporary directory, where Codex refuses to
put the helper binaries its own sandbox runs commands through ("Refusing to create helper
binaries under temporary dir"; every command then failed with `execvp codex-linux-sandbox`)."""
PRICES = {"input_cost_per_token": 0.000003, "output_cost_per_token": 0.000015}  # Aider prints a cost with these
FAKE_COST = 1000 * PRICES["input_cost_per_token"] + 100 * PRICES["output_cost_per_token"]  # per fake answer
TOKENS_PER_TICKET = {"codex": 2200, "gemini": 2200, "aider": 1100}


# ---------------------------------------------------------------- installing Aider (PyPI, not npm)


def aider_executable() -> Path:
    """Aider in `<cache>/aider-<version>/`, a virtualenv; installed in place under a lock (a
    virtualenv cannot be moved after it is made), trusted once `aider --version` answers."""
    root = cli_cache.cache_root() / f"aider-{AIDER_VERSION}"
    executable = root / "bin" / "aider"
    if _aider_works(executable):
        return executable
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root.parent / f"{root.name}.lock"), timeout=cli_cache.LOCK_TIMEOUT_S):
        if _aider_works(executable):
            return executable
        shutil.rmtree(root, ignore_errors=True)  # a broken or half-made tree
        try:
            _run([sys.executable, "-m", "venv", str(root)], 120)
            _run([str(root / "bin" / "pip"), "install", "--quiet", f"aider-chat=={AIDER_VERSION}"],
                 AIDER_INSTALL_TIMEOUT_S)
        except CliUnavailable:
            shutil.rmtree(root, ignore_errors=True)
            raise
    if not _aider_works(executable):
        raise CliUnavailable(f"aider-chat=={AIDER_VERSION} installed but `aider --version` does not run")
    return executable


def _run(argv: list[str], timeout_s: float) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL,
                              check=False)
    except subprocess.TimeoutExpired:
        raise CliUnavailable(f"`{' '.join(argv[:3])} ...` took over {timeout_s:g} s") from None
    except OSError as error:
        raise CliUnavailable(f"cannot run {argv[0]}: {error}") from None
    if done.returncode != 0:
        raise CliUnavailable(f"`{' '.join(argv[:4])} ...` failed ({done.returncode}): "
                             f"{(done.stderr or done.stdout).strip()[-1500:]}")


def _aider_works(executable: Path) -> bool:
    if not executable.exists():
        return False
    try:
        done = subprocess.run([str(executable), "--version"], capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and AIDER_VERSION in done.stdout


def require(name: str) -> Path:
    """The CLI's executable, installing it first; skips (or fails, when required) if it cannot be had."""
    if name != "aider":
        return cli_cache.require_cli(name)
    try:
        return aider_executable()
    except CliUnavailable as error:
        if name in cli_cache.required_clis() or "all" in os.environ.get(cli_cache.REQUIRE_ENV, ""):
            pytest.fail(f"{cli_cache.REQUIRE_ENV} requires aider: {error}", pytrace=False)
        pytest.skip(f"aider is not available: {error}")


# ---------------------------------------------------------------- one CLI, set up against its fake


@dataclass
class Setup:
    """How sage-stream is configured for one CLI, and the environment of the `sage` process."""

    config: str  # the [agent] table of .sage/config.toml
    env: dict[str, str]


def codex_setup(server: FakeModelServer, home: Path) -> Setup:
    provider = (f'model_providers.fake={{name="Fake",base_url="{server.url}/v1",env_key="FAKE_KEY",'
                'wire_api="responses",request_max_retries=0,stream_max_retries=0}')
    config = ('[agent]\nmodel = "fake-model"\nenv = ["FAKE_KEY"]\n'
              f"extra_args = {json.dumps(['-c', 'model_provider=fake', '-c', provider])}\n")
    return Setup(config, {"FAKE_KEY": "x"})


def gemini_setup(server: FakeModelServer, home: Path) -> Setup:
    gemini_home = home / "gemini-home"
    (gemini_home / ".gemini").mkdir(parents=True)
    # api-key auth with a base URL must be selected in settings.json; one attempt: a 429 ends at once
    settings = {"security": {"auth": {"selectedType": "gemini-api-key"}}, "general": {"maxAttempts": 1}}
    (gemini_home / ".gemini" / "settings.json").write_text(json.dumps(settings))
    config = '[agent]\nmodel = "fake-model"\nenv = ["GOOGLE_GEMINI_BASE_URL"]\n'
    return Setup(config, {"GEMINI_CLI_HOME": str(gemini_home), "GEMINI_API_KEY": "x",
                          "GOOGLE_GEMINI_BASE_URL": server.url})


def aider_setup(server: FakeModelServer, home: Path) -> Setup:
    metadata = home / "model-metadata.json"
    metadata.write_text(json.dumps({"openai/fake-model": {"max_input_tokens": 128000, "max_output_tokens": 4096,
                                                          "litellm_provider": "openai", "mode": "chat",
                                                          **PRICES}}))
    extra = ["--openai-api-base", f"{server.url}/v1", "--model-metadata-file", str(metadata)]
    config = ('[agent]\nmodel = "openai/fake-model"\nenv = ["LITELLM_LOCAL_MODEL_COST_MAP"]\n'
              f"extra_args = {json.dumps(extra)}\n")
    # the local price map: no download from GitHub at start
    return Setup(config, {"OPENAI_API_KEY": "x", "LITELLM_LOCAL_MODEL_COST_MAP": "True"})


@dataclass(frozen=True)
class Cli:
    name: str
    server: Callable[[Script], FakeModelServer]
    setup: Callable[[FakeModelServer, Path], Setup]


CLIS = {
    "codex": Cli("codex", FakeResponsesServer, codex_setup),
    "gemini": Cli("gemini", FakeGeminiServer, gemini_setup),
    "aider": Cli("aider", FakeAiderServer, aider_setup),
}


# ---------------------------------------------------------------- the repository and the run


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def make_repo(root: Path, tickets: list[dict], config: str) -> Path:
    repo = root / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "Sage Test")
    git(repo, "config", "user.email", "sage-test@example.com")
    git(repo, "config", "commit.gpgsign", "false")
    (repo / "README.md").write_text("test repository\n")
    (repo / ".gitignore").write_text(".sage/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial commit")
    (repo / ".sage" / "tickets").mkdir(parents=True)
    index = {"version": "1.0", "tickets": tickets}
    (repo / ".sage" / "tickets" / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    (repo / ".sage" / "config.toml").write_text(config)
    return repo


def ticket(tid: str, *deps: str, files: tuple[str, ...] = ()) -> dict:
    return {"id": tid, "title": f"Write {tid}", "state": "UNPROCESSED", "priority": "P1",
            "type": "implementation", "validation_type": "generic", "dependencies": list(deps),
            "files": list(files), "description": f"Create the file for {tid}."}


@dataclass
class Run:
    code: int
    events: list[dict]
    stderr: str
    repo: Path

    def of(self, kind: str, tid: str | None = None) -> list[dict]:
        return [e for e in self.events if e["event"] == kind and (tid is None or e.get("ticket") == tid)]

    def index(self) -> dict[str, dict]:
        data = json.loads((self.repo / ".sage" / "tickets" / "index.json").read_text())
        return {t["id"]: t for t in data["tickets"]}

    def on_main(self, path: str) -> str | None:
        done = subprocess.run(["git", "show", f"main:{path}"], cwd=self.repo, capture_output=True, text=True,
                              check=False)
        return done.stdout if done.returncode == 0 else None

    def explain(self) -> str:
        logs = sorted((self.repo / ".sage" / "workers").glob("*/*.log"))
        tails = "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}" for log in logs)
        return f"exit {self.code}\nstderr:\n{self.stderr[-3000:]}\nevents:\n{self.events}\nlogs:\n{tails}"


def run_stream(cli: Cli, executable: Path, script: Script, tickets: list[dict], tmp: Path,
               *extra_config: str) -> tuple[Run, FakeModelServer]:
    HOMES.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="home-", dir=HOMES))
    try:
        return _run_stream(cli, executable, script, tickets, tmp, home, *extra_config)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _run_stream(cli: Cli, executable: Path, script: Script, tickets: list[dict], tmp: Path, home: Path,
                *extra_config: str) -> tuple[Run, FakeModelServer]:
    with cli.server(script) as server:
        setup = cli.setup(server, home)
        repo = make_repo(tmp, tickets, setup.config + "".join(extra_config))
        env = {**_base_env(), **setup.env, "HOME": str(home),
               "PATH": f"{executable.parent}{os.pathsep}{os.environ.get('PATH', os.defpath)}"}
        argv = [sys.executable, "-m", "sage_stream", "stream", "--auto", "--parallel=2", "--reuse-sessions",
                "--agent", cli.name, "--json", "--timeout", "5",
                "--index", str(repo / ".sage" / "tickets" / "index.json")]
        done = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
                              stdin=subprocess.DEVNULL, check=False)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return Run(done.returncode, events, done.stderr, repo), server


def _base_env() -> dict[str, str]:
    """Only what a process needs to run: none of the developer's keys reach the CLI or the fake."""
    keep = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])  # this checkout's sage_stream
    return env


# ---------------------------------------------------------------- the tests


def chain_script() -> Script:
    return Script([
        Conversation("Ticket: TKT-A", [WriteFile("a.txt", "A\n"), FinalText("I wrote a.txt.", summary="added a.txt")]),
        Conversation("Ticket: TKT-B", [WriteFile("b.txt", "B\n"), FinalText("I wrote b.txt.", summary="added b.txt")]),
        Conversation("Ticket: TKT-C", [WriteFile("c.txt", "C\n"), FinalText("I wrote c.txt.", summary="added c.txt")]),
    ])


@pytest.mark.parametrize("name", sorted(CLIS))
def test_three_tickets_land_with_summaries_and_the_chain_continues_its_session(name, tmp_path):
    cli = CLIS[name]
    executable = require(name)
    tickets = [ticket("TKT-A", files=("a.txt",)), ticket("TKT-B", files=("b.txt",)),
               ticket("TKT-C", "TKT-A", files=("c.txt",))]
    run, server = run_stream(cli, executable, chain_script(), tickets, tmp_path)
    assert run.code == 0, run.explain()

    # every ticket landed as one commit on main with the file its agent wrote
    assert [run.on_main(f"{x}.txt") for x in "abc"] == ["A\n", "B\n", "C\n"], run.explain()
    index = run.index()
    assert {tid: t["state"] for tid, t in index.items()} == dict.fromkeys(index, "COMPLETED")
    assert {e["ticket"] for e in run.of("ticket_landed")} == {"TKT-A", "TKT-B", "TKT-C"}
    trailers = git(run.repo, "log", "main", "--format=%(trailers:key=Sage-Ticket,valueonly)").split()
    assert sorted(trailers) == ["TKT-A", "TKT-B", "TKT-C"]

    # the agents' results were parsed: summaries from the SAGE-RESULT blocks, sessions, tokens
    for tid, file in (("TKT-A", "a.txt"), ("TKT-B", "b.txt"), ("TKT-C", "c.txt")):
        finished = run.of("agent_finished", tid)[-1]
        assert finished["success"] is True and finished["summary"] == f"added {file}", run.explain()
        assert finished["session_id"]
        result = index[tid]["agent_result"]
        # the fake counts 1000 + 100 tokens a request: a tool call and a final answer (Aider: one
        # answer); a continued session counts only its own requests
        assert result["summary"] == f"added {file}" and result["tokens"] == TOKENS_PER_TICKET[name]

    # TKT-C continued TKT-A's session: its first request to the model carried TKT-A's conversation
    assert run.of("ticket_started", "TKT-C")[0]["continues"] == "TKT-A"
    first_of_c = server.requests_for("Ticket: TKT-C")[0]
    assert any("Ticket: TKT-A" in text for text in first_of_c.user_texts), first_of_c.user_texts
    assert not any("Ticket: TKT-A" in text for text in server.requests_for("Ticket: TKT-B")[0].user_texts)
    session_a = run.of("agent_finished", "TKT-A")[-1]["session_id"]
    if name in ("codex", "aider"):  # gemini imports the session under a new id
        assert run.of("agent_finished", "TKT-C")[-1]["session_id"] == session_a

    # cost: only Aider reports one (when it knows the model's prices)
    total = run.of("run_finished")[0]["total_cost_usd"]
    if name == "aider":
        assert total == pytest.approx(3 * FAKE_COST)
        assert all(index[tid]["agent_result"]["cost_usd"] == pytest.approx(FAKE_COST) for tid in index)
    else:
        assert not total

    # nothing but the work was committed (Aider's repo-map cache and chat history stay out)
    landed = git(run.repo, "log", "main", "--name-only", "--format=").split()
    assert sorted(landed) == [".gitignore", "README.md", "a.txt", "b.txt", "c.txt"]


@pytest.mark.parametrize("name", sorted(CLIS))
def test_a_429_is_a_rate_limit_that_pauses_and_stops_the_run_without_deferring_the_backlog(name, tmp_path):
    """Aider retries a 429 itself for about 90 s before it gives up, so this takes that long."""
    cli = CLIS[name]
    executable = require(name)
    script = Script([Conversation("Ticket: TKT-R", [RateLimited(0)])])
    tickets = [ticket("TKT-R", files=("r.txt",))]
    run, server = run_stream(cli, executable, script, tickets, tmp_path,
                             "[stream]\nrate_limit_backoff_seconds = 0.1\nrate_limit_stop_after = 1\n")
    assert run.code == 3, run.explain()
    finished = run.of("agent_finished", "TKT-R")
    assert finished and finished[0]["success"] is False and finished[0]["error_kind"] == "rate_limit", run.explain()
    assert run.of("ticket_requeued", "TKT-R")[0]["category"] == "rate_limit"
    assert not run.of("ticket_deferred")
    assert run.index()["TKT-R"]["state"] == "UNPROCESSED"
    assert "rate limit" in run.of("run_finished")[0]["stopped"]
    assert server.requests_for("Ticket: TKT-R")


CHECK_F = ("import pathlib, sys\n"
           "text = pathlib.Path('f.txt').read_text()\n"
           "print('f ok' if text == 'good\\n' else f'f.txt says {text!r}, expected good')\n")


@pytest.mark.parametrize("name", sorted(CLIS))
def test_a_failing_check_gets_a_fix_turn_in_the_same_session_and_then_the_ticket_lands(name, tmp_path):
    cli = CLIS[name]
    executable = require(name)
    check = tmp_path / "check_f.py"
    check.write_text(CHECK_F)
    script = Script([Conversation("Ticket: TKT-F", [
        WriteFile("f.txt", "bad\n"), FinalText("I wrote f.txt.", summary="wrote f.txt"),
        WriteFile("f.txt", "good\n"), FinalText("I fixed f.txt.", summary="fixed f.txt")])])
    tickets = [{**ticket("TKT-F", files=("f.txt",)), "validation_config": {"verification_scripts": [
        {"name": "f", "command": f"{sys.executable} {check}", "success_pattern": "^f ok$"}]}}]
    run, server = run_stream(cli, executable, script, tickets, tmp_path)
    assert run.code == 0, run.explain()
    assert run.on_main("f.txt") == "good\n"
    checked = run.of("ticket_checked", "TKT-F")
    assert [(e["passed"], e["fix_turn_next"]) for e in checked] == [(False, True), (True, False)], run.explain()
    assert [e["turn"] for e in run.of("agent_finished", "TKT-F")] == [0, 1]
    result = run.index()["TKT-F"]["agent_result"]
    assert result["summary"] == "fixed f.txt" and result["fix_turns"] == 1
    # the fix turn continued the session: its request holds the ticket's prompt, then the failure
    last = server.requests_for("Ticket: TKT-F")[-1]
    assert "Ticket: TKT-F" in last.user_texts[0] or any("Ticket: TKT-F" in text for text in last.user_texts)
    assert "expected good" in last.last_user_text
