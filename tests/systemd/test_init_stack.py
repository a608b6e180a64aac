"""sdwatch init on a real stack run by systemd: Redis, PostgreSQL, memcached, MariaDB and nginx
as units (under their usual names, with private data directories in the test systemd's own
/run, never the host's).  The proposed config validates, `sdwatch check` passes against the
healthy services, and fails with the right reason when each one is frozen (SIGSTOP)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from sdcheck import UNIT_DIR, sdwatch, systemctl, wait_for

from sdwatch import config

pytestmark = pytest.mark.systemd

NGINX_CONF = """
daemon off; pid {d}/nginx.pid; error_log {d}/nginx-error.log; worker_processes 1;
events {{ worker_connections 64; }}
http {{
  access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  server {{ listen 127.0.0.1:80; location / {{ return 200 "ok\\n"; }} }}
  server {{ listen 127.0.0.1:8444 ssl; ssl_certificate {d}/cert.pem;
           ssl_certificate_key {d}/key.pem; location / {{ return 200 "ok\\n"; }} }}
}}
"""


def pg_bindir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if not found:
        pytest.fail("postgresql is not installed (tests/install-deps)")
    return found[-1].parent


def units(d: Path) -> dict[str, str]:
    """The [Service] sections of the stack, by unit name."""
    pg = pg_bindir()
    return {
        "memcached.service": "ExecStart=/usr/bin/memcached -u root -l 127.0.0.1 -p 11211 -m 16",
        "redis-server.service": (
            f"ExecStart=/usr/bin/redis-server --port 6379 --bind 127.0.0.1 --unixsocket "
            f"{d}/redis.sock --save '' --appendonly no --dir {d}/redis --daemonize no"),
        "mariadb.service": (
            f"ExecStart=/usr/sbin/mariadbd --no-defaults --datadir={d}/mysql "
            f"--socket={d}/mysqld.sock --port=3306 --bind-address=127.0.0.1 --user=root "
            f"--skip-name-resolve --innodb-buffer-pool-size=16M --pid-file={d}/mysqld.pid"),
        "postgresql@15-main.service": (
            f"User=postgres\nExecStart={pg}/postgres -D {d}/pg/data -c "
            f"listen_addresses=127.0.0.1 -c unix_socket_directories={d}/pg -c fsync=off "
            f"-c shared_buffers=16MB"),
        "nginx.service": f"ExecStart=/usr/sbin/nginx -p {d} -c {d}/nginx.conf",
    }


def prepare(d: Path) -> None:
    """Data directories the units need: a MariaDB datadir, a PostgreSQL cluster, nginx's conf
    and a self-signed certificate for its TLS port (8444: TLS is told by its answer)."""
    (d / "redis").mkdir(parents=True)
    subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={d}/mysql", "--user=root",
                    "--skip-test-db"], check=True, capture_output=True, timeout=120)
    postgres = pwd.getpwnam("postgres")
    (d / "pg").mkdir()
    os.chown(d / "pg", postgres.pw_uid, postgres.pw_gid)
    subprocess.run([str(pg_bindir() / "initdb"), "-D", str(d / "pg" / "data"), "-A", "trust",
                    "--no-sync"], check=True, capture_output=True, timeout=120,
                   user=postgres.pw_uid, group=postgres.pw_gid, extra_groups=[])
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365",
                    "-subj", "/CN=localhost", "-keyout", str(d / "key.pem"),
                    "-out", str(d / "cert.pem")], check=True, capture_output=True, timeout=60)
    (d / "nginx.conf").write_text(NGINX_CONF.format(d=d))


@pytest.fixture(scope="module")
def stack() -> Iterator[Path]:
    d = Path(f"/run/sdw-init-{uuid.uuid4().hex[:8]}")  # the test systemd's private /run
    d.mkdir(mode=0o755)
    made = units(d)
    try:
        prepare(d)
        for name, service in made.items():
            Path(UNIT_DIR, name).write_text(f"[Unit]\nDescription=sdwatch init test {name}\n"
                                            f"[Service]\n{service}\n")
        systemctl("daemon-reload")
        systemctl("start", *made)
        for sock in ("redis.sock", "mysqld.sock", "pg/.s.PGSQL.5432"):
            wait_for(lambda s=sock: (d / s).exists(), 60, f"{sock} to appear")
        yield d
    finally:
        for name in made:
            systemctl("kill", "-s", "SIGCONT", name, check=False)
        systemctl("stop", *made, check=False)
        for name in made:
            systemctl("reset-failed", name, check=False)
            Path(UNIT_DIR, name).unlink(missing_ok=True)
        systemctl("daemon-reload")
        shutil.rmtree(d, ignore_errors=True)


def check(config: Path, *names: str) -> tuple[int, list[dict]]:
    r = sdwatch("check", "--json", "--config", str(config), *names)
    return r.returncode, json.loads(r.stdout or "[]")


def steady(proposal: str) -> list[str]:
    """The proposal without what moves between two runs: the memory readings, the unrecognised."""
    kept = proposal.split("\n# Not recognised")[0].splitlines()
    return [line for line in kept if not line.startswith(("# memory:", "memory = "))]


FROZEN = {  # unit -> (probe kind, what its timeout reason says it waited for)
    "memcached.service": ("memcached", "waiting for NOOP reply"),
    "redis-server.service": ("redis", "waiting for PONG"),
    "mariadb.service": ("mysql", "reading greeting"),
    "postgresql@15-main.service": ("postgresql", "waiting for the startup reply"),
    "nginx.service": ("http", "reading status line"),
}
KINDS = {u: [kind] for u, (kind, _) in FROZEN.items()} | {"nginx.service": ["http", "tls"]}


def test_init_proposes_a_valid_config_that_checks_the_stack(stack: Path, tmp_path: Path) -> None:
    main = tmp_path / "sdwatch.toml"
    main.write_text('[sdwatch]\ntimeout = "1s"\n')
    (tmp_path / "conf.d").mkdir()
    printed = sdwatch("init", "--config", str(main))
    assert printed.returncode == 0, printed.stderr
    print(printed.stdout)  # shown with -rP: what a user sees
    local = tmp_path / "conf.d" / "local.toml"
    wrote = sdwatch("init", "--config", str(main), "--write", str(local))
    assert wrote.returncode == 0 and wrote.stdout.startswith(f"wrote {local}: "), wrote
    again = sdwatch("init", "--config", str(main), "--write", str(local))
    assert again.returncode == 2 and "not overwriting" in again.stderr
    assert steady(local.read_text()) == steady(printed.stdout)

    valid = sdwatch("validate", "--config", str(main))
    assert valid.returncode == 0, valid.stderr + local.read_text()
    cfg = config.load(str(main))
    assert {u: [p.kind for p in cfg.units[u].probes] for u in FROZEN} == KINDS, local.read_text()
    assert 'address = "127.0.0.1:8444"' in local.read_text()
    # a memory limit is proposed wherever the unit's memory is known (on a v2 tree whose memory
    # controller the host keeps on v1, systemd itself reports none)
    known = {u for u in FROZEN if systemctl("show", "-P", "MemoryCurrent", u).strip()
             .isdigit()}
    assert {u for u in FROZEN if cfg.units[u].memory is not None} == known, local.read_text()
    assert "sdwatch.service" not in cfg.units

    code, results = check(main, *FROZEN)
    assert code == 0 and all(r["ok"] for r in results), results
    assert {r["kind"] for r in results} >= {kind for kinds in KINDS.values() for kind in kinds}

    for unit, (kind, waiting) in FROZEN.items():
        systemctl("kill", "-s", "SIGSTOP", unit)
        try:
            code, results = check(main, unit)
        finally:
            systemctl("kill", "-s", "SIGCONT", unit)
        probe = next(r for r in results if r["kind"] == kind)
        assert code == 1 and probe["outcome"] == "timeout", (unit, results)
        assert probe["reason"] == f"timeout after 1s {waiting}", (unit, probe)
    code, results = check(main, *FROZEN)
    assert code == 0, results


def test_init_skips_configured_units_and_refuses_an_invalid_config(stack: Path,
                                                                   tmp_path: Path) -> None:
    main = tmp_path / "sdwatch.toml"
    main.write_text('[unit."redis-server.service"]\nprobe = [{ kind = "redis", '
                    'address = "127.0.0.1:6379" }]\n')
    r = sdwatch("init", "--config", str(main))
    assert r.returncode == 0, r.stderr
    assert '[unit."redis-server.service"]' not in r.stdout
    assert "#   redis-server.service: already configured" in r.stdout
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "local.toml").write_text(r.stdout)
    assert sdwatch("validate", "--config", str(main)).returncode == 0
    main.write_text('[unit."x.service"]\nbogus = 1\n')
    bad = sdwatch("init", "--config", str(main))
    assert bad.returncode == 2 and "invalid, fix it first" in bad.stderr
