"""AuthGuard: which packets of the authentication exchange the mysql probe answers."""

from __future__ import annotations

import pytest

from sdwatch.probes.errors import ProtocolError
from sdwatch.probes.mysql_auth import CLIENT_PLUGIN_AUTH, AuthGuard

NATIVE = "mysql_native_password"


def guard(plugin: str = NATIVE, allowed: bool = False, caps: int = CLIENT_PLUGIN_AUTH):
    return AuthGuard(plugin, caps, allowed)


@pytest.mark.parametrize("packets", [
    [b"\x00\x00\x00\x02\x00\x00\x00"],                            # OK at once
    [b"\xfemysql_native_password\x00" + bytes(20), b"\x00"],        # switch to a challenge
    [b"\xfeclient_ed25519\x00" + bytes(32), b"\x00"],
    [b"\xfecaching_sha2_password\x00" + bytes(20), b"\x01\x03", b"\x00"],  # fast path
    [b"\xff\x15\x04#28000Access denied"],                          # refused by the server
])
def test_guard_lets_challenge_exchanges_through(packets: list[bytes]) -> None:
    g = guard()
    for p in packets:
        g.check(p)
    assert g.done


@pytest.mark.parametrize("plugin, packet, fragment", [
    (NATIVE, b"\xfemysql_clear_password\x00", "mysql_clear_password, which sends"),
    (NATIVE, b"\xfedialog\x00\x04Password: ", "dialog, which sends"),
    (NATIVE, b"\xfesha256_password\x00" + bytes(20), "sha256_password, which sends"),
    ("caching_sha2_password", b"\x01\x04", "caching_sha2_password full authentication"),
    ("sha256_password", b"\x01-----BEGIN PUBLIC KEY-----", "sha256_password, which sends"),
    (NATIVE, b"\xfemysql_old_password\x00" + bytes(8), "mysql_old_password; refused"),
    (NATIVE, b"\xfe", "pre-4.1 password hash"),
    (NATIVE, b"\xfeauth_gssapi_client\x00", "plugin 'auth_gssapi_client'; refused"),
])
def test_guard_refuses_what_would_reveal_the_password(plugin: str, packet: bytes,
                                                      fragment: str) -> None:
    with pytest.raises(ProtocolError, match=fragment.replace("(", r"\(")):
        guard(plugin).check(packet)


def test_guard_allows_cleartext_only_when_told_and_never_old_hashes() -> None:
    g = guard(allowed=True)
    g.check(b"\xfemysql_clear_password\x00")
    assert g.plugin == "mysql_clear_password"
    guard("caching_sha2_password", allowed=True).check(b"\x01\x04")
    with pytest.raises(ProtocolError, match="mysql_old_password"):
        guard(allowed=True).check(b"\xfemysql_old_password\x00")
    with pytest.raises(ProtocolError, match="pre-4.1"):  # no plugin auth: PyMySQL's legacy hash
        guard(allowed=True, caps=0).check(b"\xfemysql_native_password\x00")


def test_guard_ignores_packets_after_authentication() -> None:
    g = guard()
    g.check(b"\x00\x00\x00\x02\x00\x00\x00")
    g.check(b"\xfe\x00\x00\x02\x00")  # an EOF packet of a later result set
    g.check(b"\x01")                  # a result set with one column
