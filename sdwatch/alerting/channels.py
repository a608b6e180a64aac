"""Deliver one alert over one channel: email (SMTP or sendmail), webhook (JSON POST), exec.

``deliver(channel, event, ident)`` makes one attempt and returns, or raises DeliveryError with
one line saying why.  Blocking I/O runs in a thread of its own with socket timeouts, inside an
overall deadline that shuts the thread's sockets (a peer that drip-feeds its answer restarts
every socket timeout, so those alone would not end it); the exec channel runs its command
in a new session and kills the whole group when the deadline passes.  Secrets (password,
token URL, header values) are read at send time and scrubbed from every error text; logs
name a webhook by scheme and host only.
``ident`` is the queue entry's id: it is sent along (Message-ID, Idempotency-Key,
SDWATCH_ALERT_ID) so that a receiver can recognise a repeat.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from typing import TYPE_CHECKING, Any, Callable

from sdwatch.alerting.settings import (
    Channel,
    EmailChannel,
    ExecChannel,
    WebhookChannel,
    read_secret,
)

if TYPE_CHECKING:
    from email.message import EmailMessage

    from sdwatch.alerting.event import AlertEvent


class DeliveryError(Exception):
    """One attempt failed; ``str()`` is one line without secrets."""


def iso(timestamp: float) -> str:
    """Given seconds since the epoch, return local ISO 8601 with offset, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(timestamp))


def subject(event: AlertEvent) -> str:
    """Return a one-line summary: "[sdwatch] host: unit event"."""
    return f"[sdwatch] {event.host}: {event.unit} {event.event.replace('_', ' ')}"


def render_text(event: AlertEvent) -> str:
    """Return the alert as plain text: message, facts, then the journal excerpt."""
    lines = [event.message, "", f"unit:   {event.unit}", f"event:  {event.event}",
             f"host:   {event.host}", f"time:   {iso(event.time)}"]
    lines += [f"{k}: {v}" for k, v in sorted(event.details.items()) if k != "journal"]
    journal = event.details.get("journal") or ()
    if journal:
        lines += ["", f"journal ({len(journal)} lines):", *journal]
    return "\n".join(lines) + "\n"


def payload(event: AlertEvent, fmt: str, ident: str) -> dict[str, object]:
    """Return the JSON body of a webhook: sdwatch's own fields, or Slack's ``{"text": ...}``."""
    if fmt == "slack":
        journal = event.details.get("journal") or ()
        text = f"*{subject(event)}*\n{event.message}"
        if journal:
            text += "\n```\n" + "\n".join(journal) + "\n```"
        return {"text": text}
    return {"id": ident, "unit": event.unit, "event": event.event, "message": event.message,
            "host": event.host, "time": iso(event.time), "timestamp": event.time,
            "details": {k: list(v) if isinstance(v, tuple) else v
                        for k, v in event.details.items()}}


def event_env(event: AlertEvent, ident: str) -> dict[str, str]:
    """Return the SDWATCH_* variables an exec channel's command gets."""
    env = {"SDWATCH_UNIT": event.unit, "SDWATCH_EVENT": event.event,
           "SDWATCH_MESSAGE": event.message, "SDWATCH_HOST": event.host,
           "SDWATCH_TIME": iso(event.time), "SDWATCH_TIMESTAMP": f"{event.time:.6f}",
           "SDWATCH_ALERT_ID": ident}
    for key, value in event.details.items():
        name = "SDWATCH_" + "".join(c if c.isalnum() else "_" for c in key.upper())
        if isinstance(value, (list, tuple)):
            value = "\n".join(map(str, value))
        env.setdefault(name, str(value))
    return env


def where(channel: Channel) -> str:
    """Return a channel's destination as it may be logged: no path, query, user or secret."""
    if isinstance(channel, WebhookChannel):
        if channel.url_file:
            return f"url from {channel.url_file}"
        parts = urllib.parse.urlsplit(channel.url)
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    if isinstance(channel, EmailChannel):
        return f"smtp {channel.smtp}" if channel.smtp else channel.sendmail
    if isinstance(channel, ExecChannel):
        return channel.command[0]
    return channel.key


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return " ".join(text.split())[:300]


async def deliver(channel: Channel, event: AlertEvent, ident: str) -> None:
    """Given a channel, an event and the alert's id, send it once; raise DeliveryError."""
    secrets: list[str] = []
    try:
        if isinstance(channel, ExecChannel):
            await _exec(channel, event, ident)
            return
        sockets = _Sockets()
        if isinstance(channel, EmailChannel):
            job = _email_job(channel, event, ident, secrets, sockets)
        elif isinstance(channel, WebhookChannel):
            job = _webhook_job(channel, event, ident, secrets, sockets)
        else:
            raise DeliveryError(f"unknown channel type {type(channel).__name__}")
        await asyncio.wait_for(_in_thread(job, sockets.shut), channel.timeout)
    except DeliveryError as exc:
        raise DeliveryError(_scrub(str(exc), secrets)) from None
    except TimeoutError:
        raise DeliveryError(f"no answer within {channel.timeout:g}s") from None
    except ValueError as exc:  # a secret file: missing, empty or readable by others
        raise DeliveryError(_scrub(str(exc), secrets)) from None
    except Exception as exc:  # noqa: BLE001 - whatever the library raised, as one line
        raise DeliveryError(_scrub(f"{type(exc).__name__}: {exc}", secrets)) from None


async def _in_thread(job: Callable[[], None], interrupt: Callable[[], None]) -> None:
    from sdwatch.threads import in_thread

    await in_thread(job, interrupt)


class _Sockets:
    """The sockets a delivery thread opens, so that the deadline can shut them under it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._shut = False

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.append(sock)
            if not self._shut:
                return
        self._shutdown(sock)  # opened after the deadline

    def shut(self) -> None:
        with self._lock:
            self._shut = True
            socks = list(self._open)
        for sock in socks:
            self._shutdown(sock)

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)  # the blocked call returns at once
        except OSError:
            pass


def _email_job(ch: EmailChannel, event: AlertEvent, ident: str, secrets: list[str],
               sockets: _Sockets) -> Callable[[], None]:
    password = read_secret(ch.password_file) if ch.password_file else ""
    secrets.append(password)
    msg = _message(ch, event, ident)
    if ch.sendmail:
        return lambda: _sendmail(ch, msg)
    return lambda: _smtp(ch, msg, password, sockets)


def _message(ch: EmailChannel, event: AlertEvent, ident: str) -> EmailMessage:
    from email.message import EmailMessage
    from email.utils import formatdate

    msg = EmailMessage()
    msg["Subject"] = subject(event)
    msg["From"] = ch.sender or f"sdwatch@{event.host}"
    msg["To"] = ", ".join(ch.to)
    msg["Date"] = formatdate(event.time, localtime=True)
    msg["Message-ID"] = f"<sdwatch.{ident}@{event.host}>"  # the same on every retry
    msg["X-Sdwatch-Unit"] = event.unit
    msg["X-Sdwatch-Event"] = event.event
    msg.set_content(render_text(event))
    return msg


def _smtp(ch: EmailChannel, msg: EmailMessage, password: str, sockets: _Sockets) -> None:
    import smtplib
    import ssl

    class SMTP(smtplib.SMTP):
        # where smtplib opens its socket, before it reads the banner (no public hook)
        def _get_socket(self, *args: Any) -> socket.socket:
            sock = super()._get_socket(*args)
            sockets.add(sock)
            return sock

    host, port = ch.smtp_address()
    with SMTP(host, port, timeout=ch.timeout) as smtp:
        smtp.ehlo()
        if ch.starttls:
            if not smtp.has_extn("starttls"):
                raise DeliveryError(f"{host}:{port} does not offer STARTTLS (starttls = false "
                                    "only for a trusted local relay)")
            smtp.starttls(context=ssl.create_default_context(cafile=ch.ca_file or None))
            smtp.ehlo()
        if ch.user:
            smtp.login(ch.user, password)
        smtp.send_message(msg)


def _sendmail(ch: EmailChannel, msg: EmailMessage) -> None:
    sender = str(msg["From"])
    r = subprocess.run([ch.sendmail, "-i", "-f", sender, "--", *ch.to], input=msg.as_bytes(),
                       capture_output=True, timeout=ch.timeout)
    if r.returncode != 0:
        err = r.stderr.decode("utf-8", "replace").strip().splitlines()
        raise DeliveryError(f"{ch.sendmail} exited with status {r.returncode}: "
                            f"{err[-1] if err else 'no message'}")


def _webhook_job(ch: WebhookChannel, event: AlertEvent, ident: str, secrets: list[str],
                 sockets: _Sockets) -> Callable[[], None]:
    url = read_secret(ch.url_file) if ch.url_file else ch.url
    headers = dict(ch.headers)
    headers.update({k: read_secret(v) for k, v in ch.header_files.items()})
    secrets += [url, *headers.values()]
    if ch.url_file and not url.startswith(("http://", "https://")):
        raise DeliveryError(f"{ch.url_file}: does not hold an http:// or https:// URL")
    from sdwatch import __version__

    headers.setdefault("Content-Type", "application/json")
    headers.setdefault("User-Agent", f"sdwatch/{__version__}")
    headers.setdefault("Idempotency-Key", ident)
    body = json.dumps(payload(event, ch.format, ident)).encode()
    return lambda: _post(url, body, headers, ch.timeout, sockets)


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float,
          sockets: _Sockets) -> None:
    import http.client
    import ssl
    import urllib.error
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        # urllib would repeat a POST as a GET without its body: treat 3xx as a failure
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    class Recorded(http.client.HTTPConnection):
        def connect(self) -> None:
            super().connect()  # before any TLS handshake: HTTPS calls this first
            sockets.add(self.sock)

    class RecordedTLS(http.client.HTTPSConnection, Recorded):
        pass

    class HTTP(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(Recorded, req)

    class HTTPS(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(RecordedTLS, req, context=ssl.create_default_context())

    opener = urllib.request.build_opener(NoRedirect, HTTP, HTTPS)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with opener.open(request, timeout=timeout) as response:
            response.read(1 << 16)
            status = response.status
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DeliveryError(str(exc.reason)) from None
    if not 200 <= status < 300:
        raise DeliveryError(f"HTTP {status}")


async def _exec(ch: ExecChannel, event: AlertEvent, ident: str) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LANG": "C.UTF-8",
           **event_env(event, ident)}
    if "CREDENTIALS_DIRECTORY" in os.environ:
        env["CREDENTIALS_DIRECTORY"] = os.environ["CREDENTIALS_DIRECTORY"]
    stdin = json.dumps(payload(event, "json", ident)).encode()
    proc = await asyncio.create_subprocess_exec(
        *ch.command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=env, start_new_session=True)  # its own group: a timeout kills its children too
    try:
        _, err = await asyncio.wait_for(proc.communicate(stdin), ch.timeout)
    except TimeoutError:
        raise DeliveryError(f"{ch.command[0]}: still running after {ch.timeout:g}s, "
                            "killed") from None
    finally:
        if proc.returncode is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await proc.wait()
    if proc.returncode != 0:
        last = err.decode("utf-8", "replace").strip().splitlines()
        raise DeliveryError(f"{ch.command[0]} exited with status {proc.returncode}"
                            + (f": {last[-1]}" if last else ""))
