"""The origin stack in a real systemd: Debian's nginx, MariaDB and memcached, puma serving a Rack
app on a unix socket, Sphinx (searchd) and a worker writing a heartbeat, each ``Restart=no`` so
that only sdwatch restarts anything, watched by ``sdwatch run`` with the plain config below.

Shared by tests/systemd/test_stack.py (asserts recovery) and bench/stack (prints the table).
Every check of "answering" here is our own small client, independent of sdwatch's probes.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable

REPO = pathlib.Path(__file__).resolve().parents[2]
UNIT_DIR = pathlib.Path("/run/systemd/system")
BASE = pathlib.Path("/run/sdw-stack")
DAEMON = "sdwatch-stack.service"
PUMA_SOCK = BASE / "puma.sock"
HEARTBEAT = BASE / "worker.heartbeat"
UNITS = ("nginx.service", "mariadb.service", "memcached.service", "puma.service",
         "sphinxsearch.service", "delayed-job.service")

# The plain config: one probe per unit at 1s / 1s / 2 failures, a memory limit on the worker.
CONFIG = f"""\
[sdwatch]
interval = "1s"
timeout = "1s"
failures = 2
state_dir = "{BASE}/state"
runtime_dir = "{BASE}/run"

[unit."nginx.service"]
probe = [{{ kind = "http", url = "http://127.0.0.1/" }}]

[unit."mariadb.service"]
probe = [{{ kind = "mysql", socket = "/run/mysqld/mysqld.sock" }}]

[unit."memcached.service"]
probe = [{{ kind = "memcached", address = "127.0.0.1:11211" }}]

[unit."puma.service"]
probe = [{{ kind = "http", url = "http+unix://{PUMA_SOCK}/up" }}]

[unit."sphinxsearch.service"]
probe = [{{ kind = "mysql", address = "127.0.0.1:9306" }}]

[unit."delayed-job.service"]
probe = [{{ kind = "file", path = "{HEARTBEAT}", max_age = "2s" }}]
memory = {{ above = "150M", then = "restart" }}
"""

RACK_APP = 'run ->(env) { [200, { "content-type" => "text/plain" }, ["up\\n"]] }\n'

# A job worker's loop: a heartbeat every 200 ms; SIGUSR1 stalls it (alive, no more beats),
# SIGUSR2 makes it leak 16 MiB per beat.
WORKER = """\
$stdout.sync = true
beat = ARGV.fetch(0)
stalled = false
leaking = false
hoard = []
Signal.trap("USR1") { stalled = true }
Signal.trap("USR2") { leaking = true }
puts "worker #{Process.pid} working"
loop do
  unless stalled
    File.write("#{beat}.tmp", Time.now.to_f.to_s)
    File.rename("#{beat}.tmp", beat)
  end
  hoard << ("x" * (16 << 20)) if leaking
  sleep 0.2
end
"""

SPHINX_CONF = f"""\
index rt
{{
    type = rt
    path = {BASE}/sphinx/rt
    rt_field = title
    rt_attr_uint = gid
}}
searchd
{{
    listen = 127.0.0.1:9312
    listen = 127.0.0.1:9306:mysql41
    log = {BASE}/sphinx/searchd.log
    query_log = {BASE}/sphinx/query.log
    pid_file = {BASE}/sphinx/searchd.pid
    binlog_path =
    workers = threads
}}
"""

# Units as an application's deployment writes them (puma's and Sphinx's own docs); Debian's
# units get a drop-in: Restart=no, so that a recovery is sdwatch's and nothing else's.
OWN_UNITS = {
    "puma.service": f"""\
[Unit]
Description=Puma serving a Rack app (stack test)
[Service]
WorkingDirectory={BASE}/app
ExecStart=/usr/bin/puma --bind unix://{PUMA_SOCK} --threads 1:4 {BASE}/app/config.ru
Restart=no
""",
    "sphinxsearch.service": f"""\
[Unit]
Description=Sphinx search daemon (stack test)
[Service]
ExecStart=/usr/bin/searchd --nodetach --config {BASE}/sphinx/sphinx.conf
Restart=no
""",
    "delayed-job.service": f"""\
[Unit]
Description=Job worker writing a heartbeat (stack test)
[Service]
ExecStart=/usr/bin/ruby {BASE}/worker.rb {HEARTBEAT}
Restart=no
""",
}
DEBIAN_UNITS = ("nginx.service", "mariadb.service", "memcached.service")
DROP_IN = "sdw-stack.conf"


def sh(*args: str, check: bool = True, timeout: float = 120) -> str:
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def show(unit: str, prop: str) -> str:
    return sh("systemctl", "show", "-p", prop, "--value", unit).strip()


def journal(unit: str = DAEMON, since: str = "") -> str:
    args = ["journalctl", "-u", unit, "-o", "short-monotonic", "--no-pager"]
    return sh(*args, *(["--since", since] if since else []), check=False, timeout=30)


# -- our own clients: does the service answer, right now? ---------------------------------------

def _exchange(address: tuple[str, int] | str, send: bytes, timeout: float = 0.15) -> bytes:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(address)
        if send:
            s.sendall(send)
        return s.recv(256)


def _answers(address: tuple[str, int] | str, send: bytes, check: Callable[[bytes], bool]) -> bool:
    try:
        return check(_exchange(address, send))
    except OSError:
        return False


def _http_ok(reply: bytes) -> bool:
    return reply.startswith(b"HTTP/1.1 200")


def _mysql_greeting(reply: bytes) -> bool:
    return len(reply) > 4 and reply[4] == 10  # protocol version 10 after the packet header


CHECKS: dict[str, Callable[[], bool]] = {
    "nginx.service": lambda: _answers(("127.0.0.1", 80), b"GET / HTTP/1.1\r\nHost: x\r\n"
                                      b"Connection: close\r\n\r\n", _http_ok),
    "mariadb.service": lambda: _answers("/run/mysqld/mysqld.sock", b"", _mysql_greeting),
    "memcached.service": lambda: _answers(("127.0.0.1", 11211), b"version\r\n",
                                          lambda r: r.startswith(b"VERSION")),
    "puma.service": lambda: _answers(str(PUMA_SOCK), b"GET /up HTTP/1.1\r\nHost: x\r\n"
                                     b"Connection: close\r\n\r\n", _http_ok),
    "sphinxsearch.service": lambda: _answers(("127.0.0.1", 9306), b"", _mysql_greeting),
    "delayed-job.service": lambda: _heartbeat_age() < 0.5,
}


def _heartbeat_age() -> float:
    try:
        return time.time() - HEARTBEAT.stat().st_mtime
    except OSError:
        return float("inf")


def answers(unit: str) -> bool:
    return CHECKS[unit]()


# -- the daemon's own view ----------------------------------------------------------------------

def status() -> dict:
    try:
        return json.loads((BASE / "run" / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def restarts() -> dict[str, int]:
    """Restarts (and starts) by sdwatch per unit, as its status.json says."""
    return {n: u.get("restarts_by_sdwatch", 0) for n, u in status().get("units", {}).items()}


def healthy(unit: str) -> bool:
    return status().get("units", {}).get(unit, {}).get("health") == "healthy"


# -- set up and tear down -----------------------------------------------------------------------

class StackError(AssertionError):
    """A fault the stack did not recover from: names it, with sdwatch's journal."""

    def __init__(self, fault: str, what: str) -> None:
        super().__init__(f"{fault}: {what}\n--- sdwatch's journal ---\n{journal()[-12000:]}")


def wait(predicate: Callable[[], object], timeout: float, fault: str, what: str,
         step: float = 0.05) -> float:
    """Poll until ``predicate()`` is truthy; return the seconds it took; raise StackError."""
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise StackError(fault, f"{what}: not within {timeout:g}s")
        time.sleep(step)
    return time.monotonic() - t0


def install() -> None:
    """Write the app, the worker, Sphinx's config and the units; start the six services."""
    for sub in ("app", "sphinx/rt", "state", "run"):
        (BASE / sub).mkdir(parents=True, exist_ok=True)
    (BASE / "app" / "config.ru").write_text(RACK_APP)
    (BASE / "worker.rb").write_text(WORKER)
    (BASE / "sphinx" / "sphinx.conf").write_text(SPHINX_CONF)
    for name, body in OWN_UNITS.items():
        (UNIT_DIR / name).write_text(body)
    for name in DEBIAN_UNITS:
        d = UNIT_DIR / f"{name}.d"
        d.mkdir(exist_ok=True)
        (d / DROP_IN).write_text("[Service]\nRestart=no\n")
    sh("systemctl", "daemon-reload")
    sh("systemctl", "start", *UNITS, timeout=300)
    for unit in UNITS:
        wait(lambda u=unit: answers(u), 60, "set-up", f"{unit} answering")


def start_sdwatch() -> None:
    """Start (or restart) sdwatch as a Type=notify unit with the plain config."""
    (BASE / "sdwatch.toml").write_text(CONFIG)
    (UNIT_DIR / DAEMON).write_text(
        "[Unit]\nDescription=sdwatch watching the stack\n[Service]\nType=notify\n"
        f"ExecStart={sys.executable} -m sdwatch run --verbose --config {BASE}/sdwatch.toml\n"
        f"Environment=PYTHONPATH={REPO}\nWatchdogSec=10s\n")
    sh("systemctl", "daemon-reload")
    sh("systemctl", "restart", DAEMON)  # returns once READY=1 came


def remove() -> None:
    sh("systemctl", "stop", DAEMON, *UNITS, check=False, timeout=300)
    sh("systemctl", "reset-failed", DAEMON, *UNITS, check=False)
    for name in (DAEMON, *OWN_UNITS):
        (UNIT_DIR / name).unlink(missing_ok=True)
    for name in DEBIAN_UNITS:
        (UNIT_DIR / f"{name}.d" / DROP_IN).unlink(missing_ok=True)
    sh("systemctl", "daemon-reload", check=False)
    sh("rm", "-rf", str(BASE), check=False)


# -- faults ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Recovery:
    fault: str
    unit: str
    seconds: float  # fault -> answering again (our own client)
    path: str  # how the restart's stop went, from sdwatch's log


def hang(unit: str) -> None:
    """Freeze every process of the unit (SIGSTOP to its cgroup)."""
    sh("systemctl", "kill", "--signal=SIGSTOP", unit)


def main_pid(unit: str) -> int:
    return int(show(unit, "MainPID"))


def _stop_path(unit: str, since_cursor: str) -> str:
    log = sh("journalctl", "-u", DAEMON, "-o", "cat", "--no-pager", "--after-cursor",
             since_cursor, check=False)
    for line in log.splitlines():
        if line.startswith(f"{unit}: ") and "SIGKILL to its cgroup" in line:
            return "killed after budget"
        if line.startswith(f"{unit}: stopped cleanly"):
            return "clean stop"
    return "started" if f"{unit}: start (" in log else "-"


def cursor() -> str:
    out = sh("journalctl", "-u", DAEMON, "-n", "1", "-o", "json", "--no-pager", check=False)
    try:
        return json.loads(out.splitlines()[-1])["__CURSOR"]
    except (IndexError, ValueError, KeyError):
        return ""


def recover(fault: str, unit: str, inflict: Callable[[], None], timeout: float = 30.0,
            silences: bool = True) -> Recovery:
    """Inflict a fault on a healthy unit; wait until a new process of it answers, restarted by
    sdwatch exactly once and no other unit restarted; return the time it took.  ``silences``:
    the fault stops the unit answering (a leak does not)."""
    before, pid, mark = restarts(), main_pid(unit), cursor()
    t0 = time.monotonic()
    inflict()
    if silences:
        wait(lambda: not answers(unit), 10, fault, f"{unit} to stop answering", step=0.02)
    wait(lambda: main_pid(unit) not in (0, pid) and answers(unit), timeout, fault,
         f"{unit} answering again from a new process", step=0.02)
    seconds = time.monotonic() - t0
    wait(lambda: restarts().get(unit, 0) > before.get(unit, 0) and healthy(unit), 30, fault,
         f"sdwatch to count its restart of {unit} and see it healthy again")
    after = restarts()
    if after.get(unit, 0) - before.get(unit, 0) != 1:
        raise StackError(fault, f"{unit}: restarted {after.get(unit, 0) - before.get(unit, 0)} "
                         "times by sdwatch, expected once")
    others = {u: after.get(u, 0) - before.get(u, 0) for u in UNITS if u != unit}
    if any(others.values()):
        raise StackError(fault, f"false restarts of other units: {others}")
    return Recovery(fault, unit, seconds, _stop_path(unit, mark))


def run_faults(report: Callable[[Recovery], None] = lambda r: None) -> list[Recovery]:
    """The fault sequence; each recovery is reported as it completes.  Raise StackError."""
    done: list[Recovery] = []

    def record(r: Recovery) -> None:
        done.append(r)
        report(r)

    for unit in UNITS:
        wait(lambda u=unit: healthy(u), 60, "start of sdwatch", f"{unit} healthy")
    # a hang of each service
    for unit in UNITS:
        record(recover(f"hang of {unit.split('.')[0]}", unit, lambda u=unit: hang(u)))
    # a hang right after sdwatch (re)started: no window opens for units up long ago
    start_sdwatch()
    record(recover("hang right after sdwatch restarted", "memcached.service",
                   lambda: hang("memcached.service")))
    # a second fault inside what used to be the 30 s grace window of the first one's restart
    record(recover("hang of puma, again", "puma.service", lambda: hang("puma.service")))
    record(recover("second hang inside the old grace", "puma.service",
                   lambda: hang("puma.service")))
    # the worker stalls (alive, no heartbeat), then the restarted one leaks memory
    worker = "delayed-job.service"
    record(recover("worker stalls", worker, lambda: os.kill(main_pid(worker), signal.SIGUSR1)))
    record(recover("restarted worker leaks memory", worker,
                   lambda: os.kill(main_pid(worker), signal.SIGUSR2), silences=False))
    # the main process dies and systemd records success (SIGTERM is a clean exit to it)
    sphinx = "sphinxsearch.service"
    record(recover("searchd dies, Result=success", sphinx,
                   lambda: os.kill(main_pid(sphinx), signal.SIGTERM)))
    # an admin's stop stays a stop
    before = restarts()
    sh("systemctl", "stop", "memcached.service")
    time.sleep(5)
    if show("memcached.service", "ActiveState") != "inactive" or restarts() != before:
        raise StackError("admin's systemctl stop", "memcached did not stay stopped")
    sh("systemctl", "start", "memcached.service")
    wait(lambda: healthy("memcached.service"), 30, "admin's systemctl start",
         "memcached healthy")
    # a healthy period: nothing restarted
    before = restarts()
    time.sleep(10)
    if restarts() != before or not all(answers(u) for u in UNITS):
        raise StackError("healthy period", f"restarts {before} -> {restarts()}")
    return done


def table(done: list[Recovery]) -> str:
    """The recovery times as a text table with median and worst."""
    lines = [f"{'fault':40} {'unit':22} {'fault -> answering':>18}  restart's stop"]
    lines += [f"{r.fault:40} {r.unit:22} {r.seconds:17.2f}s  {r.path}" for r in done]
    secs = [r.seconds for r in done]
    if secs:
        lines.append(f"median {statistics.median(secs):.2f}s  worst {max(secs):.2f}s  "
                     f"(n={len(secs)}, 1s interval / 1s timeout / 2 failures)")
    return "\n".join(lines)
