"""Resource samples of a unit's whole cgroup and of the system.

A unit is every process in its cgroup, sub-cgroups included, not just MainPID: a forking
app server's workers, a shell's children.  Works on cgroup v1 "hybrid" hosts (processes listed
in the unified or name=systemd tree, memory in the v1 memory controller) and on pure v2.
``cpu_percent`` and ``evaluate`` are pure functions over samples.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

from sdwatch.states import RESOURCES

if TYPE_CHECKING:
    from sdwatch.config import Limit

CGROUP_ROOT = "/sys/fs/cgroup"


@dataclass(frozen=True)
class UnitSample:
    """One reading of a unit's cgroup.  ``cpu_seconds`` is user+system time of the cgroup."""

    pids: tuple[int, ...]
    rss: int  # sum of resident set sizes of all processes, bytes
    memory: int | None  # the cgroup's own memory charge (includes page cache), bytes
    cpu_seconds: float
    cpu_from_cgroup: bool  # True when cpu_seconds is systemd's CPUUsageNSec
    tasks: int  # threads of all processes
    fds: int | None  # open file descriptors of all processes; None if any is unreadable
    children: int  # processes other than the main one
    taken_at: float  # time.monotonic()


@dataclass(frozen=True)
class SystemSample:
    """One reading of the machine."""

    hostname: str
    uptime: float
    load: tuple[float, float, float]
    cpus: int
    cpu_user: float  # % of all CPUs since boot
    cpu_system: float
    cpu_iowait: float
    memory_total: int
    memory_used: int
    swap_total: int
    swap_used: int


def _hierarchy() -> tuple[str, bool]:
    """Return (root of the tree listing unit processes, is pure v2)."""
    found = _HIERARCHIES.get(CGROUP_ROOT)
    if found is None:  # the mounts do not change under a running process: look once
        found = _HIERARCHIES[CGROUP_ROOT] = _find_hierarchy()
    return found


def _find_hierarchy() -> tuple[str, bool]:
    if os.path.exists(f"{CGROUP_ROOT}/cgroup.controllers"):
        return CGROUP_ROOT, True
    for tree in ("unified", "systemd"):
        if os.path.exists(f"{CGROUP_ROOT}/{tree}/cgroup.procs"):
            return f"{CGROUP_ROOT}/{tree}", False
    return f"{CGROUP_ROOT}/systemd", False


_HIERARCHIES: dict[str, tuple[str, bool]] = {}
_CHUNK = 65536


def read_small(path: str) -> bytes:
    """Return a whole /proc or cgroup file: plain os.read, a third of what a Python file
    object costs (a scrape reads thousands of them).  Read until the end: the kernel serves
    these files about a page per read, so a short read is not the end (cgroup.procs of a
    unit with a thousand processes spans several)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, _CHUNK):
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    finally:
        os.close(fd)


def cgroup_pids(control_group: str) -> list[int]:
    """Given a unit's ControlGroup, return the PIDs in it and every sub-cgroup (empty if none).

    PIDs that read as 0 belong to other PID namespaces (v2 lists them so): they are dropped.
    """
    if not control_group:
        return []
    root, _ = _hierarchy()
    pids: list[int] = []
    _collect_pids(f"{root}/{control_group.lstrip('/')}", pids)
    return [pid for pid in pids if pid] if 0 in pids else pids


def _collect_pids(path: str, pids: list[int]) -> None:
    try:
        data = read_small(path + "/cgroup.procs")
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
        data = b""  # the cgroup went away while we read, or this level lists none
    try:
        links = os.stat(path).st_nlink
    except (FileNotFoundError, NotADirectoryError):
        return
    pids.extend(map(int, data.split()))
    if links == 2:
        return  # a directory links 2 + its sub-directories (cgroupfs always counts them)
    try:
        entries = list(os.scandir(path))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            _collect_pids(entry.path, pids)


def cgroup_cpu_nsec(control_group: str) -> int | None:
    """Return the cgroup's CPU time in ns from v2 cpu.stat (what systemd's CPUUsageNSec
    reports), or None where there is no such file (v1 hosts)."""
    root, v2 = _hierarchy()
    if not control_group or not v2:
        return None
    try:
        for line in read_small(f"{root}/{control_group.lstrip('/')}/cpu.stat").splitlines():
            if line.startswith(b"usage_usec "):
                return int(line.split()[1]) * 1000
    except (OSError, ValueError):
        pass
    return None


def cgroup_memory(control_group: str) -> int | None:
    """Return the cgroup's memory charge in bytes (v2 memory.current, v1 usage_in_bytes)."""
    if not control_group:
        return None
    rel = control_group.lstrip("/")
    root, v2 = _hierarchy()
    if not v2:
        try:
            return int(read_small(f"{CGROUP_ROOT}/memory/{rel}/memory.usage_in_bytes"))
        except (OSError, ValueError):
            pass  # no v1 memory controller: the unified tree may have memory.current
    try:
        return int(read_small(f"{root}/{rel}/memory.current"))
    except (OSError, ValueError):
        return None


def sample_unit(control_group: str, main_pid: int = 0, cpu_usage_nsec: int | None = None,
                memory_current: int | None = None, count_fds: bool = True) -> UnitSample:
    """Sample every process of a unit's cgroup.

    CPU comes from the cgroup's own counter where there is one (pure v2: systemd's
    CPUUsageNSec, given or read from cpu.stat), else from the processes' own times; memory from
    the cgroup's charge, else systemd's MemoryCurrent.  Without ``count_fds`` the open files
    are not counted (``fds`` None): a directory listing per process saved.
    """
    rss = tasks = 0
    fds: int | None = 0
    cpu = 0.0
    alive = []
    for pid in cgroup_pids(control_group):
        proc = read_process(pid, count_fds)
        if proc is None:
            continue  # exited while we looked
        alive.append(pid)
        rss += proc.rss
        cpu += proc.cpu_seconds
        tasks += proc.threads
        fds = None if fds is None or proc.fds is None else fds + proc.fds
    memory = cgroup_memory(control_group)
    if memory is None:
        memory = memory_current
    if cpu_usage_nsec is None:
        cpu_usage_nsec = cgroup_cpu_nsec(control_group)
    from_cgroup = cpu_usage_nsec is not None
    return UnitSample(
        pids=tuple(alive),
        rss=rss,
        memory=memory,
        cpu_seconds=cpu_usage_nsec / 1e9 if from_cgroup else cpu,
        cpu_from_cgroup=from_cgroup,
        tasks=tasks,
        fds=fds,
        children=sum(1 for p in alive if p != main_pid),
        taken_at=time.monotonic(),
    )


@dataclass(frozen=True)
class UnitUsage:
    """What a unit's cgroup uses: the figures /metrics shows."""

    memory: int | None  # bytes charged to the cgroup
    cpu_seconds: float
    tasks: int  # threads


def unit_usage(control_group: str, main_pid: int = 0) -> UnitUsage:
    """Return what the unit's cgroup uses: from the cgroup's own counters where the kernel
    keeps them all (pure v2: memory.current, cpu.stat, pids.current, three reads however many
    processes), else from its processes' own times and threads (their open files not
    counted) beside the cgroup's memory charge."""
    root, v2 = _hierarchy()
    if v2:
        try:
            tasks = int(read_small(f"{root}/{control_group.lstrip('/')}/pids.current"))
        except (OSError, ValueError):
            tasks = None  # no pids controller here
        cpu = cgroup_cpu_nsec(control_group) if tasks is not None else None
        if tasks is not None and cpu is not None:
            return UnitUsage(cgroup_memory(control_group), cpu / 1e9, tasks)
        # v2 without the pids controller: CPU from cpu.stat where there is one
        sample = sample_unit(control_group, main_pid, count_fds=False)
        return UnitUsage(sample.memory, sample.cpu_seconds, sample.tasks)
    return _processes_usage(control_group)


def _processes_usage(control_group: str) -> UnitUsage:
    """``sample_unit``'s memory, CPU and threads without the rest of a sample: a scrape on
    a v1 host reads every unit's processes, and the objects a sample makes per process and
    per unit cost more than reading the files."""
    cpu = 0.0
    threads = 0
    for pid in cgroup_pids(control_group):
        fields = _stat_fields(pid)
        if fields is not None:
            cpu += (int(fields[11]) + int(fields[12])) / _TICKS  # summed as sample_unit does
            threads += int(fields[17])
    return UnitUsage(cgroup_memory(control_group), cpu, threads)


def process_start(pid: int) -> int | None:
    """Return when a process started (clock ticks since boot, /proc/PID/stat field 22), or
    None if it is gone: with the PID, an identity that survives PID reuse."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


@dataclass(frozen=True)
class ProcessSample:
    """The figures of one process that a unit sample adds up."""

    rss: int
    cpu_seconds: float
    threads: int
    fds: int | None  # None: /proc/PID/fd is not ours to read


_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[bytes] | None:
    """/proc/PID/stat's fields from the state on (index 0): utime 11, stime 12, num_threads
    17, rss pages 21; None if the process is gone or a zombie (no memory or threads left)."""
    try:
        stat = read_small(f"/proc/{pid}/stat")
    except (FileNotFoundError, ProcessLookupError):
        return None
    # the command name may hold spaces; the fields after rss stay one piece (unsplit)
    fields = stat[stat.rindex(b")") + 2:].split(None, 22)
    return None if fields[0] == b"Z" else fields


def read_process(pid: int, count_fds: bool = True) -> ProcessSample | None:
    """Read one process's RSS, CPU time, threads and open fds from /proc; None if it is gone.

    This is psutil's Process.memory_info/cpu_times/num_threads/num_fds in one read of
    /proc/PID/stat plus a listdir of /proc/PID/fd: ten times cheaper per process than psutil,
    which matters for `sdwatch status` over hundreds of processes.
    """
    fields = _stat_fields(pid)
    if fields is None:
        return None
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd")) if count_fds else None
    except PermissionError:
        fds = None  # another user's process, and we are not root: unknown, not 0
    except (FileNotFoundError, ProcessLookupError):
        return None
    return ProcessSample(rss=int(fields[21]) * _PAGE,
                         cpu_seconds=(int(fields[11]) + int(fields[12])) / _TICKS,
                         threads=int(fields[17]), fds=fds)


def cpu_percent(before: UnitSample, after: UnitSample) -> float | None:
    """Return CPU use between two samples in % of one core (200 = two cores busy), or None.

    None when the interval is empty or the counter went backwards (the unit restarted and
    its processes' times started again from zero).
    """
    dt = after.taken_at - before.taken_at
    used = after.cpu_seconds - before.cpu_seconds
    if dt <= 0 or used < 0:
        return None
    return 100.0 * used / dt


def average_cpu_percent(sample: UnitSample, running_for: float) -> float | None:
    """Return CPU use averaged over the unit's run time, in % of one core, or None."""
    if running_for <= 0:
        return None
    return 100.0 * sample.cpu_seconds / running_for


def sample_system() -> SystemSample:
    """Sample host-wide load, CPU (since boot), memory and swap from /proc.

    Read directly rather than through psutil: its import alone costs `sdwatch status` ~15 ms.
    """
    cpu = _proc_fields("/proc/stat", "cpu ")
    # user nice system idle iowait irq softirq steal (guest time is already in user)
    total = sum(cpu[:8]) or 1.0
    mem = _meminfo()
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    memory_total = mem.get("MemTotal", 0)
    available = mem.get("MemAvailable", mem.get("MemFree", 0))
    swap_total = mem.get("SwapTotal", 0)
    return SystemSample(
        hostname=os.uname().nodename,
        uptime=uptime,
        load=os.getloadavg(),
        cpus=os.cpu_count() or 1,
        cpu_user=100.0 * (cpu[0] + cpu[1]) / total,
        cpu_system=100.0 * (cpu[2] + cpu[5] + cpu[6]) / total,
        cpu_iowait=100.0 * cpu[4] / total,
        memory_total=memory_total,
        memory_used=memory_total - available,
        swap_total=swap_total,
        swap_used=swap_total - mem.get("SwapFree", 0),
    )


def _proc_fields(path: str, prefix: str) -> list[float]:
    with open(path) as f:
        for line in f:
            if line.startswith(prefix):
                return [float(x) for x in line.split()[1:]] + [0.0] * 10
    return [0.0] * 10


def _meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes."""
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts:
                out[key] = int(parts[0]) * (1024 if len(parts) > 1 else 1)
    return out


@dataclass(frozen=True)
class LimitReading:
    """One resource compared with its configured limit."""

    resource: str  # one of states.RESOURCES
    value: float  # in the limit's terms: % of a core (or of all cores), bytes or %, a count
    threshold: float
    over: bool
    reason: str


def evaluate(limits: Mapping[str, Limit | None], sample: UnitSample, cpu: float | None,
             memory_total: int, cpus: int) -> list[LimitReading]:
    """Compare a sample with a unit's limits ({resource: config.Limit or None}).

    ``cpu`` is the measured CPU use in % of one core (None when not measurable yet: no
    reading is returned for cpu then).  Memory is the cgroup's charge (RSS total when the
    cgroup gives none).  Pure function.
    """
    from sdwatch.quantities import format_size

    out = []
    for resource in RESOURCES:
        limit = limits.get(resource)
        if limit is None:
            continue
        if resource == "cpu":
            if cpu is None:
                continue
            value = cpu / max(cpus, 1) if limit.relative else cpu
            shown = f"cpu {value:.1f}%{' of all cores' if limit.relative else ''}"
            limit_shown = f"{limit.value:g}%"
        elif resource == "memory":
            used = sample.memory if sample.memory is not None else sample.rss
            if limit.relative:
                value = 100.0 * used / memory_total if memory_total else 0.0
                shown, limit_shown = f"memory {value:.1f}% of RAM", f"{limit.value:g}%"
            else:
                value = float(used)
                shown, limit_shown = f"memory {format_size(used)}", format_size(limit.value)
        else:
            count = getattr(sample, resource)
            if count is None:
                continue  # not measurable (fds of another user's processes): no reading
            value = float(count)
            shown, limit_shown = f"{resource} {value:.0f}", f"{limit.value:.0f}"
        over = value > limit.value
        out.append(LimitReading(resource, value, limit.value, over,
                                f"{shown} {'above' if over else 'within'} {limit_shown}"))
    return out
