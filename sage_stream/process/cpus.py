"""How many CPUs this process may really use, and how many workers to run.

`os.cpu_count()` (and `psutil.cpu_count()`) count the machine's CPUs, ignoring both the
affinity mask (`taskset`, container cpusets) and cgroup CPU quotas (`docker --cpus`,
Kubernetes limits). Usable CPUs = the affinity mask, capped by the tightest quota found:
cgroup v2 `cpu.max` ("QUOTA PERIOD" or "max ...") and cgroup v1
`cpu.cfs_quota_us` / `cpu.cfs_period_us` (-1 = no quota), looked up in the process's own
cgroup and its ancestors, a quota of 1.5 CPUs counting as 2.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sage_stream.errors import SageError

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
V1_CPU_MOUNTS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")
MAX_AUTO_WORKERS = 8


@dataclass(frozen=True)
class CpuBudget:
    affinity: int
    quota: float | None  # CPUs allowed by cgroup quotas; None = no quota

    @property
    def usable(self) -> int:
        if self.quota is None:
            return max(1, self.affinity)
        return max(1, min(self.affinity, math.ceil(self.quota)))

    def describe(self) -> str:
        quota = "none" if self.quota is None else f"{self.quota:g}"
        return f"affinity {self.affinity}, cgroup quota {quota}"


def usable_cpus(*, cgroup_root: Path = CGROUP_ROOT, self_cgroup: Path = PROC_SELF_CGROUP) -> int:
    """CPUs this process can use: the affinity mask capped by cgroup quotas; at least 1."""
    return cpu_budget(cgroup_root=cgroup_root, self_cgroup=self_cgroup).usable


def cpu_budget(*, cgroup_root: Path = CGROUP_ROOT, self_cgroup: Path = PROC_SELF_CGROUP) -> CpuBudget:
    return CpuBudget(affinity=affinity_cpus(), quota=cgroup_cpu_quota(cgroup_root, self_cgroup))


def affinity_cpus() -> int:
    # os first: the same mask psutil reads on Linux, without importing psutil (10-20 ms of
    # every `sage validate`); psutil elsewhere, and cpu_count where neither knows (macOS).
    if hasattr(os, "sched_getaffinity"):
        with contextlib.suppress(OSError):
            return len(os.sched_getaffinity(0))
    import psutil

    try:
        return len(psutil.Process().cpu_affinity())
    except (AttributeError, psutil.Error, OSError):  # cpu_affinity() is missing on macOS
        pass
    return os.cpu_count() or 1


def cgroup_cpu_quota(cgroup_root: Path = CGROUP_ROOT, self_cgroup: Path = PROC_SELF_CGROUP) -> float | None:
    """The tightest CPU quota (in CPUs) over the cgroup v2 and v1 hierarchies, or None."""
    memberships = _cgroup_memberships(self_cgroup)
    quotas: list[float] = []
    for directory in _candidate_dirs(cgroup_root, memberships.get("")):
        quota = _read_cpu_max(directory / "cpu.max")
        if quota is not None:
            quotas.append(quota)
    for mount in V1_CPU_MOUNTS:
        for directory in _candidate_dirs(cgroup_root / mount, memberships.get("cpu")):
            quota = _read_cfs_quota(directory)
            if quota is not None:
                quotas.append(quota)
    return min(quotas) if quotas else None


def _cgroup_memberships(self_cgroup: Path) -> dict[str, str]:
    """From /proc/self/cgroup: "" -> the v2 path, "cpu" -> the v1 cpu controller's path."""
    try:
        lines = self_cgroup.read_text().splitlines()
    except OSError:
        return {}
    memberships: dict[str, str] = {}
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            memberships[""] = path
        elif "cpu" in controllers.split(","):
            memberships["cpu"] = path
    return memberships


def _candidate_dirs(base: Path, relative: str | None) -> Iterator[Path]:
    """The process's cgroup directory and each ancestor up to `base`, those that exist.

    Inside a container the cgroup namespace usually makes `base` itself the process's
    cgroup; outside, limits set on any ancestor apply too.
    """
    seen: set[Path] = set()
    directory = base
    if relative:
        directory = base / relative.strip("/")
    while True:
        if directory not in seen and directory.is_dir():
            seen.add(directory)
            yield directory
        if directory == base or base not in directory.parents:
            break
        directory = directory.parent


def _read_cpu_max(path: Path) -> float | None:
    words = _read_words(path)
    if len(words) != 2 or words[0] == "max":
        return None
    return _ratio(words[0], words[1])


def _read_cfs_quota(directory: Path) -> float | None:
    quota = _read_words(directory / "cpu.cfs_quota_us")
    period = _read_words(directory / "cpu.cfs_period_us")
    if len(quota) != 1 or len(period) != 1:
        return None
    return _ratio(quota[0], period[0])


def _read_words(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except OSError:
        return []


def _ratio(quota: str, period: str) -> float | None:
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:
        return None
    if quota_us <= 0 or period_us <= 0:  # -1: no quota
        return None
    return quota_us / period_us


@dataclass(frozen=True)
class WorkerDecision:
    workers: int
    reason: str


AGENT_CPU_SHARE = 0.4
"""Of one CPU, per running agent. One Claude Code run against the fake model server (2 s per
answer) used 0.18 CPU-s per wall second, mostly its start-up (BENCHMARKS.md, "What one agent
CLI costs"); doubled for the tools it runs and the checks sage runs after it."""
AGENT_MEMORY_MB = 250
"""Per running agent: the measured peak RSS of one Claude Code process tree is 202 MB."""


def available_memory_mb(*, cgroup_root: Path = CGROUP_ROOT, self_cgroup: Path = PROC_SELF_CGROUP) -> float:
    """Memory available for new processes now: the machine's (psutil: without swapping),
    capped by what a cgroup v2 `memory.max` leaves (a container's limit, less its use)."""
    available = _meminfo_available_mb()
    if available is None:
        import psutil  # not at module level: `sage validate` starts faster without it

        available = psutil.virtual_memory().available / 2**20
    room = cgroup_memory_room_mb(cgroup_root, self_cgroup)
    return available if room is None else min(available, room)


def _meminfo_available_mb(meminfo: Path = Path("/proc/meminfo")) -> float | None:
    """MemAvailable from /proc/meminfo (what psutil reports as `available` on Linux), in MB;
    None where there is no such line."""
    try:
        with meminfo.open(encoding="ascii") as lines:
            for line in lines:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def cgroup_memory_room_mb(cgroup_root: Path = CGROUP_ROOT, self_cgroup: Path = PROC_SELF_CGROUP) -> float | None:
    """The least `memory.max - memory.current` over this process's cgroup v2 and its
    ancestors, in MB; None without a limit."""
    rooms = []
    for directory in _candidate_dirs(cgroup_root, _cgroup_memberships(self_cgroup).get("")):
        limit, used = _read_words(directory / "memory.max"), _read_words(directory / "memory.current")
        if len(limit) == 1 and limit[0].isdigit() and len(used) == 1 and used[0].isdigit():
            rooms.append(max(0, int(limit[0]) - int(used[0])) / 2**20)
    return min(rooms) if rooms else None


def decide_workers(requested: int | None, startable: int, *, cpus: int | None = None,
                   budget: CpuBudget | None = None, available_mb: float | None = None,
                   useful: int | None = None) -> WorkerDecision:
    """How many agents to run at once: the one rule `sage stream` (and --dry-run),
    `sage validate` and `sage plan` all apply.

    `requested` None is auto: as many agents as the usable CPUs carry at AGENT_CPU_SHARE
    each and the available memory at AGENT_MEMORY_MB each, at most MAX_AUTO_WORKERS, and
    at most `useful` (the count the backlog's graph recommends, when known). An explicit N
    is taken as asked. Either is capped at the tickets the run can start. Never fewer than 1.
    The CPUs are `cpus`, else those of `budget` (already read), else read now; the memory
    `available_mb`, else read now.
    """
    if requested is not None:
        return _explicit_workers(requested, startable)
    if cpus is None:
        budget = budget or cpu_budget()
        cpus, detail = budget.usable, f" ({budget.describe()})"
    else:
        detail = ""
    memory = available_memory_mb() if available_mb is None else available_mb
    by_cpu = math.floor(cpus / AGENT_CPU_SHARE + 1e-9)
    by_memory = math.floor(memory / AGENT_MEMORY_MB)
    limits = [f"{cpus} usable CPU{'s' if cpus != 1 else ''}{detail} / {AGENT_CPU_SHARE:g} per agent = {by_cpu}",
              f"{memory:,.0f} MB available / {AGENT_MEMORY_MB} MB per agent = {by_memory}",
              f"at most {MAX_AUTO_WORKERS}"]
    counts = [by_cpu, by_memory, MAX_AUTO_WORKERS]
    if useful is not None:
        limits.append(f"{useful} recommended for this backlog")
        counts.append(useful)
    workers = max(1, min(counts))
    reason = f"auto: min({'; '.join(limits)}) = {workers}"
    return _cap_at_startable(workers, reason, startable)


def _explicit_workers(requested: int, startable: int) -> WorkerDecision:
    if requested < 1:
        raise SageError(f"--parallel must be at least 1, got {requested}")
    return _cap_at_startable(requested, f"requested {requested}", startable)


def _cap_at_startable(workers: int, reason: str, startable: int) -> WorkerDecision:
    if startable < 1:
        return WorkerDecision(1, f"{reason}; 1 as no ticket can start" if workers > 1 else reason)
    if workers > startable:
        tickets = "ticket" if startable == 1 else "tickets"
        return WorkerDecision(startable, f"{reason}, capped at the {startable} {tickets} this run can start")
    return WorkerDecision(workers, reason)
