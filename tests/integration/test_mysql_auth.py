"""The mysql probe's password against hostile servers (real sockets, TCP on loopback and unix):
a server that asks for it in clear text, for an old password hash, or for any exchange that
would reveal it gets nothing beyond the handshake response, unless the probe allows clear
text over a unix socket or verified TLS; a server that strips TLS gets nothing at all."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import pytest

from sdwatch import schema
from sdwatch.probes import REGISTRY
from sdwatch.probes.base import ProbeResult, run
from sdwatch.probes.errors import Outcome

pytestmark = pytest.mark.integration

# behaviour: fragment of the refusal
REFUSED = {
    "mysql_auth_cleartext": "server asks for mysql_clear_password, which sends the password",
    "mysql_auth_old_password": "server asks for mysql_old_password; refused",
    "mysql_auth_pre41": "server asks for a pre-4.1 password hash (mysql_old_password); refused",
    "mysql_auth_dialog": "server asks for dialog, which sends the password in clear text",
    "mysql_auth_sha256": "server asks for sha256_password, which sends the password",
    "mysql_auth_sha2_full": "server asks for caching_sha2_password full authentication",
    "mysql_auth_tls_claim": "server asks for mysql_clear_password, which sends the password",
}


@pytest.fixture
def password(tmp_path: Path) -> tuple[str, str]:
    """A fresh password (so that no other test's traffic can hide a leak) and its file."""
    value = secrets.token_hex(12)
    path = tmp_path / "pass"
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value, str(path)


def login(target: dict, password_file: str, **extra: object) -> ProbeResult:
    spec = schema.build(REGISTRY["mysql"].spec,
                        {**target, "user": "sdwatch", "password_file": password_file, **extra})
    return asyncio.run(run("mysql", spec, 2.0))


def received(directory: Path, behaviour: str, before: set[Path], inside_tls: bool = False
             ) -> bytes:
    """What the one connection made since ``before`` sent to the server in plain text (or
    inside TLS); the server records it when the connection ends, right after the probe's."""
    deadline = time.monotonic() + 5.0
    while not (new := set(directory.glob(f"{behaviour}.*.in")) - before):
        assert time.monotonic() < deadline, f"{behaviour} recorded no connection"
        time.sleep(0.01)  # polling a condition with a deadline
    assert len(new) == 1, new
    path = new.pop()
    return path.with_suffix(".tls").read_bytes() if inside_tls else path.read_bytes()


def packets(data: bytes) -> list[bytes]:
    """Split client bytes into MySQL packet payloads."""
    out = []
    while data:
        length = int.from_bytes(data[:3], "little")
        out.append(data[4:4 + length])
        data = data[4 + length:]
    return out


@pytest.mark.parametrize("behaviour", sorted(REFUSED))
@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_refused_exchange_gets_no_byte_of_the_password(
        hostile: dict[str, str], hostile_dir: Path, password: tuple[str, str],
        behaviour: str, transport: str) -> None:
    value, path = password
    target = ({"address": hostile[behaviour]} if transport == "tcp"
              else {"socket": str(hostile_dir / f"{behaviour}.sock")})
    before = set(hostile_dir.glob(f"{behaviour}.*.in"))
    result = login(target, path)
    assert result.outcome is Outcome.PROTOCOL and REFUSED[behaviour] in result.reason, result
    got = received(hostile_dir, behaviour, before)
    # The handshake response only (user name and, at most, a scramble of the server's
    # challenge): nothing was sent in answer to the request, not even a hash.
    assert len(packets(got)) == 1, got
    assert value.encode() not in got and b"sdwatch\0" in got


def test_cleartext_allowed_on_a_unix_socket_is_sent_there(
        hostile_dir: Path, hostile: dict[str, str], password: tuple[str, str]) -> None:
    value, path = password
    before = set(hostile_dir.glob("mysql_auth_cleartext.*.in"))
    result = login({"socket": str(hostile_dir / "mysql_auth_cleartext.sock")}, path,
                   allow_cleartext_password=True)
    assert result.ok, result
    got = received(hostile_dir, "mysql_auth_cleartext", before)
    assert packets(got)[1] == value.encode() + b"\0"


@pytest.mark.parametrize("behaviour", ["mysql_auth_old_password", "mysql_auth_pre41"])
def test_old_password_hash_is_refused_even_when_cleartext_is_allowed(
        hostile_dir: Path, hostile: dict[str, str], password: tuple[str, str],
        behaviour: str) -> None:
    before = set(hostile_dir.glob(f"{behaviour}.*.in"))
    result = login({"socket": str(hostile_dir / f"{behaviour}.sock")}, password[1],
                   allow_cleartext_password=True)
    assert result.outcome is Outcome.PROTOCOL and "mysql_old_password" in result.reason
    assert len(packets(received(hostile_dir, behaviour, before))) == 1


def test_greeting_split_across_writes_on_a_unix_socket(
        hostile_dir: Path, hostile: dict[str, str], password: tuple[str, str]) -> None:
    result = login({"socket": str(hostile_dir / "mysql_split.sock")}, password[1])
    assert result.ok, result
    assert result.metrics["version"] == "8.0.99-hostile"


def test_tls_stripped_from_the_greeting_gets_nothing(
        hostile_dir: Path, hostile: dict[str, str], password: tuple[str, str]) -> None:
    before = set(hostile_dir.glob("mysql_auth_no_tls.*.in"))
    result = login({"address": hostile["mysql_auth_no_tls"]}, password[1], tls=True,
                   tls_ca=str(hostile_dir / "cert.pem"), allow_cleartext_password=True)
    assert result.outcome is Outcome.PROTOCOL, result
    assert result.reason == "server does not offer TLS; refused to log in without it"
    assert received(hostile_dir, "mysql_auth_no_tls", before) == b""  # not even the user


def test_cleartext_allowed_with_tls_goes_inside_tls_only(
        hostile_dir: Path, hostile: dict[str, str], password: tuple[str, str]) -> None:
    value, path = password
    before = set(hostile_dir.glob("mysql_auth_tls_cleartext.*.in"))
    target = {"address": hostile["mysql_auth_tls_cleartext"]}
    result = login(target, path, tls=True, tls_ca=str(hostile_dir / "cert.pem"),
                   allow_cleartext_password=True)
    assert result.ok, result
    plain = received(hostile_dir, "mysql_auth_tls_cleartext", before)
    assert len(packets(plain)) == 1 and value.encode() not in plain  # the SSL request only
    before = set(hostile_dir.glob("mysql_auth_tls_cleartext.*.in"))
    login(target, path, tls=True, tls_ca=str(hostile_dir / "cert.pem"),
          allow_cleartext_password=True)
    inside = received(hostile_dir, "mysql_auth_tls_cleartext", before, inside_tls=True)
    assert packets(inside)[1] == value.encode() + b"\0"
    refused = login(target, path, tls=True, tls_ca=str(hostile_dir / "cert.pem"))
    assert refused.outcome is Outcome.PROTOCOL and "mysql_clear_password" in refused.reason
