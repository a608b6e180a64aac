"""HTTP status line, headers, chunk sizes, status ranges, certificate notAfter."""

from __future__ import annotations

import datetime as dt
import shutil
import string
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sdwatch.probes.base import ProtocolError
from sdwatch.probes.http_parse import (
    StatusLine,
    cert_not_after,
    describe_ranges,
    encode_headers,
    parse_chunk_size,
    parse_headers,
    parse_status_line,
    parse_status_ranges,
)

TOKEN = st.text(alphabet="!#$%&'*+-.^_`|~0123456789" + string.ascii_letters,
                min_size=1, max_size=20)
VALUE = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0xFF,
                                       blacklist_characters="\x7f"), max_size=40)


def test_parse_status_line_reads_version_code_reason() -> None:
    assert parse_status_line(b"HTTP/1.1 503 Service Unavailable\r\n") == StatusLine(
        "1.1", 503, "Service Unavailable")
    assert parse_status_line(b"HTTP/1.0 200\r\n") == StatusLine("1.0", 200, "")


@pytest.mark.parametrize("line", [b"", b"SSH-2.0-OpenSSH\r\n", b"HTTP/1.1 20 OK\r\n",
                                  b"HTTP/1.1 2000 OK\r\n", b"http/1.1 200 OK\r\n"])
def test_parse_status_line_rejects_non_http(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_status_line(line)


@given(st.integers(0, 9), st.integers(0, 9), st.integers(100, 999),
       st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=30))
def test_parse_status_line_round_trips(major: int, minor: int, code: int, reason: str) -> None:
    line = f"HTTP/{major}.{minor} {code} {reason}\r\n".encode("latin-1")
    assert parse_status_line(line) == StatusLine(f"{major}.{minor}", code, reason.strip())


@given(st.binary(max_size=200))
def test_parse_status_line_raises_only_protocol_error(data: bytes) -> None:
    try:
        parse_status_line(data)
    except ProtocolError:
        pass


@given(st.lists(st.tuples(TOKEN, VALUE), max_size=10))
def test_parse_headers_round_trips(headers: list[tuple[str, str]]) -> None:
    expected = [(n.lower(), v.strip(" \t")) for n, v in headers]
    assert parse_headers(encode_headers(headers)) == expected


@given(st.binary(max_size=300))
def test_parse_headers_raises_only_protocol_error(data: bytes) -> None:
    try:
        parse_headers(data)
    except ProtocolError:
        pass


def test_parse_headers_rejects_folding_and_bad_names() -> None:
    for block in (b"A: b\r\n continued\r\n", b"Bad Name: x\r\n", b"NoColon\r\n"):
        with pytest.raises(ProtocolError):
            parse_headers(block)


@given(st.integers(0, 2**63), st.sampled_from(["", ";ext=1", ";a"]))
def test_parse_chunk_size_round_trips(size: int, ext: str) -> None:
    assert parse_chunk_size(f"{size:x}{ext}\r\n".encode()) == size


@given(st.binary(max_size=40))
def test_parse_chunk_size_raises_only_protocol_error(data: bytes) -> None:
    try:
        assert parse_chunk_size(data) >= 0
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
