"""The command line's side of the daemon's socket: one request, one answer, plain sockets.

No h11 and no asyncio here: ``sdwatch status`` must start fast, and the daemon's answer is
one small HTTP/1.1 response with a Content-Length, read until the server closes.
"""

from __future__ import annotations

import json
import socket
from typing import Any

TIMEOUT = 5.0


class Unreachable(Exception):
    """No daemon answers on the socket (not running, or not allowed to connect)."""


def request(path: str, method: str = "GET", sock_path: str = "/run/sdwatch/sdwatch.sock",
            timeout: float = TIMEOUT) -> tuple[int, Any]:
    """Send one request to the daemon; return (HTTP status, decoded JSON body or text)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        try:
            s.connect(sock_path)
        except OSError as exc:
            raise Unreachable(f"{sock_path}: {exc.strerror or exc}") from None
        # unit names are letters, digits and ":_.-@\\" (states.py): only "\\" needs escaping
        target = path.replace("%", "%25").replace("\\", "%5C").replace(" ", "%20")
        s.sendall(f"{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                  "Content-Length: 0\r\n\r\n".encode())
        chunks = []
        while True:
            data = s.recv(1 << 16)
            if not data:
                break
            chunks.append(data)
    except OSError as exc:  # the daemon went away mid-answer, or a timeout
        raise Unreachable(f"{sock_path}: {exc}") from None
    finally:
        s.close()
    return _parse(b"".join(chunks))


def _parse(raw: bytes) -> tuple[int, Any]:
    head, sep, body = raw.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        raise Unreachable("not an HTTP answer from the daemon") from None
    if not sep:
        raise Unreachable("the daemon's answer was cut short")
    if b"application/json" in head.lower():
        try:
            return status, json.loads(body)
        except ValueError:
            raise Unreachable("the daemon's answer was cut short") from None
    return status, body.decode("utf-8", "replace")
