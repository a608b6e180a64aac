"""Hooks and alerts in a real systemd: OnFailure= alerts to real SMTP and HTTP receivers,
ExecStartPost= wait-healthy holding starts, the alert queue drained by `sdwatch run`, and
drop-ins that come and go without a trace.  Everything lives under /run (private here)."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time
import uuid
from typing import Callable, Iterator

import pytest
from alertrx import HttpReceiver, SmtpReceiver
from sdcheck import UNIT_DIR, sdwatch, show, systemctl, wait_for

REPO = pathlib.Path(__file__).resolve().parents[2]
BASE = pathlib.Path("/run/sdw-al")
CONFIG = BASE / "sdwatch.toml"
QUEUE = BASE / "state" / "alerts"
ALERT_TEMPLATE = "sdwatch-alert@.service"
DAEMON = "sdw-al-daemon.service"
HOOK_ENV = {"SDWATCH_SYSTEMD_DIR": UNIT_DIR, "SDWATCH_CONFIG": str(CONFIG)}
PY = f"{sys.executable} -m sdwatch"


def write_config(body: str) -> None:
    BASE.mkdir(exist_ok=True)
    tmp = CONFIG.with_suffix(".tmp")
    tmp.write_text(f'[sdwatch]\nstate_dir = "{BASE}/state"\nruntime_dir = "{BASE}/run"\n'
                   + body)
    tmp.replace(CONFIG)


def channels(smtp_port: int, webhook: str = "") -> str:
    text = (f'[alert]\nretry = "300ms"\nretry_max = "1s"\n[[alert.email]]\n'
            f'to = ["ops@example.com"]\nfrom = "sdwatch@example.com"\n'
            f'smtp = "127.0.0.1:{smtp_port}"\nstarttls = false\ntimeout = "5s"\n')
    if webhook:
        text += f'[[alert.webhook]]\nurl = "{webhook}"\ntimeout = "5s"\n'
    return text


def journal(unit: str, invocation: str = "") -> str:
    match = [f"_SYSTEMD_INVOCATION_ID={invocation}"] if invocation else ["-u", unit]
    return subprocess.run(["journalctl", "--no-pager", "-o", "cat", *match],
                          capture_output=True, text=True, timeout=30).stdout


def queued() -> list[str]:
    return sorted(p.name for p in QUEUE.glob("q-*.json")) if QUEUE.is_dir() else []


@pytest.fixture(autouse=True)
def clean_base() -> Iterator[None]:
    yield
    shutil.rmtree(BASE, ignore_errors=True)


@pytest.fixture
def alert_template() -> Iterator[None]:
    """The repo's sdwatch-alert@.service, run from this checkout by this interpreter."""
    shutil.copy(REPO / "units" / ALERT_TEMPLATE, pathlib.Path(UNIT_DIR, ALERT_TEMPLATE))
    dropin = pathlib.Path(UNIT_DIR, f"{ALERT_TEMPLATE}.d")
    dropin.mkdir(exist_ok=True)
    # the packaged unit runs /usr/bin/sdwatch and queues in /var/lib/sdwatch (StateDirectory=)
    (dropin / "50-test.conf").write_text(
        f"[Service]\nExecStart=\nExecStart={PY} alert --unit %i\n"
        f"Environment=PYTHONPATH={REPO} SDWATCH_CONFIG={CONFIG}\nReadWritePaths={BASE}\n")
    systemctl("daemon-reload")
    yield
    shutil.rmtree(dropin)
    pathlib.Path(UNIT_DIR, ALERT_TEMPLATE).unlink()
    systemctl("daemon-reload")


@pytest.fixture
def hooked() -> Iterator[Callable[..., str]]:
    """Install hooks with the CLI (as a user would); remove them afterwards."""
    units: list[str] = []

    def install(unit: str, *flags: str) -> str:
        r = sdwatch("hook", "install", unit, *flags, env=HOOK_ENV)
        assert r.returncode == 0, r.stderr
        units.append(unit)
        return r.stdout

    yield install
    for unit in units:
        sdwatch("hook", "remove", unit, env=HOOK_ENV)


def wait_oneshot_done(unit: str) -> None:
    wait_for(lambda: show(unit, "ExecMainExitTimestampMonotonic") not in ("", "0")
             and show(unit, "ActiveState") in ("inactive", "failed"), timeout=60,
             what=f"{unit} finished")


def test_failed_unit_sends_one_email_and_one_webhook_with_its_journal(
        make_unit, alert_template, hooked) -> None:
    smtp, http = SmtpReceiver(), HttpReceiver()
    try:
        write_config(channels(smtp.port, http.url()))
        marker = f"sdw-marker-{uuid.uuid4().hex}"
        name = make_unit(f"ExecStart=/bin/sh -c 'echo {marker}; exit 3'", start=False)
        hooked(name, "--on-failure")
        assert show(name, "OnFailure") == f"sdwatch-alert@{name}.service"
        systemctl("start", name, check=False)
        alert = f"sdwatch-alert@{name}.service"
        wait_oneshot_done(alert)
        assert show(alert, "Result") == "success", journal(alert)
        assert (len(smtp.messages), len(http.requests)) == (1, 1), journal(alert)
    finally:
        smtp.stop()
        http.stop()
    body = smtp.messages[0].get_content()
    assert smtp.messages[0]["Subject"].endswith(f": {name} failed")
    assert marker in body and "result: exit-code" in body and "exit_code: 3" in body
    data = http.requests[0]["json"]
    assert data["event"] == "failed" and data["unit"] == name
    assert data["details"]["exit_code"] == 3 and data["details"]["restarts_systemd"] == 0
    assert any(line.endswith(marker) for line in data["details"]["journal"])
    assert data["details"]["invocation_id"] == show(name, "InvocationID")
    assert queued() == []


def listener_unit(port: int, delay: float, started: pathlib.Path) -> str:
    """A service that answers on ``port`` only ``delay`` seconds after it started."""
    code = (f"import socket, time; time.sleep({delay}); s = socket.socket(); "
            f"s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
            f"s.bind(('127.0.0.1', {port})); s.listen(); "
            f"open('{started}', 'w').write(repr(time.time())); time.sleep(3600)")
    return f'ExecStart=/usr/bin/python3 -c "{code}"'


def passed_at(unit: str) -> float:
    m = re.search(r"probes passed at (\d+\.\d+)", journal(unit, show(unit, "InvocationID")))
    assert m, journal(unit)
    return float(m.group(1))


def start_time(unit: str) -> float:
    """ExecMainStartTimestamp as seconds since the epoch, to the microsecond."""
    monotonic = int(show(unit, "ExecMainStartTimestampMonotonic")) / 1e6
    assert monotonic > 0, f"{unit} never started"
    return monotonic + (time.time() - time.monotonic())  # both are CLOCK_MONOTONIC


def test_wait_healthy_holds_the_start_and_the_units_after_it(make_unit, hooked) -> None:
    port, ready = 18731, BASE / "listening"
    BASE.mkdir(exist_ok=True)
    slow = make_unit(listener_unit(port, 2.0, ready), start=False)
    write_config(f'[unit."{slow}"]\nprobe = [{{ kind = "tcp", name = "port", '
                 f'address = "127.0.0.1:{port}", timeout = "500ms" }}]\n')
    hooked(slow, "--wait-healthy", "--timeout", "30s")
    after = make_unit("ExecStart=/bin/sleep infinity", start=False,
                      unit=f"Wants={slow}\nAfter={slow}")
    systemctl("start", after)  # the start job of `slow` waits for its ExecStartPost
    assert show(slow, "ActiveState") == "active"
    opened = float(ready.read_text())
    probed = passed_at(slow)
    assert opened <= probed <= start_time(after)


def test_wait_healthy_timeout_fails_the_start_naming_the_probe(make_unit, hooked) -> None:
    BASE.mkdir(exist_ok=True)
    mute = make_unit("ExecStart=/bin/sleep infinity", start=False)
    write_config(f'[unit."{mute}"]\nprobe = [{{ kind = "tcp", name = "port", '
                 f'address = "127.0.0.1:18732", timeout = "200ms" }}]\n')
    hooked(mute, "--wait-healthy", "--timeout", "1500ms")
    r = subprocess.run(["systemctl", "start", mute], capture_output=True, timeout=60)
    assert r.returncode != 0
    assert (show(mute, "ActiveState"), show(mute, "Result")) == ("failed", "exit-code")
    log = journal(mute)
    assert f"{mute}: not healthy after 1.5s (" in log and "port (tcp):" in log, log


def test_wait_healthy_holds_mariadb_until_it_answers(make_unit, hooked) -> None:
    if not os.path.exists("/lib/systemd/system/mariadb.service"):
        pytest.fail("mariadb-server is not installed (tests/install-deps)")
    write_config('[unit."mariadb.service"]\nprobe = [{ kind = "mysql", '
                 'socket = "/run/mysqld/mysqld.sock", timeout = "1s" }]\n')
    hooked("mariadb.service", "--wait-healthy", "--timeout", "120s")
    after = make_unit("ExecStart=/bin/sleep infinity", start=False,
                      unit="Wants=mariadb.service\nAfter=mariadb.service")
    try:
        systemctl("start", after)
        probed = passed_at("mariadb.service")
        assert probed <= start_time(after)
        assert sdwatch("check", "mariadb.service", "--config", str(CONFIG)).returncode == 0
    finally:
        systemctl("stop", after, "mariadb.service", check=False)


@pytest.fixture
def daemon() -> Iterator[Callable[[], None]]:
    def start() -> None:
        pathlib.Path(UNIT_DIR, DAEMON).write_text(
            "[Unit]\nDescription=sdwatch under test (alerts)\nStartLimitIntervalSec=0\n"
            f"[Service]\nType=notify\nExecStart={PY} run --config {CONFIG}\n"
            f"Environment=PYTHONPATH={REPO}\nRestart=always\nRestartSec=100ms\n")
        systemctl("daemon-reload")
        systemctl("start", DAEMON)

    yield start
    systemctl("stop", DAEMON, check=False)
    pathlib.Path(UNIT_DIR, DAEMON).unlink(missing_ok=True)
    systemctl("daemon-reload")


def drained_once_more() -> bool:
    """True once the daemon's current run has read the queue and found it empty."""
    return "alert queue: 0 pending" in journal(DAEMON, show(DAEMON, "InvocationID"))


def test_queued_alert_is_delivered_once_by_the_daemon_after_restarts(make_unit, daemon) -> None:
    down = SmtpReceiver()
    port = down.port
    down.stop()  # nothing listens there now: the channel is down
    write_config(channels(port))
    failed = make_unit("ExecStart=/bin/sh -c 'echo going down; exit 7'")
    wait_for(lambda: show(failed, "ActiveState") == "failed", what="unit failed")
    r = sdwatch("alert", "--unit", failed, "--config", str(CONFIG))
    assert (r.returncode, r.stdout) == (0, f"{failed} failed: email:email0: queued\n"), r.stderr
    (entry,) = queued()
    daemon()
    systemctl("restart", DAEMON)
    assert queued() == [entry]
    smtp = SmtpReceiver(port=port)
    try:
        wait_for(lambda: smtp.messages and not queued(), timeout=30, what="delivered")
        systemctl("restart", DAEMON)
        wait_for(drained_once_more, timeout=30, what="a drain after the restart")
        assert len(smtp.messages) == 1
    finally:
        smtp.stop()
    msg = smtp.messages[0]
    assert msg["Message-ID"] == f"<sdwatch.{entry[2:-5]}@{msg['Message-ID'].split('@')[1]}"
    assert "going down" in msg.get_content() and "exit_code: 7" in msg.get_content()
    assert not list(QUEUE.iterdir())  # no markers, no temp files


def test_hook_install_and_remove_leave_no_trace(make_unit) -> None:
    before = sorted(os.listdir(UNIT_DIR))
    name = make_unit("ExecStart=/bin/sleep infinity", start=False)
    r = sdwatch("hook", "install", name, "--on-failure", "--wait-healthy", env=HOOK_ENV)
    assert r.returncode == 0, r.stderr
    dropin = pathlib.Path(UNIT_DIR, f"{name}.d", "50-sdwatch.conf")
    assert show(name, "DropInPaths") == str(dropin)
    assert show(name, "OnFailure") == f"sdwatch-alert@{name}.service"
    assert "wait-healthy" in show(name, "ExecStartPost")
    again = sdwatch("hook", "install", name, "--on-failure", "--wait-healthy", env=HOOK_ENV)
    assert again.stdout == f"already installed: {dropin}\n"
    listed = sdwatch("hook", "list", env=HOOK_ENV).stdout
    assert f"{name}  on-failure wait-healthy  {dropin}\n" in listed
    r = sdwatch("hook", "remove", name, env=HOOK_ENV)
    assert r.returncode == 0 and r.stdout == f"removed: {dropin}\n"
    assert (show(name, "DropInPaths"), show(name, "OnFailure"), show(name, "ExecStartPost")) \
        == ("", "", "")
    assert sorted(os.listdir(UNIT_DIR)) == sorted([*before, name])


@pytest.mark.parametrize("name", ["../x.service", "a/b.service", "", "a" * 292 + ".service",
                                  "../../etc/systemd/system/x"])
def test_malicious_unit_names_are_refused(name: str) -> None:
    before = sorted(os.listdir(UNIT_DIR))
    for args in (("hook", "install", name, "--on-failure"), ("hook", "remove", name),
                 ("alert", "--unit", name)):
        r = sdwatch(*args, env=HOOK_ENV)
        assert r.returncode == 2 and r.stderr.startswith("sdwatch: "), (args, r.stderr)
    assert sorted(os.listdir(UNIT_DIR)) == before
    assert json.dumps(name) not in json.dumps(os.listdir(UNIT_DIR))
