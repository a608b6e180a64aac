"""Start real memcached, nginx and MariaDB on loopback / temp unix sockets (tests and bench).

Each ``start_*`` is a context manager yielding a :class:`Server`; it waits for readiness
with a deadline (never a bare sleep) and kills and reaps the process on exit.  A missing
binary is an error naming the Debian package to install, never a skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

MYSQL_USER = "sdwatch"
MYSQL_PASSWORD = "s3cret-Pa55word"


@dataclass
class Server:
    """A running server: its process, TCP port, unix socket path and extras (cert, files)."""

    proc: subprocess.Popen
    port: int
    socket: str
    extra: dict = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """SIGSTOP the whole process group for the block, SIGCONT after."""
        os.killpg(self.proc.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.killpg(self.proc.pid, signal.SIGCONT)


def require(binary: str, package: str) -> str:
    """Return the binary's path; raise RuntimeError naming the apt package if missing."""
    path = shutil.which(binary) or next(
        (p for p in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}") if os.access(p, os.X_OK)), None)
    if path is None:
        raise RuntimeError(f"{binary} not found: apt-get install {package}")
    return path


def free_port() -> int:
    """Return a loopback TCP port that was free a moment ago (the kernel's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    """Poll ``condition`` until true; raise RuntimeError after ``timeout`` or if proc dies."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{what}: process exited with {proc.returncode}\n{tail}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not ready after {timeout}s")
        time.sleep(0.02)  # polling interval of a condition with a deadline


def accepts(address: tuple[str, int] | str, greeting: bool = False) -> Callable[[], bool]:
    """Return a condition: a connection succeeds (and, with greeting, the server speaks)."""
    def check() -> bool:
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        try:
            with socket.socket(family) as s:
                s.settimeout(0.5)
                s.connect(address)
                return not greeting or bool(s.recv(1))
        except OSError:
            return False
    return check


@contextlib.contextmanager
def _running(argv: list[str], log: Path, **kwargs) -> Iterator[subprocess.Popen]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, **kwargs)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGCONT)
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextlib.contextmanager
def start_memcached(tmp: Path) -> Iterator[Server]:
    """Run memcached on 127.0.0.1:<free port> and tmp/memcached.sock (two processes: memcached
    listens on either TCP or a unix socket, not both)."""
    binary = require("memcached", "memcached")
    port, sock = free_port(), str(tmp / "memcached.sock")
    root = ["-u", "root"] if os.geteuid() == 0 else []
    log = tmp / "memcached.log"
    with _running([binary, *root, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "16"],
                  log) as proc, \
         _running([binary, *root, "-s", sock, "-m", "16"], log) as unix_proc:
        wait_until(accepts(("127.0.0.1", port)), 10, "memcached (tcp)", proc, log)
        wait_until(accepts(sock), 10, "memcached (unix)", unix_proc, log)
        yield Server(proc, port, sock, {"unix_proc": unix_proc})


def make_cert(tmp: Path, days: int = 10, san: str = "DNS:localhost,IP:127.0.0.1",
              name: str = "cert", cn: str = "localhost") -> tuple[Path, Path]:
    """Return (cert, key) of a fresh self-signed certificate for ``san`` valid ``days``."""
    binary = require("openssl", "openssl")
    cert, key = tmp / f"{name}.pem", tmp / f"{name}-key.pem"
    subprocess.run([binary, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", str(days), "-subj", f"/CN={cn}",
                    "-addext", f"subjectAltName={san}"],
                   check=True, capture_output=True, timeout=30)
    return cert, key


_NGINX_CONF = """
daemon off; master_process off; worker_processes 1; {user}
pid {tmp}/nginx.pid; error_log {tmp}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off; client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  default_type text/plain;
  server {{
    listen 127.0.0.1:{port}; listen unix:{sock}; listen 127.0.0.1:{tls_port} ssl;
    ssl_certificate {cert}; ssl_certificate_key {key};
    location = /healthz {{ add_header X-Health "green"; return 200 "all good\\n"; }}
    location = /fail {{ return 503 "down\\n"; }}
    location = /moved {{ return 302 /healthz; }}
    location /static/ {{ alias {tmp}/static/; }}
  }}
}}
"""


@contextlib.contextmanager
def start_nginx(tmp: Path) -> Iterator[Server]:
    """Run nginx (one process) on 127.0.0.1:<port>, TLS on another port, and a unix socket.
    Serves /healthz (200), /fail (503), /moved (302), /static/big (1 MiB, chunked-free)."""
    binary = require("nginx", "nginx-light")
    port, tls_port, sock = free_port(), free_port(), str(tmp / "nginx.sock")
    cert, key = make_cert(tmp)
    (tmp / "static").mkdir(exist_ok=True)
    (tmp / "static" / "big").write_bytes(b"x" * (1 << 20) + b"needle")
    conf = tmp / "nginx.conf"
    conf.write_text(_NGINX_CONF.format(
        tmp=tmp, port=port, tls_port=tls_port, sock=sock, cert=cert, key=key,
        user="user root;" if os.geteuid() == 0 else ""))
    log = tmp / "nginx-error.log"
    with _running([binary, "-p", str(tmp), "-c", str(conf), "-e", str(log)], log) as proc:
        wait_until(accepts(("127.0.0.1", port)), 10, "nginx", proc, log)
        wait_until(accepts(sock), 10, "nginx (unix)", proc, log)
        yield Server(proc, port, sock, {"tls_port": tls_port, "cert": cert})


@contextlib.contextmanager
def start_mariadb(tmp: Path) -> Iterator[Server]:
    """Run MariaDB with a fresh datadir on 127.0.0.1:<port> and tmp/mysqld.sock, with user
    ``sdwatch``/MYSQL_PASSWORD created by an init file; extra["password_file"] holds it (0600);
    TLS with the self-signed extra["cert"] (localhost, 127.0.0.1)."""
    install = require("mariadb-install-db", "mariadb-server")
    binary = require("mariadbd", "mariadb-server")
    data, sock, port, log = tmp / "data", str(tmp / "mysqld.sock"), free_port(), tmp / "mysqld.log"
    user = ["--user=root"] if os.geteuid() == 0 else []
    subprocess.run([install, "--no-defaults", f"--datadir={data}", *user, "--skip-test-db",
                    "--auth-root-authentication-method=normal"],
                   check=True, capture_output=True, timeout=60)
    init = tmp / "init.sql"
    init.write_text("".join(
        f"CREATE USER IF NOT EXISTS '{MYSQL_USER}'@'{host}' IDENTIFIED BY '{MYSQL_PASSWORD}';\n"
        for host in ("localhost", "127.0.0.1")))
    cert, key = make_cert(tmp)
    password_file = tmp / "mysql.pass"
    password_file.write_text(MYSQL_PASSWORD + "\n")
    password_file.chmod(0o600)
    argv = [binary, "--no-defaults", f"--datadir={data}", f"--socket={sock}", f"--port={port}",
            "--bind-address=127.0.0.1", f"--pid-file={tmp}/mysqld.pid", f"--log-error={log}",
            f"--init-file={init}", "--skip-name-resolve", "--innodb-buffer-pool-size=16M",
            "--max-connections=500", f"--ssl-cert={cert}", f"--ssl-key={key}", *user]
    with _running(argv, log) as proc:
        wait_until(accepts(("127.0.0.1", port), greeting=True), 30, "mariadbd", proc, log)
        yield Server(proc, port, sock, {"password_file": str(password_file), "cert": cert})


REDIS_PASSWORD = "r3dis-Pa55word"


@contextlib.contextmanager
def start_redis(tmp: Path) -> Iterator[Server]:
    """Run redis-server (no persistence) on 127.0.0.1:<port> and tmp/redis.sock, and a second
    one requiring REDIS_PASSWORD for user ``sdwatch`` (ACL) and the default user;
    extra["auth_address"], extra["password_file"] (0600)."""
    binary = require("redis-server", "redis-server")
    port, auth_port, sock = free_port(), free_port(), str(tmp / "redis.sock")
    log = tmp / "redis.log"
    common = ["--save", "", "--appendonly", "no", "--bind", "127.0.0.1", "--dir", str(tmp),
              "--daemonize", "no", "--logfile", str(log)]
    password_file = tmp / "redis.pass"
    password_file.write_text(REDIS_PASSWORD + "\n")
    password_file.chmod(0o600)
    with _running([binary, "--port", str(port), "--unixsocket", sock, "--unixsocketperm", "700",
                   *common], log) as proc, \
         _running([binary, "--port", str(auth_port), "--requirepass", REDIS_PASSWORD,
                   "--user", "sdwatch", "on", f">{REDIS_PASSWORD}", "+ping", "+info", "+auth",
                   *common],
                  log) as auth_proc:
        wait_until(accepts(("127.0.0.1", port)), 10, "redis-server", proc, log)
        wait_until(accepts(sock), 10, "redis-server (unix)", proc, log)
        wait_until(accepts(("127.0.0.1", auth_port)), 10, "redis-server (auth)", auth_proc, log)
        yield Server(proc, port, sock, {"auth_address": f"127.0.0.1:{auth_port}",
                                        "auth_proc": auth_proc,
                                        "password_file": str(password_file)})


PG_USER = "sdwatch"
PG_PASSWORD = "pg-Pa55word"


@contextlib.contextmanager
def start_postgresql(tmp: Path) -> Iterator[Server]:
    """Run PostgreSQL with a fresh cluster on 127.0.0.1:<port> and its socket directory, with
    role ``sdwatch``/PG_PASSWORD (scram) for TCP and trust on the socket; extra["socket_dir"],
    extra["password_file"] (0600).  As root the server runs as the ``postgres`` user in a
    directory of its own under /tmp (PostgreSQL refuses to run as root)."""
    bindir = Path(require("pg_config", "postgresql")).parent  # /usr/bin/pg_config is generic
    bindir = next((p for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"))
                   if (p / "postgres").exists()), bindir)
    import pwd
    import tempfile

    run_as: dict = {}
    base = tmp
    owner = None
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        base = Path(tempfile.mkdtemp(prefix="sdwatch-pg-"))
        os.chown(base, owner.pw_uid, owner.pw_gid)
        run_as = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
    data, port, log = base / "data", free_port(), base / "postgres.log"
    pwfile = base / "initpw"
    pwfile.write_text(PG_PASSWORD + "\n")
    if owner is not None:
        os.chown(pwfile, owner.pw_uid, owner.pw_gid)
    try:
        subprocess.run([str(bindir / "initdb"), "-D", str(data), "-U", PG_USER, "-A", "trust",
                        "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "--no-sync"],
                       check=True, capture_output=True, timeout=120, **run_as)
        password_file = tmp / "pg.pass"
        password_file.write_text(PG_PASSWORD + "\n")
        password_file.chmod(0o600)
        argv = [str(bindir / "postgres"), "-D", str(data), "-p", str(port),
                "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={base}",
                "-c", "fsync=off", "-c", "shared_buffers=16MB", "-c", "max_connections=200"]
        with _running(argv, log, **run_as) as proc:
            sock = str(base / f".s.PGSQL.{port}")
            wait_until(accepts(sock), 60, "postgres", proc, log)
            yield Server(proc, port, sock, {"socket_dir": str(base),
                                            "password_file": str(password_file)})
    finally:
        if base != tmp:
            shutil.rmtree(base, ignore_errors=True)
