"""The harness leaves the host untouched: whatever runs in it writes to a throw-away overlay.

These run on the host (root), each booting tests/harness/sdtest: MariaDB and PostgreSQL write
their data, nginx its temp dirs and log, dpkg its status, a unit lands in /etc/systemd/system,
sdwatch's state in /var/lib/sdwatch; afterwards the host's copies are byte-for-byte as before.
Only the checkout is shared read-write.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import stat
import subprocess
import uuid
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
SDTEST = ROOT / "tests" / "harness" / "sdtest"
# what the services the suites start write to (Debian's units: mariadb, postgresql, nginx)
WATCHED = ["/var/lib/mysql", "/var/lib/postgresql", "/var/log/postgresql", "/var/lib/nginx",
           "/var/log/nginx", "/var/lib/dpkg/status", "/etc/systemd/system", "/var/lib/sdwatch"]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or "SDTEST_NAME" in os.environ,
    reason="boots the harness: needs root, on the host")

# Inside: MariaDB and the host's PostgreSQL cluster each create a database, nginx answers a
# request (its access log), dpkg records a selection, a unit is installed and started,
# sdwatch's state dir gets a file.  Each step must succeed, or the test proves nothing.
WRITES = """
set -euxo pipefail
systemctl start mariadb.service
mariadb -e 'CREATE DATABASE sdtest_overlay; CREATE TABLE sdtest_overlay.t (i INT)'
mariadb -e 'INSERT INTO sdtest_overlay.t VALUES (1)'
systemctl stop mariadb.service
PG=$(pg_lsclusters -h | awk 'NR == 1 {print $1 "-" $2}')
systemctl start "postgresql@$PG.service"
runuser -u postgres -- psql -qc 'CREATE DATABASE sdtest_overlay'
systemctl stop "postgresql@$PG.service"
systemctl start nginx.service
/usr/bin/python3 -c 'import urllib.request as u; u.urlopen("http://127.0.0.1/", timeout=30)'
systemctl stop nginx.service
echo 'memcached hold' | dpkg --set-selections
dpkg-query -W -f='${Status}' memcached | grep -q '^hold '
U=/etc/systemd/system/sdtest-overlay.service
printf '[Service]\\nType=oneshot\\nExecStart=/bin/true\\n' > $U
systemctl daemon-reload
systemctl start sdtest-overlay.service
mkdir -p /var/lib/sdwatch && echo gave-up > /var/lib/sdwatch/sdtest-overlay
"""


def snapshot(top: str) -> dict[str, tuple]:
    """Every entry at or below top: type, mode, owner, mtime, and content digest or link target."""
    found: dict[str, tuple] = {}
    paths = [top]
    while paths:
        path = paths.pop()
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            found[path] = ("absent",)
            continue
        if stat.S_ISLNK(st.st_mode):
            body = os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:
                body = hashlib.file_digest(f, "sha256").hexdigest()
        else:
            body = ""
        found[path] = (stat.filemode(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns, body)
        if stat.S_ISDIR(st.st_mode):
            paths.extend(os.path.join(path, name) for name in os.listdir(path))
    return found


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """Hold SDTEST_LOCK (when set) for the whole test: the snapshots around a run, or two runs
    that wait for each other; the harness runs inside then take no lock of their own."""
    if "SDTEST_LOCK" not in os.environ:
        yield
        return
    with open(os.environ["SDTEST_LOCK"], "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def sdtest(name: str, script: str, sdtest_path: Path = SDTEST, **kw) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "SDTEST_LOCK"}
    return subprocess.Popen([str(sdtest_path), "with", name, "/bin/bash", "-c", script],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, **kw)


def finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out
    return out


@pytest.mark.skipif(not all(map(shutil.which, ("mariadb", "pg_lsclusters", "nginx"))),
                    reason="needs mariadb-server, postgresql, nginx (tests/install-deps)")
def test_writes_inside_never_reach_the_host() -> None:
    with exclusive():
        before = {top: snapshot(top) for top in WATCHED}
        finish(sdtest("harness-test", WRITES))
        after = {top: snapshot(top) for top in WATCHED}
    for top in WATCHED:
        assert after[top] == before[top], f"{top} changed on the host"


def test_the_checkout_is_shared_read_write_and_the_rest_is_not(tmp_path: Path) -> None:
    # a checkout under /tmp (where people clone to try something) is visible inside
    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT / "tests" / "harness", checkout / "tests" / "harness",
                    ignore=shutil.ignore_patterns("__pycache__"))
    outside = tmp_path / "outside"
    outside.write_text("host\n")
    with exclusive():
        finish(sdtest("harness-test", f"""
        set -eux
        test "$(/usr/bin/python3 -c 'import os; print(os.getcwd())')" = {checkout}
        echo inside > {checkout}/report.xml
        test "$(cat {outside})" = host
        echo inside > {outside}
        """, checkout / "tests" / "harness" / "sdtest", cwd=checkout))
    assert (checkout / "report.xml").read_text() == "inside\n"
    assert outside.read_text() == "host\n"
    assert list((checkout / ".sdtest").iterdir()) == []   # `with` leaves no state behind


def test_two_harnesses_of_one_name_at_once_never_see_each_other() -> None:
    run = uuid.uuid4().hex
    marker = f"/etc/sdtest-overlay-{run}"
    ready = ROOT / ".sdtest" / f"ready-{run}"   # in the checkout: both harnesses see it

    def writer(me: str, other: str) -> str:
        # both have written the marker before either reads it back
        return f"""
            set -eux
            echo {me} > {marker}
            touch {ready}-{me}
            for _ in $(seq 600); do [ -e {ready}-{other} ] && break; sleep 0.1; done
            test -e {ready}-{other}
            test "$(cat {marker})" = {me}
            """

    try:
        with exclusive():
            procs = [sdtest("harness-test", writer(me, other)) for me, other in ("ab", "ba")]
            for proc in procs:
                finish(proc)
    finally:
        for me in "ab":
            Path(f"{ready}-{me}").unlink(missing_ok=True)
    assert not os.path.lexists(marker)
