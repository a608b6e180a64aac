"""The daemon's API inside a real systemd: the CLI over its socket, promtool on live /metrics,
a real Prometheus scraping it and a real Alertmanager delivering its alert, the page in
headless Chromium, and hostile clients that must not disturb the daemon."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from typing import Iterator

import pytest
from alertrx import HttpReceiver
from sdcheck import sdwatch, show, wait_for
from test_daemon import (  # noqa: F401  (fixtures)
    BASE,
    CONFIG,
    DAEMON,
    REPO,
    daemon,
    main_pid,
    memcached,
)

PORT = 19184
SOCK = BASE / "run" / "sdwatch.sock"
EXAMPLES = REPO / "examples" / "prometheus"
MEMCACHED = ('[unit."memcached.service"]\ngrace = "500ms"\nprobe = [{ kind = "memcached", '
             'address = "127.0.0.1:11211", interval = "500ms", timeout = "500ms", '
             'failures = 2 }]\n')


def listen(extra: str = "") -> str:
    return f'listen = "127.0.0.1:{PORT}"\n{extra}'


def get(path: str, host: str = "127.0.0.1", **headers: str) -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", headers={"Host": host,
                                                                          **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def post(path: str, **headers: str) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", method="POST", data=b"",
                                 headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def api_json(path: str) -> dict:
    return json.loads(get(path)[1])


def test_cli_over_the_socket_and_control(daemon, memcached) -> None:  # noqa: F811
    daemon(listen() + MEMCACHED)
    wait_for(lambda: SOCK.exists(), what="the API socket")
    wait_for(lambda: api_json("/api/v1/units/memcached.service").get("health") == "healthy",
             timeout=15, what="memcached healthy over the API")
    wait_for(lambda: api_json("/api/v1/units/memcached.service")["probes"][0]["last"],
             what="a probe result over the API")
    r = sdwatch("status", "--json", "--config", str(CONFIG))
    data = json.loads(r.stdout)
    assert r.returncode == 0 and data["daemon"]["path"] == str(SOCK)  # answered by the daemon
    served = api_json("/api/v1/status")
    assert data["schema"] == served["schema"] == "sdwatch.status/1"
    assert [(u["name"], u["health"]) for u in data["units"]] == [
        (u["name"], u["health"]) for u in served["units"]] == [("memcached.service", "healthy")]
    r = sdwatch("status", "memcached.service", "--config", str(CONFIG))
    assert "Service 'memcached.service'" in r.stdout and "last result" in r.stdout

    # control: over TCP only with a token (none configured), over the socket as root
    assert post("/api/v1/units/memcached.service/restart") == 403
    old = main_pid("memcached.service")
    r = sdwatch("restart", "memcached.service", "--config", str(CONFIG))
    assert r.returncode == 0, r.stderr
    wait_for(lambda: main_pid("memcached.service") not in (0, old), what="restarted")
    wait_for(lambda: api_json("/api/v1/units/memcached.service")["restarts_sdwatch"] == 1,
             what="counted as sdwatch's")
    r = sdwatch("unmonitor", "memcached.service", "--config", str(CONFIG))
    assert r.returncode == 0 and "now unmonitored" in r.stdout
    assert get("/api/v1/units/memcached.service")[0] == 429
    r = sdwatch("monitor", "memcached.service", "--config", str(CONFIG))
    assert r.returncode == 0 and r.stdout.split("now ")[1].strip() in ("healthy", "starting")
    wait_for(lambda: get("/api/v1/units/memcached.service")[0] == 200, what="watched again")
    r = sdwatch("monitor", "nope.service", "--config", str(CONFIG))
    assert r.returncode == 2 and "not watched" in r.stderr
    assert get("/api/v1/units/nope.service")[0] == 404

    # the live /metrics, judged by promtool, once a probe has passed since the restart (the
    # probe that ran while memcached restarted failed; the next may be an interval away)
    passing = b'probe_success{kind="memcached",probe="memcached",unit="memcached.service"} 1.0'
    code, body = wait_for(lambda: (r := get("/metrics"))[0] == 200 and passing in r[1] and r,
                          what="a passing probe on /metrics")
    out = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
    assert out.returncode == 0, out.stdout + out.stderr
    # the type label is the service's Type=, as node_exporter gives it (memcached's: simple)
    assert b'node_systemd_unit_state{name="memcached.service",state="active",type="simple"} 1.0' \
        in body


def test_token_lets_tcp_clients_act(daemon, memcached, tmp_path) -> None:  # noqa: F811
    token = BASE / "api.token"
    BASE.mkdir(exist_ok=True)
    token.write_text("s3cret-token\n")
    token.chmod(0o600)
    daemon(listen(f'token_file = "{token}"\n') + MEMCACHED)
    wait_for(lambda: SOCK.exists(), what="the API socket")
    assert post("/api/v1/units/memcached.service/unmonitor",
                Authorization="Bearer wrong") == 403
    assert post("/api/v1/units/memcached.service/unmonitor",
                Authorization="Bearer s3cret-token") == 202
    assert api_json("/api/v1/units/memcached.service")["health"] == "unmonitored"
    assert b"s3cret" not in get("/metrics")[1] + get("/api/v1/status")[1] + get("/")[1]
    token.unlink()


def test_hostile_clients_leave_the_daemon_on_schedule(daemon, memcached) -> None:  # noqa: F811
    # stats: a new connection each time, where a NOOP keeps one (it would count as an fd here)
    fresh = MEMCACHED.replace('kind = "memcached", ', 'kind = "memcached", stats = true, ')
    daemon(listen() + fresh, watchdog="2s")
    wait_for(lambda: SOCK.exists(), what="the API socket")
    # healthy: the memcached probe has passed, so the connection it keeps is open already
    wait_for(lambda: get("/api/v1/units/memcached.service")[0] == 200, what="healthy")
    pid = main_pid(DAEMON)
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    held = []
    for i in range(1500):  # idle: never send a byte
        s = socket.socket(socket.AF_UNIX if i % 2 else socket.AF_INET)
        s.settimeout(2)
        try:
            s.connect(str(SOCK) if i % 2 else ("127.0.0.1", PORT))
        except OSError:
            s.close()
            continue
        held.append(s)
    for data in (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 100000 + b"\r\n\r\n",
                 b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + os.urandom(300),
                 b"GET / HTTP/1.1\r\n"):  # slow headers: the rest never comes
        s = socket.create_connection(("127.0.0.1", PORT), timeout=2)
        try:
            s.sendall(data)
        except OSError:
            pass  # cut off while sending: fine
        held.append(s)
    time.sleep(1.5)  # idle for over a second: a new client may take an idle one's place
    assert get("/", host="attacker.example:19184")[0] == 421
    assert get("/api/v1/units/memcached.service")[0] == 200
    time.sleep(8)  # idle connections time out; the watchdog (2s) would have fired by now
    for s in held:
        s.close()
    assert main_pid(DAEMON) == pid and int(show(DAEMON, "NRestarts")) == 0
    assert show(DAEMON, "ActiveState") == "active"
    assert get("/api/v1/units/memcached.service")[0] == 200
    wait_for(lambda: len(os.listdir(f"/proc/{pid}/fd")) <= fds, what="no descriptor leaked")
    lateness = json.loads((BASE / "run" / "status.json").read_text())["scheduler"]
    assert lateness["late_p99_ms"] < 1000, lateness


# -- Prometheus, Alertmanager, Chromium ----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fleet(tmp_path: pathlib.Path) -> Iterator[dict]:
    """A real Alertmanager with a webhook receiver, and a real Prometheus scraping the
    daemon's TCP address every second with the shipped rules (their ``for`` shortened)."""
    for tool in ("prometheus", "prometheus-alertmanager"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (tests/install-deps)")
    hook = HttpReceiver()
    am_port, prom_port = _free_port(), _free_port()
    (tmp_path / "am.yml").write_text(
        "route:\n  receiver: test\n  group_wait: 1s\n  group_interval: 1s\n"
        f"receivers:\n  - name: test\n    webhook_configs:\n      - url: {hook.url('/am')}\n")
    rules = (EXAMPLES / "sdwatch-rules.yml").read_text()
    for long in ("for: 2m", "for: 5m", "for: 10m"):
        rules = rules.replace(long, "for: 0s")
    (tmp_path / "rules.yml").write_text(rules)
    (tmp_path / "prom.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files: [{tmp_path / 'rules.yml'}]\n"
        f"alerting:\n  alertmanagers:\n    - static_configs:\n"
        f"        - targets: ['127.0.0.1:{am_port}']\n"
        f"scrape_configs:\n  - job_name: sdwatch\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{PORT}']\n")
    am = subprocess.Popen(
        ["prometheus-alertmanager", f"--config.file={tmp_path / 'am.yml'}",
         f"--storage.path={tmp_path / 'am'}", f"--web.listen-address=127.0.0.1:{am_port}",
         "--cluster.listen-address="], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    prom = subprocess.Popen(
        ["prometheus", f"--config.file={tmp_path / 'prom.yml'}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield {"prometheus": f"http://127.0.0.1:{prom_port}", "hook": hook}
    finally:
        for p in (prom, am):
            p.send_signal(signal.SIGTERM)
            p.wait(30)
        hook.stop()


def promql(base: str, query: str) -> list:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.loads(r.read())["data"]["result"]
    except OSError:
        return []


def test_prometheus_sees_a_hang_and_alertmanager_delivers(daemon, memcached, make_unit,  # noqa: F811
                                                          fleet) -> None:
    broken = make_unit("ExecStart=/bin/sleep infinity")
    daemon(listen() + MEMCACHED + f'[unit."{broken}"]\ngrace = "100ms"\n'
           'probe = [{ kind = "tcp", address = "127.0.0.1:9", interval = "300ms", '
           'failures = 1 }]\nrestart_limit = { restarts = 1, within = "10m" }\n')
    prom = fleet["prometheus"]
    wait_for(lambda: promql(prom, 'probe_success{unit="memcached.service"} == 1'), timeout=30,
             what="Prometheus scraping sdwatch")
    os.kill(main_pid("memcached.service"), signal.SIGSTOP)
    wait_for(lambda: promql(prom, 'min_over_time(probe_success{unit="memcached.service"}[1m])'
                                  ' == 0'), timeout=30, what="probe_success 0 in Prometheus")
    wait_for(lambda: promql(prom, 'sdwatch_unit_restarts_total{name="memcached.service"} >= 1'),
             timeout=30, what="the restart counted in Prometheus")
    # the unit sdwatch gives up on: the shipped rule fires, Alertmanager delivers it
    hook = fleet["hook"]

    def delivered() -> list:
        return [a for r in hook.requests for a in r["json"].get("alerts", [])
                if a["labels"].get("alertname") == "SdwatchGaveUp"]

    alert = wait_for(delivered, timeout=60, what="SdwatchGaveUp delivered to the webhook")[0]
    assert alert["labels"]["name"] == broken and alert["status"] == "firing"
    assert alert["annotations"]["description"] == f"After fixing it: sdwatch monitor {broken}"


def test_page_in_headless_chromium(daemon, memcached, make_unit) -> None:  # noqa: F811
    browser = shutil.which("chromium")
    if browser is None:
        pytest.fail("chromium is not installed (tests/install-deps)")
    failing = make_unit("ExecStart=/bin/sleep infinity", name="puma.service")
    daemon(listen() + MEMCACHED + f'[unit."{failing}"]\ngrace = "100ms"\naction = "alert"\n'
           'probe = [{ kind = "http", url = "http://127.0.0.1:9/up", interval = "300ms", '
           'failures = 1 }]\n')
    wait_for(lambda: api_json("/api/v1/status")["units"] and all(
        u["health"] in ("healthy", "failing") and u["probes"][0]["last"]
        for u in api_json("/api/v1/status")["units"]), timeout=20, what="both judged")
    profile = tempfile.mkdtemp(prefix="sdwatch-chromium-")
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", f"--user-data-dir={profile}"]
    url = f"http://127.0.0.1:{PORT}/"
    try:
        dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True,
                             timeout=120).stdout
        assert 'data-unit="memcached.service" data-health="healthy"' in dom, dom[:2000]
        assert 'data-unit="puma.service" data-health="failing"' in dom
        # the README's picture is refreshed on request only: a test run leaves the tree clean
        shot = (REPO / "docs" if os.environ.get("SDWATCH_UPDATE_SCREENSHOT") == "1"
                else pathlib.Path(profile)) / "status-page.png"
        subprocess.run([*flags, "--hide-scrollbars", "--window-size=900,640",
                        f"--screenshot={shot}", url], capture_output=True, timeout=120)
        assert shot.stat().st_size > 5000
    finally:
        shutil.rmtree(profile, ignore_errors=True)
