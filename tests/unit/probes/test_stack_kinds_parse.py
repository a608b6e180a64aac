"""RESP, the PostgreSQL startup reply, STARTTLS replies and certificates: parsers and specs."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sdwatch import schema
from sdwatch.probes import REGISTRY, postgresql, redis, tls
from sdwatch.probes.errors import CheckFailed, ProtocolError
from sdwatch.probes.net import Address

LINE_TEXT = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
                    max_size=30)
LEAVES = st.one_of(LINE_TEXT, LINE_TEXT.map(redis.ErrorReply), st.integers(-(2**63), 2**63),
                   st.binary(max_size=50), st.none())
REPLIES = st.recursive(LEAVES, lambda children: st.lists(children, max_size=5), max_leaves=20)


@given(REPLIES)
def test_resp_reply_round_trips(reply) -> None:
    data = redis.encode_reply(reply)
    assert redis.parse_reply(data) == (reply, len(data))


@given(REPLIES, st.data())
def test_resp_reply_cut_short_asks_for_more(reply, data) -> None:
    encoded = redis.encode_reply(reply)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(redis.Incomplete):
        redis.parse_reply(encoded[:cut])


@given(st.binary(max_size=200))
def test_resp_parser_raises_only_its_own_errors(data: bytes) -> None:
    try:
        _reply, end = redis.parse_reply(data)
        assert 0 < end <= len(data)
    except (redis.Incomplete, ProtocolError):
        pass


@pytest.mark.parametrize("data, message", [
    (b"SSH-2.0-OpenSSH_9.2\r\n", "not a Redis reply"),
    (b"HTTP/1.1 200 OK\r\n", "not a Redis reply"),
    (b"$99999999\r\n", "claims 99999999 bytes"),
    (b"$3\r\nabcXY", "not followed by CRLF"),
    (b":twelve\r\n", "bad number"),
    (b"*1\r\n" * 9 + b":1\r\n", "nests deeper"),
])
def test_resp_parser_names_the_problem(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        redis.parse_reply(data)


def test_encode_command_is_an_array_of_bulk_strings() -> None:
    assert redis.encode_command("AUTH", "u", "pä") == (
        b"*3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n$3\r\np\xc3\xa4\r\n")


INFO = ("# Server\r\nredis_version:7.0.15\r\nuptime_in_seconds:12\r\n\r\n# Memory\r\n"
        "used_memory:941984\r\nmem_fragmentation_ratio:13.52\r\n# Persistence\r\nloading:0\r\n"
        "# Replication\r\nrole:master\r\n")


def test_parse_info_types_fields_and_judges() -> None:
    info = redis.parse_info(INFO)
    assert info == {"redis_version": "7.0.15", "uptime_in_seconds": 12, "used_memory": 941984,
                    "mem_fragmentation_ratio": 13.52, "loading": 0, "role": "master"}
    assert redis.judge_info(info) is None
    assert redis.judge_info({**info, "loading": 1}) == "loading the dataset into memory"
    replica = {"role": "slave", "master_host": "10.0.0.5", "master_port": 6379,
               "master_link_status": "down"}
    assert redis.judge_info(replica) == "replica of 10.0.0.5:6379 with master link down"
    assert redis.judge_info({**replica, "master_link_status": "up"}) is None
    with pytest.raises(ProtocolError, match="unexpected INFO line"):
        redis.parse_info("no colon here")


MESSAGES = st.builds(postgresql.Message, st.sampled_from([b"R", b"E", b"S", b"N", b"v"]),
                     st.binary(max_size=100))


@given(MESSAGES)
def test_postgresql_header_round_trips(m: postgresql.Message) -> None:
    data = postgresql.encode_message(m)
    assert postgresql.parse_header(data[:5]) == (m.type, len(m.body))


@given(st.binary(min_size=5, max_size=5))
def test_postgresql_header_raises_only_protocol_error(data: bytes) -> None:
    try:
        kind, length = postgresql.parse_header(data)
        assert kind in b"RESNv" and 0 <= length <= postgresql.MAX_MESSAGE
    except ProtocolError:
        pass


@given(st.dictionaries(st.sampled_from("SVCMDHPF"), st.text(
    st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=20)))
def test_postgresql_error_fields_round_trip(fields: dict[str, str]) -> None:
    body = b"".join(k.encode() + v.encode() + b"\0" for k, v in fields.items()) + b"\0"
    assert postgresql.parse_error_fields(body) == {k: v for k, v in fields.items()}


def error(code: str, text: str) -> postgresql.Message:
    return postgresql.Message(b"E", b"SFATAL\0C" + code.encode() + b"\0M" + text.encode() + b"\0\0")


def test_postgresql_judge_is_pg_isready() -> None:
    assert postgresql.judge(postgresql.Message(b"R", b"\0\0\0\x0a")) == {"auth_request": 10}
    assert postgresql.judge(error("28P01", "password authentication failed")) == {
        "sqlstate": "28P01"}
    with pytest.raises(CheckFailed, match="not accepting connections: the database system is "
                       r"shutting down \(57P03\)"):
        postgresql.judge(error("57P03", "the database system is shutting down"))
    with pytest.raises(CheckFailed, match="too many connections"):
        postgresql.judge(error("53300", "sorry, too many clients already"))
    with pytest.raises(ProtocolError, match="unexpected first reply"):
        postgresql.judge(postgresql.Message(b"S", b"a\0b\0"))


def test_postgresql_startup_message_layout() -> None:
    data = postgresql.encode_startup({"user": "sdwatch"})
    assert data == b"\0\0\0\x16\x00\x03\x00\x00user\0sdwatch\0\0"


@pytest.mark.parametrize("lines, result", [
    ([b"220 mail.example ESMTP\r\n"], (220, True)),
    ([b"250-mail.example\r\n"], (250, False)),
    ([b"250-mail.example\r\n", b"250 STARTTLS\r\n"], (250, True)),
    ([b"220\r\n"], (220, True)),
])
def test_smtp_reply(lines: list[bytes], result: tuple[int, bool]) -> None:
    assert tls.smtp_reply(lines) == result


@given(st.binary(min_size=1, max_size=40))
def test_smtp_reply_raises_only_protocol_error(line: bytes) -> None:
    try:
        code, _ = tls.smtp_reply([line])
        assert 0 <= code <= 999
    except ProtocolError:
        pass


def test_imap_line() -> None:
    assert tls.imap_line(b"* CAPABILITY IMAP4rev1\r\n", b"s1") is None
    assert tls.imap_line(b"s1 OK Begin TLS\r\n", b"s1") is True
    assert tls.imap_line(b"s1 NO not now\r\n", b"s1") is False
    with pytest.raises(ProtocolError, match="not an IMAP reply"):
        tls.imap_line(b"+OK POP3\r\n", b"s1")


def test_client_hello_is_one_tls_handshake_record() -> None:
    hello = tls.client_hello()
    assert hello[0] == 0x16 and hello[1] == 3 and hello[5] == 1  # handshake, ClientHello
    assert int.from_bytes(hello[3:5], "big") == len(hello) - 5
    assert tls.client_hello() is hello  # made once however many listeners are asked


@pytest.mark.parametrize("head, answer", [
    (b"\x16\x03\x03", True),   # ServerHello
    (b"\x15\x03\x01", True),   # an alert: it refused our hello, in TLS
    (b"HTT", False), (b"\x16\x03\x09", False), (b"\x17\x03\x03", False), (b"\x16\x03", False),
    (b"\x00\xfe\x16", False)])
def test_is_tls_record(head: bytes, answer: bool) -> None:
    assert tls.is_tls_record(head) is answer


def certificate(not_before: datetime.datetime, not_after: datetime.datetime) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shop.example")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(not_before).not_valid_after(not_after)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)


def test_judge_certificate_days_left() -> None:
    der = certificate(NOW - 30 * DAY, NOW + 20 * DAY)
    metrics = tls.judge_certificate(der, 14, NOW, "TLSv1.3")
    assert metrics == {"days_left": 20.0, "not_after": "2026-06-21T12:00:00+00:00",
                       "subject": "CN=shop.example", "version": "TLSv1.3"}
    with pytest.raises(CheckFailed, match=r"expires in 20.0 days \(2026-06-21\), less than 30"):
        tls.judge_certificate(der, 30, NOW)
    with pytest.raises(CheckFailed, match="expired 3 days ago"):
        tls.judge_certificate(certificate(NOW - 30 * DAY, NOW - 3 * DAY), 0, NOW)
    with pytest.raises(CheckFailed, match="not valid before 2026-06-03"):
        tls.judge_certificate(certificate(NOW + 2 * DAY, NOW + 90 * DAY), 0, NOW)
    with pytest.raises(ProtocolError, match="unreadable certificate"):
        tls.judge_certificate(b"\x30\x03\x02\x01\x01", 0, NOW)


def build(kind: str, table: dict):
    return schema.build(REGISTRY[kind].spec, table, "probe[0]")


@pytest.mark.parametrize("kind, table, message", [
    ("redis", {}, "probe[0].address: give exactly one"),
    ("redis", {"address": "h", "user": "u"}, "probe[0].password_file: user needs"),
    ("redis", {"address": "h", "info_max": "used_memory<1"}, "probe[0].info_max: expected"),
    ("postgresql", {"socket": "run/postgresql"}, "probe[0].socket: unix socket path must be"),
    ("postgresql", {"address": "h", "user": "u"}, "probe[0].password_file: user and"),
    ("postgresql", {"address": "h", "port": 0}, "probe[0].port: invalid port"),
    ("tls", {"address": "h"}, "probe[0].address: address 'h' has no port"),
    ("tls", {"address": "h:1", "starttls": "ftp"}, "probe[0].starttls: expected one of"),
    ("tls", {"address": "h:1", "verify": False, "ca_file": "/x"}, "probe[0].ca_file: is for"),
    ("tls", {"address": "h:1", "days_left": -1}, "probe[0].days_left: must be 0"),
    ("tls", {"address": "unix:/run/x.sock"}, "probe[0].host: a unix socket has no name"),
])
def test_spec_errors_name_the_key(kind: str, table: dict, message: str) -> None:
    with pytest.raises(schema.SpecError) as info:
        build(kind, table)
    assert str(info.value).startswith(message), str(info.value)


def test_specs_default_ports_and_socket_directory() -> None:
    assert build("redis", {"address": "10.0.0.5"}).target == Address("10.0.0.5", 6379)
    assert build("postgresql", {"address": "db"}).target == Address("db", 5432)
    assert build("postgresql", {"socket": "/run/postgresql"}).target == Address(
        "/run/postgresql/.s.PGSQL.5432")
    assert build("postgresql", {"socket": "/run/postgresql", "port": 5433}).target == Address(
        "/run/postgresql/.s.PGSQL.5433")
    assert build("postgresql", {"socket": "/tmp/.s.PGSQL.6000"}).target == Address(
        "/tmp/.s.PGSQL.6000")
    # `sdwatch probe postgresql /run/postgresql` fills address: a directory there too
    assert build("postgresql", {"address": "/run/postgresql"}).target == Address(
        "/run/postgresql/.s.PGSQL.5432")
    mail = build("tls", {"address": "mail.example", "starttls": "smtp"})
    assert (mail.target, mail.server_name, mail.days_left) == (
        Address("mail.example", 25), "mail.example", 14)


def test_password_file_readable_by_others_is_refused(tmp_path) -> None:
    path = tmp_path / "pass"
    path.write_text("x\n")
    path.chmod(0o644)
    for kind in ("redis", "postgresql"):
        with pytest.raises(schema.SpecError, match="readable by group or others"):
            build(kind, {"address": "h", "user": "u", "password_file": str(path)})
