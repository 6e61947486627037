"""`sage stream --executor dask://` against a real `dask scheduler` and two `dask worker`
processes on 127.0.0.1 (slow): a DAG drained once on both workers, a worker killed
mid-agent, the coordinator killed and run again, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed", reason="Dask distributed is not installed: pip install '.[dask]'")
psutil = pytest.importorskip("psutil")

from sage_stream.cli import run  # noqa: E402
from tests.e2e.test_stream_exec import git, make_ticket, read_index, trailer_counts, write_file_cmd, write_index  # noqa: E402
from tests.engine.test_dask_runner import repo  # noqa: E402,F401  (the fixture)

pytestmark = pytest.mark.slow
PY = sys.executable
DASK = str(Path(PY).parent / "dask")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch):
    """A scheduler with Dask's reruns off and two workers (wA, wB) of agent=2 each."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0",
           "SAGE_WORKER_DIR": str(tmp_path / "workers")}
    monkeypatch.setenv("SAGE_WORKER_DIR", env["SAGE_WORKER_DIR"])
    logs = tmp_path / "dask-logs"
    logs.mkdir()
    processes = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                                  env=env, stdout=subprocess.DEVNULL, stderr=open(logs / "scheduler.log", "w"))]
    for name in ("wA", "wB"):
        processes.append(subprocess.Popen(
            [DASK, "worker", address, "--name", name, "--nworkers", "1", "--nthreads", "2", "--resources", "agent=2",
             "--host", "127.0.0.1", "--no-dashboard"],
            env=env, stdout=subprocess.DEVNULL, stderr=open(logs / f"{name}.log", "w")))
    client = distributed.Client(address, timeout=30)
    client.wait_for_workers(2, timeout=60)
    client.close()
    yield "dask://" + address.removeprefix("tcp://")
    for process in reversed(processes):
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def stream(repo: Path, capsys, *args: str) -> tuple[int, list[dict]]:
    capsys.readouterr()
    code = run(["stream", "--auto", "--json", "--index", str(repo / ".sage/tickets/index.json"), *args])
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def stream_process(repo: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([PY, "-m", "sage_stream", "stream", "--auto", "--json", "--index",
                             str(repo / ".sage/tickets/index.json"), *args],
                            cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, what: str, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"waited {timeout} s for {what}")


def counted_agent(starts: Path, pid_file: Path, path: str, *, first_hangs: bool) -> list[str]:
    """An agent that notes each start; with `first_hangs`, its first start hangs (pid noted)."""
    code = (f"import os, pathlib, time; s = pathlib.Path({str(starts)!r}); n = len(s.read_text().splitlines()) "
            f"if s.exists() else 0; s.open('a').write(f'{{os.getpid()}}\\n'); "
            f"pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid())); "
            f"[(print('working', flush=True), time.sleep(0.2)) for _ in range(600)] if {first_hangs} and n == 0 "
            f"else time.sleep(0.5); pathlib.Path({path!r}).write_text('done\\n')")
    return [PY, "-c", code]


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_12_ticket_dag_drains_exactly_once_on_both_workers(repo, cluster, capsys):
    tickets = [make_ticket(f"A{i}", write_file_cmd(f"a{i}.txt", f"{i}\n", sleep=0.3)) for i in range(6)]
    tickets += [make_ticket(f"B{i}", write_file_cmd(f"b{i}.txt", f"{i}\n", sleep=0.3), deps=[f"A{i}"])
                for i in range(4)]
    tickets += [make_ticket("C0", write_file_cmd("c0.txt", "c\n"), deps=["B0", "B1"]),
                make_ticket("C1", write_file_cmd("c1.txt", "c\n"), deps=["B2", "B3", "A4", "A5"])]
    write_index(repo, tickets)
    code, events = stream(repo, capsys, "--parallel", "4", "--executor", cluster)
    assert code == 0, events
    assert {t["state"] for t in read_index(repo).values()} == {"COMPLETED"}
    assert trailer_counts(repo) == {t["id"]: 1 for t in tickets}
    workers = {e.get("worker") for e in events if e.get("event") == "message" and e.get("worker")}
    assert workers == {"wA", "wB"}


def test_a_worker_killed_mid_agent_is_not_rerun_by_dask_and_sage_sends_it_again(repo, cluster, tmp_path):
    starts, pid_file = tmp_path / "starts", tmp_path / "agent.pid"
    (repo / ".sage" / "config.toml").write_text("[agent]\nsandbox = \"none\"\n")
    write_index(repo, [make_ticket("T1", counted_agent(starts, pid_file, "t1.txt", first_hangs=True))])
    process = stream_process(repo, "--executor", cluster)
    first_agent = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), "the first agent"))
    worker = psutil.Process(first_agent).parent()  # the dask worker process running the task
    worker.kill()
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert read_index(repo)["T1"]["state"] == "COMPLETED"
    assert trailer_counts(repo) == {"T1": 1}
    assert len(starts.read_text().splitlines()) == 2  # once per attempt: Dask did not rerun it behind sage's back
    assert gone(first_agent)  # it died with its worker (PR_SET_PDEATHSIG)
    assert git(repo, "for-each-ref", "--format=%(refname)", "refs/sage/attempts/T1/").split() == [
        "refs/sage/attempts/T1/2"]
    assert "sent again as attempt 2" in out


def test_the_coordinator_killed_mid_agent_the_next_run_waits_and_lands_what_the_worker_pushed(repo, cluster, capsys,
                                                                                            tmp_path):
    starts, pid_file = tmp_path / "starts", tmp_path / "agent.pid"
    (repo / ".sage" / "config.toml").write_text("[agent]\nsandbox = \"none\"\n")
    slow = [PY, "-c", f"import os, pathlib, time; pathlib.Path({str(starts)!r}).open('a').write('x\\n'); "
                      f"pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid())); time.sleep(4); "
                      "pathlib.Path('t1.txt').write_text('done\\n')"]
    write_index(repo, [make_ticket("T1", slow)])
    process = stream_process(repo, "--executor", cluster)
    wait_for(pid_file.exists, "the agent")
    process.kill()
    process.communicate()
    assert git(repo, "for-each-ref", "refs/sage/attempts/T1/") == ""  # still running on its worker
    code, events = stream(repo, capsys, "--executor", cluster)  # at once: the orphan is still running
    assert code == 0, events
    assert read_index(repo)["T1"]["state"] == "COMPLETED"
    assert git(repo, "show", "main:t1.txt") == "done\n"
    assert starts.read_text() == "x\n"  # waited for and landed from the hub: the agent did not run again
    assert any("still running on the cluster" in str(e.get("text")) for e in events)


def test_ctrl_c_stops_the_remote_agent_and_exits_130(repo, cluster, tmp_path):
    pid_file = tmp_path / "agent.pid"
    (repo / ".sage" / "config.toml").write_text("[stream]\ngrace_seconds = 1\n\n[agent]\nsandbox = \"none\"\n")
    hang = (f"import os, time, pathlib; pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid())); "
            "[(print('still working', flush=True), time.sleep(0.2)) for _ in range(600)]")
    write_index(repo, [make_ticket("HANG-1", [PY, "-c", hang])])
    process = stream_process(repo, "--executor", cluster)
    agent_pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), "the agent"))
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert read_index(repo)["HANG-1"]["state"] == "UNPROCESSED"
    wait_for(lambda: gone(agent_pid), "the remote agent to stop", timeout=30)


def test_a_scheduler_that_does_not_answer_is_exit_1_before_any_ticket_starts(repo, capsys):
    write_index(repo, [make_ticket("T1", write_file_cmd("a.txt", "a\n"))])
    capsys.readouterr()
    code = run(["stream", "--auto", "--index", str(repo / ".sage/tickets/index.json"), "--executor",
                f"dask://127.0.0.1:{free_port()}"])
    err = capsys.readouterr().err
    assert code == 1 and "cannot reach the Dask scheduler at tcp://127.0.0.1:" in err and "Traceback" not in err
    assert read_index(repo)["T1"]["state"] == "UNPROCESSED"
