"""`sage stream` with its agents sandboxed (bwrap): each escape an agent tries fails while its own
work lands; the run says whether agents are sandboxed; `--sandbox bwrap` refuses to start
without bwrap and `auto` runs without it, saying so once.

Skipped where bwrap is not installed or cannot make a sandbox (CI installs it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from sage_stream.process.sandbox import probe
from tests.conftest import init_git_repo

PY = sys.executable
CHECKOUT = Path(__file__).resolve().parents[2]
PROBED = probe()
needs_bwrap = pytest.mark.skipif(PROBED.problem is not None, reason=f"no sandbox here: {PROBED.problem}")


def git(repo: Path, *args: str, check: bool = True) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=check)
    return done.stdout


def make_repo(root: Path) -> Path:
    repo = init_git_repo(root / "repo")
    (repo / ".sage" / "tickets").mkdir(parents=True)
    return repo


def make_home(root: Path) -> Path:
    home = root / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "known_hosts").write_text("example.invalid ssh-ed25519 AAAA\n")
    return home


def ticket(tid: str, code: str, *deps: str) -> dict:
    """An exec-agent ticket: `code` (python) runs in the worktree after the agent wrote its own file."""
    own = f"import pathlib; pathlib.Path('{tid.lower()}.txt').write_text('{tid}\\n')\n"
    return {"id": tid, "title": f"Do {tid}", "state": "UNPROCESSED", "priority": "P1", "type": "implementation",
            "validation_type": "generic", "dependencies": list(deps), "files": [], "command": [PY, "-c", own + code]}


def attempt(description: str, code: str) -> str:
    """Python that tries `code` and prints whether it worked; the agent exits 0 either way."""
    return ("try:\n" + "".join(f"    {line}\n" for line in code.splitlines())
            + f"    print('ESCAPED:', {description!r}, flush=True)\n"
            f"except Exception as error:\n    print('refused:', {description!r}, error, flush=True)\n")


def run_stream(repo: Path, home: Path, tickets: list[dict], *flags: str,
               path: str | None = None) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    (repo / ".sage" / "tickets" / "index.json").write_text(json.dumps({"version": "1.0", "tickets": tickets}))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SAGE_", "GIT_"))}
    env.update(HOME=str(home), PYTHONPATH=str(CHECKOUT), PATH=path or os.environ.get("PATH", os.defpath))
    done = subprocess.run([PY, "-m", "sage_stream", "stream", "--auto", "--json", "--parallel=2",
                           "--index", str(repo / ".sage" / "tickets" / "index.json"), *flags],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=180)
    return done, [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def index_of(repo: Path) -> dict[str, dict]:
    return {t["id"]: t for t in json.loads((repo / ".sage" / "tickets" / "index.json").read_text())["tickets"]}


def log_of(repo: Path, events: list[dict], tid: str) -> str:
    started = [e for e in events if e["event"] == "ticket_started" and e.get("ticket") == tid]
    return Path(started[-1]["log"]).read_text()


def messages(events: list[dict]) -> list[str]:
    return [e["text"] for e in events if e["event"] == "message"]


@needs_bwrap
def test_every_escape_fails_while_each_agents_own_change_lands(tmp_path):
    repo, home = make_repo(tmp_path), make_home(tmp_path)
    main_before = git(repo, "rev-parse", "main").strip()
    escapes = {
        "WORKTREE-1": attempt("the user's work tree", f"pathlib.Path({str(repo / 'escaped.txt')!r}).write_text('x')"),
        "REF-1": attempt("the target ref", (
            "import subprocess\n"
            "subprocess.run(['git', 'update-ref', 'refs/heads/main', 'HEAD'], check=True)")) + attempt(
            "a new branch", "import subprocess\n"
            "subprocess.run(['git', 'update-ref', 'refs/heads/escaped', 'HEAD'], check=True)"),
        "SLOT-1": attempt("another slot", (
            "import os\n"
            "own = pathlib.Path(os.environ['SAGE_WORKTREE']).resolve()\n"
            "others = [p for p in own.parent.iterdir() if p.resolve() != own]\n"
            "print('other slots:', len(others), flush=True)\n"
            "(others[0] / 'planted.txt').write_text('x')")) + attempt(
            "a new slot", "(pathlib.Path.cwd().parent / 'slot-99').mkdir()"),
        "GITCONFIG-1": attempt("the global git config", (
            "import subprocess\n"
            "subprocess.run(['git', 'config', '--global', 'core.hooksPath', '/tmp/evil'], check=True)")),
        "SSH-1": attempt("~/.ssh", (
            "pathlib.Path.home().joinpath('.ssh', 'authorized_keys').write_text('ssh-ed25519 evil')")),
    }
    # WORKTREE-1 runs first: when the others run, its slot is there to be written
    tickets = [ticket("WORKTREE-1", escapes["WORKTREE-1"])]
    tickets += [ticket(tid, code, "WORKTREE-1") for tid, code in escapes.items() if tid != "WORKTREE-1"]
    done, events = run_stream(repo, home, tickets)
    assert done.returncode == 0, done.stdout + done.stderr

    # each agent's own change landed
    index = index_of(repo)
    assert {tid: t["state"] for tid, t in index.items()} == dict.fromkeys(escapes, "COMPLETED")
    for tid in escapes:
        assert git(repo, "show", f"main:{tid.lower()}.txt") == f"{tid}\n"
    # ... and every escape was refused by the filesystem, as its log says
    for tid in escapes:
        log = log_of(repo, events, tid)
        assert "ESCAPED" not in log and log.count("refused:") == escapes[tid].count("refused:"), log
        assert "Read-only file system" in log, log
    assert "other slots: 0" not in log_of(repo, events, "SLOT-1")
    assert not (repo / "escaped.txt").exists()
    assert git(repo, "rev-parse", "--verify", "--quiet", "refs/heads/escaped", check=False) == ""
    main_log = git(repo, "log", "--format=%H %s", "main").splitlines()
    assert main_log[-1].startswith(main_before) and len(main_log) == 1 + len(escapes)  # only the landings
    assert not list((repo / ".sage" / "worktrees").rglob("planted.txt"))
    assert not (repo / ".sage" / "worktrees" / "slot-99").exists()
    assert not (home / ".gitconfig").exists()
    assert sorted(p.name for p in (home / ".ssh").iterdir()) == ["known_hosts"]


def daemon_ticket(token: str) -> dict:
    """An agent that leaves a daemon behind: a new session, an empty environment (no SAGE_*
    variables to be recognized by), and it exits at once (before anyone looks for its children)."""
    code = ("import subprocess, sys\n"
            f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)', {token!r}], env={{}},"
            " start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n")
    return ticket("DAEMON-1", code)


def processes_with(token: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if token in (process.info["cmdline"] or []):
            found.append(process)
    return found


@needs_bwrap
def test_a_daemon_the_agent_leaves_dies_with_its_sandbox(tmp_path):
    repo, home = make_repo(tmp_path), make_home(tmp_path)
    token = f"sage-daemon-{uuid.uuid4()}"
    done, events = run_stream(repo, home, [daemon_ticket(token)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert index_of(repo)["DAEMON-1"]["state"] == "COMPLETED"
    deadline = time.monotonic() + 5
    while processes_with(token) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_with(token) == []


def test_without_the_sandbox_the_same_daemon_outlives_its_ticket(tmp_path):
    """The control for the test above: what the PID namespace adds to the supervisor."""
    repo, home = make_repo(tmp_path), make_home(tmp_path)
    token = f"sage-daemon-{uuid.uuid4()}"
    try:
        done, _ = run_stream(repo, home, [daemon_ticket(token)], "--sandbox", "none")
        assert done.returncode == 0, done.stdout + done.stderr
        if not processes_with(token):  # the supervisor's once-a-second look caught it (a slow start)
            pytest.skip("the supervisor stopped this daemon without a sandbox: no control this time")
    finally:
        for process in processes_with(token):
            process.kill()


@needs_bwrap
def test_a_failure_caused_by_a_refused_write_says_the_agent_wrote_outside_its_worktree(tmp_path):
    repo, home = make_repo(tmp_path), make_home(tmp_path)
    code = f"pathlib.Path({str(repo / 'README.md')!r}).write_text('overwritten')\n"
    done, events = run_stream(repo, home, [ticket("OUT-1", code)])
    assert done.returncode == 3, done.stdout + done.stderr
    reason = index_of(repo)["OUT-1"]["defer_reason"]
    assert reason["category"] == "agent_failed"
    assert "tried to write outside its worktree" in reason["message"], reason
    assert "Read-only file system" in Path(reason["log"]).read_text()
    assert (repo / "README.md").read_text() == "test repository\n"


@needs_bwrap
def test_the_run_says_once_that_agents_are_sandboxed_and_checks_run_sandboxed_too(tmp_path):
    repo, home = make_repo(tmp_path), make_home(tmp_path)
    check = [PY, "-c", f"import pathlib; pathlib.Path({str(repo / 'from-check.txt')!r}).write_text('x')"]
    item = ticket("CHK-1", "")
    item["validation_config"] = {"verification_scripts": [{"command": " ".join(check[:2]) + " " + repr(check[2])}]}
    done, events = run_stream(repo, home, [item])
    said = [text for text in messages(events) if "sandbox" in text]
    assert len(said) == 1 and said[0].startswith("agents are sandboxed with "), messages(events)
    # the check tried to write the user's work tree: it failed, so the ticket did not land
    assert index_of(repo)["CHK-1"]["state"] == "DEFERRED", done.stdout
    assert not (repo / "from-check.txt").exists()


def path_without_bwrap(tmp_path: Path) -> str:
    """A PATH with git and python but no bwrap."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("git", "env"):
        found = subprocess.run(["which", name], capture_output=True, text=True, check=True).stdout.strip()
        (bin_dir / name).symlink_to(found)
    (bin_dir / "python3").symlink_to(PY)
    return str(bin_dir)


def test_sandbox_bwrap_refuses_to_start_without_bwrap(tmp_path):
    repo, home = make_repo(tmp_path), make_home(tmp_path)
    done, events = run_stream(repo, home, [ticket("T-1", "")], "--sandbox", "bwrap", path=path_without_bwrap(tmp_path))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "sandbox \"bwrap\" was asked for, but bwrap is not installed" in done.stderr
    assert index_of(repo)["T-1"]["state"] == "UNPROCESSED"  # nothing started


def test_sandbox_auto_without_bwrap_runs_unsandboxed_and_says_so_once(tmp_path):
    repo, home = make_repo(tmp_path), make_home(tmp_path)
    done, events = run_stream(repo, home, [ticket("T-1", ""), ticket("T-2", "")], path=path_without_bwrap(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    said = [e for e in events if e["event"] == "message" and "sandbox" in e["text"]]
    assert len(said) == 1 and said[0]["level"] == "warning", said
    assert said[0]["text"].startswith("agents are not sandboxed: bwrap is not installed")
    assert {t["state"] for t in index_of(repo).values()} == {"COMPLETED"}


def test_sandbox_bwrap_in_the_config_is_refused_the_same_way_and_a_bad_value_names_the_file(tmp_path):
    repo, home = make_repo(tmp_path), make_home(tmp_path)
    config = repo / ".sage" / "config.toml"
    config.write_text('[agent]\nsandbox = "bwrap"\n')
    done, _ = run_stream(repo, home, [ticket("T-1", "")], path=path_without_bwrap(tmp_path))
    assert done.returncode == 1 and "bwrap is not installed" in done.stderr
    config.write_text('[agent]\nsandbox = "always"\n')
    done, _ = run_stream(repo, home, [ticket("T-1", "")])
    assert done.returncode == 1
    assert f"{config}: key 'agent.sandbox'" in done.stderr, done.stderr
    config.write_text('[agent]\nwritable = ["relative/path"]\n')
    done, _ = run_stream(repo, home, [ticket("T-1", "")])
    assert done.returncode == 1
    assert f"{config}: [agent] writable: 'relative/path' must be an absolute path" in done.stderr, done.stderr
