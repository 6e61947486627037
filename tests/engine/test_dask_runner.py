"""Attempts on Dask workers (`sage stream --executor dask://`), with an in-process
LocalCluster (threads): the same exec-agent backlogs as tests/e2e/test_stream_exec.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed", reason="Dask distributed is not installed: pip install '.[dask]'")
import dask  # noqa: E402

from sage_stream.cli import run  # noqa: E402
from tests.e2e.test_stream_exec import (  # noqa: E402, F401  (repo: the e2e tests' repository fixture)
    git, make_ticket, read_index, repo, trailer_counts, write_file_cmd, write_index)




@pytest.fixture
def cluster(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("SAGE_WORKER_DIR", str(tmp_path / "workers"))
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=False, host="127.0.0.1", protocol="tcp://",
                                      dashboard_address=":0", resources={"agent": 2}) as local:
            yield local


def stream(repo: Path, capsys, *args: str) -> tuple[int, list[dict]]:
    capsys.readouterr()
    code = run(["stream", "--auto", "--json", "--index", str(repo / ".sage/tickets/index.json"), *args])
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def dask_url(cluster) -> str:
    return "dask://" + cluster.scheduler_address.removeprefix("tcp://")


def test_a_dag_drains_on_dask_workers_each_ticket_landing_once(repo, cluster, capsys):
    write_index(repo, [
        make_ticket("T1", write_file_cmd("a.txt", "a\n")),
        make_ticket("T2", write_file_cmd("b.txt", "b\n")),
        make_ticket("T3", write_file_cmd("c.txt", "c\n"), deps=["T1", "T2"]),
    ])
    code, events = stream(repo, capsys, "--parallel", "2", "--executor", dask_url(cluster))
    assert code == 0, events
    assert {tid: t["state"] for tid, t in read_index(repo).items()} == {"T1": "COMPLETED", "T2": "COMPLETED",
                                                                       "T3": "COMPLETED"}
    assert trailer_counts(repo) == {"T1": 1, "T2": 1, "T3": 1}
    assert git(repo, "show", "main:c.txt") == "c\n"
    refs = git(repo, "for-each-ref", "--format=%(refname)", "refs/sage/attempts/").split()
    assert sorted(refs) == ["refs/sage/attempts/T1/1", "refs/sage/attempts/T2/1", "refs/sage/attempts/T3/1"]
    said = [e for e in events if e.get("event") == "message" and "runs on worker" in str(e.get("text"))]
    assert len(said) == 3 and all(e["worker"] in workers(cluster) for e in said)
    lines = {e["ticket"]: e["line"] for e in events if e.get("event") == "agent_output"}
    assert lines == {"T1": "wrote a.txt", "T2": "wrote b.txt", "T3": "wrote c.txt"}  # live, from the workers
    capsys.readouterr()
    assert run(["status", "--index", str(repo / ".sage/tickets/index.json")]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("T")]
    assert len(lines) == 3 and all("on worker " in line for line in lines)  # sage status names each one's worker


def workers(cluster) -> set[str]:
    return {str(info["name"]) for info in cluster.scheduler_info["workers"].values()}


def side_commit(repo: Path, path: str, text: str) -> str:
    """A commit on top of main with one more file, on no branch (what a worker pushes)."""
    blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=repo, input=text, capture_output=True,
                          text=True, check=True).stdout.strip()
    base_tree = git(repo, "rev-parse", "main^{tree}").strip()
    listing = git(repo, "ls-tree", base_tree) + f"100644 blob {blob}\t{path}\n"
    tree = subprocess.run(["git", "mktree"], cwd=repo, input=listing, capture_output=True, text=True,
                          check=True).stdout.strip()
    return git(repo, "commit-tree", tree, "-p", "main", "-m", f"work on {path}").strip()


def test_an_attempt_pushed_after_its_coordinator_died_lands_without_its_agent_running_again(repo, cluster, capsys,
                                                                                             tmp_path):
    ran = tmp_path / "agent-ran"
    write_index(repo, [make_ticket("T1", write_file_cmd(str(ran), "yes\n"), attempts=1)])
    orphan = side_commit(repo, "from-orphan.txt", "pushed by a worker whose coordinator died\n")
    git(repo, "update-ref", "refs/sage/attempts/T1/1", orphan)  # the hub is the repository itself
    code, events = stream(repo, capsys, "--executor", dask_url(cluster))
    assert code == 0, events
    assert read_index(repo)["T1"]["state"] == "COMPLETED"
    assert git(repo, "show", "main:from-orphan.txt") == "pushed by a worker whose coordinator died\n"
    assert not ran.exists()  # its agent was not paid for twice
    assert git(repo, "rev-parse", "refs/sage/received/T1/1").strip() == orphan


def test_attempt_numbers_on_the_hub_are_never_reused_and_a_received_one_never_lands_again(repo, cluster, capsys):
    write_index(repo, [make_ticket("T1", write_file_cmd("fresh.txt", "fresh\n"), attempts=1)])
    stale = side_commit(repo, "stale.txt", "an attempt this repository already took in hand\n")
    git(repo, "update-ref", "refs/sage/attempts/T1/2", stale)
    git(repo, "update-ref", "refs/sage/received/T1/2", stale)
    git(repo, "update-ref", "refs/sage/kept/T1/3", stale)  # unlanded work kept by an earlier attempt
    code, events = stream(repo, capsys, "--executor", dask_url(cluster))
    assert code == 0, events
    assert git(repo, "show", "main:fresh.txt") == "fresh\n"
    assert "stale.txt" not in git(repo, "ls-tree", "--name-only", "main")
    assert git(repo, "rev-parse", "refs/sage/attempts/T1/4^{tree}") == git(repo, "rev-parse", "main^{tree}")
    assert git(repo, "rev-parse", "refs/sage/attempts/T1/2").strip() == stale  # never moved (never forced)


def test_a_run_leaves_no_client_connected_to_the_cluster(repo, cluster, capsys, monkeypatch):
    """Left open, the run's client outlived it and, once the cluster was gone, spent 10 s
    trying to reconnect (in a process that goes on, a test run or a host program)."""
    from sage_stream.engine import dask_runner

    clients = []
    real = dask_runner._connect
    monkeypatch.setattr(dask_runner, "_connect", lambda settings: clients.append(real(settings)) or clients[-1])
    write_index(repo, [make_ticket("T1", write_file_cmd("a.txt", "a\n"))])
    code, events = stream(repo, capsys, "--executor", dask_url(cluster))
    assert code == 0, events
    assert len(clients) == 1 and clients[0].status == "closed"


def test_closing_after_the_scheduler_went_away_is_quiet(repo, monkeypatch):
    """The run's outcome is recorded before its runner is closed: a scheduler that is gone
    by then makes no traceback at the very end of the run."""
    from distributed.comm.core import CommClosedError

    from sage_stream.engine import dask_runner

    class GoneClient(RecordingClient):
        def close(self):
            raise CommClosedError("in <TCP (closed)>: Stream is closed")

    monkeypatch.setattr(dask_runner, "_connect", lambda settings: GoneClient())
    runner, _ = runner_with(None, repo)  # the runner opens (and owns) its client
    runner.close()


def test_a_failed_attempt_is_kept_on_the_hub_and_not_landed(repo, cluster, capsys):
    fail = ["python3", "-c", "import pathlib, sys; pathlib.Path('half.txt').write_text('half'); print('half done');"
                             " sys.exit(3)"]
    write_index(repo, [make_ticket("T1", fail)])
    code, events = stream(repo, capsys, "--executor", dask_url(cluster))
    assert code == 3, events
    assert read_index(repo)["T1"]["state"] != "COMPLETED"
    assert git(repo, "show", "refs/sage/kept/T1/1:half.txt") == "half"  # unlanded work is never lost
    assert git(repo, "for-each-ref", "refs/sage/attempts/") == ""
    log = Path(read_index(repo)["T1"]["defer_reason"]["log"])  # here, on the coordinator
    assert log.is_relative_to(repo / ".sage") and "the whole log is on worker" in log.read_text()
    assert "half done" in log.read_text()


class RecordingClient:
    """Stands in for distributed.Client where only what is asked of it matters."""

    def __init__(self, allowed_failures=0) -> None:
        self.allowed_failures = allowed_failures
        self.submitted: list[dict] = []

    def subscribe_topic(self, topic, handler) -> None:
        self.topic = topic

    def run_on_scheduler(self, function):
        return self.allowed_failures

    def run(self, function, **kwargs):
        return {}

    def submit(self, function, attempt, **options):
        self.submitted.append(options)


def runner_with(client, repo: Path):
    import queue

    from sage_stream.agents.exec import ExecAgent
    from sage_stream.engine.dask_runner import DaskRunner, DaskSettings
    from sage_stream.git import Git

    inbox: queue.Queue = queue.Queue()
    settings = DaskSettings(address="tcp://127.0.0.1:1", hub=str(repo), agent=ExecAgent(), run_id="r1", target="main",
                            timeout_s=60, idle_timeout_s=60, grace_s=1)
    return DaskRunner(Git(repo), settings, inbox, client=client), inbox


def remote_attempt(session_id=None):
    from sage_stream.agents.exec import ExecAgent
    from sage_stream.engine.remote_attempt import RemoteAttempt
    from sage_stream.tickets.models import Ticket

    ticket = Ticket.model_validate(make_ticket("T1", ["true"]))
    return RemoteAttempt(ticket=ticket, attempt=1, base="0" * 40, hub="/hub", prompt="p", stem="T1", run_id="r1",
                         topic="sage-r1", agent=ExecAgent(), session_id=session_id)


def test_attempts_are_never_rerun_by_dask_and_a_continued_session_prefers_its_worker(repo):
    client = RecordingClient()
    runner, _ = runner_with(client, repo)
    runner._submit(remote_attempt())
    runner._session_workers["sess-1"] = "wB"
    runner._submit(remote_attempt(session_id="sess-1"))
    first, continued = client.submitted
    assert first["retries"] == 0 and first["resources"] == {"agent": 1} and first["pure"] is False
    assert "workers" not in first
    assert continued["workers"] == ["wB"] and continued["allow_other_workers"] is True  # a preference, not a pin


def test_a_scheduler_that_reruns_tasks_of_dead_workers_is_said_at_start(repo):
    _, inbox = runner_with(RecordingClient(allowed_failures=3), repo)
    said = inbox.get_nowait()
    assert said.kind == "message" and said.data["level"] == "warning"
    assert "allowed-failures = 3" in said.data["text"] and "ALLOWED_FAILURES=0" in said.data["text"]
    _, quiet = runner_with(RecordingClient(allowed_failures=0), repo)
    assert quiet.empty()


def test_plain_tcp_to_a_scheduler_on_another_machine_is_refused_and_nothing_changes(repo, capsys):
    index = write_index(repo, [make_ticket("T1", write_file_cmd("a.txt", "a\n"))])
    before = index.read_text()
    code = run(["stream", "--auto", "--index", str(index), "--executor", "dask://10.1.2.3:8786"])
    err = capsys.readouterr().err
    assert code == 1
    assert "runs any pickled code" in err and "--insecure" in err and "Traceback" not in err
    assert index.read_text() == before
    assert not (repo / ".sage" / "workers").exists()


def test_a_run_that_would_sandbox_its_agents_says_that_agents_on_workers_are_not(repo):
    import dataclasses
    import queue

    from sage_stream.agents.exec import ExecAgent
    from sage_stream.engine.dask_runner import DaskRunner, DaskSettings
    from sage_stream.git import Git

    inbox: queue.Queue = queue.Queue()
    settings = DaskSettings(address="tcp://127.0.0.1:1", hub=str(repo), agent=ExecAgent(), run_id="r1", target="main",
                            timeout_s=60, idle_timeout_s=60, grace_s=1)
    DaskRunner(Git(repo), dataclasses.replace(settings, sandboxed=True), inbox, client=RecordingClient())
    said = inbox.get_nowait()
    assert said.data["level"] == "warning" and "without the bwrap sandbox" in said.data["text"]
    DaskRunner(Git(repo), settings, inbox, client=RecordingClient())
    assert inbox.empty()


class KilledWorker(Exception):
    """What distributed raises for a task whose worker died (with allowed-failures 0)."""


class LostWorkerClient(RecordingClient):
    """Every task's worker dies; `on_submit` runs as the task is sent (a worker pushing first)."""

    def __init__(self, on_submit=lambda options: None) -> None:
        super().__init__()
        self.on_submit = on_submit

    def submit(self, function, attempt, **options):
        self.submitted.append({**options, "attempt": attempt.attempt})
        self.on_submit(options)
        return self

    def result(self, timeout=None):
        raise KilledWorker("worker tcp://127.0.0.1:1 died")


def started_attempt(repo: Path, client) -> list:
    """Drive one attempt of T1 to its end with `client`; the runner's messages."""
    from sage_stream.agents.base import AgentJob
    from sage_stream.engine.work import AttemptCrashed, AttemptDone, AttemptSpec
    from sage_stream.tickets.models import Ticket

    runner, inbox = runner_with(client, repo)
    prompt = repo / ".sage" / "T1.prompt.md"
    prompt.write_text("do T1\n")
    ticket = Ticket.model_validate(make_ticket("T1", ["true"]))
    job = AgentJob(ticket=ticket, worktree=repo, prompt_file=prompt, result_file=repo / ".sage" / "T1.json",
                   log_path=repo / ".sage" / "T1.log", run_id="r1")
    runner.start(AttemptSpec(ticket=ticket, attempt=1, worker=0, slot=1, stem="T1", job=job))
    messages = []
    while not messages or not isinstance(messages[-1], (AttemptDone, AttemptCrashed)):
        messages.append(inbox.get(timeout=30))
    return messages


def test_a_worker_lost_after_pushing_its_attempt_lands_that_attempt_and_sends_nothing_again(repo):
    pushed = side_commit(repo, "pushed.txt", "pushed just before the worker died\n")
    client = LostWorkerClient(on_submit=lambda options: git(repo, "update-ref", "refs/sage/attempts/T1/1", pushed))
    messages = started_attempt(repo, client)
    assert [item["attempt"] for item in client.submitted] == [1]
    assert messages[-1].work.tip == pushed and messages[-1].work.result.success
    assert any("pushed before worker" in str(getattr(m, "data", {}).get("text")) for m in messages)


def test_a_worker_lost_before_pushing_is_sent_again_as_the_next_attempt_then_given_up(repo):
    from sage_stream.engine.dask_runner import MAX_REDISPATCH
    from sage_stream.engine.work import AttemptCrashed

    client = LostWorkerClient()
    messages = started_attempt(repo, client)
    assert [item["attempt"] for item in client.submitted] == list(range(1, MAX_REDISPATCH + 2))  # N+1, never N again
    assert all(item["retries"] == 0 for item in client.submitted)
    assert isinstance(messages[-1], AttemptCrashed) and "lost" in messages[-1].detail
    assert messages[-1].workspace is not None  # the agent could not run (not: the worktree could not be made)
    said = [m.data["text"] for m in messages if getattr(m, "kind", None) == "message"]
    assert "sent again as attempt 2" in said[0]


def test_costs_reported_on_workers_count_for_max_cost_on_the_coordinator(repo, cluster, capsys):
    def costly(n: int) -> list[str]:
        code = (f"import json, os, pathlib; pathlib.Path('cost-{n}.txt').write_text('x'); "
                "pathlib.Path(os.environ['SAGE_RESULT_FILE']).write_text(json.dumps("
                f"{{'success': True, 'summary': 'did COST-{n}', 'cost_usd': 0.6}}))")
        return ["python3", "-c", code]

    write_index(repo, [make_ticket(f"COST-{n}", costly(n), priority=f"P{n}") for n in (1, 2, 3)])
    code, events = stream(repo, capsys, "--executor", dask_url(cluster), "--max-cost", "1")
    assert code == 0, events
    tickets = read_index(repo)
    assert [tickets[f"COST-{n}"]["state"] for n in (1, 2, 3)] == ["COMPLETED", "COMPLETED", "UNPROCESSED"]
    assert tickets["COST-1"]["agent_result"]["cost_usd"] == 0.6  # the worker's result, in the index
    finished = [e for e in events if e["event"] == "run_finished"][0]
    assert finished["stopped"] == "stopped starting tickets: cost $1.20 reached --max-cost $1.00"


def test_without_dask_installed_the_run_says_which_extra_to_install(repo, capsys, monkeypatch):
    import sys

    write_index(repo, [make_ticket("T1", write_file_cmd("a.txt", "a\n"))])
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed: importing it fails
    capsys.readouterr()
    code = run(["stream", "--auto", "--index", str(repo / ".sage/tickets/index.json"), "--executor",
                "dask://127.0.0.1:1"])
    err = capsys.readouterr().err
    assert code == 1 and "pip install 'sage-stream[dask]'" in err and "Traceback" not in err
    assert read_index(repo)["T1"]["state"] == "UNPROCESSED"
