"""memcached: binary-protocol NOOP liveness, or the text ``stats`` command with limits.

Liveness (default) sends a 24-byte binary NOOP request and checks the 24-byte response
header (magic 0x81, opcode NOOP, status 0, our opaque).  With ``stats = true`` or any
``stats_max``/``stats_min`` limit it sends the text command ``stats`` instead and reports
every numeric field as a metric; a limit "curr_connections=900" fails the check when the
field is above (max) or below (min) the number.

The NOOP is sent over a kept connection when one is idle and younger than FRESH seconds
(a new connection costs most of a probe's CPU): a failure on a kept connection is never
the verdict, the NOOP is retried once over a new connection within the same deadline, and
a connection that did not complete a clean exchange is closed, never kept.
"""

from __future__ import annotations

import functools
import itertools
import os
import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, NamedTuple, Optional

from sdwatch.probes import net
from sdwatch.probes.errors import CheckFailed, Metric, ProbeError, ProtocolError, stage
from sdwatch.probes.limits import check, number, parse_limits
from sdwatch.schema import SpecError

if TYPE_CHECKING:  # imported where used: status checks a config without them
    import asyncio

# magic, opcode, key length, extras length, data type, status, body length, opaque, cas
HEADER = struct.Struct(">BBHBBHIIQ")
REQUEST_MAGIC, RESPONSE_MAGIC, OP_NOOP = 0x80, 0x81, 0x0A
MAX_STATS_BYTES = 64 * 1024
FRESH = 30.0  # seconds: a kept connection older than this is replaced by a new one
# idle kept connections per address, at most: probes of one address due together each need
# one (with fewer, most of them connect anew: the cost the kept connections are there to spare)
KEEP = 64
_kept: dict[net.Address, list[tuple[net.SocketStream, float]]] = {}  # idle, with birth time
_opaques = itertools.count(int.from_bytes(os.urandom(4), "big"))


class Header(NamedTuple):
    """A binary-protocol header (request or response)."""

    magic: int
    opcode: int
    key_length: int
    extras_length: int
    data_type: int
    status: int  # vbucket id in requests
    body_length: int
    opaque: int
    cas: int


def encode_header(h: Header) -> bytes:
    """Given a Header, return its 24 bytes."""
    return HEADER.pack(*h)


def parse_header(data: bytes) -> Header:
    """Given 24 bytes, return the Header; raise ProtocolError unless it is a response header."""
    if len(data) != HEADER.size:
        raise ProtocolError(f"binary header must be 24 bytes, got {len(data)}")
    header = Header(*HEADER.unpack(data))
    if header.magic != RESPONSE_MAGIC:
        raise ProtocolError(f"not a memcached binary response (magic 0x{header.magic:02x}): "
                            f"{data[:16]!r}")
    return header


def parse_stats(data: bytes) -> dict[str, Metric]:
    """Given the reply to ``stats`` up to and including "END\\r\\n", return the fields.

    Values become int or float when they are plain decimal numbers, else str.  Raise
    ProtocolError on an error reply or any line that is not "STAT name value".
    """
    if not data.endswith(b"END\r\n") or (data != b"END\r\n" and not data.endswith(b"\r\nEND\r\n")):
        raise ProtocolError(f"stats reply does not end with END: {data[-40:]!r}")
    stats: dict[str, Metric] = {}
    for raw in data[:-5].split(b"\r\n")[:-1]:
        parts = raw.split(b" ", 2)
        if len(parts) != 3 or parts[0] != b"STAT" or not parts[1]:
            raise ProtocolError(f"unexpected stats line {raw[:80]!r}")
        try:
            name, text = parts[1].decode("ascii"), parts[2].decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(f"undecodable stats line {raw[:80]!r}") from None
        stats[name] = number(text)
    return stats


@dataclass(frozen=True)
class Spec:
    """address: "host:port", "[::1]:port" or "unix:/path" (``socket`` = a unix path instead);
    stats: use the text stats command; stats_max/stats_min: ("field=number", ...)."""

    address: Optional[str] = None
    socket: Optional[str] = None
    stats: bool = False
    stats_max: tuple[str, ...] = ()
    stats_min: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.address is None) == (self.socket is None):
            raise SpecError("address", "give exactly one of address or socket")
        try:
            net.parse_address(self.address or self.socket or "")
        except ValueError as exc:
            raise SpecError("address" if self.address else "socket", str(exc)) from None
        for key in ("stats_max", "stats_min"):
            try:
                parse_limits(getattr(self, key))
            except ValueError as exc:
                raise SpecError(key, str(exc)) from None

    @functools.cached_property
    def target(self) -> net.Address:
        return net.parse_address(self.address or f"unix:{self.socket}")


async def probe(spec: Spec) -> Mapping[str, Metric]:
    """Given a Spec, NOOP (or fetch stats and apply limits); return metrics; raise ProbeError."""
    if not (spec.stats or spec.stats_max or spec.stats_min):
        return await _noop_kept(spec.target)
    async with net.connect(spec.target, limit=MAX_STATS_BYTES) as (reader, writer):
        stage("waiting for stats")
        writer.write(b"stats\r\n")
        data = await _read_stats(reader)
    stats = parse_stats(data)
    metrics = {k: v for k, v in stats.items() if isinstance(v, (int, float))}
    metrics["version"] = str(stats.get("version", ""))
    check(stats, parse_limits(spec.stats_max), parse_limits(spec.stats_min), metrics, "stats")
    return metrics


async def _read_stats(reader: asyncio.StreamReader) -> bytes:
    import asyncio
    data = b""
    while not data.endswith(b"\nEND\r\n") and data != b"END\r\n":
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            raise ProtocolError(f"stats line exceeds {MAX_STATS_BYTES} bytes") from None
        except asyncio.IncompleteReadError as exc:
            raise ProtocolError(f"connection closed during stats: {exc.partial[:60]!r}") from None
        if line.startswith((b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR")):
            raise ProtocolError(f"stats refused: {line.strip()[:80]!r}")
        if not line.startswith(b"STAT ") and line != b"END\r\n":
            raise ProtocolError(f"unexpected stats line {line[:80]!r}")
        data += line
        if len(data) > MAX_STATS_BYTES:
            raise ProtocolError(f"stats reply exceeds {MAX_STATS_BYTES} bytes")
    return data


async def _noop_kept(target: net.Address) -> Mapping[str, Metric]:
    """NOOP over an idle kept connection if there is one, else (or when that fails) over a
    new one; keep the connection after a clean exchange."""
    idle = _kept.setdefault(target, [])
    while idle:
        stream, born = idle.pop()
        if time.monotonic() - born >= FRESH:
            stream.abort()  # prove now and then that the server still accepts connections
            continue
        try:
            metrics = await _noop(stream, stream)
        except ProbeError:
            stream.abort()  # stale (e.g. the server restarted): the new connection decides
            break
        except BaseException:
            stream.abort()  # cancelled mid-exchange: a late reply must not reach the next NOOP
            raise
        _keep(idle, stream, born)
        return metrics
    stage(f"connecting to {target}")
    stream = net.SocketStream(await net.connect_socket(target), MAX_STATS_BYTES, watch=True)
    born = time.monotonic()
    try:
        metrics = await _noop(stream, stream)
    except BaseException:
        stream.abort()
        raise
    _keep(idle, stream, born)
    return metrics


def _keep(idle: list[tuple[net.SocketStream, float]], stream: net.SocketStream,
          born: float) -> None:
    if len(idle) < KEEP:
        idle.append((stream, born))
    else:
        stream.abort()


async def _noop(reader: asyncio.StreamReader,
                writer: asyncio.StreamWriter) -> Mapping[str, Metric]:
    opaque = next(_opaques) & 0xFFFFFFFF  # tells our reply from any other
    writer.write(HEADER.pack(REQUEST_MAGIC, OP_NOOP, 0, 0, 0, 0, 0, opaque, 0))
    stage("waiting for NOOP reply")
    header = parse_header(await net.read_exactly(reader, HEADER.size, "waiting for NOOP reply"))
    if header.opcode != OP_NOOP or header.opaque != opaque:
        raise ProtocolError(f"reply to NOOP has opcode 0x{header.opcode:02x}, "
                            f"opaque {header.opaque} (sent {opaque})")
    if header.status != 0:
        raise CheckFailed(f"NOOP answered with status 0x{header.status:04x}")
    return {"status": header.status}

