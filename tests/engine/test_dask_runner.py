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
from tests.e2e.test_stream_exec import git, make_ticket, read_index, trailer_counts, write_file_cmd, write_index  # noqa: E402


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Test User")
    git(root, "config", "user.email", "test@example.invalid")
    (root / "README.md").write_text("hello\n")
    (root / ".gitignore").write_text(".sage/\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    (root / ".sage" / "tickets").mkdir(parents=True)
    return root


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
    assert len(said) == 3
