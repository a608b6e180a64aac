"""A small HTTP/1.1 server for the daemon's event loop, hardened against hostile clients.

h11 parses; this module owns sockets, limits and deadlines.  A client gets ``REQUEST_TIMEOUT``
seconds to send a whole request (slow headers are cut off), ``MAX_HEAD`` bytes of request
line and headers, ``MAX_BODY`` bytes of body and ``IDLE_TIMEOUT`` seconds between requests on
a kept-alive connection; at most ``MAX_CONNECTIONS`` are open at once: a new one takes the
place of the oldest that has waited ``EVICT_AFTER`` seconds for its request (idle clients
cannot lock others out for long), or is closed at accept.  Garbage gets a 400 and the
connection is closed.  Handlers are plain functions of a ``Request`` that must not block:
they run on the loop between the daemon's own jobs.

On TCP bound to a loopback address, a request whose Host header is not a loopback name is
refused (421): a web page elsewhere cannot reach the API through DNS rebinding.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import stat
import struct
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import parse_qsl, unquote, urlsplit

import h11

log = logging.getLogger("sdwatch")

REQUEST_TIMEOUT = 5.0
IDLE_TIMEOUT = 15.0
WRITE_TIMEOUT = 10.0
MAX_HEAD = 16 * 1024
MAX_BODY = 4 * 1024
MAX_CONNECTIONS = 64
EVICT_AFTER = 1.0  # an idle connection may be closed for a new one after this long
_LOOPBACK_NAMES = ("localhost", "localhost.")


@dataclass(frozen=True)
class Peer:
    """Who is on the other end: ``uid`` for a unix socket (SO_PEERCRED), else None."""

    tcp: bool
    uid: int | None = None
    pid: int | None = None
    address: str = ""


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # percent-decoded, without the query
    query: dict[str, str]
    headers: dict[str, str]  # names in lower case
    body: bytes
    peer: Peer


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = field(default_factory=tuple)


Handler = Callable[[Request], Response]


def text(status: int, message: str) -> Response:
    """A plain-text response, for errors."""
    return Response(status, (message + "\n").encode(), "text/plain; charset=utf-8")


class Server:
    """Serves ``handler`` on a unix socket and, optionally, one TCP address."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.servers: list[asyncio.AbstractServer] = []
        self.connections: set[asyncio.Task] = set()
        # connections waiting for a request: (writer, since when), oldest first
        self.waiting: dict[asyncio.Task, tuple[asyncio.StreamWriter, float]] = {}
        self.loopback_only = False
        self.refused = 0  # connections closed at accept because too many were open

    async def listen_unix(self, path: str, mode: int = 0o660) -> None:
        """Listen on ``path`` (a stale socket there is replaced; anything else is an error)."""
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISSOCK(os.lstat(path).st_mode):
                raise OSError(f"{path} exists and is not a socket")
            os.unlink(path)
        old = os.umask(0o177)  # never a moment with a socket others may connect to
        try:
            server = await asyncio.start_unix_server(self._accept_unix, path, limit=MAX_HEAD)
        finally:
            os.umask(old)
        os.chmod(path, mode)
        self.servers.append(server)

    async def listen_tcp(self, host: str, port: int) -> tuple[str, int]:
        """Listen on host:port; return the bound address (port 0 picks one)."""
        self.loopback_only = ipaddress.ip_address(host).is_loopback
        server = await asyncio.start_server(self._accept_tcp, host, port, limit=MAX_HEAD,
                                            reuse_address=True)
        self.servers.append(server)
        return server.sockets[0].getsockname()[:2]

    async def close(self) -> None:
        """Stop listening and drop every open connection."""
        for server in self.servers:
            server.close()
        for task in list(self.connections):
            task.cancel()
        await asyncio.gather(*self.connections, return_exceptions=True)
        for server in self.servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self.servers.clear()

    # -- connections ----------------------------------------------------------------------------

    def _accept_unix(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        pid = uid = None
        with contextlib.suppress(OSError):
            pid, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET,
                                                              socket.SO_PEERCRED, 12))
        self._start(reader, writer, Peer(tcp=False, uid=uid, pid=pid))

    def _accept_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = writer.get_extra_info("peername")
        self._start(reader, writer, Peer(tcp=True, address=str(address[0]) if address else ""))

    def _start(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
               peer: Peer) -> None:
        if len(self.connections) >= MAX_CONNECTIONS:
            self.refused += 1
            oldest = next(iter(self.waiting), None)
            now = asyncio.get_running_loop().time()
            if oldest is None or now - self.waiting[oldest][1] < EVICT_AFTER:
                writer.transport.abort()
                return
            self.waiting.pop(oldest)[0].transport.abort()
            oldest.cancel()
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer, peer))
        self.connections.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self.connections.discard(task)
        self.waiting.pop(task, None)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     peer: Peer) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        try:
            first = True
            while True:
                me = asyncio.current_task()
                assert me is not None
                self.waiting[me] = (writer, asyncio.get_running_loop().time())
                try:
                    # a whole request within REQUEST_TIMEOUT; between requests, IDLE_TIMEOUT
                    async with asyncio.timeout(REQUEST_TIMEOUT if first else IDLE_TIMEOUT):
                        request = await self._read_request(conn, reader, peer, first)
                except TimeoutError:
                    return
                except _BadRequest as exc:
                    await self._send(conn, writer, text(exc.status, exc.message), close=True)
                    return
                finally:
                    self.waiting.pop(me, None)
                if request is None:
                    return
                response = self._guard(request)
                keep = conn.our_state is h11.SEND_RESPONSE and \
                    request.headers.get("connection", "").lower() != "close"
                await self._send(conn, writer, response, close=not keep,
                                 head=request.method == "HEAD")
                if not keep or conn.our_state is not h11.DONE:
                    return
                try:
                    conn.start_next_cycle()
                except h11.LocalProtocolError:
                    return
                first = False
        except (ConnectionError, OSError, h11.LocalProtocolError, TimeoutError):
            pass
        finally:
            writer.transport.abort()

    async def _read_request(self, conn: h11.Connection, reader: asyncio.StreamReader,
                            peer: Peer, first: bool) -> Request | None:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                status = exc.error_status_hint
                raise _BadRequest(status if status in (400, 413, 414, 431) else 400,
                                  "bad request") from None
            if event is h11.NEED_DATA:
                data = await reader.read(8192)
                conn.receive_data(data)
                if not data and conn.their_state is h11.IDLE:
                    return None  # the client closed between requests
                continue
            if isinstance(event, h11.Request):
                head = event
                length = dict(event.headers).get(b"content-length")
                if length is not None and length.isdigit() and int(length) > MAX_BODY:
                    raise _BadRequest(413, "request body too large")
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY:
                    raise _BadRequest(413, "request body too large")
            elif isinstance(event, h11.EndOfMessage) and head is not None:
                return _request(head, bytes(body), peer)
            elif isinstance(event, h11.ConnectionClosed):
                return None

    def _guard(self, request: Request) -> Response:
        if request.peer.tcp and self.loopback_only and not _loopback_host(
                request.headers.get("host", "")):
            return text(421, "this server answers only to a loopback Host name")
        try:
            return self.handler(request)
        except Exception:
            log.exception("API: internal error on %s %s", request.method, request.path)
            return text(500, "internal error")

    @staticmethod
    async def _send(conn: h11.Connection, writer: asyncio.StreamWriter, response: Response,
                    close: bool, head: bool = False) -> None:
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        headers = [("content-type", response.content_type),
                   ("content-length", str(len(response.body))),
                   ("cache-control", "no-store"), *response.headers]
        if close:
            headers.append(("connection", "close"))
        try:
            out = [conn.send(h11.Response(status_code=response.status, headers=headers))]
            if not head:
                out.append(conn.send(h11.Data(data=response.body)))
            out.append(conn.send(h11.EndOfMessage()))
        except h11.LocalProtocolError:
            return
        for part in out:  # not joined: a body of megabytes is not copied once more
            writer.write(part)
        async with asyncio.timeout(WRITE_TIMEOUT):
            await writer.drain()


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _request(head: h11.Request, body: bytes, peer: Peer) -> Request:
    target = head.target.decode("ascii", "replace")
    parts = urlsplit(target)
    headers: dict[str, str] = {}
    for name, value in head.headers:
        headers[name.decode("ascii", "replace")] = value.decode("latin-1")
    return Request(method=head.method.decode("ascii", "replace"), path=unquote(parts.path),
                   query=dict(parse_qsl(parts.query)), headers=headers, body=body, peer=peer)


def _loopback_host(host: str) -> bool:
    """Whether a Host header names this machine's loopback (with or without a port)."""
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1:].split("]", 1)[0]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
