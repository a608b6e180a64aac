"""`sdwatch run` as a real Type=notify service in a real systemd, against real services."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from typing import Callable, Iterator

import pytest
from sdcheck import UNIT_DIR, show, systemctl, wait_for

REPO = pathlib.Path(__file__).resolve().parents[2]
DAEMON = "sdwatch-test.service"
BASE = pathlib.Path("/run/sdw-test")
CONFIG = BASE / "sdwatch.toml"
STATUS = BASE / "run" / "status.json"
STATE = BASE / "state" / "state.json"
HEADER = f'[sdwatch]\nstate_dir = "{BASE}/state"\nruntime_dir = "{BASE}/run"\n'


def write_config(body: str) -> None:
    BASE.mkdir(exist_ok=True)
    tmp = CONFIG.with_suffix(".tmp")
    tmp.write_text(HEADER + body)
    tmp.replace(CONFIG)


def status() -> dict:
    try:
        return json.loads(STATUS.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def unit_status(name: str) -> dict:
    return status().get("units", {}).get(name, {})


def journal(unit: str = DAEMON) -> str:
    return subprocess.run(["journalctl", "-u", unit, "-o", "cat", "--no-pager"],
                          capture_output=True, text=True, timeout=30).stdout


def main_pid(unit: str) -> int:
    return int(show(unit, "MainPID"))


def sighup_pending(pid: int) -> bool:
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
    pending = next(line.split()[1] for line in status.splitlines() if line.startswith("ShdPnd:"))
    return bool(int(pending, 16) & (1 << (signal.SIGHUP - 1)))


def memcached_answers(port: int = 11211) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"version\r\n")
            return s.recv(64).startswith(b"VERSION")
    except OSError:
        return False


@pytest.fixture
def daemon() -> Iterator[Callable[..., None]]:
    """Start sdwatch (this interpreter, this checkout) as a Type=notify unit with a watchdog."""
    started = []

    def start(body: str, watchdog: str = "3s") -> None:
        write_config(body)
        pathlib.Path(UNIT_DIR, DAEMON).write_text(
            "[Unit]\nDescription=sdwatch under test\nStartLimitIntervalSec=0\n"
            "[Service]\nType=notify\n"
            f"ExecStart={sys.executable} -m sdwatch run --verbose --config {CONFIG}\n"
            f"ExecReload={sys.executable} -m sdwatch reload --pid $MAINPID --config {CONFIG}\n"
            f"Environment=PYTHONPATH={REPO}\nWatchdogSec={watchdog}\n"
            "Restart=always\nRestartSec=100ms\n")
        systemctl("daemon-reload")
        systemctl("start", DAEMON)  # returns once READY=1 arrived (Type=notify)
        started.append(DAEMON)
        assert show(DAEMON, "ActiveState") == "active"

    yield start
    systemctl("stop", DAEMON, check=False)
    systemctl("reset-failed", DAEMON, check=False)
    pathlib.Path(UNIT_DIR, DAEMON).unlink(missing_ok=True)
    systemctl("daemon-reload")
    for path in (STATE, STATUS, CONFIG):
        path.unlink(missing_ok=True)


@pytest.fixture
def memcached() -> Iterator[str]:
    systemctl("start", "memcached.service")
    wait_for(memcached_answers, what="memcached answering")
    yield "memcached.service"
    pid = main_pid("memcached.service")
    if pid:
        os.kill(pid, signal.SIGCONT)
    systemctl("stop", "memcached.service", check=False)


def test_ready_status_and_snapshot(daemon, make_unit) -> None:
    name = make_unit("ExecStart=/bin/sleep infinity")
    daemon(f'[unit."{name}"]\ngrace = "200ms"\n')
    assert show(DAEMON, "StatusText").startswith("1 units: ")
    wait_for(lambda: unit_status(name).get("health") == "healthy", what="healthy in snapshot")
    assert status()["pid"] == main_pid(DAEMON)


def test_sigstopped_memcached_is_restarted_and_answers(daemon, memcached) -> None:
    interval, timeout, failures = 1.0, 1.0, 2
    daemon(f'[unit."{memcached}"]\ngrace = "1s"\nprobe = [{{ kind = "memcached", '
           f'address = "127.0.0.1:11211", interval = "{interval}s", timeout = "{timeout}s", '
           f'failures = {failures} }}]\n')
    wait_for(lambda: unit_status(memcached).get("health") == "healthy", timeout=15,
             what="memcached healthy")
    old = main_pid(memcached)
    t0 = time.monotonic()
    os.kill(old, signal.SIGSTOP)
    wait_for(lambda: main_pid(memcached) not in (0, old) and memcached_answers(), timeout=20,
             what="memcached restarted and answering")
    took = time.monotonic() - t0
    # a failure is seen at most interval after the stop; `failures` of them, each up to
    # `timeout`, then the restart itself (well under a second for memcached)
    assert took <= interval * failures + timeout + 1.5, took
    assert "memcached.service: restart" in journal()
    wait_for(lambda: unit_status(memcached).get("restarts_by_sdwatch") == 1, what="counted")


def test_crash_of_a_restart_no_unit_is_seen_by_event(daemon, make_unit) -> None:
    name = make_unit("ExecStart=/bin/sleep infinity\nRestart=no")
    daemon(f'[unit."{name}"]\ngrace = "100ms"\n')
    wait_for(lambda: unit_status(name).get("health") == "healthy", what="healthy")
    old = main_pid(name)
    t0 = time.monotonic()
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: main_pid(name) not in (0, old), timeout=5, what="restarted by sdwatch")
    took = time.monotonic() - t0
    assert took < 1.0, took  # event-driven: no polling interval in between
    log = journal()
    assert f"{name}: alert crashed" in log and f"{name}: restart" in log


def test_always_failing_probe_restarts_n_times_then_gives_up_once(daemon, make_unit) -> None:
    name = make_unit("ExecStart=/bin/sleep infinity")
    daemon(f'[unit."{name}"]\ngrace = "100ms"\n'
           'probe = [{ kind = "tcp", address = "127.0.0.1:9", interval = "200ms", '
           'timeout = "100ms", failures = 1 }]\n'
           'restart_limit = { restarts = 2, within = "1m", rearm = "1h" }\n')
    wait_for(lambda: unit_status(name).get("gave_up"), timeout=20, what="gave up")
    assert unit_status(name)["restarts_by_sdwatch"] == 2
    assert int(show(name, "NRestarts")) == 0  # systemd does not count RestartUnit
    time.sleep(1.5)  # several more failing probes: still no further restart or alert
    snap = unit_status(name)
    assert snap["restarts_by_sdwatch"] == 2 and snap["health"] == "gave-up"
    log = journal()
    assert log.count(f"{name}: alert gave_up") == 1
    assert log.count(f"{name}: restart (") == 2


def test_given_up_unit_is_not_alerted_again_after_restart_and_reload(daemon, make_unit) -> None:
    name = make_unit("ExecStart=/bin/sleep infinity")
    unit = (f'[unit."{name}"]\ngrace = "100ms"\n'
            'probe = [{ kind = "tcp", address = "127.0.0.1:9", interval = "INTERVAL", '
            'timeout = "100ms", failures = 1 }]\n'
            'restart_limit = { restarts = 1, within = "1m", rearm = "1h" }\n')
    daemon(unit.replace("INTERVAL", "200ms"))
    wait_for(lambda: unit_status(name).get("gave_up"), timeout=20, what="gave up")
    me = main_pid(DAEMON)
    systemctl("restart", DAEMON)
    wait_for(lambda: status().get("pid") not in (None, me), what="a new daemon's snapshot")
    write_config(unit.replace("INTERVAL", "300ms"))  # changed: removed and added again
    systemctl("reload", DAEMON)
    # several failing probes under each: the unit stays given up, nothing is alerted again
    wait_for(lambda: unit_status(name).get("probes", {}).get("tcp", {}).get(
        "consecutive_failures", 0) >= 3 and unit_status(name).get("health") == "gave-up",
             what="failing probes after the reload")
    log = journal()
    assert log.count(f"{name}: alert failing") == 1
    assert log.count(f"{name}: alert gave_up") == 1


def test_admin_stop_is_respected(daemon, make_unit) -> None:
    name = make_unit("ExecStart=/bin/sleep infinity")
    daemon(f'[unit."{name}"]\ngrace = "100ms"\nprobe = [{{ kind = "exec", '
           f'command = ["/bin/true"], interval = "200ms", failures = 1 }}]\n')
    wait_for(lambda: unit_status(name).get("health") == "healthy", what="healthy")
    systemctl("stop", name)
    wait_for(lambda: unit_status(name).get("health") == "stopped", what="seen stopped")
    time.sleep(1.0)  # five probe intervals: a stopped unit must stay stopped
    assert show(name, "ActiveState") == "inactive"
    assert unit_status(name)["restarts_by_sdwatch"] == 0


def test_kill_9_of_sdwatch_keeps_state(daemon, make_unit) -> None:
    name = make_unit("ExecStart=/bin/sleep infinity\nRestart=no")
    daemon(f'[unit."{name}"]\ngrace = "100ms"\n')
    wait_for(lambda: unit_status(name).get("health") == "healthy", what="healthy")
    old = main_pid(name)
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: unit_status(name).get("restarts_by_sdwatch") == 1, what="one restart")
    me = main_pid(DAEMON)
    os.kill(me, signal.SIGKILL)
    wait_for(lambda: main_pid(DAEMON) not in (0, me) and show(DAEMON, "ActiveState") == "active",
             what="sdwatch restarted by systemd")
    wait_for(lambda: status().get("pid") == main_pid(DAEMON), what="new snapshot")
    assert unit_status(name)["restarts_by_sdwatch"] == 1  # history came back from state.json
    assert json.loads(STATE.read_text())["units"][name]["total_restarts"] == 1


def test_stopped_sdwatch_is_killed_by_the_watchdog(daemon) -> None:
    daemon("", watchdog="2s")
    me = main_pid(DAEMON)
    os.kill(me, signal.SIGSTOP)
    wait_for(lambda: main_pid(DAEMON) not in (0, me) and show(DAEMON, "ActiveState") == "active",
             timeout=15, what="watchdog restart")
    assert int(show(DAEMON, "NRestarts")) >= 1


def test_reload_with_broken_config_fails_and_keeps_the_old_one(daemon, make_unit) -> None:
    name = make_unit("ExecStart=/bin/sleep infinity\nRestart=no")
    daemon(f'[unit."{name}"]\ngrace = "100ms"\n')
    wait_for(lambda: unit_status(name).get("health") == "healthy", what="healthy")
    write_config(f'[unit."{name}"]\ngrace = "soon"\n')
    r = subprocess.run(["systemctl", "reload", DAEMON], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0  # the admin learns it at once, and why:
    problem = 'unit."' + name + '".grace: invalid duration'
    assert problem in systemctl("status", "--no-pager", "-n", "20", DAEMON, check=False)
    assert problem in journal()
    assert show(DAEMON, "ActiveState") == "active"
    old = main_pid(name)
    os.kill(old, signal.SIGKILL)  # the old config still watches it
    wait_for(lambda: main_pid(name) not in (0, old), timeout=5, what="restarted")


def test_reload_refused_by_the_daemon_fails(daemon, make_unit) -> None:
    """A config valid for the command but refused by the daemon (here: it changes between
    the command's check and the daemon's) fails the reload with the daemon's reason."""
    name = make_unit("ExecStart=/bin/sleep infinity\nRestart=no")
    daemon(f'[unit."{name}"]\ngrace = "100ms"\n')
    pid = main_pid(DAEMON)
    os.kill(pid, signal.SIGSTOP)  # the daemon reads the config only after it was broken
    try:
        reload = subprocess.Popen(["systemctl", "reload", DAEMON], stderr=subprocess.PIPE,
                                  text=True)
        # the command validated the good config and sent SIGHUP, still pending
        wait_for(lambda: sighup_pending(pid), timeout=30, what="SIGHUP sent")
        write_config(f'[unit."{name}"]\nprobe = "none"\n')
    finally:
        os.kill(pid, signal.SIGCONT)
    assert reload.wait(timeout=60) != 0
    assert "reload refused: the previous configuration stays in force" in journal()
    assert main_pid(DAEMON) == pid and show(DAEMON, "ActiveState") == "active"


def test_reload_keeps_state_of_unchanged_units(daemon, make_unit) -> None:
    a = make_unit("ExecStart=/bin/sleep infinity\nRestart=no")
    b = make_unit("ExecStart=/bin/sleep infinity\nRestart=no")
    daemon(f'[unit."{a}"]\ngrace = "100ms"\n')
    wait_for(lambda: unit_status(a).get("health") == "healthy", what="healthy")
    os.kill(main_pid(a), signal.SIGKILL)
    wait_for(lambda: unit_status(a).get("restarts_by_sdwatch") == 1, what="restarted once")
    write_config(f'[unit."{a}"]\ngrace = "100ms"\n[unit."{b}"]\n')
    systemctl("reload", DAEMON)
    wait_for(lambda: b in status().get("units", {}), what="new unit watched")
    assert unit_status(a)["restarts_by_sdwatch"] == 1


@pytest.mark.parametrize("disturb", [
    ["systemctl", "restart", "dbus.service"],
    ["systemctl", "daemon-reload"],
    ["systemctl", "daemon-reexec"],
])
def test_crash_is_caught_after_bus_disturbance(daemon, make_unit, disturb) -> None:
    name = make_unit("ExecStart=/bin/sleep infinity\nRestart=no")
    daemon(f'[unit."{name}"]\ngrace = "100ms"\n')
    wait_for(lambda: unit_status(name).get("health") == "healthy", what="healthy")
    subprocess.run(disturb, check=True, timeout=60)
    wait_for(lambda: show(DAEMON, "ActiveState") == "active", what="sdwatch still active")
    time.sleep(0.5)  # let a reconnect (if any) settle before the crash we want caught
    old = main_pid(name)
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: main_pid(name) not in (0, old), timeout=10, what="crash caught")
    assert int(show(DAEMON, "NRestarts")) == 0  # sdwatch itself survived the disturbance


def test_status_shows_the_daemons_probe_results(daemon, memcached) -> None:
    daemon(f'[unit."{memcached}"]\ngrace = "100ms"\nprobe = [{{ kind = "memcached", '
           'address = "127.0.0.1:11211", interval = "200ms" }]\n')
    wait_for(lambda: unit_status(memcached).get("probes", {}).get("memcached", {}).get(
        "outcome") == "ok", what="a probe result in the snapshot")
    r = subprocess.run([sys.executable, "-m", "sdwatch", "status", "--json", "--config",
                        str(CONFIG)], capture_output=True, text=True, timeout=30)
    data = json.loads(r.stdout)
    assert r.returncode == 0 and data["daemon"]["running"] is True
    assert data["daemon"]["pid"] == main_pid(DAEMON)
    (u,) = data["units"]
    assert u["restarts_sdwatch"] == 0
    assert u["probes"][0]["last"]["outcome"] == "ok"
    systemctl("stop", DAEMON)
    r = subprocess.run([sys.executable, "-m", "sdwatch", "status", "--config", str(CONFIG)],
                       capture_output=True, text=True, timeout=30)
    assert "sdwatch daemon                not running" in r.stdout


def test_start_limit_hit_is_reset_and_the_restart_retried(daemon, make_unit) -> None:
    name = make_unit("ExecStart=/bin/sleep infinity\nRestart=no",
                     unit="StartLimitIntervalSec=60s\nStartLimitBurst=2")
    daemon(f'[unit."{name}"]\ngrace = "100ms"\n'
           'probe = [{ kind = "tcp", address = "127.0.0.1:9", interval = "300ms", '
           'timeout = "100ms", failures = 1 }]\n'
           'restart_limit = { restarts = 4, within = "1m" }\n')
    wait_for(lambda: unit_status(name).get("gave_up"), timeout=30, what="gave up")
    log = journal()
    assert f"{name}: resetfailed" in log  # systemd refused a start: sdwatch cleared the limit
    assert "start-limit-hit" in log
    assert unit_status(name)["restarts_by_sdwatch"] == 4


def _trigger(name: str) -> pathlib.Path:
    """A file the unit creates when it starts; removing it fails the unit's file probe once."""
    BASE.mkdir(exist_ok=True)  # the unit starts before the daemon's config is written
    return BASE / f"up-{name}"


def test_graceful_stop_within_the_budget_is_never_killed(daemon, make_unit) -> None:
    up = _trigger("graceful")
    name = make_unit(f"ExecStartPre=/bin/touch {up}\nRestart=no\n"
                     "ExecStart=/bin/sh -c 'trap \"sleep 1; echo graceful exit; exit 0\" TERM; "
                     "while :; do sleep 0.1; done'")
    daemon(f'[unit."{name}"]\nprobe = [{{ kind = "file", path = "{up}", interval = "200ms", '
           'failures = 1 }]\n')  # the default stop budget
    wait_for(lambda: unit_status(name).get("health") == "healthy", what="healthy")
    old = main_pid(name)
    up.unlink()
    wait_for(lambda: main_pid(name) not in (0, old) and unit_status(name).get("health")
             == "healthy" and unit_status(name)["restarts_by_sdwatch"] == 1, timeout=20,
             what="restarted after its graceful stop")
    log = journal()
    assert f"{name}: stopped cleanly in" in log, log
    assert "SIGKILL" not in log
    assert "graceful exit" in journal(name)


def test_stop_hanging_in_execstop_is_killed_after_the_budget(daemon, make_unit) -> None:
    up = _trigger("hanging")
    name = make_unit(f"ExecStartPre=/bin/touch {up}\nRestart=no\nExecStart=/bin/sleep infinity\n"
                     f"ExecStop=/bin/sh -c '[ -e {up} ] || sleep 60'\nTimeoutStopSec=120")
    daemon(f'[unit."{name}"]\nstop_budget = "1s"\nprobe = [{{ kind = "file", path = "{up}", '
           'interval = "200ms", failures = 1 }]\n')
    wait_for(lambda: unit_status(name).get("health") == "healthy", what="healthy")
    old = main_pid(name)
    up.unlink()
    # without the budget the restart would wait for ExecStop's 60 s
    wait_for(lambda: main_pid(name) not in (0, old) and unit_status(name).get("health")
             == "healthy", timeout=30, what="restarted through the SIGKILL")
    log = journal()
    assert f"{name}: not stopped after 1s (stop budget): SIGKILL to its cgroup" in log, log
    assert unit_status(name)["restarts_by_sdwatch"] == 1


def test_exit_0_by_itself_is_started_again(daemon, make_unit) -> None:
    quit_file = BASE / "quit-exit0"
    name = make_unit(f"ExecStartPre=/bin/rm -f {quit_file}\nRestart=no\n"
                     f"ExecStart=/bin/sh -c 'while [ ! -e {quit_file} ]; do sleep 0.1; done'")
    daemon(f'[unit."{name}"]\n')
    wait_for(lambda: unit_status(name).get("health") == "healthy", what="healthy")
    old = main_pid(name)
    quit_file.touch()
    wait_for(lambda: main_pid(name) not in (0, old), timeout=10, what="started again")
    assert show(name, "Result") == "success"
    log = journal()
    assert f"{name}: alert crashed: {name} exited by itself (success, no stop job)" in log, log
    assert f"{name}: start (" in log


def test_stop_by_a_dependency_is_respected(daemon, make_unit) -> None:
    top = make_unit("ExecStart=/bin/sleep infinity")
    part = make_unit("ExecStart=/bin/sleep infinity\nRestart=no", unit=f"PartOf={top}")
    daemon(f'[unit."{part}"]\n')
    wait_for(lambda: unit_status(part).get("health") == "healthy", what="healthy")
    systemctl("stop", top)
    wait_for(lambda: unit_status(part).get("health") == "stopped", what="seen stopped")
    time.sleep(1.0)
    assert show(part, "ActiveState") == "inactive"
    assert unit_status(part)["restarts_by_sdwatch"] == 0
