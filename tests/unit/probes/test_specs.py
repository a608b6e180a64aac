"""Spec validation through sdwatch.schema.build, as config.py calls it."""

from __future__ import annotations

import pytest

from sdwatch import schema
from sdwatch.probes import REGISTRY
from sdwatch.probes.http import tls_name
from sdwatch.probes.net import Address, parse_address, unescape


def build(kind: str, table: dict):
    return schema.build(REGISTRY[kind].spec, table, "probe[0]")


@pytest.mark.parametrize("text, address", [
    ("127.0.0.1:11211", Address("127.0.0.1", 11211)),
    ("[::1]:80", Address("::1", 80)),
    ("localhost:3306", Address("localhost", 3306)),
    ("unix:/run/x.sock", Address("/run/x.sock")),
    ("/run/x.sock", Address("/run/x.sock")),
])
def test_parse_address_accepts_forms(text: str, address: Address) -> None:
    assert parse_address(text) == address
    assert parse_address(str(address)) == address


@pytest.mark.parametrize("text", ["127.0.0.1", "::1:80", "[::1", "host:0", "host:x",
                                  "unix:rel.sock", ":80"])
def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)


@pytest.mark.parametrize("host, name", [
    ("example.com", "example.com"), ("example.com:8443", "example.com"),
    ("[::1]:8443", "::1"), ("[::1]", "::1"), ("::1", "::1"), ("127.0.0.1:443", "127.0.0.1"),
])
def test_tls_name_is_what_the_certificate_must_carry(host: str, name: str) -> None:
    assert tls_name(host) == name


def test_unescape_handles_c_escapes_and_utf8() -> None:
    assert unescape(r"PING\r\n\x00é") == b"PING\r\n\x00" + "é".encode()


@pytest.mark.parametrize("kind, table, message", [
    ("tcp", {"address": "x"}, "probe[0].address: address 'x' has no port"),
    ("tcp", {"address": "h:1", "expect": "("}, "probe[0].expect: invalid regex"),
    ("tcp", {"address": "h:1", "bogus": 1}, "probe[0].bogus: unknown key"),
    ("http", {"url": "http://h/", "status": "2xx"}, "probe[0].status: invalid status"),
    ("http", {"url": "http://h/", "method": "POST"}, "probe[0].method: expected one of"),
    ("http", {"url": "http://h/", "method": "HEAD", "body": "x"}, "probe[0].body: a HEAD"),
    ("http", {"url": "http://h/", "headers": "NoColon"}, "probe[0].headers: expected 'Name"),
    ("http", {"url": "http://h/", "cert_expiry": "30d"}, "probe[0].cert_expiry: needs an https"),
    ("http", {"url": "http+unix://relative"}, "probe[0].url: socket path"),
    ("http", {"url": "https://h/", "host": ":443"}, "probe[0].host: no host name in ':443'"),
    ("exec", {"command": "check_x -w 1"}, "probe[0].command: a string with spaces needs shell"),
    ("exec", {"command": ["a", "b"], "shell": True}, "probe[0].command: with shell = true"),
    ("file", {"path": "rel"}, "probe[0].path: must be absolute"),
    ("file", {"path": "/x", "min_size": "2M", "max_size": "1M"}, "probe[0].min_size: is larger"),
    ("memcached", {}, "probe[0].address: give exactly one"),
    ("mysql", {"socket": "/run/m.sock", "allow_cleartext_password": True},
     "probe[0].allow_cleartext_password: needs user and password_file"),
    ("mysql", {"address": "db:3306", "user": "u", "password_file": "/nonexistent",
               "allow_cleartext_password": True},
     "probe[0].allow_cleartext_password: only over a unix socket"),
])
def test_spec_errors_name_the_key(kind: str, table: dict, message: str) -> None:
    with pytest.raises(schema.SpecError) as info:
        build(kind, table)
    assert str(info.value).startswith(message), str(info.value)


def test_specs_build_with_defaults() -> None:
    http = build("http", {"url": "https://example.test/x", "cert_expiry": "14d",
                          "headers": "Content-Type: text/html"})
    assert (http.method, http.ranges, http.body_bytes, http.tls_verify) == (
        "GET", ((200, 399),), 65536, True)
    assert http.cert_expiry == 14 * 86400 and http.headers == ("Content-Type: text/html",)
    assert build("tcp", {"address": "h:1"}).max_bytes == 4096
    assert build("exec", {"command": "/usr/lib/nagios/plugins/check_load"}).argv == (
        "/usr/lib/nagios/plugins/check_load",)
    assert build("exec", {"command": "echo hi", "shell": True}).argv == ("/bin/sh", "-c", "echo hi")
    assert build("file", {"path": "/x", "max_age": "2m"}).max_age == 120
