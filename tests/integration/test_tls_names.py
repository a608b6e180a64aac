"""HTTPS against a real TLS server on ::1: an IP literal in the URL is checked against the
certificate's IP addresses, as a host name is against its DNS names."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Iterator

import pytest

from sdwatch import schema
from sdwatch.probes import http
from sdwatch.probes.base import ProbeResult, run
from sdwatch.probes.errors import Outcome

from . import servers

pytestmark = pytest.mark.integration

HTTP_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


@pytest.fixture
def trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, tuple]]:
    """Two self-signed certificates, both trusted as CAs through SSL_CERT_FILE: one for
    IP ::1, one for localhost and 127.0.0.1 only.  Their common name is no host name: with
    no DNS name among its SANs, a certificate's CN would otherwise count as one."""
    certs = {"v6": servers.make_cert(tmp_path, san="IP:::1", name="v6", cn="sdwatch test"),
             "other": servers.make_cert(tmp_path, name="other", cn="sdwatch test")}
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(b"".join(cert.read_bytes() for cert, _ in certs.values()))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    http._tls_context.cache_clear()  # the cached context read the CA store without our bundle
    yield certs
    http._tls_context.cache_clear()


def probe_v6(cert_key: tuple[Path, Path], **extra: object) -> ProbeResult:
    """Serve HTTPS on [::1]:port with the given certificate and probe it once."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*cert_key)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(HTTP_OK)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass  # a client that refused our certificate hangs up in the handshake
        finally:
            writer.transport.abort()

    async def main() -> ProbeResult:
        server = await asyncio.start_server(handle, "::1", 0, ssl=context)
        async with server:
            port = server.sockets[0].getsockname()[1]
            spec = schema.build(http.Spec, {"url": f"https://[::1]:{port}/", **extra})
            return await run("http", spec, 5.0)

    return asyncio.run(main())


def test_https_ipv6_literal_accepts_a_certificate_for_that_address(trusted: dict) -> None:
    result = probe_v6(trusted["v6"])
    assert result.ok, result
    assert 9.9 < float(result.metrics["cert_days_left"]) <= 10, result  # read by ssl (verified)


def test_https_ipv6_literal_rejects_a_certificate_for_other_names(trusted: dict) -> None:
    result = probe_v6(trusted["other"])
    assert result.outcome is Outcome.FAILED, result
    assert "mismatch" in result.reason and "::1" in result.reason, result


def test_https_host_key_names_the_certificate_to_expect(trusted: dict) -> None:
    assert probe_v6(trusted["other"], host="localhost").ok
    refused = probe_v6(trusted["v6"], host="localhost")
    assert refused.outcome is Outcome.FAILED and "mismatch" in refused.reason, refused
