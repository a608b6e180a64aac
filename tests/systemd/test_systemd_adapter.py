"""sdwatch.systemd against a real systemd: what it reads equals what systemctl shows."""

from __future__ import annotations

import os
import pathlib
import signal
from dataclasses import replace

import pytest
from nobody import run_as_nobody
from sdcheck import show, systemctl, wait_for

from sdwatch.systemd import Systemd, UnitError, object_path
from sdwatch.unitinfo import brief_view

REPO = pathlib.Path(__file__).resolve().parents[2]
SLEEPER = "ExecStart=/bin/sleep infinity"


def test_unit_info_matches_systemctl(sd, make_unit) -> None:
    name = make_unit(SLEEPER)
    wait_for(lambda: show(name, "ActiveState") == "active", what="unit active")
    # systemd 257 may report TasksCurrent=0 and MemoryCurrent=0 for a few milliseconds after
    # "active", before its cgroup accounting sees the process: wait for what is compared below
    wait_for(lambda: "0" not in (show(name, "TasksCurrent"), show(name, "MemoryCurrent")),
             what="the unit's cgroup accounting to count its process")
    info = sd.unit_info(name)
    assert info.id == name
    assert info.main_pid == int(show(name, "MainPID")) > 0
    assert (info.load_state, info.active_state, info.sub_state) == ("loaded", "active", "running")
    assert info.result == show(name, "Result") == "success"
    assert info.control_group == show(name, "ControlGroup") == f"/system.slice/{name}"
    assert info.n_restarts == int(show(name, "NRestarts"))
    # a cgroup v2 tree without the pids/memory controllers (systemd booted unified on a
    # hybrid host) has no accounting for them: systemd says "[not set]", sdwatch None
    tasks, memory = show(name, "TasksCurrent"), show(name, "MemoryCurrent")
    assert info.tasks_current == (None if tasks == "[not set]" else int(tasks))
    # (memory moves between two reads: present or absent alike is what can be compared)
    assert (info.memory_current is None) == (memory == "[not set]")
    assert info.memory_current is None or info.memory_current > 0
    assert tasks == "[not set]" or info.tasks_current == 1
    assert info.active_enter_timestamp > 0 and info.exec_main_start_timestamp > 0
    assert info.unit_file_state == show(name, "UnitFileState")
    assert all(isinstance(v, (str, int, type(None))) for v in vars(info).values())


def test_list_units_filters_by_state_and_pattern(sd, make_unit) -> None:
    running = make_unit(SLEEPER)
    stopped = make_unit(SLEEPER, start=False)
    active = {u.name for u in sd.list_units(states=("active",))}
    assert running in active and stopped not in active
    matched = sd.list_units(patterns=("sdw-test-*",))
    assert running in {u.name for u in matched}
    assert all(isinstance(u.name, str) for u in matched)


def test_restart_stop_start_kill(sd, make_unit) -> None:
    name = make_unit(SLEEPER)
    pid = wait_for(lambda: int(show(name, "MainPID")), what="main pid")
    sd.restart(name)
    new = wait_for(lambda: int(show(name, "MainPID")) not in (0, pid) and
                   int(show(name, "MainPID")), what="new main pid after restart")
    assert new != pid
    sd.stop(name)
    wait_for(lambda: show(name, "ActiveState") == "inactive", what="stopped")
    sd.start(name)
    wait_for(lambda: show(name, "ActiveState") == "active", what="started")
    pid = int(show(name, "MainPID"))
    sd.kill(name, signal.SIGKILL)
    wait_for(lambda: show(name, "ActiveState") == "failed", what="failed after SIGKILL")
    assert sd.unit_info(name).result == "signal"
    sd.reset_failed(name)
    wait_for(lambda: show(name, "ActiveState") == "inactive", what="reset")
    assert not os.path.exists(f"/proc/{pid}")


def test_unit_errors_are_clear(sd) -> None:
    with pytest.raises(UnitError, match="not a valid unit name"):
        sd.unit_info("../etc/passwd")
    with pytest.raises(UnitError, match="nonexistent-unit.service"):
        sd.restart("nonexistent-unit.service")
    info = sd.unit_info("nonexistent-unit.service")
    assert info.load_state == "not-found"


def test_start_limit_hit_and_reset_failed(sd, make_unit) -> None:
    name = make_unit(SLEEPER, unit="StartLimitIntervalSec=60s\nStartLimitBurst=2")
    wait_for(lambda: show(name, "ActiveState") == "active", what="active")
    first = show(name, "InvocationID")
    sd.restart(name)  # the second start within the interval: still allowed
    # a new invocation, not just "active": a restart queued while the first is still pending
    # would be merged into it, and the unit started only twice
    wait_for(lambda: show(name, "InvocationID") != first
             and show(name, "ActiveState") == "active", what="active after restart")
    sd.restart(name)  # the third: refused by systemd's start rate limit
    wait_for(lambda: show(name, "Result") == "start-limit-hit", what="start-limit-hit")
    info = sd.unit_info(name)
    assert (info.active_state, info.result) == ("failed", "start-limit-hit")
    sd.reset_failed(name)
    wait_for(lambda: show(name, "ActiveState") == "inactive", what="reset after start limit")
    sd.start(name)  # accepted again after ResetFailed
    wait_for(lambda: show(name, "ActiveState") == "active", what="started again")


def test_exit_details_and_invocation_id(sd, make_unit) -> None:
    name = make_unit("ExecStart=/bin/sh -c 'exit 7'")
    wait_for(lambda: show(name, "ActiveState") == "failed", what="failed")
    info = sd.unit_info(name)
    assert (info.result, info.exec_main_code, info.exec_main_status) == ("exit-code", 1, 7)
    assert info.invocation_id == show(name, "InvocationID") and len(info.invocation_id) == 32
    brief = sd.unit_info(name, brief=True)
    assert brief.invocation_id == "" and brief.result == "exit-code"


def test_manager_refusals_are_our_errors(sd) -> None:
    """A refusal leaves the adapter as its own error type, never as pystemd's."""
    code = ("import sys\nfrom sdwatch.systemd import Refused, Systemd\n"
            "with Systemd() as sd:\n    try:\n        sd.reload_daemon()\n"
            "    except Refused as exc:\n        sys.exit(f'refused: {exc}')\n")
    r = run_as_nobody(code)
    assert r.returncode == 1 and r.stderr.startswith("refused: Reload: "), r.stderr
    # a template cannot be loaded: systemd refuses any listing that names it
    info = sd.units_info(["no slash/allowed.service", "sdw-template@.service",
                          "nonexistent-unit.service"])
    assert isinstance(info["no slash/allowed.service"], UnitError)
    assert isinstance(info["sdw-template@.service"], UnitError)
    assert info["nonexistent-unit.service"].load_state == "not-found"


def test_units_info_equals_unit_info(sd, make_unit) -> None:
    running, stopped = make_unit(SLEEPER), make_unit(SLEEPER, start=False)
    wait_for(lambda: show(running, "ActiveState") == "active", what="unit active")
    names = [running, stopped, "sdw-missing-unit.service"]
    batch = sd.units_info(names, brief=True)
    assert list(batch) == names
    assert batch[running] == sd.unit_info(running, brief=True)
    full = sd.unit_info(stopped, brief=True)
    assert batch[stopped] == replace(full, result="", n_restarts=0, active_enter_timestamp=0)
    missing = batch["sdw-missing-unit.service"]
    assert (missing.load_state, missing.active_state, missing.main_pid) == ("not-found",
                                                                            "inactive", 0)
    assert all(isinstance(v, (str, int, type(None))) for v in vars(batch[running]).values())


def test_brief_view_of_any_read_is_what_the_commands_brief_read_shows(sd, make_unit) -> None:
    running, stopped = make_unit(SLEEPER), make_unit(SLEEPER, start=False)
    wait_for(lambda: show(running, "ActiveState") == "active", what="unit active")
    names = [running, stopped]
    brief = sd.units_info(names, brief=True)  # as `sdwatch status` reads them
    for reads in (sd.units_info(names), sd.units_info(names, brief=True, started=True)):
        assert {n: brief_view(i) for n, i in reads.items()} == brief
    assert brief_view(sd.unit_info(running)).unit_file_state == ""


def test_service_type_as_node_exporter_reads_it(sd, make_unit) -> None:
    simple = make_unit(SLEEPER)
    oneshot = make_unit("Type=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true")
    notify = make_unit("Type=notify\nNotifyAccess=all\n"
                       "ExecStart=/bin/sh -c 'systemd-notify --ready; exec sleep infinity'")
    wait_for(lambda: show(simple, "ActiveState") == "active", what="unit active")
    mount = sd.list_units(types=("mount",), states=("active",))[0].name
    expected = {simple: "simple", oneshot: "oneshot", notify: "notify", "init.scope": "",
                mount: systemctl("show", "-p", "Type", "--value", "--", mount).strip()}
    assert expected[mount]  # a mount's type is its file system's, as node_exporter says
    names = list(expected)
    # the daemon's batched reads and a full read say it; the CLI's brief view need not
    daemon = sd.units_info(names, brief=True, started=True)
    assert {n: i.service_type for n, i in daemon.items()} == expected
    assert {n: sd.unit_info(n).service_type for n in names} == expected
    brief = sd.units_info(names, brief=True)
    assert {n: i.service_type for n, i in brief.items()} == dict.fromkeys(names, "")


def test_object_paths_are_systemds(sd, make_unit) -> None:
    names = [make_unit(SLEEPER, name="sdw-a_b-c@x:y.service", start=False),
             "sdw-not-there.service", "init.scope"]
    for name in names:
        assert object_path(name) == sd.unit_path(name)


def test_drain_drops_what_systemd_sent_unasked(sd, make_unit) -> None:
    """systemd sends every unit's signals to its private socket's clients, asked or not."""
    noise = make_unit("Type=oneshot\nExecStart=/bin/true", start=False)
    sd.drain()
    with Systemd() as other:
        for _ in range(20):
            other.start(noise)
        wait_for(lambda: show(noise, "ActiveState") == "inactive", what="noise done")
    sd.unit_info(noise)  # a call reads what is waiting while it waits for its reply
    dropped = sd.drain()
    assert dropped > 20
    # a late signal (the unit collected after its last job) may still come; then nothing
    wait_for(lambda: sd.drain() == 0, what="nothing left waiting")
