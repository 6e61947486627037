"""Usable CPUs (affinity capped by cgroup quotas) and the number of workers to run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sage_stream.process import cpus
from sage_stream.process.cpus import cgroup_cpu_quota, decide_workers, usable_cpus
from sage_stream.errors import SageError


def fake_cgroups(tmp_path: Path, self_cgroup: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "sys-fs-cgroup"
    root.mkdir()
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(self_cgroup)
    return root, proc


@pytest.fixture
def two_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpus, "affinity_cpus", lambda: 2)


@pytest.fixture
def sixteen_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpus, "affinity_cpus", lambda: 16)


class TestCgroupQuota:
    def test_v2_quota_in_a_container(self, tmp_path: Path) -> None:
        root, proc = fake_cgroups(tmp_path, "0::/\n", {"cpu.max": "150000 100000\n"})
        assert cgroup_cpu_quota(root, proc) == 1.5

    def test_v2_max_means_no_quota(self, tmp_path: Path) -> None:
        root, proc = fake_cgroups(tmp_path, "0::/\n", {"cpu.max": "max 100000\n"})
        assert cgroup_cpu_quota(root, proc) is None

    def test_v2_quota_of_an_ancestor_applies(self, tmp_path: Path) -> None:
        root, proc = fake_cgroups(
            tmp_path,
            "0::/user.slice/session-1.scope\n",
            {
                "user.slice/cpu.max": "200000 100000\n",
                "user.slice/session-1.scope/cpu.max": "max 100000\n",
            },
        )
        assert cgroup_cpu_quota(root, proc) == 2.0

    def test_the_tightest_quota_wins(self, tmp_path: Path) -> None:
        root, proc = fake_cgroups(
            tmp_path,
            "0::/a/b\n",
            {"a/cpu.max": "400000 100000\n", "a/b/cpu.max": "300000 100000\n", "cpu.max": "800000 100000"},
        )
        assert cgroup_cpu_quota(root, proc) == 3.0

    def test_v1_cfs_quota(self, tmp_path: Path) -> None:
        root, proc = fake_cgroups(
            tmp_path,
            "4:memory:/x\n2:cpu,cpuacct:/\n",
            {"cpu,cpuacct/cpu.cfs_quota_us": "250000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"},
        )
        assert cgroup_cpu_quota(root, proc) == 2.5

    def test_v1_minus_one_means_no_quota(self, tmp_path: Path) -> None:
        root, proc = fake_cgroups(
            tmp_path,
            "1:cpu:/\n",
            {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"},
        )
        assert cgroup_cpu_quota(root, proc) is None

    @pytest.mark.parametrize("text", ["", "garbage", "100000", "abc 100000", "100000 0", "1 2 3"])
    def test_unreadable_values_are_no_quota(self, tmp_path: Path, text: str) -> None:
        root, proc = fake_cgroups(tmp_path, "0::/\n", {"cpu.max": text})
        assert cgroup_cpu_quota(root, proc) is None

    def test_no_cgroup_files_at_all(self, tmp_path: Path) -> None:
        assert cgroup_cpu_quota(tmp_path / "missing", tmp_path / "missing-proc") is None


class TestUsableCpus:
    def test_quota_caps_affinity_rounding_up(self, tmp_path: Path, sixteen_cpus: None) -> None:
        root, proc = fake_cgroups(tmp_path, "0::/\n", {"cpu.max": "150000 100000\n"})
        assert usable_cpus(cgroup_root=root, self_cgroup=proc) == 2

    def test_quota_above_affinity_does_not_raise_it(self, tmp_path: Path, two_cpus: None) -> None:
        root, proc = fake_cgroups(tmp_path, "0::/\n", {"cpu.max": "800000 100000\n"})
        assert usable_cpus(cgroup_root=root, self_cgroup=proc) == 2

    def test_tiny_quota_still_gives_one(self, tmp_path: Path, sixteen_cpus: None) -> None:
        root, proc = fake_cgroups(tmp_path, "0::/\n", {"cpu.max": "1000 100000\n"})
        assert usable_cpus(cgroup_root=root, self_cgroup=proc) == 1

    def test_affinity_is_this_process_mask_not_the_machine(self) -> None:
        assert cpus.affinity_cpus() == len(os.sched_getaffinity(0))


class TestDecideWorkers:
    """Auto: the CPUs at AGENT_CPU_SHARE (0.4) per agent and the memory at AGENT_MEMORY_MB
    (250) per agent, at most 8 and at most the backlog's recommendation (BENCHMARKS.md)."""

    @pytest.mark.parametrize(
        ("cpu_count", "startable", "workers"),
        [(1, 5, 2), (2, 9, 5), (4, 20, 8), (64, 20, 8), (8, 3, 3), (8, 0, 1)],
    )
    def test_auto_is_what_the_cpus_carry_at_the_measured_share(self, cpu_count, startable, workers) -> None:
        assert decide_workers(None, startable, cpus=cpu_count, available_mb=64_000).workers == workers

    def test_two_cpus_run_more_than_one_agent(self) -> None:  # issue 10: auto gave 1 on 2 CPUs
        assert decide_workers(None, 10, cpus=2, available_mb=8_000).workers == 5

    def test_memory_limits_auto(self) -> None:
        decision = decide_workers(None, 10, cpus=16, available_mb=700)
        assert decision.workers == 2
        assert "700 MB available / 250 MB per agent = 2" in decision.reason

    def test_the_backlogs_recommendation_limits_auto(self) -> None:
        decision = decide_workers(None, 10, cpus=16, available_mb=64_000, useful=3)
        assert decision.workers == 3 and "3 recommended for this backlog" in decision.reason

    def test_explicit_count_is_capped_at_startable(self) -> None:
        assert decide_workers(6, 4, cpus=2).workers == 4
        assert decide_workers(3, 10, cpus=2).workers == 3  # explicit may exceed the CPU rule

    def test_explicit_count_with_nothing_startable(self) -> None:
        assert decide_workers(4, 0).workers == 1

    def test_explicit_count_below_one_is_a_user_error(self) -> None:
        with pytest.raises(SageError, match="at least 1"):
            decide_workers(0, 5)

    def test_reason_explains_auto_from_measured_cpus(self, monkeypatch, two_cpus) -> None:
        monkeypatch.setattr(cpus, "cgroup_cpu_quota", lambda *args: None)
        decision = decide_workers(None, 9, available_mb=8_000)
        assert decision.workers == 5
        assert decision.reason == ("auto: min(2 usable CPUs (affinity 2, cgroup quota none) / 0.4 per agent = 5; "
                                   "8,000 MB available / 250 MB per agent = 32; at most 8) = 5")

    def test_reason_names_the_quota(self, monkeypatch, sixteen_cpus) -> None:
        monkeypatch.setattr(cpus, "cgroup_cpu_quota", lambda *args: 1.0)
        decision = decide_workers(None, 9, available_mb=8_000)
        assert decision.workers == 2
        assert "1 usable CPU (affinity 16, cgroup quota 1) / 0.4 per agent = 2" in decision.reason

    def test_a_budget_read_earlier_is_used_and_named(self, monkeypatch) -> None:
        monkeypatch.setattr(cpus, "cpu_budget", lambda: pytest.fail("the budget was passed in"))
        decision = decide_workers(None, 9, budget=cpus.CpuBudget(affinity=16, quota=1.0), available_mb=8_000)
        assert decision.workers == 2 and "(affinity 16, cgroup quota 1)" in decision.reason

    @pytest.mark.parametrize(
        ("requested", "startable", "reason_end"),
        [
            (None, 3, "= 8, capped at the 3 tickets this run can start"),
            (None, 0, "= 8; 1 as no ticket can start"),
            (4, 10, "requested 4"),
            (4, 1, "requested 4, capped at the 1 ticket this run can start"),
        ],
    )
    def test_reason_says_why(self, requested, startable, reason_end) -> None:
        reason = decide_workers(requested, startable, cpus=64, available_mb=64_000).reason
        assert reason.endswith(reason_end)
        assert "ready ticket" not in reason  # the cap is what the run can start, not what is ready now


class TestAvailableMemory:
    def test_a_cgroup_memory_limit_caps_what_is_available(self, tmp_path: Path) -> None:
        root, proc = fake_cgroups(tmp_path, "0::/ci/job\n", {
            "ci/job/memory.max": f"{1024 * 2**20}\n", "ci/job/memory.current": f"{524 * 2**20}\n",
            "ci/memory.max": "max\n", "ci/memory.current": f"{4096 * 2**20}\n"})
        assert cpus.cgroup_memory_room_mb(root, proc) == 500.0
        assert cpus.available_memory_mb(cgroup_root=root, self_cgroup=proc) == 500.0  # the machine has more
        assert decide_workers(None, 10, cpus=8, available_mb=500.0).workers == 2

    def test_without_a_limit_the_machines_available_memory_counts(self, tmp_path: Path) -> None:
        root, proc = fake_cgroups(tmp_path, "0::/\n", {"memory.max": "max\n", "memory.current": "1000\n"})
        assert cpus.cgroup_memory_room_mb(root, proc) is None
        assert cpus.available_memory_mb(cgroup_root=root, self_cgroup=proc) > 0


class TestWithoutPsutil:
    """The budget is read from the OS directly where it can be: psutil's import costs
    10-20 ms of every `sage validate`, which reads the budget for its --parallel=auto line."""

    def test_meminfo_available_is_what_psutil_reports(self, tmp_path: Path) -> None:
        meminfo = tmp_path / "meminfo"
        meminfo.write_text("MemTotal:       32768000 kB\nMemFree:  1000 kB\nMemAvailable:   2048000 kB\n")
        assert cpus._meminfo_available_mb(meminfo) == 2000.0

    def test_meminfo_without_the_line_falls_back(self, tmp_path: Path) -> None:
        meminfo = tmp_path / "meminfo"
        meminfo.write_text("MemTotal:       32768000 kB\n")
        assert cpus._meminfo_available_mb(meminfo) is None
        assert cpus._meminfo_available_mb(tmp_path / "missing") is None

    @pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux affinity")
    def test_affinity_matches_psutil(self) -> None:
        import psutil

        assert cpus.affinity_cpus() == len(psutil.Process().cpu_affinity())

    def test_sage_validate_does_not_import_psutil(self, tmp_path: Path) -> None:
        import subprocess
        import sys

        subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
        (tmp_path / ".sage" / "tickets").mkdir(parents=True)
        (tmp_path / ".sage" / "tickets" / "index.json").write_text(
            '{"version": "1.0", "tickets": [{"id": "T-1", "title": "one", "state": "UNPROCESSED", '
            '"priority": "P1", "type": "bugfix", "validation_type": "generic"}]}')
        script = ("import sys, io, contextlib\n"
                  "from sage_stream.cli import run\n"
                  "with contextlib.redirect_stdout(io.StringIO()):\n"
                  "    code = run(['validate'])\n"
                  "print(code, 'sage_stream.process.cpus' in sys.modules, 'psutil' in sys.modules)\n")
        done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                              check=True)
        code, budget_read, psutil_imported = done.stdout.split()
        assert code in ("0", "2") and budget_read == "True"  # the --parallel=auto line was computed
        assert psutil_imported == "False"
