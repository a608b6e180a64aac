"""tcp: connect, optionally send bytes and wait for a reply matching a regex."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Optional

from sdwatch.probes import net
from sdwatch.probes.errors import CheckFailed, Metric, ProtocolError, stage
from sdwatch.quantities import Size
from sdwatch.schema import SpecError


@dataclass(frozen=True)
class Spec:
    """address: "host:port", "[::1]:port" or "unix:/path"; send: text with \\r\\n escapes;
    expect: regex searched in the reply (bytes, read until it matches, EOF or max_bytes)."""

    address: str
    send: Optional[str] = None
    expect: Optional[str] = None
    max_bytes: Size = Size(4096)

    def __post_init__(self) -> None:
        for key, check in (("address", lambda: net.parse_address(self.address)),
                           ("send", lambda: self.send is None or net.unescape(self.send)),
                           ("expect", lambda: self.expect is None or compile_bytes(self.expect))):
            try:
                check()
            except ValueError as exc:
                raise SpecError(key, str(exc)) from None
        if self.max_bytes < 1:
            raise SpecError("max_bytes", "must be at least 1 byte")


def compile_bytes(pattern: str) -> re.Pattern[bytes]:
    """Given a regex as text, return it compiled over UTF-8 bytes; raise ValueError if invalid."""
    try:
        return re.compile(pattern.encode("utf-8"))
    except re.error as exc:
        raise ValueError(f"invalid regex {pattern!r}: {exc}") from None


async def probe(spec: Spec) -> Mapping[str, Metric]:
    """Given a Spec, connect, send, and match; return metrics (bytes_read); raise ProbeError."""
    address = net.parse_address(spec.address)
    async with net.connect(address) as (reader, writer):
        if spec.send is not None:
            stage("sending")
            writer.write(net.unescape(spec.send))
            try:
                await writer.drain()
            except ConnectionError as exc:
                reason = net.describe_oserror(exc)
                raise ProtocolError(f"connection lost while sending: {reason}") from None
        if spec.expect is None:
            return {"bytes_read": 0}
        pattern = compile_bytes(spec.expect)
        stage(f"waiting for /{spec.expect}/")
        data = b""
        while len(data) < spec.max_bytes:
            try:
                chunk = await reader.read(spec.max_bytes - len(data))
            except ConnectionError as exc:
                reason = net.describe_oserror(exc)
                raise ProtocolError(f"connection lost while reading: {reason}") from None
            if not chunk:
                break
            data += chunk
            if pattern.search(data):
                return {"bytes_read": len(data)}
        end = "connection closed" if len(data) < spec.max_bytes else f"{len(data)} bytes read"
        raise CheckFailed(f"/{spec.expect}/ not found ({end}): {_excerpt(data)}",
                          {"bytes_read": len(data)})


def _excerpt(data: bytes, n: int = 60) -> str:
    text = data[:n].decode("utf-8", "backslashreplace")
    return repr(text + ("…" if len(data) > n else ""))
