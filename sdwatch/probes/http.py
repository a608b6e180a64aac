"""http: one HTTP/1.1 request (GET or HEAD, Connection: close) on asyncio streams, framed and
parsed by h11 (python3-h11, the sans-IO HTTP/1.1 implementation under httpx).  It costs
~0.1 ms of CPU per probe more than the parser it replaced (bench/probes: http 0.15 -> 0.25
ms, still over 2,000 probes/s on one core), which no schedule of health checks feels.

URLs: ``http://host[:port]/path``, ``https://…``, and ``http+unix:///run/puma/puma.sock/up``
where the socket is the longest prefix of the path that exists and is a socket (the rest is
the request path), or the explicit form ``http+unix://%2Frun%2Fpuma%2Fpuma.sock/up``.
Redirects are not followed: a 3xx is judged by ``status``.  The body is read only when
``body`` is set, and then only its first ``body_bytes``; headers are capped at 64 KiB.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import re
import stat
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Mapping, NamedTuple, Optional

from sdwatch import __version__
from sdwatch.probes import net
from sdwatch.probes.errors import CheckFailed, ConnectError, Metric, ProtocolError, stage
from sdwatch.probes.http_parse import cert_not_after, describe_ranges, parse_status_ranges
from sdwatch.quantities import Duration, Size, format_duration
from sdwatch.schema import SpecError

if TYPE_CHECKING:  # imported where used: status checks a config without them
    import asyncio
    import ssl

if TYPE_CHECKING:
    import h11

MAX_HEADER_BYTES = 64 * 1024


class Target(NamedTuple):
    """Where to connect and what to send: address (None for http+unix, resolved at probe time),
    unix path candidates, TLS, Host header, request path."""

    address: net.Address | None
    unix_path: str | None
    tls: bool
    host: str
    path: str


def parse_url(url: str) -> Target:
    """Given an http, https or http+unix URL, return its Target; raise ValueError."""
    import urllib.parse
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if scheme == "http+unix":
        if parts.netloc:  # %2F-encoded socket path
            sock = urllib.parse.unquote(parts.netloc)
            if not sock.startswith("/"):
                raise ValueError(f"socket path in {url!r} must be absolute (%2Frun%2F…)")
            return Target(None, sock, False, "localhost", path)
        if not parts.path.startswith("/"):
            raise ValueError(f"{url!r} needs a socket path: http+unix:///run/app.sock/path")
        return Target(None, None, False, "localhost", path)
    if scheme not in ("http", "https"):
        raise ValueError(f"unsupported URL scheme in {url!r} (http, https, http+unix)")
    try:
        hostname, port = parts.hostname, parts.port
    except ValueError as exc:
        raise ValueError(f"invalid URL {url!r}: {exc}") from None
    if not hostname:
        raise ValueError(f"URL {url!r} has no host")
    default = 443 if scheme == "https" else 80
    address = net.Address(hostname, port or default)
    host = str(address) if port and port != default else (
        f"[{hostname}]" if ":" in hostname else hostname)
    return Target(address, None, scheme == "https", host, path)


def tls_name(host: str) -> str:
    """Given a Host header value ("example.com:8443", "[::1]:8443", "::1"), return the name
    the server's certificate must carry ("example.com", "::1"); an IP literal is checked
    against the certificate's IP addresses.  Never "": asyncio skips the check for it."""
    import urllib.parse
    bare_ipv6 = host.count(":") > 1 and not host.startswith("[")
    try:
        name = host if bare_ipv6 else urllib.parse.urlsplit(f"//{host}").hostname
    except ValueError:
        name = None
    if not name:
        raise ValueError(f"no host name in {host!r}")
    return name


def find_socket(path: str) -> tuple[str, str]:
    """Given "/run/puma/puma.sock/up", return ("/run/puma/puma.sock", "/up"): the longest
    prefix that is a socket, and the rest as request path; raise ConnectError if none is."""
    parts = path.split("/")
    for i in range(len(parts), 1, -1):
        candidate = "/".join(parts[:i])
        try:
            if stat.S_ISSOCK(os.stat(candidate).st_mode):
                return candidate, "/" + "/".join(parts[i:])
        except OSError:
            continue
    raise ConnectError(f"no unix socket on the path {path}")


@dataclass(frozen=True)
class Spec:
    """See docs/probes.md.  headers: ("Name: regex", ...) each searched in that header."""

    url: str
    method: Literal["GET", "HEAD"] = "GET"
    status: str = "200-399"
    body: Optional[str] = None
    body_bytes: Size = Size(64 * 1024)
    headers: tuple[str, ...] = ()
    host: Optional[str] = None
    tls_verify: bool = True
    cert_expiry: Optional[Duration] = None
    ranges: tuple[tuple[int, int], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            target = parse_url(self.url)
        except ValueError as exc:
            raise SpecError("url", str(exc)) from None
        try:
            object.__setattr__(self, "ranges", parse_status_ranges(self.status))
        except ValueError as exc:
            raise SpecError("status", str(exc)) from None
        if self.body is not None:
            if self.method == "HEAD":
                raise SpecError("body", "a HEAD response has no body; use GET")
            _compile("body", self.body)
        for item in self.headers:
            name, sep, pattern = item.partition(":")
            if not sep or not re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", name.strip()):
                raise SpecError("headers", f"expected 'Name: regex', got {item!r}")
            _compile("headers", pattern.strip())
        if self.host is not None and target.tls:
            try:
                tls_name(self.host)
            except ValueError as exc:
                raise SpecError("host", str(exc)) from None
        if self.cert_expiry is not None and not target.tls:
            raise SpecError("cert_expiry", "needs an https:// URL")


def _compile(key: str, pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise SpecError(key, f"invalid regex {pattern!r}: {exc}") from None


@functools.cache
def _tls_context(verify: bool) -> ssl.SSLContext:
    """One context per mode for the process: loading the CA store costs ~60 ms each time."""
    import ssl
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def probe(spec: Spec) -> Mapping[str, Metric]:
    """Given a Spec, make one request; return metrics (status, version, bytes,
    cert_days_left); raise ConnectError, ProtocolError or CheckFailed."""
    target = parse_url(spec.url)
    address, path = target.address, target.path
    if address is None:
        sock, path = (target.unix_path, path) if target.unix_path else find_socket(target.path)
        address = net.Address(sock)
    host = spec.host or target.host
    import h11  # deferred: 22 ms of import that config validation need not pay

    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADER_BYTES)
    try:
        request = conn.send(h11.Request(method=spec.method, target=path, headers=[
            ("Host", host), ("User-Agent", f"sdwatch/{__version__}"), ("Accept", "*/*"),
            ("Connection", "close")])) + conn.send(h11.EndOfMessage())
    except h11.LocalProtocolError as exc:
        raise ProtocolError(f"cannot send this request: {exc}") from None
    tls = _tls_context(spec.tls_verify) if target.tls else None
    async with net.connect(address, limit=MAX_HEADER_BYTES, tls=tls,
                           server_hostname=tls_name(host) if tls else None) as (reader, writer):
        metrics: dict[str, Metric] = {}
        if tls:
            metrics["cert_days_left"] = _cert_days_left(writer)
        writer.write(request)
        stage("reading status line")
        response = await _read_head(reader, conn)
        metrics.update(status=response.status_code,
                       version=response.http_version.decode("ascii", "replace"))
        if not any(low <= response.status_code <= high for low, high in spec.ranges):
            raise CheckFailed(f"HTTP {response.status_code} "
                              f"(expected {describe_ranges(spec.ranges)})", metrics)
        headers = [(name.decode("ascii"), value.decode("latin-1"))
                   for name, value in response.headers]  # h11 lower-cases the names
        _check_headers(spec.headers, headers, metrics)
        if spec.body is not None:
            stage("reading body")
            data = await _read_body(reader, conn, spec.body_bytes)
            metrics["bytes"] = len(data)
            text = data.decode("utf-8", "replace")
            if not re.search(spec.body, text):
                raise CheckFailed(f"body /{spec.body}/ not found in {len(data)} bytes", metrics)
    if spec.cert_expiry is not None:
        left = float(metrics["cert_days_left"]) * 86400
        if left < spec.cert_expiry:
            raise CheckFailed(f"certificate expires in {format_duration(max(left, 0))} "
                              f"(threshold {format_duration(spec.cert_expiry)})", metrics)
    return metrics


def _cert_days_left(writer: asyncio.StreamWriter) -> float:
    import ssl
    ssl_object = writer.get_extra_info("ssl_object")
    decoded = ssl_object.getpeercert() if ssl_object else None
    if decoded and "notAfter" in decoded:  # verified: ssl decoded it already
        not_after = dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(decoded["notAfter"]),
                                              dt.UTC)
    else:
        der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        if not der:
            raise ProtocolError("server sent no certificate")
        try:
            not_after = cert_not_after(der)
        except ValueError as exc:
            raise ProtocolError(f"cannot read the certificate: {exc}") from None
    return round((not_after - dt.datetime.now(dt.UTC)).total_seconds() / 86400, 2)


async def _read_head(reader: asyncio.StreamReader, conn: h11.Connection) -> h11.Response:
    """Return the final response head, skipping interim 1xx responses."""
    import h11

    prefix = await net.read_exactly(reader, 5, "in status line")
    if prefix != b"HTTP/":  # fail fast on another protocol instead of waiting for a head
        raise ProtocolError(f"not an HTTP status line: {prefix!r}")
    conn.receive_data(prefix)
    stage("reading headers")
    while True:
        event = await _next_event(reader, conn, "headers")
        if isinstance(event, h11.Response):
            return event


async def _read_body(reader: asyncio.StreamReader, conn: h11.Connection, cap: int) -> bytes:
    """Return the first ``cap`` bytes of the body (h11 does the framing: Content-Length,
    chunked, or up to the end of the connection)."""
    import h11

    data = bytearray()
    while len(data) < cap:
        event = await _next_event(reader, conn, "the body")
        if isinstance(event, h11.Data):
            data += event.data
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            break
    return bytes(data[:cap])


async def _next_event(reader: asyncio.StreamReader, conn: h11.Connection, what: str) -> object:
    """Return h11's next event, reading as much as it needs; raise ProtocolError."""
    import h11

    closed = False
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            if exc.error_status_hint == 431:
                raise ProtocolError(f"headers exceed {MAX_HEADER_BYTES} bytes") from None
            raise ProtocolError(f"connection closed in {what}" if closed
                                else f"bad HTTP response: {exc}") from None
        if event is not h11.NEED_DATA:
            return event
        try:
            data = await reader.read(65536)
        except ConnectionError as exc:
            raise ProtocolError(f"connection lost in {what}: {net.describe_oserror(exc)}"
                                ) from None
        closed = not data
        conn.receive_data(data)  # b"": the peer closed


def _check_headers(wanted: tuple[str, ...], headers: list[tuple[str, str]],
                   metrics: Mapping[str, Metric]) -> None:
    for item in wanted:
        name, _, pattern = item.partition(":")
        name, pattern = name.strip().lower(), pattern.strip()
        values = [v for n, v in headers if n == name]
        if not values:
            raise CheckFailed(f"no {name} header", metrics)
        if not any(re.search(pattern, v) for v in values):
            raise CheckFailed(f"header {name}: {values[0][:60]!r} does not match /{pattern}/",
                              metrics)
