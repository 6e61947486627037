"""`sage stream` end to end with checks before landing, rate limits, --max-cost and
--reuse-sessions: exec and command agents in temporary git repositories."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from sage_stream.agents import registry
from sage_stream.agents.base import AgentJob, AgentResult, Invocation
from sage_stream.agents.command import CommandAgent
from sage_stream.cli import run
from sage_stream.process.supervise import AgentExit
from tests.reliability.support import with_side_channels

PY = sys.executable

# An exec agent that counts its runs in a file outside the worktree (argv[1]) and writes
# the count to value.txt in its worktree.
COUNTING_AGENT = ("import pathlib, sys\n"
                  "counter = pathlib.Path(sys.argv[1])\n"
                  "runs = int(counter.read_text()) + 1 if counter.exists() else 1\n"
                  "counter.write_text(str(runs))\n"
                  "pathlib.Path('value.txt').write_text(str(runs))\n"
                  "print('agent run', runs)\n")

# A check: passes once value.txt says at least argv[1]; leaves an artifact behind either way.
VALUE_CHECK = ("import pathlib, sys\n"
               "pathlib.Path('check-artifact.txt').write_text('made by the check')\n"
               "value = int(pathlib.Path('value.txt').read_text())\n"
               "if value < int(sys.argv[1]):\n"
               "    sys.exit(f'value is {value}, expected {sys.argv[1]}: still broken')\n"
               "print('value ok')\n")

# A command agent: `script TICKET RESULT_FILE COST [rate_limited_runs COUNTER [error_kind reset_at]]`.
COMMAND_AGENT = ("import json, pathlib, sys\n"
                 "ticket, result_file, cost = sys.argv[1], sys.argv[2], float(sys.argv[3])\n"
                 "if len(sys.argv) > 4:\n"
                 "    limited, counter = int(sys.argv[4]), pathlib.Path(sys.argv[5])\n"
                 "    kind = sys.argv[6] if len(sys.argv) > 6 else 'rate_limit'\n"
                 "    reset = sys.argv[7] if len(sys.argv) > 7 else None\n"
                 "    runs = int(counter.read_text()) + 1 if counter.exists() else 1\n"
                 "    counter.write_text(str(runs))\n"
                 "    if runs <= limited:\n"
                 "        result = {'success': False, 'error_kind': kind, 'summary': 'HTTP 429'}\n"
                 "        if reset: result['reset_at'] = reset\n"
                 "        pathlib.Path(result_file).write_text(json.dumps(result))\n"
                 "        print('error: 429 Too Many Requests'); sys.exit(1)\n"
                 "pathlib.Path(ticket + '.txt').write_text('done\\n')\n"
                 "pathlib.Path(result_file).write_text(json.dumps(\n"
                 "    {'success': True, 'summary': 'did ' + ticket, 'cost_usd': cost}))\n")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def make_ticket(tid: str, *, command: list[str] | None = None, deps=(), priority="P1", **extra) -> dict:
    ticket = {"id": tid, "title": f"Do {tid}", "state": "UNPROCESSED", "priority": priority,
              "type": "implementation", "validation_type": "generic", "dependencies": list(deps), **extra}
    if command is not None:
        ticket["command"] = command
    return ticket


@pytest.fixture
def repo(tmp_path: Path, make_git_repo) -> Path:
    root = make_git_repo(tmp_path / "repo")
    (root / ".sage" / "tickets").mkdir(parents=True)
    write_config(root, "")  # test agents count their runs beside the repository
    return root


def write_index(repo: Path, tickets: list[dict]) -> None:
    path = repo / ".sage" / "tickets" / "index.json"
    path.write_text(json.dumps({"version": "1.0", "tickets": tickets}, indent=2) + "\n")


def write_config(repo: Path, text: str) -> None:
    (repo / ".sage" / "config.toml").write_text(with_side_channels(repo, text))


def read_index(repo: Path) -> dict[str, dict]:
    data = json.loads((repo / ".sage" / "tickets" / "index.json").read_text())
    return {t["id"]: t for t in data["tickets"]}


def stream(repo: Path, capsys, *args: str) -> tuple[int, list[dict]]:
    capsys.readouterr()
    code = run(["stream", "--auto", "--json", "--index", str(repo / ".sage/tickets/index.json"), *args])
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def on_main(repo: Path, path: str) -> str | None:
    result = subprocess.run(["git", "show", f"main:{path}"], cwd=repo, capture_output=True, text=True, check=False)
    return result.stdout if result.returncode == 0 else None


def of(events: list[dict], kind: str, ticket: str | None = None) -> list[dict]:
    return [e for e in events if e["event"] == kind and (ticket is None or e.get("ticket") == ticket)]


def script(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------- checks before landing


def test_a_failing_check_gives_the_agent_a_fix_turn_and_then_the_ticket_lands(repo, tmp_path, capsys):
    agent = script(tmp_path, "agent.py", COUNTING_AGENT)
    checker = script(tmp_path, "check.py", VALUE_CHECK)
    counter = tmp_path / "runs"
    write_index(repo, [make_ticket("CHK-1", command=[PY, str(agent), str(counter)], validation_config={
        "verification_scripts": [{"name": "value", "command": f"{shlex.quote(PY)} {shlex.quote(str(checker))} 2",
                                  "success_pattern": "^value ok$"}]})])
    code, events = stream(repo, capsys)
    assert code == 0
    assert counter.read_text() == "2"  # the agent's first turn and its fix turn
    ticket = read_index(repo)["CHK-1"]
    assert ticket["state"] == "COMPLETED" and ticket["agent_result"]["fix_turns"] == 1
    assert on_main(repo, "value.txt") == "2"
    assert on_main(repo, "check-artifact.txt") is None  # what the checks leave behind does not land
    checked = of(events, "ticket_checked", "CHK-1")
    assert [(e["passed"], e["fix_turn_next"]) for e in checked] == [(False, True), (True, False)]
    assert [e["turn"] for e in of(events, "agent_finished", "CHK-1")] == [0, 1]
    run_dir = Path(of(events, "ticket_started", "CHK-1")[0]["log"]).parent
    fix_prompt = (run_dir / "CHK-1.fix-1.prompt.md").read_text()
    assert "value is 1, expected 2: still broken" in fix_prompt and "Fix it: the checks must pass" in fix_prompt
    assert fix_prompt.startswith("# CHK-1: Do CHK-1")  # exec has no session: the ticket's prompt comes first
    assert (run_dir / "CHK-1.check-1.log").read_text().count("[sage-stream] value") == 2


def test_a_check_that_never_passes_defers_the_ticket_and_nothing_lands(repo, tmp_path, capsys):
    agent = script(tmp_path, "agent.py", COUNTING_AGENT)
    checker = script(tmp_path, "check.py", VALUE_CHECK)
    counter = tmp_path / "runs"
    write_index(repo, [
        make_ticket("CHK-2", command=[PY, str(agent), str(counter)], validation_config={"max_retries": 1}),
        make_ticket("CHK-3", command=[PY, "-c", "open('three.txt', 'w').write('3')"], deps=["CHK-2"]),
    ])
    write_config(repo, f"[checks]\ncommands = [{json.dumps(f'{PY} {checker} 99')}]\n")
    code, _ = stream(repo, capsys)
    assert code == 3
    assert counter.read_text() == "2"  # max_retries 1: one fix turn
    tickets = read_index(repo)
    reason = tickets["CHK-2"]["defer_reason"]
    assert tickets["CHK-2"]["state"] == "DEFERRED" and reason["category"] == "persistent_test_failure"
    assert "after 1 fix turn" in reason["message"] and "check 1" in reason["message"]
    assert "value is 2, expected 99: still broken" in reason["last_error"]
    assert reason["log"].endswith("CHK-2.check-1.log") and Path(reason["log"]).is_file()
    assert on_main(repo, "value.txt") is None  # nothing landed
    assert git(repo, "show", "sage/CHK-2:value.txt") == "2"  # the work is kept on its branch
    assert tickets["CHK-3"]["state"] == "UNPROCESSED"


def test_a_check_that_cannot_run_as_written_defers_the_ticket_before_its_agent_runs(repo, tmp_path, capsys):
    marker = tmp_path / "agent-ran"
    write_index(repo, [make_ticket("CHK-4", command=[PY, "-c", f"open({str(marker)!r}, 'w')"],
                                   validation_config={"verification_scripts": [{"command": "pytest | tee log"}]})])
    code, _ = stream(repo, capsys)
    assert code == 3 and not marker.exists()
    reason = read_index(repo)["CHK-4"]["defer_reason"]
    assert reason["category"] == "error" and "shell syntax" in reason["message"]
    assert "verification_scripts[0].command" in reason["message"]


def test_an_unusable_project_check_stops_the_run_before_it_starts(repo, capsys):
    write_index(repo, [make_ticket("CHK-5", command=[PY, "-c", "pass"])])
    write_config(repo, '[checks]\ncommands = ["make test && make lint"]\n')
    capsys.readouterr()
    assert run(["stream", "--auto", "--index", str(repo / ".sage/tickets/index.json")]) == 1
    err = capsys.readouterr().err
    assert "config.toml: [checks] commands[0]" in err and "shell syntax" in err
    assert read_index(repo)["CHK-5"]["state"] == "UNPROCESSED"


# ---------------------------------------------------------------- cost


def test_max_cost_stops_starting_tickets_once_spent(repo, tmp_path, capsys):
    agent = script(tmp_path, "agent.py", COMMAND_AGENT)
    write_index(repo, [make_ticket(f"COST-{n}", priority=f"P{n}") for n in (1, 2, 3)])
    code, events = stream(repo, capsys, "--agent-cmd", f"{PY} {agent} {{ticket}} {{result_file}} 0.6",
                          "--max-cost", "1")
    assert code == 0
    tickets = read_index(repo)
    assert [tickets[f"COST-{n}"]["state"] for n in (1, 2, 3)] == ["COMPLETED", "COMPLETED", "UNPROCESSED"]
    assert tickets["COST-1"]["agent_result"]["cost_usd"] == 0.6
    finished = of(events, "run_finished")[0]
    assert finished["stopped"] == "stopped starting tickets: cost $1.20 reached --max-cost $1.00"
    assert finished["total_cost_usd"] == pytest.approx(1.2) and finished["remaining"] == 1
    record = json.loads(Path(finished["summary_path"]).read_text())
    assert record["total_cost_usd"] == pytest.approx(1.2)
    assert record["tickets"]["COST-2"]["cost_usd"] == pytest.approx(0.6)
    assert record["tickets"]["COST-2"]["summary"] == "did COST-2"


# ---------------------------------------------------------------- rate limits


def test_a_rate_limit_pauses_dispatch_and_the_ticket_lands_on_the_next_try(repo, tmp_path, capsys):
    agent = script(tmp_path, "agent.py", COMMAND_AGENT)
    counter = tmp_path / "runs"
    write_index(repo, [make_ticket("RL-1")])
    write_config(repo, "[stream]\nrate_limit_backoff_seconds = 0.2\n")
    code, events = stream(repo, capsys, "--agent-cmd", f"{PY} {agent} {{ticket}} {{result_file}} 0 1 {counter}")
    assert code == 0 and counter.read_text() == "2"
    ticket = read_index(repo)["RL-1"]
    assert ticket["state"] == "COMPLETED" and ticket.get("attempts", 0) == 0  # a rate limit is not an attempt
    kinds = [e["event"] for e in events if e["event"] in
             ("ticket_started", "dispatch_paused", "ticket_requeued", "dispatch_resumed", "ticket_landed")]
    assert kinds == ["ticket_started", "dispatch_paused", "ticket_requeued", "dispatch_resumed",
                     "ticket_started", "ticket_landed"]
    assert of(events, "ticket_requeued")[0]["category"] == "rate_limit"
    assert not of(events, "ticket_deferred")


def test_rate_limits_in_a_row_stop_the_run_and_leave_the_backlog_alone(repo, tmp_path, capsys):
    agent = script(tmp_path, "agent.py", COMMAND_AGENT)
    write_index(repo, [make_ticket(f"RL-{n}") for n in (2, 3, 4)])
    write_config(repo, "[stream]\nrate_limit_backoff_seconds = 0.05\nrate_limit_stop_after = 2\n")
    code, events = stream(repo, capsys, "--agent-cmd",
                          f"{PY} {agent} {{ticket}} {{result_file}} 0 99 {tmp_path / 'runs'}")
    assert code == 3
    assert {t["state"] for t in read_index(repo).values()} == {"UNPROCESSED"}
    assert of(events, "run_finished")[0]["stopped"] == "stopped starting tickets: 2 rate limits in a row"
    assert (tmp_path / "runs").read_text() == "2"  # two agent runs, not one per ticket of the backlog


def test_a_quota_that_resets_far_away_defers_until_then_and_stops_the_run(repo, tmp_path, capsys):
    agent = script(tmp_path, "agent.py", COMMAND_AGENT)
    reset = (datetime.now(timezone.utc) + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    write_index(repo, [make_ticket("Q-1", priority="P0"), make_ticket("Q-2")])
    code, events = stream(repo, capsys, "--agent-cmd",
                          f"{PY} {agent} {{ticket}} {{result_file}} 0 99 {tmp_path / 'runs'} quota {reset}")
    assert code == 3
    tickets = read_index(repo)
    assert tickets["Q-1"]["state"] == "DEFERRED" and tickets["Q-1"]["not_before"] == reset
    assert tickets["Q-1"]["defer_reason"]["category"] == "quota"
    assert tickets["Q-1"]["defer_reason"]["retryable"] is True
    assert tickets["Q-2"]["state"] == "UNPROCESSED"  # not started: it would hit the same quota
    assert f"quota exhausted until {reset}" in of(events, "run_finished")[0]["stopped"]


# ---------------------------------------------------------------- sessions along a chain


class SessionCommandAgent(CommandAgent):
    """A command agent with sessions, as a CLI agent would have: the session to continue is
    passed as the last argument; a new session is named after the ticket that started it."""

    name = "session-command"

    def invocation(self, job: AgentJob) -> Invocation:
        invocation = super().invocation(job)
        return Invocation(argv=[*invocation.argv, job.session_id or "-"], env=invocation.env)

    def parse_result(self, job: AgentJob, exit: AgentExit) -> AgentResult:
        result = super().parse_result(job, exit)
        result.session_id = job.session_id or f"session-{job.ticket.id}"
        return result

    def supports_sessions(self) -> bool:
        return True


def test_reuse_sessions_continues_the_only_dependency_s_session_in_its_slot(repo, tmp_path, capsys, monkeypatch):
    calls = tmp_path / "calls.jsonl"
    agent = script(tmp_path, "agent.py", (
        "import json, os, pathlib, sys, time\n"
        "ticket, session = sys.argv[1], sys.argv[2]\n"
        "time.sleep({'A-1': 1.0}.get(ticket, 0))\n"
        f"with open({str(calls)!r}, 'a') as log: log.write(json.dumps([ticket, session, os.getcwd()]) + '\\n')\n"
        "pathlib.Path(ticket + '.txt').write_text('x')\n"))
    monkeypatch.setattr(registry, "get_agent",
                        lambda name, agent_cmd=None, config=None: SessionCommandAgent(agent_cmd))
    # X (slot 1) is quick, A (slot 2) sleeps a second: when A lands both slots are usually
    # free, and B takes A's. (Should X still run then, slot 2 is the only free one: the
    # assertion holds either way.) C shares A with B: one session is continued once. D has
    # two dependencies: it starts cold.
    write_index(repo, [
        make_ticket("X-1", priority="P0"), make_ticket("A-1"), make_ticket("B-1", deps=["A-1"]),
        make_ticket("C-1", deps=["A-1"], priority="P2"), make_ticket("D-1", deps=["A-1", "X-1"], priority="P3"),
    ])
    code, events = stream(repo, capsys, "--parallel", "2", "--reuse-sessions",
                          "--agent-cmd", f"{PY} {agent} {{ticket}}")
    assert code == 0
    seen = {ticket: (session, cwd) for ticket, session, cwd in map(json.loads, calls.read_text().splitlines())}
    assert seen["A-1"][0] == "-" and seen["B-1"][0] == "session-A-1"
    assert seen["B-1"][1] == seen["A-1"][1]  # the same worker slot: the same working directory
    assert seen["C-1"][0] == "-" and seen["D-1"][0] == "-"
    tickets = read_index(repo)
    assert tickets["B-1"]["agent_result"]["session_id"] == "session-A-1"
    assert tickets["B-1"]["agent_result"]["continued_from"] == "A-1"
    assert of(events, "ticket_started", "B-1")[0]["continues"] == "A-1"
    prompt = Path(of(events, "ticket_started", "B-1")[0]["log"]).with_suffix(".prompt.md").read_text()
    assert "## Continuing from A-1" in prompt
    record = json.loads(Path(of(events, "run_finished")[0]["summary_path"]).read_text())
    assert record["tickets"]["B-1"]["session_id"] == "session-A-1"


def test_a_fix_turn_continues_the_agent_s_session(repo, tmp_path, capsys, monkeypatch):
    calls = tmp_path / "calls.jsonl"
    agent = script(tmp_path, "agent.py", (
        "import json, pathlib, sys\n"
        "prompt, session = pathlib.Path(sys.argv[1]).read_text(), sys.argv[2]\n"
        f"calls = pathlib.Path({str(calls)!r})\n"
        "runs = len(calls.read_text().splitlines()) + 1 if calls.exists() else 1\n"
        "with calls.open('a') as log: log.write(json.dumps([session, prompt.splitlines()[0]]) + '\\n')\n"
        "pathlib.Path('value.txt').write_text(str(runs))\n"))
    checker = script(tmp_path, "check.py", VALUE_CHECK)
    monkeypatch.setattr(registry, "get_agent",
                        lambda name, agent_cmd=None, config=None: SessionCommandAgent(agent_cmd))
    write_index(repo, [make_ticket("S-1", validation_config={"verification_scripts": [
        {"command": f"{shlex.quote(PY)} {shlex.quote(str(checker))} 2"}]})])
    code, _ = stream(repo, capsys, "--agent-cmd", f"{PY} {agent} {{prompt_file}}")
    assert code == 0
    turns = [json.loads(line) for line in calls.read_text().splitlines()]
    assert turns == [["-", "# S-1: Do S-1"], ["session-S-1", "# S-1: fix the failing checks"]]
    assert read_index(repo)["S-1"]["agent_result"]["session_id"] == "session-S-1"
