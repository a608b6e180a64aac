"""Each kind against a real server: ok, meaningful failures, and timeout under SIGSTOP."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading

import pytest
from leaks import baseline, open_fds

from sdwatch import schema
from sdwatch.probes import REGISTRY
from sdwatch.probes.base import ProbeResult, run
from sdwatch.probes.errors import Outcome

from . import servers

pytestmark = pytest.mark.integration


def probe(kind: str, table: dict, timeout: float = 5.0) -> ProbeResult:
    return asyncio.run(run(kind, schema.build(REGISTRY[kind].spec, table), timeout))


def assert_timeout(result: ProbeResult, timeout: float) -> None:
    assert result.outcome is Outcome.TIMEOUT, result
    assert 0.8 * timeout <= result.duration <= 1.2 * timeout, result


def test_memcached_noop_and_stats_ok(memcached: servers.Server) -> None:
    assert probe("memcached", {"address": memcached.address}).ok
    assert probe("memcached", {"socket": memcached.socket}).ok
    result = probe("memcached", {"address": memcached.address, "stats": True})
    assert result.ok and result.metrics["curr_connections"] >= 1
    assert result.metrics["version"].startswith("1.")


def test_memcached_stats_limit_fails(memcached: servers.Server) -> None:
    result = probe("memcached", {"address": memcached.address, "stats_max": "curr_connections=0"})
    assert result.outcome is Outcome.FAILED and result.reason.startswith("curr_connections ")
    assert result.reason.endswith(" above 0")


def test_memcached_stopped_times_out(memcached: servers.Server) -> None:
    with memcached.stopped():
        assert_timeout(probe("memcached", {"address": memcached.address}, 0.5), 0.5)
    assert probe("memcached", {"address": memcached.address}).ok


def test_memcached_noop_keeps_its_connection(memcached: servers.Server) -> None:
    def connections() -> int:
        return probe("memcached", {"address": memcached.address, "stats": True}).metrics[
            "total_connections"]

    before = connections()
    for _ in range(3):
        assert probe("memcached", {"address": memcached.address}).ok
    # one connection for the second stats call, at most one for the three NOOPs
    assert connections() - before <= 2


def test_memcached_probes_run_together_keep_a_connection_each(memcached: servers.Server) -> None:
    """Probes of one address due at the same moment (the schedule's grid makes them so) each
    find a kept connection the next time, rather than most of them connecting anew."""
    spec = schema.build(REGISTRY["memcached"].spec, {"address": memcached.address})

    async def together() -> list[ProbeResult]:
        with memcached.stopped():  # every probe waits for its reply, holding its connection
            probes = [asyncio.ensure_future(run("memcached", spec, 5.0)) for _ in range(20)]
            await asyncio.sleep(0.2)
        return await asyncio.gather(*probes)

    def connections() -> int:
        return probe("memcached", {"address": memcached.address, "stats": True}).metrics[
            "total_connections"]

    assert all(r.ok for r in asyncio.run(together()))
    before = connections()
    for _ in range(5):
        assert all(r.ok for r in asyncio.run(together()))
    assert connections() - before <= 1  # the second stats call's own


def test_memcached_restarted_is_not_failed_by_a_kept_connection(tmp_path) -> None:
    binary, port = servers.require("memcached", "memcached"), servers.free_port()
    argv = [binary, *(["-u", "root"] if os.geteuid() == 0 else []), "-l", "127.0.0.1",
            "-p", str(port), "-U", "0", "-m", "16"]
    address = f"127.0.0.1:{port}"
    for _ in range(2):  # the second server inherits a connection kept to the first
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            servers.wait_until(servers.accepts(("127.0.0.1", port)), 10, "memcached", proc,
                               tmp_path / "none.log")
            assert probe("memcached", {"address": address}).ok
        finally:
            proc.kill()
            proc.wait(timeout=10)
    assert probe("memcached", {"address": address}, 0.5).outcome is Outcome.CONNECT


def test_tcp_against_memcached_send_expect(memcached: servers.Server) -> None:
    ok = probe("tcp", {"address": memcached.address, "send": r"version\r\n", "expect": "^VERSION"})
    assert ok.ok
    miss = probe("tcp", {"address": memcached.address, "send": r"version\r\n",
                         "expect": "^NOPE", "max_bytes": 8})
    assert miss.outcome is Outcome.FAILED and "not found (8 bytes read)" in miss.reason


def test_http_ok_status_headers_body(nginx: servers.Server) -> None:
    url = f"http://127.0.0.1:{nginx.port}"
    result = probe("http", {"url": f"{url}/healthz", "body": "all good",
                            "headers": ["X-Health: ^green$", "Content-Type: text/plain"]})
    assert result.ok and result.metrics["status"] == 200, result
    assert probe("http", {"url": f"{url}/healthz", "method": "HEAD"}).ok
    assert probe("http", {"url": f"{url}/moved"}).metrics["status"] == 302
    big = probe("http", {"url": f"{url}/static/big", "body": "needle", "body_bytes": "2M"})
    assert big.ok and big.metrics["bytes"] == (1 << 20) + 6


def test_http_failures_name_the_cause(nginx: servers.Server) -> None:
    url = f"http://127.0.0.1:{nginx.port}"
    fail = probe("http", {"url": f"{url}/fail"})
    assert (fail.outcome, fail.reason, fail.metrics["status"]) == (
        Outcome.FAILED, "HTTP 503 (expected 200-399)", 503)
    assert probe("http", {"url": f"{url}/moved", "status": "200"}).reason == (
        "HTTP 302 (expected 200)")
    miss = probe("http", {"url": f"{url}/static/big", "body": "needle"})
    assert miss.reason == "body /needle/ not found in 65536 bytes"
    header = probe("http", {"url": f"{url}/healthz", "headers": "X-Health: red"})
    assert header.reason == "header x-health: 'green' does not match /red/"
    refused = probe("http", {"url": f"http://127.0.0.1:{servers.free_port()}/"})
    assert refused.outcome is Outcome.CONNECT and "Connection refused" in refused.reason


def test_http_over_unix_socket_both_forms(nginx: servers.Server) -> None:
    assert probe("http", {"url": f"http+unix://{nginx.socket}/healthz", "body": "good"}).ok
    encoded = nginx.socket.replace("/", "%2F")
    assert probe("http", {"url": f"http+unix://{encoded}/healthz", "body": "good"}).ok
    missing = probe("http", {"url": "http+unix:///nonexistent/app.sock/up"})
    assert missing.outcome is Outcome.CONNECT


def test_https_reports_cert_days_and_expiry(nginx: servers.Server) -> None:
    url = f"https://127.0.0.1:{nginx.extra['tls_port']}/healthz"
    result = probe("http", {"url": url, "tls_verify": False})
    assert result.ok and 9.9 < result.metrics["cert_days_left"] <= 10, result
    soon = probe("http", {"url": url, "tls_verify": False, "cert_expiry": "30d"})
    assert soon.outcome is Outcome.FAILED and soon.reason.startswith("certificate expires in")
    untrusted = probe("http", {"url": url})
    assert untrusted.outcome is Outcome.FAILED and "self-signed" in untrusted.reason


def test_http_stopped_times_out(nginx: servers.Server) -> None:
    with nginx.stopped():
        result = probe("http", {"url": f"http://127.0.0.1:{nginx.port}/healthz"}, 0.5)
    assert_timeout(result, 0.5)
    assert result.reason == "timeout after 500ms reading status line"


def test_mysql_greeting_tcp_and_socket(mariadb: servers.Server) -> None:
    for table in ({"address": mariadb.address}, {"socket": mariadb.socket}):
        result = probe("mysql", table)
        assert result.ok and "MariaDB" in result.metrics["version"], result
        assert result.metrics["connection_id"] > 0


def test_mysql_login_ping_and_query(mariadb: servers.Server) -> None:
    creds = {"user": servers.MYSQL_USER, "password_file": mariadb.extra["password_file"]}
    for where in ({"address": mariadb.address}, {"socket": mariadb.socket}):
        result = probe("mysql", {**where, **creds, "query": "SELECT 41 + 1"})
        assert result.ok and result.metrics["query_result"] == 42, result


def test_mysql_login_over_tls_verifies_the_server(mariadb: servers.Server) -> None:
    creds = {"user": servers.MYSQL_USER, "password_file": mariadb.extra["password_file"]}
    cipher = ("SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS "
              "WHERE VARIABLE_NAME = 'Ssl_cipher'")
    result = probe("mysql", {"address": mariadb.address, **creds, "tls": True,
                             "tls_ca": str(mariadb.extra["cert"]), "query": cipher})
    assert result.ok and result.metrics["query_result"], result  # a cipher: TLS is on
    plain = probe("mysql", {"address": mariadb.address, **creds, "query": cipher})
    assert plain.ok and plain.metrics["query_result"] == "", plain
    untrusted = probe("mysql", {"address": mariadb.address, **creds, "tls": True})
    assert untrusted.outcome is Outcome.FAILED, untrusted
    assert untrusted.reason.startswith(f"TLS certificate of {mariadb.address} rejected: self")


def test_mysql_bad_password_fails_without_leaking(mariadb: servers.Server, tmp_path) -> None:
    wrong = tmp_path / "wrong.pass"
    wrong.write_text("not-the-password-xyzzy\n")
    wrong.chmod(0o600)
    result = probe("mysql", {"address": mariadb.address, "user": servers.MYSQL_USER,
                             "password_file": str(wrong)})
    assert result.outcome is Outcome.FAILED and "Access denied" in result.reason
    assert "xyzzy" not in result.reason and "(error 1045)" in result.reason
    spec = schema.build(REGISTRY["mysql"].spec, {"address": mariadb.address,
                                                 "user": servers.MYSQL_USER,
                                                 "password_file": str(wrong)})
    wrong.chmod(0o644)  # loosened after the config was read: refused when used, too
    loose = asyncio.run(run("mysql", spec, 5.0))
    assert loose.outcome is Outcome.UNKNOWN and "readable by group or others" in loose.reason
    with pytest.raises(schema.SpecError, match="readable by group or others"):
        schema.build(REGISTRY["mysql"].spec, {"address": mariadb.address, "user": "u",
                                              "password_file": str(wrong)})


def test_mysql_stopped_times_out_and_leaves_no_thread(mariadb: servers.Server) -> None:
    creds = {"user": servers.MYSQL_USER, "password_file": mariadb.extra["password_file"]}
    fds, threads = baseline()
    with mariadb.stopped():
        greeting = probe("mysql", {"address": mariadb.address}, 0.5)
        login = probe("mysql", {"socket": mariadb.socket, **creds}, 0.5)
    assert_timeout(greeting, 0.5)
    assert greeting.reason == "timeout after 500ms reading greeting"
    assert_timeout(login, 0.5)
    assert login.reason == "timeout after 500ms reading greeting"
    assert threading.active_count() == threads
    assert open_fds() == fds
    assert probe("mysql", {"socket": mariadb.socket, **creds}).ok


def test_mysql_probe_of_http_server_is_not_ok(nginx: servers.Server) -> None:
    result = probe("mysql", {"address": f"127.0.0.1:{nginx.port}"}, 0.5)
    assert_timeout(result, 0.5)  # an HTTP server waits for a request: nothing to read
