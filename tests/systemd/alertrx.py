"""Real alert receivers for tests: an HTTP server and an SMTP server (aiosmtpd) on 127.0.0.1.

Each runs in a thread of its own, records what it received, and can be stopped and started
again on the same port (a channel that goes away and comes back).  Used by tests/unit and,
inside the harness's network namespace, by tests/systemd.
"""

from __future__ import annotations

import asyncio
import json
import threading
import warnings
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sdcheck import wait_for as wait_until  # noqa: F401  (re-exported for the alert tests)


class HttpReceiver:
    """Records every POST (path, headers, JSON body); answers with ``status``."""

    def __init__(self, port: int = 0, status: int = 200) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = status
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.status < 300:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers),
                                              "json": json.loads(body)})
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class SmtpReceiver:
    """aiosmtpd on 127.0.0.1:``port`` (0: any); ``login`` = (user, password) requires AUTH;
    ``tls`` (an ssl.SSLContext) offers STARTTLS.  ``messages`` holds parsed emails."""

    def __init__(self, port: int = 0, login: tuple[str, str] | None = None,
                 tls: Any = None) -> None:
        from aiosmtpd.smtp import SMTP, AuthResult

        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.auth_failures = 0
        receiver = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
                receiver.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
                receiver.messages.append(message_from_bytes(envelope.content,
                                                            policy=policy.default))
                return "250 OK"

        def authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                          data: Any) -> Any:
            ok = login is not None and (data.login.decode(), data.password.decode()) == login
            receiver.auth_failures += not ok
            return AuthResult(success=ok, handled=False)  # False: aiosmtpd answers 535

        def factory() -> Any:
            kwargs: dict[str, Any] = {"hostname": "rx.test", "auth_require_tls": False}
            if login is not None:
                kwargs.update(authenticator=authenticator, auth_required=True)
            if tls is not None:
                kwargs["tls_context"] = tls
            with warnings.catch_warnings():  # AUTH without TLS: on loopback, on purpose
                warnings.simplefilter("ignore")
                return SMTP(Handler(), **kwargs)

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            self.loop.create_server(factory, "127.0.0.1", port), self.loop).result(10)
        self.port = self.server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
