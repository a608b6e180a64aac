"""Hostile peers: every kind fails with the right outcome within its timeout, nothing escapes,
and 1,000 probes leave the process with exactly the fds and threads it had."""

from __future__ import annotations

import asyncio
import threading

import pytest
from leaks import baseline, open_fds, settled

from sdwatch import schema
from sdwatch.probes import REGISTRY
from sdwatch.probes.base import ProbeResult, run
from sdwatch.probes.errors import Outcome

pytestmark = pytest.mark.integration

TIMEOUT = 0.5

# (kind, behaviour, extra keys, outcome, reason fragment)
CASES = [
    ("tcp", "silence", {"expect": "^OK"}, "timeout", "waiting for /^OK/"),
    ("tcp", "close", {"expect": "^OK"}, "failed", "connection closed"),
    ("tcp", "garbage", {"expect": "^OK", "max_bytes": 64}, "failed", "64 bytes read"),
    # RST right after accept: seen while connecting, sending or reading, depending on timing.
    ("tcp", "reset", {"send": r"x\r\n", "expect": "x"}, "connect|protocol|failed",
     "Connection reset|connection lost|connection closed"),
    ("http", "silence", {}, "timeout", "reading status line"),
    ("http", "garbage", {}, "protocol", "not an HTTP status line"),
    # A peer that closes at once may be seen as EOF or, if our request arrived after its
    # close, as a reset: both are "closed early" (protocol).
    ("http", "close", {}, "protocol", "connection closed in status line|connection lost"),
    ("http", "reset", {}, "connect|protocol", "Connection reset|connection lost|connection closed"),
    ("http", "drip", {}, "timeout", "reading status line"),
    ("http", "huge", {"body": "needle"}, "failed", "not found in 65536 bytes"),
    ("http", "headers", {}, "protocol", "headers exceed 65536 bytes"),
    ("http", "ssh", {}, "protocol", "not an HTTP status line"),
    ("mysql", "silence", {}, "timeout", "reading greeting"),
    ("mysql", "garbage", {}, "protocol", "not a MySQL"),
    ("mysql", "close", {}, "protocol", "connection closed reading greeting"),
    ("mysql", "drip", {}, "timeout", "reading greeting"),
    ("mysql", "ssh", {}, "protocol", "not a MySQL greeting"),
    ("mysql", "mysql_error", {}, "failed", "Too many connections (error 1040)"),
    ("memcached", "silence", {}, "timeout", "waiting for NOOP reply"),
    ("memcached", "garbage", {}, "protocol", "not a memcached binary response"),
    ("memcached", "close", {}, "protocol", "connection closed waiting for NOOP|connection lost"),
    ("memcached", "ssh", {}, "protocol", "magic 0x53"),
    ("memcached", "ssh", {"stats": True}, "protocol", "stats refused|unexpected stats line"),
    ("memcached", "drip", {}, "timeout", "waiting for NOOP reply"),
    ("redis", "silence", {}, "timeout", "waiting for PONG"),
    ("redis", "garbage", {}, "protocol", "not a Redis reply"),
    ("redis", "close", {}, "protocol", "connection closed waiting for PONG|connection lost"),
    ("redis", "reset", {}, "connect|protocol",
     "Connection reset|connection lost|connection closed"),
    ("redis", "ssh", {}, "protocol", "not a Redis reply"),
    ("redis", "mysql_error", {}, "protocol", "not a Redis reply"),
    ("redis", "redis_drip", {}, "timeout", "waiting for PONG"),
    ("redis", "redis_loading", {}, "failed", "loading the dataset"),
    ("redis", "headers", {}, "protocol", "not a Redis reply"),
    ("postgresql", "silence", {}, "timeout", "waiting for the startup reply"),
    ("postgresql", "garbage", {}, "protocol", "not a PostgreSQL reply"),
    ("postgresql", "close", {}, "protocol",
     "connection closed waiting for the startup reply|connection lost"),
    ("postgresql", "reset", {}, "connect|protocol",
     "Connection reset|connection lost|connection closed"),
    ("postgresql", "ssh", {}, "protocol", "not a PostgreSQL reply"),
    ("postgresql", "mysql_error", {}, "protocol", "not a PostgreSQL reply"),
    ("postgresql", "drip", {}, "timeout", "waiting for the startup reply"),
    ("postgresql", "pg_drip", {}, "timeout", "waiting for the startup reply"),
    ("postgresql", "pg_starting", {}, "failed", "not accepting connections: the database system"),
    ("postgresql", "pg_too_many", {}, "failed", "too many connections: sorry"),
    ("tls", "silence", {}, "timeout", "TLS handshake"),
    ("tls", "garbage", {}, "protocol", "TLS handshake with"),
    ("tls", "close", {}, "protocol", "connection lost in the TLS handshake|TLS handshake with"),
    ("tls", "reset", {}, "connect|protocol", "Connection reset|connection lost|TLS handshake"),
    ("tls", "ssh", {}, "protocol", "TLS handshake with"),
    ("tls", "drip", {}, "timeout|protocol", "TLS handshake"),
    ("tls", "silence", {"starttls": "smtp"}, "timeout", "waiting for the SMTP greeting"),
    ("tls", "ssh", {"starttls": "smtp"}, "protocol", "not an SMTP reply"),
    ("tls", "headers", {"starttls": "imap"}, "protocol", "not an IMAP greeting"),
    ("tls", "close", {"starttls": "pop3"}, "protocol", "connection closed waiting for the POP3"),
]


def spec(kind: str, address: str, extra: dict):
    target = {"url": f"http://{address}/"} if kind == "http" else {"address": address}
    return schema.build(REGISTRY[kind].spec, {**target, **extra})


@pytest.mark.parametrize("kind, behaviour, extra, outcome, fragment", CASES,
                         ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_hostile_peer_gives_the_right_outcome(hostile: dict[str, str], kind: str,
                                              behaviour: str, extra: dict, outcome: str,
                                              fragment: str) -> None:
    result = asyncio.run(run(kind, spec(kind, hostile[behaviour], extra), TIMEOUT))
    assert result.outcome.value in outcome.split("|"), result
    assert any(f in result.reason for f in fragment.split("|")), result
    if outcome == "timeout":
        assert 0.8 * TIMEOUT <= result.duration <= 1.2 * TIMEOUT, result
    else:
        assert result.duration <= 1.2 * TIMEOUT, result


def test_thousand_hostile_probes_leak_no_fd_or_thread(hostile: dict[str, str]) -> None:
    specs = [(kind, spec(kind, hostile[behaviour], extra))
             for kind, behaviour, extra, _, _ in CASES]

    async def batch(start: int, size: int) -> list[ProbeResult]:
        return await asyncio.gather(*(run(*specs[(start + i) % len(specs)], 0.2)
                                      for i in range(size)))

    async def main() -> list[ProbeResult]:
        results: list[ProbeResult] = []
        for start in range(0, 1000, 125):
            results += await batch(start, 125)
        return results

    asyncio.run(batch(0, len(specs)))  # warm-up: lazy imports, the loop's own fds
    fds, threads = baseline()
    results = asyncio.run(main())
    assert len(results) == 1000 and not any(r.ok for r in results)
    assert {r.outcome for r in results} <= {
        Outcome.TIMEOUT, Outcome.PROTOCOL, Outcome.FAILED, Outcome.CONNECT}
    # Exact equality: each asyncio.run() closes its loop (and selector/self-pipe fds), and every
    # probe aborts its transport before returning, so any difference is a leak.  The settle
    # deadline only covers a transport whose close was scheduled on the (now closed) loop.
    assert settled(open_fds, fds) == fds
    assert settled(threading.active_count, threads) == threads


def test_mysql_login_against_hostile_peers_leaks_no_thread(hostile: dict[str, str],
                                                           tmp_path) -> None:
    password = tmp_path / "pass"
    password.write_text("secret\n")
    password.chmod(0o600)
    fds, threads = baseline()

    async def main() -> list[ProbeResult]:
        return await asyncio.gather(*(
            run("mysql", spec("mysql", hostile[b], {"user": "u", "password_file": str(password)}),
                0.3) for b in ("silence", "garbage", "close", "drip", "ssh", "mysql_error",
                          "mysql_mute", "mysql_mute") * 20))

    results = asyncio.run(main())
    assert not any(r.ok for r in results) and all(r.duration <= 0.36 for r in results)
    # mysql_mute answers the greeting, so PyMySQL's thread is blocked in the login when the
    # deadline comes: these prove the interrupt-and-join path.
    logins = [r for r in results if r.reason == "timeout after 300ms logging in"]
    assert len(logins) == 40
    assert all("secret" not in r.reason for r in results)
    assert settled(open_fds, fds) == fds
    assert settled(threading.active_count, threads) == threads


def test_postgresql_error_about_us_proves_a_running_server(hostile: dict[str, str]) -> None:
    # what pg_isready reports too: the server answered the startup, it accepts connections
    result = asyncio.run(run("postgresql", spec("postgresql", hostile["pg_no_role"], {}),
                             TIMEOUT))
    assert result.ok and result.metrics == {"sqlstate": "28000"}, result
