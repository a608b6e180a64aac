"""redis, postgresql and tls against real servers: ok, failures that name the cause, timeout
under SIGSTOP, credentials that never leak, and no thread or fd left behind."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sdwatch.probes.errors import Outcome

from . import servers
from .test_hostile import open_fds, settled
from .test_real_servers import assert_timeout, probe

pytestmark = pytest.mark.integration


def test_redis_ping_over_tcp_and_unix_socket(redis: servers.Server) -> None:
    assert probe("redis", {"address": redis.address}).ok
    assert probe("redis", {"socket": redis.socket}).ok
    assert probe("redis", {"address": f"unix:{redis.socket}"}).ok


def test_redis_info_metrics_and_limits(redis: servers.Server) -> None:
    result = probe("redis", {"address": redis.address, "info": True})
    assert result.ok and result.metrics["role"] == "master", result
    assert result.metrics["connected_clients"] >= 1 and result.metrics["loading"] == 0
    assert result.metrics["version"].startswith(("6.", "7.", "8."))
    over = probe("redis", {"address": redis.address, "info_max": "connected_clients=0"})
    assert over.outcome is Outcome.FAILED and over.reason.startswith("connected_clients ")
    missing = probe("redis", {"address": redis.address, "info_min": "no_such_field=1"})
    assert missing.outcome is Outcome.FAILED
    assert missing.reason == "INFO has no numeric field 'no_such_field'"


def test_redis_auth_default_and_acl_user(redis: servers.Server) -> None:
    address, password_file = redis.extra["auth_address"], redis.extra["password_file"]
    noauth = probe("redis", {"address": address})
    assert noauth.outcome is Outcome.FAILED and "requires a password" in noauth.reason
    assert probe("redis", {"address": address, "password_file": password_file}).ok
    acl = probe("redis", {"address": address, "user": "sdwatch", "password_file": password_file,
                          "info": True})
    assert acl.ok, acl


def test_redis_wrong_password_fails_without_leaking(redis: servers.Server,
                                                    tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.pass"
    wrong.write_text("not-the-Pa55word\n")
    wrong.chmod(0o600)
    result = probe("redis", {"address": redis.extra["auth_address"], "user": "sdwatch",
                             "password_file": str(wrong)})
    assert result.outcome is Outcome.FAILED and result.reason.startswith("AUTH refused: WRONGPASS")
    assert "not-the-Pa55word" not in result.reason


def test_redis_stopped_times_out(redis: servers.Server) -> None:
    with redis.stopped():
        result = probe("redis", {"address": redis.address}, 0.5)
        assert_timeout(result, 0.5)
        assert result.reason == "timeout after 500ms waiting for PONG"
    assert probe("redis", {"address": redis.address}).ok


def test_redis_probe_of_memcached_is_a_protocol_error(memcached: servers.Server) -> None:
    result = probe("redis", {"address": memcached.address}, 2.0)
    assert result.outcome is Outcome.PROTOCOL, result


def test_postgresql_accepts_connections_tcp_and_socket_dir(postgresql: servers.Server) -> None:
    tcp = probe("postgresql", {"address": postgresql.address})
    assert tcp.ok and tcp.metrics["auth_request"] == 10, tcp  # SASL (scram) on TCP
    unix = probe("postgresql", {"socket": postgresql.extra["socket_dir"],
                                "port": postgresql.port})
    assert unix.ok and unix.metrics["auth_request"] == 0, unix  # trust on the socket
    assert probe("postgresql", {"socket": postgresql.socket}).ok


def test_postgresql_unknown_database_still_proves_a_running_server(
        postgresql: servers.Server) -> None:
    # trust on the socket: authentication ok comes before the database is looked up
    result = probe("postgresql", {"socket": postgresql.socket, "database": "nope"})
    assert result.ok and result.metrics["auth_request"] == 0, result


def test_postgresql_login_and_query(postgresql: servers.Server) -> None:
    creds = {"user": servers.PG_USER, "password_file": postgresql.extra["password_file"]}
    tcp = probe("postgresql", {"address": postgresql.address, **creds})
    assert tcp.ok and tcp.metrics["query_result"] == 1 and tcp.metrics["version"] >= 150000, tcp
    unix = probe("postgresql", {"socket": postgresql.extra["socket_dir"], "port": postgresql.port,
                                "query": "SELECT current_user", **creds})
    assert unix.ok and unix.metrics["query_result"] == servers.PG_USER, unix


def test_postgresql_wrong_password_fails_without_leaking(postgresql: servers.Server,
                                                         tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.pass"
    wrong.write_text("not-the-pg-Pa55word\n")
    wrong.chmod(0o600)
    result = probe("postgresql", {"address": postgresql.address, "user": servers.PG_USER,
                                  "password_file": str(wrong)})
    assert result.outcome is Outcome.FAILED and "password authentication failed" in result.reason
    assert "not-the-pg-Pa55word" not in result.reason


def test_postgresql_bad_query_fails_with_the_servers_message(postgresql: servers.Server) -> None:
    result = probe("postgresql", {"address": postgresql.address, "user": servers.PG_USER,
                                  "password_file": postgresql.extra["password_file"],
                                  "query": "SELECT nope"})
    assert result.outcome is Outcome.FAILED and "42703" in result.reason, result


def test_postgresql_stopped_times_out_and_leaves_nothing(postgresql: servers.Server) -> None:
    creds = {"user": servers.PG_USER, "password_file": postgresql.extra["password_file"]}
    probe("postgresql", {"address": postgresql.address, **creds})  # warm-up: psycopg2 import
    fds, threads = open_fds(), threading.active_count()
    with postgresql.stopped():
        assert_timeout(probe("postgresql", {"address": postgresql.address}, 0.5), 0.5)
        login = probe("postgresql", {"address": postgresql.address, **creds}, 0.5)
        assert_timeout(login, 0.5)
    assert probe("postgresql", {"address": postgresql.address, **creds}).ok
    assert settled(open_fds, fds) == fds
    assert settled(threading.active_count, threads) == threads


def test_postgresql_nothing_listening_is_a_connect_error(tmp_path: Path) -> None:
    result = probe("postgresql", {"socket": str(tmp_path)})
    assert result.outcome is Outcome.CONNECT, result
    login = probe("postgresql", {"address": f"127.0.0.1:{servers.free_port()}", "user": "u",
                                 "password_file": "/nonexistent"})
    assert login.outcome is Outcome.UNKNOWN and "/nonexistent" in login.reason


def test_tls_certificate_days_left_and_verification(nginx: servers.Server) -> None:
    address = f"127.0.0.1:{nginx.extra['tls_port']}"
    ok = probe("tls", {"address": address, "ca_file": str(nginx.extra["cert"]), "days_left": 5})
    assert ok.ok and 9 < ok.metrics["days_left"] <= 10 and ok.metrics["subject"] == "CN=localhost"
    soon = probe("tls", {"address": address, "verify": False})
    assert soon.outcome is Outcome.FAILED and "less than 14" in soon.reason, soon
    untrusted = probe("tls", {"address": address})
    assert untrusted.outcome is Outcome.FAILED and "self-signed" in untrusted.reason, untrusted
    wrong_name = probe("tls", {"address": address, "ca_file": str(nginx.extra["cert"]),
                               "host": "example.org", "days_left": 1})
    assert wrong_name.outcome is Outcome.FAILED and "mismatch" in wrong_name.reason, wrong_name


def test_tls_probe_of_plain_http_is_a_protocol_error(nginx: servers.Server) -> None:
    result = probe("tls", {"address": nginx.address, "verify": False}, 2.0)
    assert result.outcome is Outcome.PROTOCOL and "handshake" in result.reason, result


def test_tls_stopped_times_out(nginx: servers.Server) -> None:
    address = f"127.0.0.1:{nginx.extra['tls_port']}"
    with nginx.stopped():
        result = probe("tls", {"address": address, "verify": False}, 0.5)
        assert_timeout(result, 0.5)
        assert result.reason == "timeout after 500ms TLS handshake"


@contextlib.contextmanager
def smtp_server(tmp_path: Path, days: int):
    """A real SMTP server (aiosmtpd) offering STARTTLS with a fresh certificate."""
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Sink

    cert, key = servers.make_cert(tmp_path, days)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    port = servers.free_port()
    controller = Controller(Sink(), hostname="127.0.0.1", port=port, tls_context=ctx,
                            require_starttls=True)
    controller.start()
    try:
        yield f"127.0.0.1:{port}", cert
    finally:
        controller.stop()


def test_tls_smtp_starttls(tmp_path: Path) -> None:
    with smtp_server(tmp_path, 90) as (address, cert):
        result = probe("tls", {"address": address, "starttls": "smtp", "ca_file": str(cert)})
        assert result.ok and result.metrics["days_left"] > 89, result
        plain = probe("tls", {"address": address, "verify": False}, 2.0)
        assert plain.outcome is Outcome.PROTOCOL, plain
        imap = probe("tls", {"address": address, "starttls": "imap", "verify": False}, 2.0)
        assert imap.outcome is Outcome.PROTOCOL and "not an IMAP greeting" in imap.reason


def test_probes_in_parallel_share_one_loop(redis: servers.Server,
                                           postgresql: servers.Server) -> None:
    from sdwatch import schema
    from sdwatch.probes import REGISTRY
    from sdwatch.probes.base import run

    creds = {"user": servers.PG_USER, "password_file": postgresql.extra["password_file"]}
    specs = [("redis", {"address": redis.address, "info": True}),
             ("postgresql", {"address": postgresql.address, **creds}),
             ("postgresql", {"socket": postgresql.socket})] * 20

    async def main():
        return await asyncio.gather(*(run(k, schema.build(REGISTRY[k].spec, t), 10.0)
                                      for k, t in specs))

    results = asyncio.run(main())
    assert all(r.ok for r in results), [r for r in results if not r.ok][:3]


def test_sdwatch_probe_speaks_the_new_kinds(redis: servers.Server, postgresql: servers.Server,
                                            nginx: servers.Server) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "sdwatch", "probe", *args],
                              capture_output=True, text=True, timeout=60)

    r = cli("redis", redis.address)
    assert r.returncode == 0 and r.stdout.startswith(f"redis {redis.address}: ok in "), r
    r = cli("postgresql", postgresql.extra["socket_dir"], "-o", f"port={postgresql.port}")
    assert r.returncode == 0 and ": ok in " in r.stdout, r
    r = cli("tls", f"127.0.0.1:{nginx.extra['tls_port']}", "-o", "verify=false", "--json")
    assert r.returncode == 1 and json.loads(r.stdout)["outcome"] == "failed", r
    assert json.loads(r.stdout)["metrics"]["subject"] == "CN=localhost"


def test_postgresql_login_against_hostile_peers_leaks_nothing(hostile: dict[str, str],
                                                              tmp_path: Path) -> None:
    password = tmp_path / "pass"
    password.write_text("secret\n")
    password.chmod(0o600)
    creds = {"user": "u", "password_file": str(password)}
    probe("postgresql", {"address": hostile["pg_drip"], **creds}, 0.1)  # warm-up: imports
    fds, threads = open_fds(), threading.active_count()

    async def main():
        from sdwatch import schema
        from sdwatch.probes import REGISTRY
        from sdwatch.probes.base import run

        spec = REGISTRY["postgresql"].spec
        return await asyncio.gather(*(
            run("postgresql", schema.build(spec, {"address": hostile[b], **creds}), 0.3)
            for b in ("silence", "garbage", "close", "ssh", "pg_drip", "pg_starting",
                      "pg_too_many", "reset") * 10))

    results = asyncio.run(main())
    assert not any(r.ok for r in results), [r for r in results if r.ok]
    assert all("secret" not in r.reason for r in results)
    timeouts = [r for r in results if r.outcome is Outcome.TIMEOUT]
    assert len(timeouts) >= 20  # silence and pg_drip: libpq waits, the deadline closes it
    assert settled(open_fds, fds) == fds
    assert settled(threading.active_count, threads) == threads


def test_redis_replica_with_its_master_down_fails_info(tmp_path: Path) -> None:
    binary = servers.require("redis-server", "redis-server")
    port, log = servers.free_port(), tmp_path / "replica.log"
    dead = servers.free_port()  # nothing listens there: the link stays down
    with servers._running([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "no", "--dir", str(tmp_path), "--logfile", str(log),
                           "--replicaof", "127.0.0.1", str(dead)], log) as proc:
        servers.wait_until(servers.accepts(("127.0.0.1", port)), 10, "redis replica", proc, log)
        address = f"127.0.0.1:{port}"
        assert probe("redis", {"address": address}).ok  # PING alone: the server answers
        result = probe("redis", {"address": address, "info": True})
    assert result.outcome is Outcome.FAILED, result
    assert result.reason == f"replica of 127.0.0.1:{dead} with master link down"
    assert result.metrics["role"] == "slave"


async def _scripted_starttls(protocol: str, cert: Path, key: Path) -> tuple[object, int]:
    """A mail server's plain part, as RFC 2595 describes it, then a real TLS handshake."""
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if protocol == "imap":
                writer.write(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n")
                tag = (await reader.readline()).split(b" ", 1)[0]
                writer.write(b"* CAPABILITY IMAP4rev1\r\n" + tag + b" OK Begin TLS now\r\n")
            else:
                writer.write(b"+OK POP3 ready\r\n")
                await reader.readline()
                writer.write(b"+OK Begin TLS negotiation\r\n")
            await writer.drain()
            await writer.start_tls(ctx)
            await reader.read()
        except (ConnectionError, OSError, ssl.SSLError):
            pass
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_tls_imap_and_pop3_starttls(protocol: str, tmp_path: Path) -> None:
    from sdwatch import schema
    from sdwatch.probes import REGISTRY
    from sdwatch.probes.base import run

    cert, key = servers.make_cert(tmp_path, 40)

    async def main():
        server, port = await _scripted_starttls(protocol, cert, key)
        async with server:
            spec = schema.build(REGISTRY["tls"].spec, {
                "address": f"127.0.0.1:{port}", "starttls": protocol, "ca_file": str(cert)})
            return await run("tls", spec, 5.0)

    result = asyncio.run(main())
    assert result.ok and 39 < result.metrics["days_left"] <= 40, result
