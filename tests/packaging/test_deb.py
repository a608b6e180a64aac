"""The Debian package, installed for real in a throw-away systemd (tests/harness/sdtest).

Runs with Debian's own python3 and pytest: ``make test-deb`` builds dist/sdwatch_*.deb, boots the
harness and runs this module inside it.  The tests run in file order and share one
installation: install, the daemon is up, the CLI works, reload, a SIGSTOPped memcached gets
restarted, upgrade, remove, purge.  SDWATCH_DEB=path tests another .deb instead, e.g. one built
on the other supported Debian release.

The harness sees the host's tree through a throw-away overlay, so installing changes only the
overlay's dpkg database and /etc; the ``package`` fixture still refuses to run over an existing
installation and purges at the end: purge is part of what is tested.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import pytest

pytestmark = pytest.mark.systemd

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
UNIT = "sdwatch.service"
TEST_CONF = Path("/etc/sdwatch/conf.d/50-packaging-test.toml")
STATUS_JSON = Path("/run/sdwatch/status.json")
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8",
       "DEBIAN_FRONTEND": "noninteractive", "HOME": "/root"}
APT = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=300"]
MAX_EXPOSURE = 3.0
# systemd's system unit directories for packages: one directory under merged /usr, two names
UNIT_DIRS = ("/usr/lib/systemd/system", "/lib/systemd/system")
# what the package builder writes as the script's first line (Debian 13: "#! /usr/bin/python3")
SHEBANG = re.compile(r"#! ?/usr/bin/python3\n")
# memcached answers a binary NOOP (opcode 0x0a) with a 24-byte header, status 0
NOOP = bytes([0x80, 0x0A]) + bytes(22)

# What purge must remove.  Debian policy keeps nothing of a purged package: conffiles and the
# package's own state go too (a plain remove keeps them; see test_remove_keeps_...).
LEFTOVER_GLOBS = [
    "/etc/sdwatch", "/var/lib/sdwatch", "/run/sdwatch", "/usr/bin/sdwatch",
    "/lib/systemd/system/sdwatch*", "/usr/lib/systemd/system/sdwatch*",
    "/usr/lib/python3/dist-packages/sdwatch*", "/usr/share/doc/sdwatch",
    "/usr/share/man/man1/sdwatch.1.gz", "/usr/share/man/man5/sdwatch.toml.5.gz",
    "/usr/share/bash-completion/completions/sdwatch",
    "/etc/systemd/system/*.wants/sdwatch*", "/var/lib/systemd/deb-systemd-helper-enabled/*sdwatch*",
    "/var/lib/systemd/deb-systemd-helper-enabled/*/sdwatch*",
]

MEMCACHED_CONF = """\
# written by tests/packaging/test_deb.py; removed with the package
[unit."memcached.service"]
grace = "1s"
restart_limit = { restarts = 3, within = "10m", then = "alert" }

[[unit."memcached.service".probe]]
kind = "memcached"
address = "127.0.0.1:11211"
interval = "1s"
timeout = "500ms"
failures = 2

[[unit."memcached.service".probe]]
kind = "exec"
name = "exec-in-sandbox"
command = ["/bin/sh", "-c", "exit 0"]
interval = "1s"
timeout = "900ms"
failures = 2
"""


def run(*cmd: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run cmd from / with a plain Debian environment; on failure raise with its output."""
    r = subprocess.run(cmd, cwd="/", env=ENV, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}\n--- stdout\n{r.stdout}"
                             f"--- stderr\n{r.stderr}")
    return r


def wait_for(condition: Callable[[], T], what: str, timeout: float = 30.0) -> T:
    """Poll condition until it returns something truthy; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}\n{journal()}")
        time.sleep(0.1)


def show(prop: str, unit: str = UNIT) -> str:
    return run("systemctl", "show", "-P", prop, unit).stdout.strip()


def journal(unit: str = UNIT) -> str:
    return run("journalctl", "-u", unit, "-n", "40", "--no-pager", "-o", "short-monotonic",
               check=False).stdout


def dpkg_warnings(r: subprocess.CompletedProcess) -> list[str]:
    """Return the warnings of an apt-get run ("dpkg: warning: ... not empty so not removed")."""
    return [line for line in (r.stdout + r.stderr).splitlines()
            if "warning:" in line.lower() or line.startswith("W: ")]


def dpkg_status() -> str:
    """Return dpkg's two-letter status of sdwatch ("ii", "rc", ...) or "" when unknown."""
    r = run("dpkg-query", "-W", "-f=${db:Status-Abbrev}", "sdwatch", check=False)
    return r.stdout.strip() if r.returncode == 0 else ""


def leftovers() -> list[str]:
    found = []
    for pattern in LEFTOVER_GLOBS:
        base, _, rest = pattern.partition("*")
        if not rest and "*" not in base:
            if os.path.lexists(pattern):
                found.append(pattern)
            continue
        found += [str(p) for p in Path("/").glob(pattern.lstrip("/")) if os.path.lexists(p)]
    return found


def daemon_status() -> dict:
    try:
        return json.loads(STATUS_JSON.read_text())
    except (OSError, ValueError):
        return {}


def memcached_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 11211), timeout=0.5) as s:
            s.sendall(NOOP)
            reply = s.recv(24)
    except OSError:
        return False
    return len(reply) == 24 and reply[0] == 0x81 and reply[6:8] == b"\0\0"


@pytest.fixture(scope="module")
def package() -> Iterator[Path]:
    """Install dist/sdwatch_*.deb with apt; purge it afterwards whatever happened."""
    given = os.environ.get("SDWATCH_DEB")
    debs = [Path(given).resolve()] if given else sorted(ROOT.glob("dist/sdwatch_*_all.deb"))
    assert len(debs) == 1, f"expected one dist/sdwatch_*_all.deb (make deb), found {debs}"
    assert debs[0].is_file(), f"SDWATCH_DEB={given}: no such file"
    if dpkg_status() not in ("", "un") or os.path.lexists("/etc/sdwatch"):
        pytest.fail("sdwatch is installed (or /etc/sdwatch exists) on this machine; the harness "
                    "shares the host's file system, so this test will not install over it. "
                    "Clean up with: apt-get purge sdwatch; rm -rf /etc/sdwatch /var/lib/sdwatch")
    assert Path("/usr/bin/memcached").exists(), "memcached is needed: run tests/install-deps"
    bound = False
    # Docker-style images ship a policy-rc.d that forbids starting services (there is no init
    # there); inside the harness there is one.  A bind mount lifts the ban in the harness's
    # private mount namespace only; the host's file stays as it is.
    if POLICY_RC_D.exists() and run(str(POLICY_RC_D), UNIT, "start", check=False).returncode:
        run("mount", "--bind", "/bin/true", str(POLICY_RC_D))
        bound = True
    run("systemctl", "start", "memcached.service")
    try:
        run(*APT, "install", "--no-install-recommends", str(debs[0]), timeout=600)
        yield debs[0]
    finally:
        if dpkg_status():
            r = run(*APT, "purge", "sdwatch", check=False, timeout=600)
            if dpkg_status():
                run("dpkg", "--purge", "sdwatch", check=False)
            print(r.stdout, r.stderr)
        # we checked that neither existed before: never leave them on the host
        run("rm", "-rf", "/etc/sdwatch", "/var/lib/sdwatch")
        run("systemctl", "stop", "memcached.service", check=False)
        if bound:
            run("umount", str(POLICY_RC_D), check=False)


@pytest.fixture(scope="module")
def watching_memcached(package: Path) -> Iterator[None]:
    """The installed daemon, reloaded with a memcached watch (probe every 1s, 2 failures)."""
    assert memcached_answers(), "memcached.service does not answer on 127.0.0.1:11211"
    TEST_CONF.write_text(MEMCACHED_CONF)
    yield


def test_package_installs_its_files(package: Path) -> None:
    assert dpkg_status() == "ii"
    files = set(run("dpkg", "-L", "sdwatch").stdout.split())
    tracked = run("git", "-C", str(ROOT), "ls-files", "units", check=False).stdout.split()
    names = {Path(u).name for u in tracked if u.endswith(".service")}
    assert "sdwatch.service" in names
    # every unit in one of systemd's unit directories (whichever name this release's debhelper
    # uses), and the file systemd loads sdwatch.service from is the packaged one
    shipped = {Path(f).name: f for f in files if str(Path(f).parent) in UNIT_DIRS}
    assert names <= shipped.keys(), (names, sorted(files))
    assert os.path.samefile(show("FragmentPath"), shipped[UNIT])
    assert {"/usr/bin/sdwatch", "/etc/sdwatch/sdwatch.toml",
            "/usr/share/man/man1/sdwatch.1.gz", "/usr/share/man/man5/sdwatch.toml.5.gz",
            "/usr/share/bash-completion/completions/sdwatch"} <= files
    assert "/etc/sdwatch/sdwatch.toml" in run("dpkg-query", "-W", "-f=${Conffiles}",
                                              "sdwatch").stdout
    assert SHEBANG.match(Path("/usr/bin/sdwatch").read_text()), "not Debian's python3"


def test_service_is_enabled_started_and_ready(package: Path) -> None:
    # Type=notify: "active" means the daemon sent READY=1
    wait_for(lambda: show("ActiveState") == "active", "sdwatch.service to become active")
    assert show("Type") == "notify"
    assert show("SubState") == "running"
    assert show("UnitFileState") == "enabled"
    assert show("NRestarts") == "0", journal()
    assert wait_for(lambda: show("StatusText"), "a STATUS= line from the daemon")


def test_cli_runs_on_debians_python(package: Path) -> None:
    where = run("/usr/bin/python3", "-c", "import sdwatch; print(sdwatch.__file__)").stdout
    assert where.startswith("/usr/lib/python3/dist-packages/sdwatch/")
    version = run("dpkg-query", "-W", "-f=${Version}", "sdwatch").stdout
    assert run("/usr/bin/sdwatch", "version").stdout.strip() == version
    # the shipped example is all comments: valid, and it configures nothing
    assert "0 units" in run("/usr/bin/sdwatch", "validate").stdout
    status = run("/usr/bin/sdwatch", "status", check=False)
    assert status.returncode in (0, 3), status.stderr
    # no unit configured: status shows the running services, sdwatch itself among them
    assert "active or failed services" in status.stdout and f"'{UNIT}'" in status.stdout
    data = json.loads(run("/usr/bin/sdwatch", "status", "--json", "--all", check=False).stdout)
    assert data["schema"] == "sdwatch.status/1"
    assert UNIT in {u["name"] for u in data["units"]}
    assert run("/usr/bin/sdwatch", "check").returncode == 0  # nothing configured, nothing fails


def test_security_exposure_at_most_3(package: Path, capsys: pytest.CaptureFixture) -> None:
    out = run("systemd-analyze", "security", "--no-pager", UNIT).stdout
    match = re.search(r"Overall exposure level for sdwatch\.service: ([\d.]+)", out)
    assert match, out
    with capsys.disabled():
        print(f"\n[test-deb] systemd-analyze security sdwatch.service: exposure "
              f"{match.group(1)} (limit {MAX_EXPOSURE})")
    assert float(match.group(1)) <= MAX_EXPOSURE, out
    verify = run("systemd-analyze", "verify", show("FragmentPath"), check=False)
    assert [line for line in verify.stderr.splitlines() if "sdwatch" in line] == []


def test_init_write_reload_status_watches_the_running_services(package: Path) -> None:
    # the README's path from install to a watched stack
    local = Path("/etc/sdwatch/conf.d/local.toml")
    wrote = run("/usr/bin/sdwatch", "init", "--write", str(local))
    assert wrote.stdout.startswith(f"wrote {local}: "), wrote.stdout
    try:
        assert '[unit."memcached.service"]' in local.read_text()
        assert "1 units, 1 probes" in run("/usr/bin/sdwatch", "validate").stdout
        assert run("/usr/bin/sdwatch", "init", "--write", str(local),
                   check=False).returncode == 2  # never overwritten
        run("systemctl", "reload", UNIT)

        def memcached_probed() -> bool:
            unit = daemon_status().get("units", {}).get("memcached.service", {})
            return unit.get("probes", {}).get("memcached", {}).get("ok") is True
        wait_for(memcached_probed, "the daemon to probe the memcached that init found")
        status = run("/usr/bin/sdwatch", "status", check=False)
        assert status.returncode == 0 and "memcached.service" in status.stdout, status.stdout
    finally:
        local.unlink(missing_ok=True)
        run("systemctl", "reload", UNIT)


def test_reload_takes_the_new_configuration(watching_memcached: None) -> None:
    assert "1 units, 2 probes" in run("/usr/bin/sdwatch", "validate").stdout
    pid = show("MainPID")
    run("systemctl", "reload", UNIT)
    assert show("MainPID") == pid and show("ActiveState") == "active"

    def probes_pass() -> bool:
        probes = daemon_status().get("units", {}).get("memcached.service", {}).get("probes", {})
        return {n: p.get("ok") for n, p in probes.items()} == {"memcached": True,
                                                              "exec-in-sandbox": True}
    # both probes ran, inside the service's sandbox, and passed
    wait_for(probes_pass, "the daemon's status.json to show both memcached probes passing")


def test_check_and_status_of_the_watched_unit(watching_memcached: None) -> None:
    check = run("/usr/bin/sdwatch", "check", check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "memcached.service" in check.stdout
    status = run("/usr/bin/sdwatch", "status", check=False)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "memcached.service" in status.stdout


def test_sigstopped_memcached_is_restarted(watching_memcached: None) -> None:
    pid = int(show("MainPID", "memcached.service"))
    assert pid > 0
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_for(lambda: show("MainPID", "memcached.service") not in ("0", str(pid)),
                 "sdwatch to restart the stopped memcached", timeout=30)
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    wait_for(memcached_answers, "the new memcached to answer")
    wait_for(lambda: show("ActiveState", "memcached.service") == "active", "memcached active")
    # the daemon counts the restart once systemd reports the job done; status.json follows

    def restarts_by_sdwatch() -> int:
        data = json.loads(run("/usr/bin/sdwatch", "status", "--json", "memcached.service",
                              check=False).stdout)
        return data["units"][0].get("restarts_sdwatch") or 0
    assert wait_for(restarts_by_sdwatch, "status to count sdwatch's restart", timeout=15) >= 1
    assert show("NRestarts", "memcached.service") == "0"  # systemd did not do it by itself
    assert show("ActiveState") == "active" and show("NRestarts") == "0"  # nor crashed sdwatch


def test_upgrade_restarts_the_daemon_and_keeps_configuration(watching_memcached: None,
                                                             package: Path) -> None:
    # the same version again runs what an upgrade runs: prerm upgrade, unpack, postinst
    # configure with the old version, which restarts the service
    pid = show("MainPID")
    upgraded = run(*APT, "install", "--reinstall", "--no-install-recommends", str(package),
                   timeout=600)
    assert dpkg_warnings(upgraded) == []
    assert dpkg_status() == "ii"
    wait_for(lambda: show("ActiveState") == "active" and show("MainPID") not in ("0", pid),
             "sdwatch.service to run again under a new pid")
    assert TEST_CONF.exists() and "1 units, 2 probes" in run("/usr/bin/sdwatch", "validate").stdout
    assert show("UnitFileState") == "enabled"


def test_remove_keeps_configuration_and_state(package: Path) -> None:
    removed = run(*APT, "remove", "sdwatch", timeout=600)
    assert dpkg_warnings(removed) == []
    assert dpkg_status() == "rc"
    assert show("ActiveState") in ("inactive", "failed")
    assert not Path("/usr/bin/sdwatch").exists()
    # policy: configuration stays until purge, and so does the package's state
    assert Path("/etc/sdwatch/sdwatch.toml").exists() and TEST_CONF.exists()
    assert Path("/var/lib/sdwatch").is_dir()


def test_purge_leaves_nothing_behind(package: Path) -> None:
    purged = run(*APT, "purge", "sdwatch", timeout=600)
    assert dpkg_warnings(purged) == []
    assert dpkg_status() in ("", "un")
    assert leftovers() == []
    assert show("LoadState") == "not-found"
