"""Addresses and stream connections shared by the socket probes (tcp, http, memcached, mysql)."""

from __future__ import annotations

import codecs
import contextlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, AsyncIterator

from sdwatch.probes.errors import CheckFailed, ConnectError, ProtocolError, stage

if TYPE_CHECKING:  # imported where used: status checks a config without them
    import asyncio
    import socket
    import ssl


@dataclass(frozen=True)
class Address:
    """A TCP endpoint (host, port) or a unix socket (path, port None)."""

    host: str
    port: int | None = None

    @property
    def is_unix(self) -> bool:
        return self.port is None

    def __str__(self) -> str:
        if self.port is None:
            return f"unix:{self.host}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_address(text: str, default_port: int | None = None) -> Address:
    """Given "host:port", "[::1]:port", "unix:/path" or a bare "/path", return an Address.

    Raise ValueError naming what is wrong.  ``default_port`` fills a missing port.
    """
    text = text.strip()
    if text.startswith("unix:") or text.startswith("/"):
        path = text[5:] if text.startswith("unix:") else text
        if not path.startswith("/"):
            raise ValueError(f"unix socket path must be absolute, got {path!r}")
        return Address(path)
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"invalid address {text!r} (use [::1]:port)")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host, port_text = text, ""
        elif ":" in host:
            raise ValueError(f"IPv6 address needs brackets: [{host}]:{port_text}")
    if not host:
        raise ValueError(f"address {text!r} has no host")
    if not port_text:
        if default_port is None:
            raise ValueError(f"address {text!r} has no port (use host:port or unix:/path)")
        return Address(host, default_port)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"invalid port {port_text!r} in {text!r}")
    return Address(host, int(port_text))


def unescape(text: str) -> bytes:
    """Given text with C-style escapes (\\r, \\n, \\t, \\xNN, \\\\), return its UTF-8 bytes.

    Raise ValueError on a malformed escape.
    """
    try:
        return codecs.escape_decode(text.encode("utf-8"))[0]  # type: ignore[attr-defined]
    except (ValueError, UnicodeError) as exc:
        raise ValueError(f"invalid escape in {text!r}: {exc}") from None


@contextlib.asynccontextmanager
async def connect(
    address: Address,
    *,
    limit: int = 64 * 1024,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """Given an Address, yield a connected (reader, writer); raise ConnectError if it fails.

    The transport is aborted on leaving, whatever the reason, so cancellation leaks no fd.
    """
    import asyncio
    import socket
    import ssl
    stage(f"connecting to {address}")
    if tls is None:
        plain = await _connect_plain(address, limit)
        try:
            yield plain, plain
        finally:
            plain.abort()
        return
    try:
        if address.is_unix:
            reader, writer = await asyncio.open_unix_connection(
                address.host, limit=limit, ssl=tls, server_hostname=server_hostname
            )
        else:
            reader, writer = await asyncio.open_connection(
                address.host, address.port, limit=limit, ssl=tls,
                server_hostname=server_hostname if tls else None,
            )
    except ssl.SSLCertVerificationError as exc:
        raise CheckFailed(f"TLS certificate of {address} rejected: {_ssl_reason(exc)}") from None
    except ssl.SSLError as exc:
        raise ProtocolError(f"TLS handshake with {address} failed: {_ssl_reason(exc)}") from None
    except socket.gaierror as exc:
        raise ConnectError(f"cannot resolve {address.host}: {exc.strerror}") from None
    except OSError as exc:
        raise ConnectError(f"cannot connect to {address}: {describe_oserror(exc)}") from None
    try:
        yield reader, writer
    finally:
        # abort(), not close(): no TLS close_notify dance or drain that could outlive the deadline.
        writer.transport.abort()


def describe_oserror(exc: OSError) -> str:
    """Return "Connection refused" rather than asyncio's "Connect call failed ('::1', 80)"."""
    return os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__


def _ssl_reason(exc: ssl.SSLError) -> str:
    return getattr(exc, "verify_message", None) or exc.reason or str(exc)


async def read_exactly(reader: asyncio.StreamReader, n: int, what: str) -> bytes:
    """Given a reader, return exactly n bytes; raise ProtocolError if the peer closes first."""
    import asyncio
    try:
        return await reader.readexactly(n)
    except asyncio.IncompleteReadError as exc:
        got = len(exc.partial)
        raise ProtocolError(
            f"connection closed after {got} of {n} bytes {what}" if got
            else f"connection closed {what}"
        ) from None
    except ConnectionError as exc:
        raise ProtocolError(f"connection lost {what}: {describe_oserror(exc)}") from None


async def readable(fd: int) -> None:
    """Return once ``fd`` is readable (data, EOF or error); cancellable, leaves no reader."""
    import asyncio
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def connect_socket(address: Address) -> socket.socket:
    """Given an Address, return a connected non-blocking socket; raise ConnectError.

    Cancellable (the deadline): the socket is closed then, no fd is left behind."""
    import asyncio
    import socket
    loop = asyncio.get_running_loop()
    try:
        if address.is_unix:
            family, target = socket.AF_UNIX, address.host
        elif (literal := _ip_literal(address.host)) is not None:
            family, target = literal, (address.host, address.port)
        else:  # a name: the resolver runs in the loop's executor, as asyncio's own does
            infos = await loop.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
            family, target = infos[0][0], infos[0][4]
    except socket.gaierror as exc:
        raise ConnectError(f"cannot resolve {address.host}: {exc.strerror}") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await loop.sock_connect(sock, target)
    except OSError as exc:
        sock.close()
        raise ConnectError(f"cannot connect to {address}: {describe_oserror(exc)}") from None
    except BaseException:
        sock.close()
        raise
    return sock


async def _connect_plain(address: Address, limit: int) -> SocketStream:
    """A plain connection: half the CPU of asyncio's streams (no transport/protocol layers),
    which is most of a probe's cost."""
    return SocketStream(await connect_socket(address), limit)


def _ip_literal(host: str) -> int | None:
    """The address family of an IP literal, or None for a host name (which needs resolving:
    a thread hop and most of a probe's cost, for nothing, when the address is literal)."""
    import socket
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return family
        except OSError:
            continue
    return None


class SocketStream:
    """The part of asyncio's StreamReader/StreamWriter the probes use, on a bare socket.

    Same results and exceptions: readexactly raises IncompleteReadError, readuntil raises
    LimitOverrunError past ``limit`` bytes, read returns b"" at end of file.
    """

    def __init__(self, sock: socket.socket, limit: int, watch: bool = False) -> None:
        self._sock = sock
        self._limit = limit
        self._buf = bytearray()
        self._eof = False
        self._out = bytearray()
        # watch: keep the socket in the loop's selector between reads (a kept connection,
        # read again and again: spares two epoll_ctl calls and their bookkeeping per read);
        # only for streams whose socket is closed through abort()
        self._watch = watch
        self._watched: asyncio.AbstractEventLoop | None = None  # the loop it is in
        self._waiter: asyncio.Future[None] | None = None

    async def _fill(self) -> None:
        import asyncio
        if not self._watch:
            self._got(await asyncio.get_running_loop().sock_recv(self._sock, 65536))
            return
        try:
            self._got(self._sock.recv(65536))
        except (BlockingIOError, InterruptedError):
            await self._readable(asyncio.get_running_loop())

    def _got(self, chunk: bytes) -> None:
        if chunk:
            self._buf += chunk
        else:
            self._eof = True

    async def _readable(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait until _on_readable has read something (or the end, or an error).  Only a
        waiting read reads: an idle kept connection's peer cannot fill our memory."""
        if self._watched is not loop:
            self._unwatch()
            loop.add_reader(self._sock.fileno(), self._on_readable)
            self._watched = loop
        self._waiter = waiter = loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _on_readable(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            self._unwatch()  # nobody reads: what came (or the end) waits in the kernel
            return
        try:
            self._got(self._sock.recv(65536))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._unwatch()
            waiter.set_exception(exc)
            return
        if self._eof:
            self._unwatch()  # readable for ever from now: it would spin the loop
        waiter.set_result(None)

    def _unwatch(self) -> None:
        loop, self._watched = self._watched, None
        if loop is not None and not loop.is_closed():
            loop.remove_reader(self._sock.fileno())

    def _take(self, n: int) -> bytes:
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    async def read(self, n: int = -1) -> bytes:
        """Return up to ``n`` bytes (all buffered if n < 0); b"" at end of file."""
        if not self._buf and not self._eof:
            await self._fill()
        return self._take(len(self._buf) if n < 0 else n)

    async def readexactly(self, n: int) -> bytes:
        """Return exactly ``n`` bytes; IncompleteReadError if the peer closes first."""
        import asyncio
        while len(self._buf) < n:
            if self._eof:
                partial = self._take(len(self._buf))
                raise asyncio.IncompleteReadError(partial, n)
            await self._fill()
        return self._take(n)

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        """Return data up to and including ``separator``."""
        import asyncio
        start = 0
        while True:
            at = self._buf.find(separator, start)
            if at >= 0:
                return self._take(at + len(separator))
            if len(self._buf) > self._limit:
                raise asyncio.LimitOverrunError("separator not found within the limit",
                                                len(self._buf))
            if self._eof:
                raise asyncio.IncompleteReadError(self._take(len(self._buf)), None)
            start = max(0, len(self._buf) - len(separator) + 1)
            await self._fill()

    def write(self, data: bytes) -> None:
        """Send what the socket takes now; keep the rest for drain()."""
        if not self._out:
            try:
                sent = self._sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                sent = 0  # as asyncio's writer: a broken connection shows in drain or read
            data = data[sent:]
        self._out += data

    async def drain(self) -> None:
        """Send what write() kept."""
        import asyncio
        if self._out:
            out, self._out = bytes(self._out), bytearray()
            await asyncio.get_running_loop().sock_sendall(self._sock, out)

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default  # no TLS on a plain socket

    def abort(self) -> None:
        """Close the socket at once."""
        self._unwatch()
        self._sock.close()
