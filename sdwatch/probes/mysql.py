"""mysql: MySQL-protocol liveness (MariaDB, MySQL, Sphinx/Manticore SphinxQL).

Default (no ``user``): read the server's initial handshake packet (protocol 10), parse the
version and connection id, and close the socket without answering.  There is no polite way
out before authentication (COM_QUIT is only valid after login), so the server logs an
aborted connection.  MySQL counts such handshakes against ``max_connect_errors`` for remote
TCP clients (never for loopback or unix sockets); probe remote servers with credentials.
An error packet instead of a greeting ("Too many connections", "Host … is blocked") fails
the check with the server's message.

With ``user`` + ``password_file``: a real login, COM_PING and optional ``query`` through
PyMySQL (Debian's 1.0.2 and PyPI's newer both work).  We connect the socket on the event
loop and hand it to PyMySQL, which then runs in a thread of its own with socket timeouts
set from the remaining deadline; on timeout the socket is shut down so the thread returns
at once and is joined.  The password is read at probe time, never stored in the Spec, and
scrubbed from any error text.  The password file must not be readable by group or others.
Every packet of the authentication exchange passes an AuthGuard (mysql_auth.py) first, so
the password is never sent in clear text, nor as an old-style hash, unless allowed.
"""

from __future__ import annotations

import functools
import os
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple, Optional

from sdwatch.probes import net
from sdwatch.probes.errors import CheckFailed, CheckUnknown, Metric, ProtocolError, remaining, stage
from sdwatch.probes.mysql_auth import CLIENT_PLUGIN_AUTH, AuthGuard
from sdwatch.schema import SpecError
from sdwatch.secretfile import check_password_file, read_password
from sdwatch.threads import in_thread

if TYPE_CHECKING:  # imported where used: status checks a config without them
    import socket
    import ssl

MAX_GREETING = 16 * 1024  # real greetings are ~100 bytes; an HTTP or SSH reply reads as huge
CLIENT_SECURE_CONNECTION, CLIENT_SSL = 0x8000, 0x800


class Greeting(NamedTuple):
    """The fields of a protocol-10 handshake that matter for a health check."""

    version: str
    connection_id: int
    capabilities: int = 0
    charset: int = 0
    status: int = 0
    auth_plugin: str = ""


def parse_packet_header(data: bytes) -> tuple[int, int]:
    """Given 4 bytes, return (payload length, sequence id); raise ProtocolError."""
    if len(data) != 4:
        raise ProtocolError(f"packet header must be 4 bytes, got {len(data)}")
    return int.from_bytes(data[:3], "little"), data[3]


def parse_greeting(payload: bytes) -> Greeting:
    """Given the first packet's payload, return the Greeting.

    Raise CheckFailed for an error packet (0xff) with the server's code and message, and
    ProtocolError for anything that is not a protocol-10 handshake.  Fields after the
    connection id are optional: old servers and SphinxQL send fewer.
    """
    if payload[:1] == b"\xff":
        code = int.from_bytes(payload[1:3], "little") if len(payload) >= 3 else 0
        message = payload[3:]
        if message[:1] == b"#" and len(message) >= 6:
            message = message[6:]  # SQL state marker and state
        text = message.decode("utf-8", "replace").strip()
        raise CheckFailed(f"server refused: {text or 'no message'} (error {code})")
    if payload[:1] != b"\x0a":
        raise ProtocolError(f"not a MySQL protocol-10 greeting: {payload[:16]!r}")
    end = payload.find(b"\x00", 1)
    if end < 0 or len(payload) < end + 5:
        raise ProtocolError("truncated MySQL greeting")
    version = payload[1:end].decode("utf-8", "replace")
    pos = end + 1
    connection_id = int.from_bytes(payload[pos:pos + 4], "little")
    pos += 4 + 8 + 1  # scramble part 1 and its filler
    caps = int.from_bytes(payload[pos:pos + 2], "little") if len(payload) >= pos + 2 else 0
    pos += 2
    if len(payload) < pos + 16:
        return Greeting(version, connection_id, caps)
    charset, status = payload[pos], int.from_bytes(payload[pos + 1:pos + 3], "little")
    caps |= int.from_bytes(payload[pos + 3:pos + 5], "little") << 16
    scramble_len = payload[pos + 5]
    pos += 16  # charset, status, caps high, scramble length, 10 reserved
    plugin = ""
    if caps & CLIENT_PLUGIN_AUTH:
        pos += max(13, scramble_len - 8) if caps & CLIENT_SECURE_CONNECTION else 0
        name_end = payload.find(b"\x00", pos)
        plugin = payload[pos:name_end if name_end >= 0 else len(payload)].decode("ascii", "replace")
    return Greeting(version, connection_id, caps, charset, status, plugin)


def encode_greeting(g: Greeting, scramble: bytes = bytes(range(1, 21))) -> bytes:
    """Given a Greeting, return a protocol-10 payload as a server sends it (20-byte scramble)."""
    caps = g.capabilities
    head = b"\x0a" + g.version.encode("utf-8") + b"\x00" + struct.pack("<I", g.connection_id)
    tail = struct.pack("<BHHB", g.charset, g.status, caps >> 16 & 0xFFFF, len(scramble) + 1)
    body = head + scramble[:8] + b"\x00" + struct.pack("<H", caps & 0xFFFF) + tail + bytes(10)
    if caps & CLIENT_SECURE_CONNECTION:
        body += scramble[8:] + b"\x00"
    if caps & CLIENT_PLUGIN_AUTH:
        body += g.auth_plugin.encode("ascii") + b"\x00"
    return body


@dataclass(frozen=True)
class Spec:
    """address: "host[:port]" (port 3306) or "unix:/path"; socket: a unix path instead;
    user + password_file: log in and COM_PING; query: run it and report its first value;
    tls: log in over TLS, verified against the system's CAs or tls_ca (TCP only; a server
    that does not offer TLS fails the probe before anything is sent);
    allow_cleartext_password: answer a server that asks for the password itself (PAM,
    mysql_clear_password, sha256), over a unix socket or TLS only.
    The password itself is never held here, so repr() cannot show it."""

    address: Optional[str] = None
    socket: Optional[str] = None
    user: Optional[str] = None
    password_file: Optional[str] = None
    query: Optional[str] = None
    tls: bool = False
    tls_ca: Optional[str] = None
    allow_cleartext_password: bool = False

    def __post_init__(self) -> None:
        if (self.address is None) == (self.socket is None):
            raise SpecError("address", "give exactly one of address or socket")
        try:
            net.parse_address(self.address or f"unix:{self.socket}", default_port=3306)
        except ValueError as exc:
            raise SpecError("address" if self.address else "socket", str(exc)) from None
        if (self.user is None) != (self.password_file is None):
            raise SpecError("password_file" if self.user else "user",
                            "user and password_file go together")
        if self.query is not None and self.user is None:
            raise SpecError("query", "needs user and password_file")
        if self.tls and self.user is None:
            raise SpecError("tls", "needs user and password_file (TLS protects the login)")
        if self.tls and self.target.is_unix:
            raise SpecError("tls", "a unix socket needs no TLS")
        if self.tls_ca is not None and not self.tls:
            raise SpecError("tls_ca", "needs tls = true")
        if self.tls_ca is not None and not os.path.isabs(self.tls_ca):
            raise SpecError("tls_ca", f"must be absolute, got {self.tls_ca!r}")
        if self.allow_cleartext_password:
            if self.user is None:
                raise SpecError("allow_cleartext_password", "needs user and password_file")
            if not self.secure_transport:
                raise SpecError("allow_cleartext_password", "only over a unix socket or with "
                                "tls = true: on plain TCP whoever holds the port while the "
                                "server is down gets it")
        if self.password_file is not None and os.path.exists(self.password_file):
            try:  # refused when the config is read (sdwatch validate), not only when used;
                # a file not there yet fails the probe with its reason, not the whole config
                check_password_file(self.password_file)
            except ValueError as exc:
                raise SpecError("password_file", str(exc)) from None

    @property
    def target(self) -> net.Address:
        return net.parse_address(self.address or f"unix:{self.socket}", default_port=3306)

    @property
    def secure_transport(self) -> bool:
        """A unix socket (only root can take over its path) or verified TLS."""
        return self.tls or self.target.is_unix


async def probe(spec: Spec) -> Mapping[str, Metric]:
    """Given a Spec, check the greeting (or log in); return metrics (version, connection_id,
    query_result); raise ConnectError, ProtocolError or CheckFailed."""
    if spec.user is not None:
        return await _login(spec)
    async with net.connect(spec.target) as (reader, _writer):
        stage("reading greeting")
        length, _seq = parse_packet_header(await net.read_exactly(reader, 4, "reading greeting"))
        if not 0 < length <= MAX_GREETING:
            raise ProtocolError(f"not a MySQL greeting (first packet claims {length} bytes)")
        greeting = parse_greeting(await net.read_exactly(reader, length, "reading greeting"))
    return {"version": greeting.version, "connection_id": greeting.connection_id}


async def _connect_socket(address: net.Address) -> socket.socket:
    """Connect a non-blocking socket on the loop (cancellable); raise ConnectError."""
    stage(f"connecting to {address}")
    return await net.connect_socket(address)


async def _peek_greeting(sock: socket.socket) -> Greeting:
    """Check the greeting without consuming it (PyMySQL reads it next): our parser names an
    error packet or a wrong protocol better than PyMySQL does, and before any thread starts."""
    stage("reading greeting")
    try:
        length, _seq = parse_packet_header(await _peek(sock, 4))
        if not 0 < length <= MAX_GREETING:
            raise ProtocolError(f"not a MySQL greeting (first packet claims {length} bytes)")
        return parse_greeting((await _peek(sock, 4 + length))[4:])
    except OSError as exc:
        raise ProtocolError(f"connection lost reading greeting: {net.describe_oserror(exc)}"
                            ) from None


async def _peek(sock: socket.socket, needed: int) -> bytes:
    """Return the first ``needed`` bytes waiting on a non-blocking socket, left unread; raise
    ProtocolError if the peer closes first.  Waits on an edge-triggered epoll: every arrival
    is an event, also on unix sockets, where poll() ignores SO_RCVLOWAT and a socket holding
    part of the greeting stays readable without a byte more arriving."""
    import select
    import socket
    with select.epoll(1) as ep:
        ep.register(sock.fileno(), select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET)
        closed = False
        while True:
            try:
                data: bytes | None = sock.recv(needed, socket.MSG_PEEK)
            except (BlockingIOError, InterruptedError):
                data = None
            if data is not None and (len(data) == needed or not data or closed):
                if len(data) < needed:
                    raise ProtocolError("connection closed reading greeting")
                return data
            await net.readable(ep.fileno())
            closed = any(events & (select.EPOLLRDHUP | select.EPOLLHUP)
                         for _fd, events in ep.poll(0))


async def _login(spec: Spec) -> Mapping[str, Metric]:
    import socket
    import ssl
    assert spec.password_file is not None
    try:
        password = read_password(spec.password_file)
    except ValueError as exc:
        raise CheckUnknown(str(exc)) from None
    import pymysql  # deferred: only credentialed probes pay for it

    sock = await _connect_socket(spec.target)
    try:
        greeting = await _peek_greeting(sock)
        if spec.tls and not greeting.capabilities & CLIENT_SSL:
            raise ProtocolError("server does not offer TLS; refused to log in without it")
        guard = AuthGuard(greeting.auth_plugin, greeting.capabilities,
                          spec.allow_cleartext_password and spec.secure_transport)
        tls = _tls_context(spec.tls_ca) if spec.tls else None
        budget = max(remaining(), 0.05) + 1.0  # backstop only; the runner's deadline is first
        sock.setblocking(True)
        sock.settimeout(budget)

        def work() -> tuple[str, int, Any]:
            return _session(sock, spec, password, tls, guard, budget)

        def interrupt() -> None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        stage("logging in")
        try:
            version, thread_id, row = await in_thread(work, interrupt)
        except pymysql.MySQLError as exc:
            if isinstance(exc.__context__, ssl.SSLCertVerificationError):
                raise CheckFailed(f"TLS certificate of {spec.target} rejected: "
                                  f"{exc.__context__.verify_message}") from None
            raise _mysql_error(exc, password) from None
        except OSError as exc:
            raise ProtocolError(_scrub(f"connection lost: {exc}", password)) from None
    finally:
        sock.close()
    metrics: dict[str, Metric] = {"version": version, "connection_id": thread_id}
    if row:
        value = row[0]
        metrics["query_result"] = value if isinstance(value, (int, float, str)) else str(value)
    return metrics


def _session(sock: socket.socket, spec: Spec, password: str, tls: ssl.SSLContext | None,
             guard: AuthGuard, budget: float) -> tuple[str, int, Any]:
    """Log in over ``sock`` (blocking, in a thread), ping, run the query; return the server's
    version, the connection id and the query's first row."""
    # Built here, not on the loop: construction is not free.  ssl_disabled without tls: newer
    # PyMySQL would otherwise load the system CA store (~60 ms) on every attempt, and fall back
    # to plain text quietly.
    conn = _guarded_connection()(
        host=spec.target.host, ssl=tls, ssl_disabled=tls is None,
        user=spec.user, password=password, defer_connect=True,
        connect_timeout=budget, read_timeout=budget, write_timeout=budget,
    )
    conn.auth_guard = guard
    conn.connect(sock)
    try:
        conn.ping(reconnect=False)
        row = None
        if spec.query is not None:
            with conn.cursor() as cursor:
                cursor.execute(spec.query)
                row = cursor.fetchone()
        return conn.get_server_info(), conn.thread_id(), row
    finally:
        try:
            conn.close()  # COM_QUIT: a polite goodbye
        except Exception:  # noqa: BLE001 - the socket may already be gone
            pass


@functools.cache
def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    """One verifying context per CA file for the process: loading a CA store costs ~60 ms."""
    import ssl
    return ssl.create_default_context(cafile=ca_file)


@functools.cache
def _guarded_connection() -> type:
    """PyMySQL's Connection with every packet the server sends shown to an AuthGuard first,
    so a refused exchange ends before PyMySQL answers it (with the password or a hash).
    ``_read_packet`` is where every authentication path of PyMySQL (1.0.2 to 2.2) reads."""
    import pymysql

    class GuardedConnection(pymysql.connections.Connection):
        auth_guard: AuthGuard | None = None

        def _read_packet(self, *args: Any, **kwargs: Any) -> Any:
            packet = super()._read_packet(*args, **kwargs)
            if self.auth_guard is not None:  # the greeting (0x0a) passes: already checked
                self.auth_guard.check(packet.get_all_data())
            return packet

    return GuardedConnection


def _scrub(text: str, password: str) -> str:
    return text.replace(password, "***") if password else text


def _mysql_error(exc: Exception, password: str) -> Exception:
    args = exc.args
    code = args[0] if args and isinstance(args[0], int) else 0
    message = _scrub(str(args[1] if len(args) > 1 else args[0] if args else exc), password)
    if not code or code in (2003, 2006, 2013):  # client-side: bad packet, gone away, lost
        return ProtocolError(f"{message} (error {code})" if code else message)
    return CheckFailed(f"{message} (error {code})")
