"""postgresql: the server speaks the protocol and accepts connections, or a real login.

Without credentials the probe does what ``pg_isready`` does: it sends a protocol-3.0
StartupMessage (user ``sdwatch``, database ``postgres``) and reads the first reply.  An
authentication request, or any error about *us* (unknown role, no pg_hba.conf entry,
wrong database), proves a server that accepts connections; the probe closes the socket
without answering.  The errors that mean the server will not take connections fail the
check: starting up, shutting down or in recovery (57P03) and too many connections (53300).
Like ``pg_isready``, an unknown role is logged by the server as a FATAL line; create the
role (``CREATE ROLE sdwatch LOGIN``) to keep the log quiet.

With ``user`` + ``password_file``: a real login and ``query`` (default ``SELECT 1``)
through psycopg2 in its asynchronous mode, polled on the event loop: no thread, and the
connection is closed at the deadline.  The password is read at every attempt, never kept
in the Spec, and scrubbed from any error text.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple, Optional

from sdwatch.probes import credentials, net
from sdwatch.probes.errors import CheckFailed, ConnectError, Metric, ProtocolError, stage
from sdwatch.schema import SpecError

DEFAULT_PORT = 5432
PROTOCOL_3 = 196608
MAX_MESSAGE = 64 * 1024
NOT_ACCEPTING = {"57P03": "not accepting connections", "53300": "too many connections"}


class Message(NamedTuple):
    """One backend message: its type byte and body."""

    type: bytes
    body: bytes


def encode_startup(params: Mapping[str, str]) -> bytes:
    """Given startup parameters, return a protocol-3.0 StartupMessage."""
    body = struct.pack(">I", PROTOCOL_3) + b"".join(
        k.encode() + b"\0" + v.encode() + b"\0" for k, v in params.items()) + b"\0"
    return struct.pack(">I", len(body) + 4) + body


def encode_message(m: Message) -> bytes:
    """Given a Message, return it as the backend sends it."""
    return m.type + struct.pack(">I", len(m.body) + 4) + m.body


def parse_header(data: bytes) -> tuple[bytes, int]:
    """Given a message's first 5 bytes, return (type, body length); raise ProtocolError."""
    if len(data) != 5:
        raise ProtocolError(f"message header must be 5 bytes, got {len(data)}")
    kind, length = data[:1], struct.unpack(">I", data[1:])[0]
    if kind not in b"RESNv" or not 4 <= length <= MAX_MESSAGE:
        raise ProtocolError(f"not a PostgreSQL reply: {data!r}")
    return kind, length - 4


def parse_error_fields(body: bytes) -> dict[str, str]:
    """Given an ErrorResponse/NoticeResponse body, return {field code: text}."""
    fields: dict[str, str] = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return fields


def judge(message: Message) -> dict[str, Metric]:
    """Given the first reply to a StartupMessage, return metrics when it proves a server
    that accepts connections; raise CheckFailed (will not accept) or ProtocolError."""
    if message.type == b"R":
        if len(message.body) < 4:
            raise ProtocolError("truncated authentication request")
        return {"auth_request": struct.unpack(">I", message.body[:4])[0]}
    if message.type == b"E":
        fields = parse_error_fields(message.body)
        code = fields.get("C", "")
        text = fields.get("M", "no message")
        if code in NOT_ACCEPTING or not code:
            raise CheckFailed(f"{NOT_ACCEPTING.get(code, 'refused')}: {text}"
                              + (f" ({code})" if code else ""))
        return {"sqlstate": code}
    if message.type == b"v":
        return {"auth_request": -1}  # NegotiateProtocolVersion: a server talking to us
    raise ProtocolError(f"unexpected first reply {message.type!r}")


@dataclass(frozen=True)
class Spec:
    """address: "host[:port]" (port 5432) or "unix:/path/.s.PGSQL.5432"; socket: the socket
    directory (e.g. /run/postgresql) or socket path, with ``port``; user + password_file:
    log in to ``database`` and run ``query``."""

    address: Optional[str] = None
    socket: Optional[str] = None
    port: int = DEFAULT_PORT
    user: Optional[str] = None
    password_file: Optional[str] = None
    database: str = "postgres"
    query: str = "SELECT 1"

    def __post_init__(self) -> None:
        if (self.address is None) == (self.socket is None):
            raise SpecError("address", "give exactly one of address or socket")
        if not 0 < self.port < 65536:
            raise SpecError("port", f"invalid port {self.port}")
        try:
            self.target  # noqa: B018 - validates
        except ValueError as exc:
            raise SpecError("address" if self.address else "socket", str(exc)) from None
        if (self.user is None) != (self.password_file is None):
            raise SpecError("password_file" if self.user else "user",
                            "user and password_file go together")
        credentials.validate(self.password_file)

    @property
    def target(self) -> net.Address:
        """The TCP address, or the socket: a directory means its .s.PGSQL.<port> (as libpq)."""
        address = net.parse_address(self.address or f"unix:{self.socket}",
                                    default_port=self.port)
        if address.is_unix and not os.path.basename(address.host).startswith(".s.PGSQL."):
            return net.Address(os.path.join(address.host, f".s.PGSQL.{self.port}"))
        return address


async def probe(spec: Spec) -> Mapping[str, Metric]:
    """Given a Spec, check the server accepts connections (or log in and query); return
    metrics; raise ProbeError."""
    if spec.user is not None:
        return await _login(spec)
    startup = encode_startup({"user": "sdwatch", "database": spec.database,
                              "application_name": "sdwatch"})
    async with net.connect(spec.target) as (reader, writer):
        writer.write(startup)
        stage("waiting for the startup reply")
        header = await net.read_exactly(reader, 5, "waiting for the startup reply")
        kind, length = parse_header(header)
        body = await net.read_exactly(reader, length, "reading the startup reply")
    return judge(Message(kind, body))


async def _login(spec: Spec) -> Mapping[str, Metric]:
    assert spec.password_file is not None and spec.user is not None
    password = credentials.load(spec.password_file)
    import psycopg2  # deferred: only credentialed probes pay for it
    import psycopg2.extensions as ext

    address = spec.target
    where: dict[str, str] = {}
    if address.is_unix:
        where.update(host=os.path.dirname(address.host), port=address.host.rsplit(".", 1)[-1])
    else:
        where.update(host=address.host, port=str(address.port))
        where["hostaddr"] = await _resolve(address)  # libpq would resolve on the loop
    stage(f"connecting and logging in to {address}")
    try:
        conn = psycopg2.connect(**where, user=spec.user, password=password,
                                dbname=spec.database, application_name="sdwatch", async_=1)
    except psycopg2.Error as exc:
        raise _pg_error(exc, password) from None
    try:
        try:
            await _wait(conn, ext)
            stage("running the query")
            cursor = conn.cursor()
            cursor.execute(spec.query)
            await _wait(conn, ext)
            row: Any = cursor.fetchone() if cursor.description else None
        except psycopg2.Error as exc:
            raise _pg_error(exc, password) from None
        metrics: dict[str, Metric] = {"version": conn.server_version}
        if row:
            value = row[0]
            metrics["query_result"] = value if isinstance(value, (int, float, str)) else str(value)
        return metrics
    finally:
        conn.close()  # closes libpq's socket at once, also when cancelled at the deadline


async def _resolve(address: net.Address) -> str:
    """Return the IP address to connect to, resolving a host name off the event loop."""
    import asyncio
    import socket
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in address.host else socket.AF_INET,
                         address.host)
        return address.host
    except OSError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            address.host, address.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConnectError(f"cannot resolve {address.host}: {exc.strerror}") from None
    return str(infos[0][4][0])


async def _wait(conn: Any, ext: Any) -> None:
    """Drive an asynchronous psycopg2 connection until its current operation is done."""
    while (state := conn.poll()) != ext.POLL_OK:
        if state == ext.POLL_READ:
            await net.readable(conn.fileno())
        elif state == ext.POLL_WRITE:
            await _writable(conn.fileno())
        else:
            raise ProtocolError(f"unexpected psycopg2 poll state {state}")


async def _writable(fd: int) -> None:
    import asyncio
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    loop.add_writer(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_writer(fd)


def _pg_error(exc: Exception, password: str) -> Exception:
    text = " ".join(str(exc).replace(password, "***").split()) if password else str(exc)
    if "Connection refused" in text or "No such file or directory" in text:
        return ConnectError(text)
    code = getattr(exc, "pgcode", None)
    if "FATAL" in text or code:
        return CheckFailed(f"{text} ({code})" if code else text)
    return ProtocolError(text)
