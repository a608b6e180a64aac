"""Addresses and stream connections shared by the socket probes (tcp, http, memcached, mysql)."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import socket
import ssl
from dataclasses import dataclass
from typing import AsyncIterator

from sdwatch.probes.base import CheckFailed, ConnectError, ProtocolError, stage


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
    stage(f"connecting to {address}")
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
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(fd)
