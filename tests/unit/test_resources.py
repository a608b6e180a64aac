"""Cgroup walking and sampling math, on a cgroupfs-shaped directory tree of our own."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from sdwatch import resources
from sdwatch.resources import UnitSample, average_cpu_percent, cpu_percent


def _ready_child() -> subprocess.Popen:
    """A sleeping python child that has finished starting (its memory no longer grows)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; print('up', flush=True); "
                              "time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "up\n"
    return child


def _procs(path: pathlib.Path, *pids: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "cgroup.procs").write_text("".join(f"{p}\n" for p in pids))


@pytest.fixture
def hybrid(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    monkeypatch.setattr(resources, "CGROUP_ROOT", str(tmp_path))
    _procs(tmp_path / "unified")
    return tmp_path


@pytest.fixture
def v2(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    monkeypatch.setattr(resources, "CGROUP_ROOT", str(tmp_path))
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    return tmp_path


def test_cgroup_pids_walks_sub_cgroups_on_hybrid(hybrid: pathlib.Path) -> None:
    unit = hybrid / "unified" / "system.slice" / "app.service"
    _procs(unit, 10, 11)
    _procs(unit / "worker", 12)
    _procs(unit / "worker" / "deeper", 13)
    _procs(hybrid / "unified" / "system.slice" / "other.service", 99)
    assert sorted(resources.cgroup_pids("/system.slice/app.service")) == [10, 11, 12, 13]


def test_cgroup_pids_drops_foreign_namespace_zeros_on_v2(v2: pathlib.Path) -> None:
    _procs(v2 / "system.slice" / "app.service", 0, 42, 0)
    assert resources.cgroup_pids("/system.slice/app.service") == [42]


def test_cgroup_pids_of_missing_or_empty_cgroup(v2: pathlib.Path) -> None:
    assert resources.cgroup_pids("") == []
    assert resources.cgroup_pids("/system.slice/gone.service") == []


def test_cgroup_memory_reads_v1_controller_on_hybrid(hybrid: pathlib.Path) -> None:
    mem = hybrid / "memory" / "system.slice" / "app.service"
    mem.mkdir(parents=True)
    (mem / "memory.usage_in_bytes").write_text("123456\n")
    assert resources.cgroup_memory("/system.slice/app.service") == 123456


def test_cgroup_memory_on_hybrid_without_the_v1_controller(hybrid: pathlib.Path) -> None:
    unit = hybrid / "unified" / "system.slice" / "app.service"
    unit.mkdir(parents=True)
    (unit / "memory.current").write_text("4242\n")
    assert resources.cgroup_memory("/system.slice/app.service") == 4242
    assert resources.cgroup_memory("/system.slice/none.service") is None


def test_cgroup_memory_reads_memory_current_on_v2(v2: pathlib.Path) -> None:
    unit = v2 / "system.slice" / "app.service"
    unit.mkdir(parents=True)
    (unit / "memory.current").write_text("777\n")
    assert resources.cgroup_memory("/system.slice/app.service") == 777
    assert resources.cgroup_memory("/system.slice/none.service") is None


def test_sample_unit_sums_every_process_and_counts_children(v2: pathlib.Path) -> None:
    child = _ready_child()
    try:
        _procs(v2 / "system.slice" / "t.service", os.getpid())
        _procs(v2 / "system.slice" / "t.service" / "sub", child.pid)
        s = resources.sample_unit("/system.slice/t.service", main_pid=os.getpid(),
                                  memory_current=5000)
        import psutil

        me, kid = psutil.Process(), psutil.Process(child.pid)
        assert s.pids == (os.getpid(), child.pid)
        assert s.children == 1
        assert s.tasks >= me.num_threads() + kid.num_threads()
        expected_rss = me.memory_info().rss + kid.memory_info().rss
        assert abs(s.rss - expected_rss) < 0.1 * expected_rss
        assert s.fds >= me.num_fds()
        assert s.memory == 5000  # no memory.current file: falls back to systemd's figure
        assert not s.cpu_from_cgroup and s.cpu_seconds > 0
    finally:
        child.kill()
        child.wait()


def test_sample_unit_prefers_systemd_cpu_and_skips_vanished_pids(v2: pathlib.Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    _procs(v2 / "system.slice" / "t.service", dead.pid)
    s = resources.sample_unit("/system.slice/t.service", cpu_usage_nsec=2_500_000_000)
    assert s.pids == () and s.rss == 0
    assert s.cpu_from_cgroup and s.cpu_seconds == 2.5


def _sample(cpu: float, at: float) -> UnitSample:
    return UnitSample(pids=(1,), rss=0, memory=None, cpu_seconds=cpu, cpu_from_cgroup=False,
                      tasks=1, fds=0, children=0, taken_at=at)


@pytest.mark.parametrize("before, after, expected", [
    ((1.0, 10.0), (1.5, 11.0), 50.0),       # half a core
    ((1.0, 10.0), (3.0, 11.0), 200.0),      # two cores busy
    ((1.0, 10.0), (1.0, 12.0), 0.0),
    ((5.0, 10.0), (1.0, 11.0), None),       # counter reset: the unit restarted
    ((1.0, 10.0), (2.0, 10.0), None),       # no time passed
])
def test_cpu_percent(before, after, expected) -> None:
    assert cpu_percent(_sample(*before), _sample(*after)) == expected


def test_average_cpu_percent() -> None:
    assert average_cpu_percent(_sample(3.0, 0), 60.0) == 5.0
    assert average_cpu_percent(_sample(3.0, 0), 0.0) is None


def test_sample_system_is_plausible() -> None:
    s = resources.sample_system()
    assert s.memory_total > s.memory_used > 0
    assert s.cpus >= 1 and s.uptime > 0
    assert 0 <= s.cpu_user <= 100 and 0 <= s.cpu_system <= 100


def test_read_process_agrees_with_psutil() -> None:
    import psutil

    child = _ready_child()
    try:
        for pid in (os.getpid(), child.pid):
            mine, theirs = resources.read_process(pid), psutil.Process(pid)
            assert mine is not None
            assert abs(mine.rss - theirs.memory_info().rss) <= 0.05 * theirs.memory_info().rss
            assert mine.threads == theirs.num_threads()
            assert abs(mine.fds - theirs.num_fds()) <= 1  # listdir's own fd may show
            times = theirs.cpu_times()
            assert abs(mine.cpu_seconds - (times.user + times.system)) < 0.05
    finally:
        child.kill()
        child.wait()


def test_read_process_of_gone_or_zombie_process_is_none() -> None:
    child = subprocess.Popen(["true"])
    import psutil

    psutil.Process(child.pid)
    deadline = __import__("time").monotonic() + 10
    while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:
        assert __import__("time").monotonic() < deadline
    assert resources.read_process(child.pid) is None  # exited, not yet reaped
    child.wait()
    assert resources.read_process(child.pid) is None


def test_cgroup_cpu_comes_from_v2_cpu_stat(v2: pathlib.Path) -> None:
    _procs(v2 / "system.slice" / "t.service")
    (v2 / "system.slice" / "t.service" / "cpu.stat").write_text(
        "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n")
    assert resources.cgroup_cpu_nsec("/system.slice/t.service") == 1_500_000_000
    s = resources.sample_unit("/system.slice/t.service")
    assert s.cpu_from_cgroup and s.cpu_seconds == 1.5


def test_no_cgroup_cpu_on_hybrid(hybrid: pathlib.Path) -> None:
    assert resources.cgroup_cpu_nsec("/system.slice/t.service") is None


def test_sample_system_agrees_with_psutil() -> None:
    import psutil

    s = resources.sample_system()
    vm, sw = psutil.virtual_memory(), psutil.swap_memory()
    assert s.memory_total == vm.total
    assert abs(s.memory_used - (vm.total - vm.available)) < 0.05 * vm.total
    assert s.swap_total == sw.total
    assert abs(s.uptime - (__import__("time").time() - psutil.boot_time())) < 5
    assert s.cpus == psutil.cpu_count()
    times = psutil.cpu_times()
    assert abs(s.cpu_user - 100 * (times.user + times.nice) / sum(times)) < 2


def _limits(**kw):
    import dataclasses

    from sdwatch.config import Limit, _read_limit

    return {r: _read_limit(r, dataclasses.replace(Limit(above=v)), r) for r, v in kw.items()}


def _unit_sample(**kw) -> UnitSample:
    base = dict(pids=(1, 2), rss=100 << 20, memory=200 << 20, cpu_seconds=1.0,
                cpu_from_cgroup=False, tasks=40, fds=64, children=1, taken_at=0.0)
    base.update(kw)
    return UnitSample(**base)


def test_evaluate_compares_each_configured_resource() -> None:
    limits = _limits(cpu="90%", memory="150M", tasks="50", fds="64", children="0")
    got = {r.resource: r for r in resources.evaluate(limits, _unit_sample(), 95.0, 1 << 30, 2)}
    assert got["cpu"].over and got["cpu"].reason == "cpu 95.0% above 90%"
    assert got["memory"].over and got["memory"].reason == "memory 200.0 MiB above 150.0 MiB"
    assert not got["tasks"].over and got["tasks"].reason == "tasks 40 within 50"
    assert not got["fds"].over  # equal is not above
    assert got["children"].over


def test_evaluate_relative_limits() -> None:
    limits = _limits(cpu="40%/all", memory="10%")
    got = {r.resource: r for r in resources.evaluate(limits, _unit_sample(), 100.0, 1 << 30, 2)}
    assert got["cpu"].value == 50.0 and got["cpu"].over
    assert got["memory"].value == pytest.approx(19.53, abs=0.01) and got["memory"].over


def test_evaluate_skips_cpu_without_a_measurement_and_uses_rss_without_cgroup() -> None:
    limits = _limits(cpu="10%", memory="150M")
    got = resources.evaluate(limits, _unit_sample(memory=None), None, 1 << 30, 2)
    assert [r.resource for r in got] == ["memory"]
    assert not got[0].over and got[0].value == 100 << 20


def test_sample_unit_without_counting_open_files(v2: pathlib.Path) -> None:
    _procs(v2 / "system.slice" / "t.service", os.getpid())
    full = resources.sample_unit("/system.slice/t.service", os.getpid())
    light = resources.sample_unit("/system.slice/t.service", os.getpid(), count_fds=False)
    assert full.fds is not None and full.fds > 0 and light.fds is None
    assert light.pids == full.pids == (os.getpid(),) and light.tasks == full.tasks


def test_unit_usage_from_the_cgroups_own_counters_on_v2(v2: pathlib.Path) -> None:
    unit = v2 / "system.slice" / "app.service"
    _procs(unit, 999999)  # not read: the counters say it all
    (unit / "memory.current").write_text("4096\n")
    (unit / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\n")
    (unit / "pids.current").write_text("7\n")
    assert resources.unit_usage("/system.slice/app.service") == resources.UnitUsage(4096, 2.5, 7)


def test_unit_usage_from_the_processes_without_counters(v2: pathlib.Path) -> None:
    _procs(v2 / "system.slice" / "t.service", os.getpid())  # no pids.current: no controller
    use = resources.unit_usage("/system.slice/t.service", os.getpid())
    sample = resources.sample_unit("/system.slice/t.service", os.getpid())
    assert use.tasks == sample.tasks > 0 and use.memory == sample.memory


def test_unit_usage_on_hybrid_is_what_a_sample_shows(hybrid: pathlib.Path) -> None:
    children = [_ready_child(), _ready_child()]
    try:
        gone = subprocess.Popen(["true"])
        gone.wait()  # reaped: its PID in cgroup.procs reads as gone
        unit = hybrid / "unified" / "system.slice" / "t.service"
        _procs(unit, children[0].pid, gone.pid)
        _procs(unit / "sub", children[1].pid)
        charge = hybrid / "memory" / "system.slice" / "t.service"
        charge.mkdir(parents=True)
        (charge / "memory.usage_in_bytes").write_text("8192\n")
        use = resources.unit_usage("/system.slice/t.service", children[0].pid)
        sample = resources.sample_unit("/system.slice/t.service", children[0].pid)
    finally:
        for child in children:
            child.kill()
            child.wait()
    assert sample.pids == (children[0].pid, children[1].pid)  # both read, the gone one not
    assert use == resources.UnitUsage(8192, sample.cpu_seconds, sample.tasks)
    assert use.tasks == 2  # one thread each
