"""tls: a TLS endpoint's certificate is valid and far enough from its expiry.

The probe connects, optionally upgrades a plain SMTP, IMAP or POP3 session with STARTTLS
(STLS for POP3), completes the handshake and reads the peer's certificate.  With
``verify`` (the default) the chain and the name are checked against the system's CAs (or
``ca_file``); a rejected certificate fails the check with OpenSSL's reason ("certificate
has expired").  It fails too when fewer than ``days_left`` days remain.  The certificate is
parsed with python3-cryptography, also when it is not verified.

:func:`answers_tls` tells whether an endpoint speaks TLS at all, from the first bytes it
answers to a ClientHello (``sdwatch init`` asks the web servers' TCP listeners).
"""

from __future__ import annotations

import datetime
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Mapping, Optional

from sdwatch.probes import net
from sdwatch.probes.errors import CheckFailed, Metric, ProtocolError, stage
from sdwatch.schema import SpecError

if TYPE_CHECKING:  # imported where used: status checks a config without them
    import ssl

MAX_LINE = 8192
STARTTLS_PORTS = {"smtp": 25, "imap": 143, "pop3": 110}


def smtp_reply(lines: list[bytes]) -> tuple[int, bool]:
    """Given the lines read so far of an SMTP reply, return (code, complete).

    Raise ProtocolError when a line is not "NNN-text" or "NNN text"."""
    last = lines[-1].rstrip(b"\r\n")
    if len(last) < 3 or not last[:3].isdigit() or last[3:4] not in (b"", b"-", b" "):
        raise ProtocolError(f"not an SMTP reply: {last[:60]!r}")
    return int(last[:3]), last[3:4] != b"-"


def imap_line(line: bytes, tag: bytes) -> bool | None:
    """Given one IMAP line, return True for the tagged OK, False for a tagged NO/BAD, None
    for an untagged line; raise ProtocolError otherwise."""
    if line.startswith(b"* "):
        return None
    if line.startswith(tag + b" "):
        return line[len(tag) + 1:].upper().startswith(b"OK")
    raise ProtocolError(f"not an IMAP reply: {line[:60]!r}")


def days_left(not_after: datetime.datetime, now: datetime.datetime) -> float:
    """Given expiry and now (both aware), return the days in between (negative: expired)."""
    return (not_after - now).total_seconds() / 86400


@dataclass(frozen=True)
class Spec:
    """address: "host:port" (or "host" with ``starttls``: its standard port);
    host: the name to verify and send as SNI (default: the address's host);
    starttls: "smtp", "imap" or "pop3"; verify: check chain and name; ca_file: CAs to
    trust instead of the system's; days_left: fail when fewer days remain."""

    address: str
    host: Optional[str] = None
    starttls: Optional[Literal["smtp", "imap", "pop3"]] = None
    verify: bool = True
    ca_file: Optional[str] = None
    days_left: int = 14

    def __post_init__(self) -> None:
        try:
            self.target  # noqa: B018 - validates
        except ValueError as exc:
            raise SpecError("address", str(exc)) from None
        if self.days_left < 0:
            raise SpecError("days_left", "must be 0 or more")
        if self.ca_file is not None and not self.verify:
            raise SpecError("ca_file", "is for verify = true")
        if self.verify and self.server_name is None:
            raise SpecError("host", "a unix socket has no name to verify: set host, or "
                            "verify = false")

    @property
    def target(self) -> net.Address:
        port = STARTTLS_PORTS.get(self.starttls or "")
        return net.parse_address(self.address, default_port=port)

    @property
    def server_name(self) -> str | None:
        target = self.target
        return self.host or (None if target.is_unix else target.host)


def context(spec: Spec) -> ssl.SSLContext:
    """Given a Spec, return the client context it asks for."""
    import ssl
    ctx = ssl.create_default_context(cafile=spec.ca_file)
    if not spec.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def probe(spec: Spec) -> Mapping[str, Metric]:
    """Given a Spec, handshake (after STARTTLS) and judge the certificate; return metrics
    (days_left, not_after, subject, version); raise ProbeError."""
    import asyncio
    import ssl
    ctx = context(spec)
    sock = await net.connect_socket(spec.target)
    writer: asyncio.StreamWriter | None = None
    try:
        if spec.starttls is not None:
            await _starttls(net.SocketStream(sock, MAX_LINE), spec.starttls)
        stage("TLS handshake")
        name = spec.server_name
        try:
            _reader, writer = await asyncio.open_connection(sock=sock, ssl=ctx,
                                                            server_hostname=name)
        except ssl.SSLCertVerificationError as exc:
            reason = exc.verify_message or exc.reason or str(exc)
            raise CheckFailed(f"certificate of {spec.target} rejected: {reason}") from None
        except ssl.SSLError as exc:
            raise ProtocolError(f"TLS handshake with {spec.target} failed: "
                                f"{exc.reason or exc}") from None
        except (OSError, EOFError) as exc:
            reason = net.describe_oserror(exc) if isinstance(exc, OSError) else "closed"
            raise ProtocolError(f"connection lost in the TLS handshake: {reason}") from None
        tls = writer.get_extra_info("ssl_object")
        der = tls.getpeercert(binary_form=True) if tls is not None else None
        version = tls.version() if tls is not None else None
    finally:
        if writer is not None:
            writer.transport.abort()
        sock.close()
    if not der:
        raise ProtocolError("the server sent no certificate")
    return judge_certificate(der, spec.days_left, _now(), version or "")


@functools.cache
def client_hello() -> bytes:
    """Return the first flight of a TLS client: the ClientHello Python's ssl module writes.
    Made once, with a bare context: no CA bundle to load for a question no handshake ends."""
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    outgoing = ssl.MemoryBIO()
    tls = ctx.wrap_bio(ssl.MemoryBIO(), outgoing)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:  # the hello is written; the server's answer is wanted
        pass
    return outgoing.read()


def is_tls_record(head: bytes) -> bool:
    """Given the first three bytes a server answered, tell whether they start a TLS record: a
    handshake (its ServerHello) or an alert (it refused our hello: it still speaks TLS)."""
    return len(head) == 3 and head[0] in (0x15, 0x16) and head[1] == 3 and head[2] <= 4


async def answers_tls(address: net.Address) -> bool:
    """Given an address, send a ClientHello and return whether the answer is TLS (False for
    any other answer, or none before the peer closes); raise ConnectError.  The caller owns
    the deadline: a silent peer is waited for until then."""
    import asyncio
    sock = await net.connect_socket(address)
    stream = net.SocketStream(sock, MAX_LINE)
    try:
        stream.write(client_hello())
        await stream.drain()
        head = await stream.readexactly(3)
    except (OSError, asyncio.IncompleteReadError):
        return False
    finally:
        sock.close()
    return is_tls_record(head)


def judge_certificate(der: bytes, minimum_days: int, now: datetime.datetime,
                      version: str = "") -> dict[str, Metric]:
    """Given a DER certificate, the days it must still be valid and now (aware), return
    metrics; raise CheckFailed when it expires sooner (or is not yet valid)."""
    from cryptography import x509  # deferred: only this probe pays for it

    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise ProtocolError(f"unreadable certificate: {exc}") from None
    not_after, not_before = _utc(cert, "not_valid_after"), _utc(cert, "not_valid_before")
    left = days_left(not_after, now)
    metrics: dict[str, Metric] = {"days_left": round(left, 2),
                                  "not_after": not_after.isoformat(),
                                  "subject": cert.subject.rfc4514_string()}
    if version:
        metrics["version"] = version
    if now < not_before:
        raise CheckFailed(f"certificate not valid before {not_before:%Y-%m-%d %H:%M} UTC",
                          metrics)
    if left < 0:
        raise CheckFailed(f"certificate expired {-left:.0f} days ago "
                          f"({not_after:%Y-%m-%d})", metrics)
    if left < minimum_days:
        raise CheckFailed(f"certificate expires in {left:.1f} days ({not_after:%Y-%m-%d}), "
                          f"less than {minimum_days}", metrics)
    return metrics


def _utc(cert: object, name: str) -> datetime.datetime:
    aware = getattr(cert, f"{name}_utc", None)  # cryptography >= 42; older: naive UTC
    if aware is not None:
        return aware
    return getattr(cert, name).replace(tzinfo=datetime.UTC)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


async def _line(stream: net.SocketStream, what: str) -> bytes:
    import asyncio
    try:
        return await stream.readuntil(b"\n")
    except asyncio.LimitOverrunError:
        raise ProtocolError(f"line longer than {MAX_LINE} bytes {what}") from None
    except asyncio.IncompleteReadError as exc:
        raise ProtocolError(f"connection closed {what}"
                            + (f" after {exc.partial[:40]!r}" if exc.partial else "")) from None
    except ConnectionError as exc:
        raise ProtocolError(f"connection lost {what}: {net.describe_oserror(exc)}") from None


async def _smtp(stream: net.SocketStream, what: str) -> int:
    stage(what)
    lines = [await _line(stream, what)]
    while True:
        code, complete = smtp_reply(lines)
        if complete:
            return code
        lines.append(await _line(stream, what))


async def _send(stream: net.SocketStream, data: bytes) -> None:
    stream.write(data)
    try:
        await stream.drain()
    except OSError as exc:
        raise ProtocolError(f"connection lost while sending: {net.describe_oserror(exc)}"
                            ) from None


async def _starttls(stream: net.SocketStream, protocol: str) -> None:
    """Speak the plain part of ``protocol`` up to the point where TLS starts."""
    if protocol == "smtp":
        if (code := await _smtp(stream, "waiting for the SMTP greeting")) != 220:
            raise CheckFailed(f"SMTP greeting {code}, not 220")
        await _send(stream, b"EHLO sdwatch\r\n")
        if (code := await _smtp(stream, "waiting for the EHLO reply")) != 250:
            raise CheckFailed(f"EHLO answered {code}")
        await _send(stream, b"STARTTLS\r\n")
        if (code := await _smtp(stream, "waiting for the STARTTLS reply")) != 220:
            raise CheckFailed(f"STARTTLS answered {code}, not 220")
    elif protocol == "imap":
        stage("waiting for the IMAP greeting")
        greeting = await _line(stream, "waiting for the IMAP greeting")
        if not greeting.upper().startswith(b"* OK"):
            raise ProtocolError(f"not an IMAP greeting: {greeting[:60]!r}")
        await _send(stream, b"s1 STARTTLS\r\n")
        stage("waiting for the STARTTLS reply")
        while (ok := imap_line(await _line(stream, "waiting for the STARTTLS reply"),
                               b"s1")) is None:
            pass
        if not ok:
            raise CheckFailed("IMAP server refused STARTTLS")
    else:
        stage("waiting for the POP3 greeting")
        greeting = await _line(stream, "waiting for the POP3 greeting")
        if not greeting.startswith(b"+OK"):
            raise ProtocolError(f"not a POP3 greeting: {greeting[:60]!r}")
        await _send(stream, b"STLS\r\n")
        stage("waiting for the STLS reply")
        if not (await _line(stream, "waiting for the STLS reply")).startswith(b"+OK"):
            raise CheckFailed("POP3 server refused STLS")
