"""redis: PING → PONG over RESP, with AUTH when configured and optional INFO checks.

The commands go out in one write (AUTH, PING, then INFO when asked) and the replies are
read in order, so a healthy server costs one round trip.  A server that wants a password
answers ``-NOAUTH``; one still loading its dataset answers ``-LOADING``: both fail the check
with the server's words.  With INFO (``info = true`` or any ``info_max``/``info_min``) the
probe also fails while ``loading:1``, and on a replica whose ``master_link_status`` is not
``up``; any numeric INFO field can carry a limit, and the main ones are metrics.

The password (file, first line) is read at every attempt and never kept in the Spec; the
file must not be readable by group or others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Union

from sdwatch.probes import credentials, net
from sdwatch.probes.errors import CheckFailed, Metric, ProtocolError, stage
from sdwatch.probes.limits import check, number, parse_limits
from sdwatch.schema import SpecError

DEFAULT_PORT = 6379
MAX_REPLY = 1024 * 1024  # INFO is ~5 KiB; anything near this is not Redis talking to us
MAX_DEPTH = 8
# INFO has ~150 fields: these (and any with a limit) become metrics
METRIC_FIELDS = ("uptime_in_seconds", "connected_clients", "blocked_clients", "used_memory",
                 "used_memory_rss", "maxmemory", "mem_fragmentation_ratio", "loading",
                 "rejected_connections", "evicted_keys", "keyspace_hits", "keyspace_misses",
                 "connected_slaves", "master_link_down_since_seconds")


@dataclass(frozen=True)
class ErrorReply:
    """A RESP error ("-ERR ...", "-NOAUTH ...")."""

    message: str


Reply = Union[str, int, bytes, None, ErrorReply, list]


class Incomplete(Exception):
    """The buffer ends before the reply does: read more."""


def encode_command(*args: str | bytes) -> bytes:
    """Given a command and its arguments, return it as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode("utf-8") if isinstance(arg, str) else arg
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def encode_reply(reply: Reply) -> bytes:
    """Given a reply, return it as a server sends it (RESP2)."""
    if isinstance(reply, ErrorReply):
        return b"-" + reply.message.encode("utf-8") + b"\r\n"
    if isinstance(reply, str):
        return b"+" + reply.encode("utf-8") + b"\r\n"
    if isinstance(reply, bool) or not isinstance(reply, (int, bytes, list, type(None))):
        raise TypeError(f"not a RESP value: {reply!r}")
    if isinstance(reply, int):
        return b":%d\r\n" % reply
    if reply is None:
        return b"$-1\r\n"
    if isinstance(reply, bytes):
        return b"$%d\r\n%s\r\n" % (len(reply), reply)
    return b"*%d\r\n" % len(reply) + b"".join(encode_reply(r) for r in reply)


def parse_reply(data: bytes, pos: int = 0, depth: int = 0) -> tuple[Reply, int]:
    """Given a buffer and an offset, return (the reply starting there, offset after it).

    Raise Incomplete when the buffer ends first, ProtocolError when it is not RESP.
    """
    if pos >= len(data):
        raise Incomplete
    end = data.find(b"\r\n", pos)
    if end < 0:
        if len(data) - pos > MAX_REPLY:
            raise ProtocolError(f"reply line exceeds {MAX_REPLY} bytes")
        if data[pos:pos + 1] not in (b"+", b"-", b":", b"$", b"*"):
            raise ProtocolError(f"not a Redis reply: {data[pos:pos + 24]!r}")
        raise Incomplete
    kind, line = data[pos:pos + 1], data[pos + 1:end]
    after = end + 2
    if kind in (b"+", b"-"):
        text = line.decode("utf-8", "replace")
        return (text if kind == b"+" else ErrorReply(text)), after
    if kind not in (b":", b"$", b"*"):
        raise ProtocolError(f"not a Redis reply: {data[pos:pos + 24]!r}")
    try:
        value = int(line)
    except ValueError:
        raise ProtocolError(f"bad number in Redis reply: {data[pos:end][:40]!r}") from None
    if kind == b":":
        return value, after
    if value < -1 or value > MAX_REPLY:
        raise ProtocolError(f"Redis reply claims {value} {'bytes' if kind == b'$' else 'items'}")
    if value == -1:
        return None, after
    if kind == b"$":
        if len(data) < after + value + 2:
            raise Incomplete
        if data[after + value:after + value + 2] != b"\r\n":
            raise ProtocolError("bulk string not followed by CRLF")
        return data[after:after + value], after + value + 2
    if depth >= MAX_DEPTH:
        raise ProtocolError(f"Redis reply nests deeper than {MAX_DEPTH}")
    items: list[Reply] = []
    for _ in range(value):
        item, after = parse_reply(data, after, depth + 1)
        items.append(item)
    return items, after


def parse_info(text: str) -> dict[str, Metric]:
    """Given INFO's text ("# Section" headers, "field:value" lines), return the fields typed."""
    fields: dict[str, Metric] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ProtocolError(f"unexpected INFO line {line[:80]!r}")
        fields[name] = number(value)
    return fields


def judge_info(info: Mapping[str, Metric]) -> str | None:
    """Given INFO's fields, return why the server is not serving (loading, replica cut
    off from its master), or None."""
    if info.get("loading") == 1:
        return "loading the dataset into memory"
    if info.get("role") == "slave" and info.get("master_link_status") != "up":
        return (f"replica of {info.get('master_host', '?')}:{info.get('master_port', '?')} "
                f"with master link {info.get('master_link_status', 'unknown')}")
    return None


@dataclass(frozen=True)
class Spec:
    """address: "host[:port]" (port 6379) or "unix:/path"; socket: a unix path instead;
    password_file (+ user for an ACL user): AUTH first; info: read INFO and judge it;
    info_max/info_min: ("field=number", ...) limits on INFO fields."""

    address: Optional[str] = None
    socket: Optional[str] = None
    user: Optional[str] = None
    password_file: Optional[str] = None
    info: bool = False
    info_max: tuple[str, ...] = ()
    info_min: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.address is None) == (self.socket is None):
            raise SpecError("address", "give exactly one of address or socket")
        try:
            self.target  # noqa: B018 - validates
        except ValueError as exc:
            raise SpecError("address" if self.address else "socket", str(exc)) from None
        if self.user is not None and self.password_file is None:
            raise SpecError("password_file", "user needs password_file")
        for key in ("info_max", "info_min"):
            try:
                parse_limits(getattr(self, key))
            except ValueError as exc:
                raise SpecError(key, str(exc)) from None
        credentials.validate(self.password_file)

    @property
    def target(self) -> net.Address:
        return net.parse_address(self.address or f"unix:{self.socket}", default_port=DEFAULT_PORT)

    @property
    def wants_info(self) -> bool:
        return self.info or bool(self.info_max) or bool(self.info_min)


async def probe(spec: Spec) -> Mapping[str, Metric]:
    """Given a Spec, (AUTH,) PING (and INFO); return metrics; raise ProbeError."""
    commands: list[bytes] = []
    password = ""
    if spec.password_file is not None:
        password = credentials.load(spec.password_file)
        auth = ("AUTH", spec.user, password) if spec.user else ("AUTH", password)
        commands.append(encode_command(*auth))
    commands.append(encode_command("PING"))
    if spec.wants_info:
        commands.append(encode_command("INFO"))
    async with net.connect(spec.target) as (reader, writer):
        writer.write(b"".join(commands))
        buffer = _Replies(reader)
        if password:
            reply = await buffer.next("waiting for AUTH reply")
            if isinstance(reply, ErrorReply):
                raise CheckFailed(f"AUTH refused: {_scrub(reply.message, password)}")
        reply = await buffer.next("waiting for PONG")
        if isinstance(reply, ErrorReply):
            raise CheckFailed(_error_reason(reply.message))
        if reply != "PONG":
            raise ProtocolError(f"PING answered {str(reply)[:60]!r}, not PONG")
        if not spec.wants_info:
            return {}
        reply = await buffer.next("waiting for INFO")
    if isinstance(reply, ErrorReply):
        raise CheckFailed(f"INFO refused: {reply.message}")
    if not isinstance(reply, bytes):
        raise ProtocolError(f"INFO answered {str(reply)[:60]!r}, not a bulk string")
    info = parse_info(reply.decode("utf-8", "replace"))
    maxima, minima = parse_limits(spec.info_max), parse_limits(spec.info_min)
    metrics: dict[str, Metric] = {
        k: v for k in (*METRIC_FIELDS, *maxima, *minima)
        if isinstance(v := info.get(k), (int, float))}
    metrics["version"] = str(info.get("redis_version", ""))
    metrics["role"] = str(info.get("role", ""))
    why = judge_info(info)
    if why is not None:
        raise CheckFailed(why, metrics)
    check(info, maxima, minima, metrics, "INFO")
    return metrics


class _Replies:
    """Replies read in order from one connection."""

    def __init__(self, reader) -> None:
        self._reader = reader
        self._data = b""

    async def next(self, what: str) -> Reply:
        stage(what)
        while True:
            try:
                reply, end = parse_reply(self._data)
            except Incomplete:
                pass
            else:
                self._data = self._data[end:]
                return reply
            try:
                chunk = await self._reader.read(65536)
            except ConnectionError as exc:
                raise ProtocolError(f"connection lost {what}: {net.describe_oserror(exc)}"
                                    ) from None
            if not chunk:
                raise ProtocolError(f"connection closed {what}" + (
                    f" after {self._data[:40]!r}" if self._data else ""))
            self._data += chunk
            if len(self._data) > MAX_REPLY:
                raise ProtocolError(f"reply exceeds {MAX_REPLY} bytes")


def _error_reason(message: str) -> str:
    if message.startswith("NOAUTH"):
        return f"server requires a password (user/password_file): {message}"
    if message.startswith("LOADING"):
        return f"loading the dataset into memory: {message}"
    return f"PING refused: {message}"


def _scrub(text: str, password: str) -> str:
    return text.replace(password, "***") if password else text
