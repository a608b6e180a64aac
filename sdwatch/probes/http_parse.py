"""Pure parsers for the http probe: status ranges, and a certificate's notAfter date from DER
through python3-cryptography (for ``tls_verify = false``, where Python's ssl does not decode
the peer's certificate).  HTTP itself is parsed by h11.

Each raises only the error named in its docstring, whatever it is given.
"""

from __future__ import annotations

import datetime as dt


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
