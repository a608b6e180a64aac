"""MySQL greeting/error packet parsing, and the password file rules."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sdwatch import schema
from sdwatch.probes.errors import CheckFailed, ProtocolError
from sdwatch.probes.mysql import (
    CLIENT_PLUGIN_AUTH,
    CLIENT_SECURE_CONNECTION,
    Greeting,
    Spec,
    encode_greeting,
    parse_greeting,
    parse_packet_header,
    )
from sdwatch.secretfile import check_password_file, check_password_mode, read_password

# SphinxQL (searchd) greeting as the protocol documentation lays it out: protocol 10, version,
# thread id, 8-byte scramble, filler, capabilities 0x8208 (PROTOCOL_41 | CONNECT_WITH_DB |
# SECURE_CONNECTION), charset 0x21, status 0x0002, 13 zero bytes (high capabilities, scramble
# length and reserved), then 13 bytes of scramble part 2 and no auth plugin name.
SPHINX = (b"\x0a" + b"2.2.11-id64-release (95ae9a6)\x00" + b"\x01\x00\x00\x00"
          + b"\x01\x02\x03\x04\x05\x06\x07\x08" + b"\x00" + b"\x08\x82" + b"\x21" + b"\x02\x00"
          + bytes(13) + bytes(range(1, 14)))

GREETINGS = st.builds(
    Greeting,
    version=st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
                    max_size=40),
    connection_id=st.integers(0, 2**32 - 1),
    capabilities=st.integers(0, 2**32 - 1),
    charset=st.integers(0, 255),
    status=st.integers(0, 2**16 - 1),
    auth_plugin=st.text(st.characters(min_codepoint=1, max_codepoint=127), max_size=30),
)


def test_parse_greeting_reads_mariadb_style() -> None:
    g = Greeting("5.5.5-10.11.6-MariaDB-0+deb12u1", 42, CLIENT_PLUGIN_AUTH | 0xF7FF | 0x8000,
                 45, 2, "mysql_native_password")
    assert parse_greeting(encode_greeting(g)) == g


def test_parse_greeting_reads_sphinx_greeting() -> None:
    g = parse_greeting(SPHINX)
    assert (g.version, g.connection_id, g.charset, g.status, g.auth_plugin) == (
        "2.2.11-id64-release (95ae9a6)", 1, 0x21, 2, "")
    assert g.capabilities & CLIENT_SECURE_CONNECTION


def test_parse_greeting_reads_minimal_old_greeting() -> None:
    assert parse_greeting(b"\x0a4.0.1\x00\x07\x00\x00\x00") == Greeting("4.0.1", 7)


@given(GREETINGS)
def test_parse_greeting_round_trips(g: Greeting) -> None:
    if not g.capabilities & CLIENT_PLUGIN_AUTH:
        g = g._replace(auth_plugin="")
    assert parse_greeting(encode_greeting(g)) == g


@pytest.mark.parametrize("payload, message", [
    (b"\xff\x10\x04Too many connections", "Too many connections (error 1040)"),
    (b"\xff\x69\x04#HY000Host '10.0.0.1' is blocked", "Host '10.0.0.1' is blocked (error 1129)"),
])
def test_parse_greeting_error_packet_fails_with_message(payload: bytes, message: str) -> None:
    with pytest.raises(CheckFailed, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_greeting(payload)


@given(st.binary(max_size=200))
def test_parse_greeting_raises_only_documented_errors(data: bytes) -> None:
    try:
        parse_greeting(data)
    except (ProtocolError, CheckFailed):
        pass


def test_parse_greeting_rejects_http_and_ssh() -> None:
    for data in (b"HTTP/1.1 400 Bad Request\r\n", b"SSH-2.0-OpenSSH_9.2\r\n"):
        with pytest.raises(ProtocolError):
            parse_greeting(data)


@given(st.binary(min_size=4, max_size=4))
def test_parse_packet_header_round_trips(data: bytes) -> None:
    length, seq = parse_packet_header(data)
    assert length.to_bytes(3, "little") + bytes([seq]) == data


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o440])
def test_check_password_mode_refuses_group_or_other_read(mode: int) -> None:
    with pytest.raises(ValueError, match=f"/etc/p is readable by group or others .mode 0{mode:o}"):
        check_password_mode("/etc/p", 0o100000 | mode)


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o620])
def test_check_password_mode_allows_owner_only_read(mode: int) -> None:
    check_password_mode("/etc/p", 0o100000 | mode)


def test_read_password_checks_mode_and_never_echoes_it(tmp_path) -> None:
    path = tmp_path / "pass"
    path.write_text("hunter2\nignored\n")
    os.chmod(path, 0o644)
    with pytest.raises(ValueError) as info:
        read_password(str(path))
    assert "hunter2" not in str(info.value) and str(path) in str(info.value)
    with pytest.raises(ValueError, match="readable by group"):
        check_password_file(str(path))
    os.chmod(path, 0o600)
    check_password_file(str(path))
    assert read_password(str(path)) == "hunter2"
    with pytest.raises(ValueError, match="No such file"):
        check_password_file(str(tmp_path / "missing"))


def test_spec_requires_user_with_password_file_and_one_address() -> None:
    with pytest.raises(schema.SpecError, match="p.password_file: user and password_file"):
        schema.build(Spec, {"address": "127.0.0.1", "user": "u"}, "p")
    with pytest.raises(schema.SpecError, match="p.address: give exactly one"):
        schema.build(Spec, {"address": "127.0.0.1", "socket": "/run/x.sock"}, "p")
    with pytest.raises(schema.SpecError, match="p.query: needs user"):
        schema.build(Spec, {"socket": "/run/x.sock", "query": "SELECT 1"}, "p")
    # not there yet: the probe will fail with that reason, the config stays valid
    spec = schema.build(Spec, {"address": "db", "user": "u", "password_file": "/nonexistent/p"},
                        "p")
    assert spec.password_file == "/nonexistent/p"


def test_spec_with_a_private_password_file(tmp_path) -> None:
    secret = tmp_path / "p"
    secret.write_text("s3cret-value\n")
    secret.chmod(0o600)
    spec = schema.build(Spec, {"address": "db", "user": "u", "password_file": str(secret)}, "p")
    assert spec.target.port == 3306 and "s3cret" not in repr(spec)
