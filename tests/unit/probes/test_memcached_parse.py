"""memcached binary header, text stats and limits."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sdwatch import schema
from sdwatch.probes.errors import CheckFailed, ProtocolError
from sdwatch.probes.limits import check, parse_limits
from sdwatch.probes.memcached import (
    HEADER,
    RESPONSE_MAGIC,
    Header,
    Spec,
    encode_header,
    parse_header,
    parse_stats,
)

HEADERS = st.builds(Header, st.just(RESPONSE_MAGIC), st.integers(0, 255), st.integers(0, 65535),
                    st.integers(0, 255), st.integers(0, 255), st.integers(0, 65535),
                    st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1))
NAMES = st.text("abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=20)
VALUES = st.one_of(st.integers(-(2**63), 2**64), st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20).filter(
        lambda t: not re.fullmatch(r"-?[0-9]*\.?[0-9]+", t)))


@given(HEADERS)
def test_parse_header_round_trips(h: Header) -> None:
    assert parse_header(encode_header(h)) == h


@given(st.binary(max_size=40))
def test_parse_header_raises_only_protocol_error(data: bytes) -> None:
    try:
        header = parse_header(data)
        assert len(data) == HEADER.size and header.magic == RESPONSE_MAGIC
    except ProtocolError:
        pass


def test_parse_header_rejects_ssh_banner() -> None:
    with pytest.raises(ProtocolError, match="magic 0x53"):
        parse_header(b"SSH-2.0-OpenSSH_9.2p1 De")


def test_parse_stats_types_values() -> None:
    data = (b"STAT pid 42\r\nSTAT rusage_user 0.123\r\nSTAT version 1.6.18\r\n"
            b"STAT libevent 2.1.12-stable\r\nEND\r\n")
    assert parse_stats(data) == {"pid": 42, "rusage_user": 0.123, "version": "1.6.18",
                                 "libevent": "2.1.12-stable"}
    assert parse_stats(b"END\r\n") == {}


@given(st.dictionaries(NAMES, VALUES, max_size=20), st.integers(0, 10**6),
       st.integers(0, 10**6 - 1))
def test_parse_stats_round_trips(stats: dict, seconds: int, micros: int) -> None:
    stats["rusage_user"] = f"{seconds}.{micros:06d}"
    data = b"".join(f"STAT {k} {v}\r\n".encode() for k, v in stats.items()) + b"END\r\n"
    expected = {**stats, "rusage_user": seconds + micros / 1e6}
    assert parse_stats(data) == pytest.approx(expected)


@given(st.binary(max_size=200))
def test_parse_stats_raises_only_protocol_error(data: bytes) -> None:
    try:
        parse_stats(data)
    except ProtocolError:
        pass


def test_parse_limits_and_check() -> None:
    assert parse_limits(("curr_connections=900", " evictions = 0 ")) == {
        "curr_connections": 900.0, "evictions": 0.0}
    with pytest.raises(ValueError, match="FIELD=NUMBER"):
        parse_limits(("curr_connections<900",))
    check({"curr_connections": 900}, {"curr_connections": 900}, {}, {}, "stats")
    with pytest.raises(CheckFailed, match="curr_connections 901 above 900"):
        check({"curr_connections": 901}, {"curr_connections": 900}, {}, {}, "stats")
    with pytest.raises(CheckFailed, match="threads 1 below 4"):
        check({"threads": 1}, {}, {"threads": 4}, {}, "stats")
    with pytest.raises(CheckFailed, match="stats has no numeric field 'nope'"):
        check({}, {"nope": 1}, {}, {}, "stats")


def test_spec_validates_address_and_limits() -> None:
    with pytest.raises(schema.SpecError, match="m.stats_max\\[0\\]|m.stats_max: expected FIELD"):
        schema.build(Spec, {"address": "127.0.0.1:11211", "stats_max": "x"}, "m")
    with pytest.raises(schema.SpecError, match="m.address: invalid port"):
        schema.build(Spec, {"address": "127.0.0.1:99999"}, "m")
    assert schema.build(Spec, {"socket": "/run/memcached.sock"}, "m").target.is_unix
