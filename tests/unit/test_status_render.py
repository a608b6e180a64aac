"""Renderers are pure: build snapshots by hand and read the text, summary and JSON."""

from __future__ import annotations

import json
import os

import pytest

from sdwatch import status
from sdwatch.resources import SystemSample
from sdwatch.snapshot import DaemonSnapshot, UnitView
from sdwatch.states import Health
from sdwatch.status import (
    SCHEMA,
    DaemonInfo,
    ProbeStatus,
    Snapshot,
    UnitStatus,
    render_summary,
    render_text,
    to_json,
)

SYSTEM = SystemSample(hostname="web1", uptime=90061, load=(0.5, 0.25, 0.125), cpus=2,
                      cpu_user=3.0, cpu_system=1.0, cpu_iowait=0.5, memory_total=8 << 30,
                      memory_used=2 << 30, swap_total=0, swap_used=0)


def unit(name: str = "memcached.service", **kw) -> UnitStatus:
    base = dict(name=name, description="memcached daemon", health=Health.HEALTHY,
                load_state="loaded", active_state="active", sub_state="running",
                result="success", unit_file_state="enabled", main_pid=4242, uptime=125.0,
                restarts_systemd=2, processes=3, children=2, tasks=12, memory=3 << 20,
                rss=2 << 20, cpu_percent=1.25, cpu_seconds=0.5, cpu_window="average since start",
                fds=35, configured=True,
                probes=(ProbeStatus("memcached", "memcached", "127.0.0.1:11211", 5.0, 1.0, 2),),
                collected_at=1_800_000_000.0)
    base.update(kw)
    return UnitStatus(**base)


def snap(*units: UnitStatus) -> Snapshot:
    return Snapshot(generated_at=1_800_000_000.0, system=SYSTEM, units=units,
                    selection="configured units")


def test_render_text_has_system_block_and_unit_block() -> None:
    text = render_text(snap(unit()))
    assert "System 'web1'" in text
    assert "load average                  [0.50] [0.25] [0.12]" in text
    assert "memory usage                  2.0 GiB of 8.0 GiB [25.0%]" in text
    assert "uptime                        1d 1h 1m" in text
    block = text.split("Service 'memcached.service'\n", 1)[1]
    for line in ("status                        healthy",
                 "systemd state                 active (running)",
                 "main pid                      4242",
                 "uptime                        2m",
                 "restarts                      2 by systemd",
                 "tasks                         12 (3 processes, 2 children)",
                 "memory (cgroup)               3.0 MiB (rss 2.0 MiB)",
                 "cpu                           1.2% average since start (0.50s total)",
                 "open files                    35",
                 "probe memcached               memcached 127.0.0.1:11211 every 5s, timeout 1s"):
        assert f"  {line}\n" in block, line


def test_render_text_failed_unit_says_why() -> None:
    u = unit(health=Health.FAILED, active_state="failed", sub_state="failed", result="signal",
             main_pid=0, uptime=None, processes=0, memory=None, rss=None, cpu_percent=None,
             fds=None, problem="failed (result: signal)")
    text = render_text(snap(u))
    assert "  status                        failed - failed (result: signal)\n" in text
    assert "  systemd state                 failed (failed), result signal\n" in text
    assert "main pid" not in text and "memory (cgroup)" not in text


def test_summary_one_line_per_unit() -> None:
    lines = render_summary(snap(unit(), unit("nginx.service", health=Health.STOPPED,
                                             active_state="inactive", sub_state="dead",
                                             memory=None, cpu_percent=None, uptime=None)))
    rows = lines.splitlines()
    assert len(rows) == 3 and rows[0].startswith("Unit")
    assert rows[1].split()[:4] == ["memcached.service", "healthy", "active", "(running)"]
    assert rows[2].split() == ["nginx.service", "stopped", "inactive", "(dead)", "-", "-", "-"]


def test_json_is_versioned_and_complete() -> None:
    data = json.loads(json.dumps(to_json(snap(unit()))))
    assert data["schema"] == SCHEMA == "sdwatch.status/1"
    assert data["healthy"] is True
    assert data["system"]["load"] == [0.5, 0.25, 0.125]
    u = data["units"][0]
    assert u["health"] == "healthy" and u["main_pid"] == 4242 and u["memory"] == 3 << 20
    assert u["probes"][0] == {"name": "memcached", "kind": "memcached",
                              "target": "127.0.0.1:11211", "interval": 5.0, "timeout": 1.0,
                              "failures": 2, "last": None, "last_failure": None}
    assert data["daemon"] == {} and u["restarts_sdwatch"] is None


def test_snapshot_health_follows_units() -> None:
    assert snap(unit(), unit(health=Health.STARTING)).healthy
    assert not snap(unit(), unit(health=Health.FAILED)).healthy
    assert not snap(unit(health=Health.MISSING)).healthy


DAEMON_UNITS = {"memcached.service": {
    "health": "failing", "restarts_by_sdwatch": 3,
    "last_failure": {"reason": "probe memcached: timeout after 1s", "at": 1.0},
    "probes": {"memcached": {"ok": False, "outcome": "timeout", "reason": "timeout after 1s",
                             "duration": 1.0, "at": 2.0,
                             "last_failure": {"reason": "timeout after 1s", "at": 2.0}}}}}


def seen(units: dict) -> UnitView | None:
    """The memcached unit's view in a daemon snapshot holding ``units`` (status.json's form)."""
    return DaemonSnapshot.from_json({"pid": 1, "units": units}).unit("memcached.service")


def test_read_daemon_needs_a_live_sdwatch_process(tmp_path) -> None:
    import os

    from sdwatch.resources import process_start

    me = os.getpid()
    (tmp_path / "status.json").write_text(json.dumps({"pid": me, "pid_start": 1, "units": {}}))
    # this process is alive but started at another time: a stale file from a reused pid
    assert status.read_daemon(str(tmp_path)).running is False
    (tmp_path / "status.json").write_text(json.dumps({"pid": me, "pid_start": process_start(me),
                                                      "status": "ok", "units": {}}))
    assert status.read_daemon(str(tmp_path)).running is True


def test_daemon_snapshot_adds_probe_results_and_its_verdict() -> None:
    u = status.with_daemon(unit(), seen(DAEMON_UNITS))
    assert u.health is Health.FAILING and u.problem == "probe memcached: timeout after 1s"
    assert u.restarts_sdwatch == 3
    assert u.probes[0].last.outcome == "timeout"
    text = render_text(Snapshot(generated_at=0.0, system=SYSTEM, units=(u,),
                                daemon=DaemonInfo(True, "/run/x", pid=42, status="x")))
    assert "  restarts                      2 by systemd, 3 by sdwatch\n" in text
    assert "    last result                 timeout in 1000.0ms: timeout after 1s (" in text
    assert "  sdwatch daemon                running, pid 42: x\n" in text


def test_systemd_failure_outranks_the_daemon_verdict() -> None:
    failed = unit(health=Health.FAILED, problem="failed (result: signal)")
    daemon = seen({"memcached.service": {"health": "failing"}})
    assert status.with_daemon(failed, daemon).health is Health.FAILED


def test_no_daemon_says_so(tmp_path) -> None:
    assert status.read_daemon(str(tmp_path)).to_json() == {"running": False,
                                                           "path": f"{tmp_path}/status.json"}
    text = render_text(snap(unit()))
    assert "sdwatch daemon                not running: probes are not being checked" in text


def as_nobody(code: str) -> str:
    """Run python ``code`` as user nobody (this test runs as root); return its output."""
    import shutil

    from nobody import run_as_nobody

    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("needs setpriv to drop root")
    r = run_as_nobody(code)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_unreadable_runtime_dir_is_unknown_not_not_running(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    (run / "status.json").write_text("{}")
    if os.geteuid() != 0:
        run.chmod(0o000)
    out = as_nobody("from sdwatch import status; import json; "
                    f"print(json.dumps(status.read_daemon({str(run)!r}).to_json()))")
    assert json.loads(out) == {"running": None, "path": f"{run}/status.json",
                               "problem": "permission denied"}
    text = render_text(Snapshot(generated_at=0.0, system=SYSTEM, units=(),
                                daemon=status.DaemonInfo(None, f"{run}/status.json",
                                                         problem="permission denied")))
    assert "  sdwatch daemon                unknown: permission denied reading" in text


def test_open_files_of_another_users_processes_are_unknown_not_zero() -> None:
    import os

    out = as_nobody(f"from sdwatch.resources import read_process; "
                    f"print(read_process({os.getpid() if os.geteuid() == 0 else 1}).fds)")
    assert out.strip() == "None"
    text = render_text(snap(unit(fds=None)))
    assert "  open files                    unknown (" in text


def test_the_daemons_limit_readings_are_shown() -> None:
    view = seen({"memcached.service": {"health": "healthy", "limits": {"memory": {
        "value": 3e9, "over": True, "reason": "memory 2.8 GiB above 2.0 GiB", "at": 5.0,
        "over_for": 2, "tripped": False}}}})
    u = status.with_daemon(unit(), view)
    text = render_text(snap(u))
    assert ("  limit memory                  memory 2.8 GiB above 2.0 GiB, over for 2 cycles ("
            in text)
    data = json.loads(json.dumps(to_json(snap(u))))
    assert data["units"][0]["limits"]["memory"] == {
        "value": 3e9, "over": True, "reason": "memory 2.8 GiB above 2.0 GiB", "at": 5.0,
        "over_for": 2, "tripped": False}
