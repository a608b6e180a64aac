"""Reading HTTP responses (h11 under the probe's error reasons), status ranges, notAfter."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sdwatch.probes.errors import ProtocolError
from sdwatch.probes.http import MAX_HEADER_BYTES, _read_body, _read_head
from sdwatch.probes.http_parse import cert_not_after, describe_ranges, parse_status_ranges


def read(data: bytes, method: str = "GET", cap: int = 1 << 20):
    """Feed ``data`` (then EOF) to the probe's h11 reading; return (response, body)."""
    import h11

    async def main():
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADER_BYTES)
        conn.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
        response = await _read_head(reader, conn)
        return response, await _read_body(reader, conn, cap)
    return asyncio.run(main())


def test_read_head_gives_version_code_and_lower_case_headers() -> None:
    response, body = read(b"HTTP/1.0 503 Service Unavailable\r\nX-Health: Red\r\n\r\ndown")
    assert (response.http_version, response.status_code) == (b"1.0", 503)
    assert list(response.headers) == [(b"x-health", b"Red")] and body == b"down"


def test_read_skips_interim_responses_and_unchunks_the_body() -> None:
    response, body = read(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    assert response.status_code == 200 and body == b"abcde"


def test_read_body_stops_at_the_cap_and_a_head_response_has_none() -> None:
    assert read(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", cap=4)[1] == b"0123"
    assert read(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", method="HEAD")[1] == b""


@pytest.mark.parametrize("data, reason", [
    (b"SSH-2.0-OpenSSH\r\n", "not an HTTP status line"),
    (b"HTTP/1.1 20 OK\r\n\r\n", "bad HTTP response"),
    (b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "bad HTTP response"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "bad HTTP response"),
    (b"HTTP/1.1 200 OK\r\nX-A: b\r\n", "connection closed in headers"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", "connection closed in the body"),
    (b"HTTP/1.1 200 OK\r\n" + b"X-Filler: " + b"z" * MAX_HEADER_BYTES + b"\r\n",
     f"headers exceed {MAX_HEADER_BYTES} bytes"),
])
def test_read_names_what_is_wrong(data: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        read(data)


@given(st.binary(max_size=300))
def test_read_raises_only_protocol_error(data: bytes) -> None:
    try:
        read(b"HTTP/1.1 " + data)
    except ProtocolError:
        pass


def test_parse_status_ranges_accepts_lists_and_ranges() -> None:
    assert parse_status_ranges("200-399") == ((200, 399),)
    assert parse_status_ranges("200, 204,300-302") == ((200, 200), (204, 204), (300, 302))
    assert describe_ranges(parse_status_ranges("200,300-302")) == "200,300-302"


@pytest.mark.parametrize("text", ["", "ok", "399-200", "99", "200-", "600", "2xx"])
def test_parse_status_ranges_rejects_nonsense(text: str) -> None:
    with pytest.raises(ValueError):
        parse_status_ranges(text)


def test_cert_not_after_reads_a_real_certificate(tmp_path) -> None:
    openssl = shutil.which("openssl")
    assert openssl, "openssl not found: apt-get install openssl"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(tmp_path / "k"),
                    "-out", str(tmp_path / "c.der"), "-outform", "DER", "-days", "42",
                    "-subj", "/CN=x"], check=True, capture_output=True)
    left = cert_not_after((tmp_path / "c.der").read_bytes()) - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=41, hours=23) < left <= dt.timedelta(days=42)


@given(st.binary(max_size=300))
def test_cert_not_after_raises_only_value_error(data: bytes) -> None:
    try:
        cert_not_after(data)
    except ValueError:
        pass
