"""Pure parsers for the http probe: status line, header block, chunk sizes, status ranges,
and a certificate's notAfter date from DER through python3-cryptography (for
``tls_verify = false``, where Python's ssl does not decode the peer's certificate).

Each raises only the error named in its docstring, whatever bytes it is given.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import NamedTuple

from sdwatch.probes.base import ProtocolError

_STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) ([0-9]{3})(?: ([^\r\n]*))?\r?\n?")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class StatusLine(NamedTuple):
    version: str  # "1.1"
    code: int
    reason: str


def parse_status_line(line: bytes) -> StatusLine:
    """Given "HTTP/1.1 200 OK\\r\\n", return StatusLine("1.1", 200, "OK"); raise ProtocolError."""
    match = _STATUS_LINE.fullmatch(line)
    if not match:
        raise ProtocolError(f"not an HTTP status line: {line[:60]!r}")
    major, minor, code, reason = match.groups()
    return StatusLine(f"{major.decode()}.{minor.decode()}", int(code),
                      (reason or b"").decode("latin-1").strip())


def parse_headers(block: bytes) -> list[tuple[str, str]]:
    """Given the header lines after the status line (without the blank line), return
    [(lower-case name, value), ...] in order; raise ProtocolError on a malformed line.

    Lines end with CRLF or LF.  Obsolete line folding is rejected, as RFC 9112 allows.
    """
    headers: list[tuple[str, str]] = []
    for line in block.split(b"\n"):
        line = line[:-1] if line.endswith(b"\r") else line
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            raise ProtocolError(f"folded header line: {line[:60]!r}")
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.fullmatch(name):
            raise ProtocolError(f"malformed header line: {line[:60]!r}")
        headers.append((name.decode("ascii").lower(), value.strip(b" \t").decode("latin-1")))
    return headers


def encode_headers(headers: list[tuple[str, str]]) -> bytes:
    """Given [(name, value)], return the header block parse_headers reads back."""
    return b"".join(f"{n}: {v}\r\n".encode("latin-1") for n, v in headers)


def parse_chunk_size(line: bytes) -> int:
    """Given a chunk-size line ("1a;ext=x\\r\\n"), return the size; raise ProtocolError."""
    size = line.split(b";", 1)[0].strip(b" \t\r\n")
    if not size or len(size) > 16 or not re.fullmatch(rb"[0-9A-Fa-f]+", size):
        raise ProtocolError(f"bad chunk size line: {line[:40]!r}")
    return int(size, 16)


def parse_status_ranges(text: str) -> tuple[tuple[int, int], ...]:
    """Given "200-399" or "200,204,300-302", return ((200, 399),) etc.; raise ValueError."""
    ranges = []
    for part in text.split(","):
        low, sep, high = part.strip().partition("-")
        if not low.strip().isdigit() or (sep and not high.strip().isdigit()):
            raise ValueError(f"invalid status {text!r} (use e.g. 200-399 or 200,204)")
        pair = (int(low), int(high) if sep else int(low))
        if not 100 <= pair[0] <= pair[1] <= 599:
            raise ValueError(f"invalid status range {part.strip()!r} (codes are 100-599)")
        ranges.append(pair)
    return tuple(ranges)


def describe_ranges(ranges: tuple[tuple[int, int], ...]) -> str:
    """Return ranges as written in config: ((200, 399), (418, 418)) -> "200-399,418"."""
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in ranges)


def cert_not_after(der: bytes) -> dt.datetime:
    """Given an X.509 certificate in DER, return its notAfter (UTC); raise ValueError."""
    from cryptography import x509  # deferred: +47 ms and +7 MiB, only for unverified TLS

    cert = x509.load_der_x509_certificate(der)
    not_after = getattr(cert, "not_valid_after_utc", None)  # cryptography >= 42
    return not_after or cert.not_valid_after.replace(tzinfo=dt.UTC)
