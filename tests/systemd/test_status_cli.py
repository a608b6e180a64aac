"""`sdwatch status` against a real systemd: fields equal systemd's, cgroup-wide figures."""

from __future__ import annotations

import json
import pathlib

import psutil
from sdcheck import sdwatch, show, systemctl, wait_for

SLEEPER = "ExecStart=/bin/sleep infinity"
FORKER = "ExecStart=/bin/sh -c 'sleep infinity & sleep infinity & exec sleep infinity'"
# touches 64 MiB so that the cgroup's memory is mostly this process's resident memory
HOG = ("ExecStart=/usr/bin/python3 -c \"import time; b = bytearray(64 << 20); "
       "b[::4096] = b'x' * len(b[::4096]); open('/run/hog-ready', 'w').close(); "
       "time.sleep(3600)\"")


def status_json(*units: str, config: str | None = None) -> tuple[int, dict]:
    args = ["status", "--json", *units] + (["--config", config] if config else [])
    r = sdwatch(*args)
    assert r.stderr == "", r.stderr
    return r.returncode, json.loads(r.stdout)


def test_status_fields_equal_what_systemd_reports(make_unit) -> None:
    name = make_unit(SLEEPER)
    wait_for(lambda: show(name, "SubState") == "running", what="running")
    code, data = status_json(name)
    assert code == 0
    (u,) = data["units"]
    assert u["name"] == name and u["health"] == "healthy"
    assert u["main_pid"] == int(show(name, "MainPID"))
    assert (u["active_state"], u["sub_state"], u["result"]) == ("active", "running", "success")
    assert u["restarts_systemd"] == int(show(name, "NRestarts"))
    assert u["processes"] == 1 and u["children"] == 0 and u["tasks"] == 1


def test_children_of_a_forking_service_are_counted(make_unit) -> None:
    name = make_unit(FORKER)
    wait_for(lambda: status_json(name)[1]["units"][0]["processes"] == 3, what="three processes")
    _, data = status_json(name)
    (u,) = data["units"]
    main = psutil.Process(u["main_pid"])
    assert len(main.parent().children()) >= 0  # the main pid is a real process
    assert u["processes"] == 3 and u["children"] == 2 and u["tasks"] == 3


def test_cgroup_memory_within_ten_percent_of_memory_current(make_unit) -> None:
    ready = pathlib.Path("/run/hog-ready")
    ready.unlink(missing_ok=True)
    name = make_unit(HOG)
    wait_for(ready.exists, what="memory hog ready", timeout=20)
    _, data = status_json(name)
    (u,) = data["units"]
    ready.unlink()
    shown = show(name, "MemoryCurrent")
    if shown == "[not set]":  # no memory controller in this cgroup tree: the RSS still counts
        assert u["memory"] is None and 64 << 20 < u["rss"] < 96 << 20, u
        return
    current = int(shown)
    assert current > 64 << 20
    assert abs(u["memory"] - current) <= 0.1 * current, (u["memory"], current)
    assert abs(u["rss"] - current) <= 0.1 * current, (u["rss"], current)


def test_failed_unit_gives_exit_3_with_result(make_unit) -> None:
    name = make_unit("ExecStart=/bin/false")
    wait_for(lambda: show(name, "ActiveState") == "failed", what="failed")
    code, data = status_json(name)
    assert code == 3
    (u,) = data["units"]
    assert (u["health"], u["result"]) == ("failed", "exit-code")
    r = sdwatch("status", name)
    assert r.returncode == 3
    assert "failed - failed (result: exit-code)" in r.stdout


def test_zero_config_shows_active_and_failed_services_only(make_unit) -> None:
    running = make_unit(SLEEPER)
    failed = make_unit("ExecStart=/bin/false")
    stopped = make_unit(SLEEPER, start=False)
    wait_for(lambda: show(failed, "ActiveState") == "failed", what="failed")
    r = sdwatch("summary", env={"SDWATCH_CONFIG": "/nonexistent/dir/sdwatch.toml"})
    # an explicitly named but missing config file is an error, not zero-config
    assert r.returncode == 2 and "no such file" in r.stderr
    empty = pathlib.Path("/run/sdw-empty-etc")
    empty.mkdir(exist_ok=True)
    (empty / "sdwatch.toml").unlink(missing_ok=True)  # left by an earlier run
    # a directory without any configuration is a mistake to name, not zero-config
    r = sdwatch("summary", env={"SDWATCH_CONFIG": str(empty)})
    assert r.returncode == 2 and "a directory without sdwatch.toml" in r.stderr
    # only comments, as the packaged file: no unit configured, the zero-config default
    (empty / "sdwatch.toml").write_text("# [unit.\"nginx.service\"]\n")
    r = sdwatch("summary", env={"SDWATCH_CONFIG": str(empty)})
    names = [line.split()[0] for line in r.stdout.splitlines()[1:]]
    assert running in names and failed in names and stopped not in names
    assert "dbus.service" in names
    assert r.returncode == 3  # the failed unit


def test_config_selects_the_configured_units(make_unit, tmp_path) -> None:
    a = make_unit(SLEEPER)
    wait_for(lambda: show(a, "ActiveState") == "active", what="active")
    cfg = tmp_path / "sdwatch.toml"
    cfg.write_text(f'[unit."{a}"]\n[unit."absent-unit.service"]\n')
    code, data = status_json(config=str(cfg))
    assert [u["name"] for u in data["units"]] == [a, "absent-unit.service"]
    assert [u["health"] for u in data["units"]] == ["healthy", "missing"]
    assert code == 3
    assert data["config_files"] == [str(cfg)]


def test_stopped_unit_is_reported_stopped(make_unit, tmp_path) -> None:
    a = make_unit(SLEEPER)
    systemctl("stop", a)
    code, data = status_json(a)
    assert data["units"][0]["health"] == "stopped" and code == 3


def test_unreachable_bus_inside_systemd_exits_4() -> None:
    r = sdwatch("status", env={"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/bus"})
    assert r.returncode == 4 and r.stdout == ""
    assert r.stderr.count("\n") == 1
    assert "cannot reach systemd over the system bus" in r.stderr
